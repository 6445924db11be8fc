"""The protocol behind the numbers, stated on the page: what trained, what selected, what was left out.

Every figure on the report is read with these facts beside it: which split trained and which
scored (the harness never reads a test split for training or selection), whether copies of
training faces were dropped from validation, the seeds, the total compute, and, on the embedded
synthetic dataset, that the verdicts test the pipeline on generated faces rather than the study.
"""

from __future__ import annotations

import math

from harness.report.compute import spent_by
from harness.tracking.read import Results, RunRecord

SYNTHETIC = "synthetic-affectnet"  # tag harness.dataset of the embedded default


def is_synthetic(results: Results) -> bool:
    """Whether every run trained on the embedded generated dataset."""
    datasets = {run.tags.get("harness.dataset") for run in _runs(results)}
    return bool(datasets) and datasets == {SYNTHETIC}


def synthetic_warning(results: Results) -> str | None:
    """The plain statement the claims need on generated data, or None on real faces."""
    if not is_synthetic(results):
        return None
    return (
        "These runs trained on the embedded synthetic dataset (faces drawn by the harness, in "
        "AffectNet's format): the verdicts test that the pipeline measures claims correctly, not "
        "the study's claims. For the study's answer, train on real faces (docs/data.md)."
    )


def protocol_lines(results: Results) -> list[str]:
    """The protocol as short sentences (plain text; the caller escapes or formats them)."""
    runs = _runs(results)
    if not runs:
        return []
    dedupe = sorted({run.params.get("data.dedupe", "report") for run in runs})
    seeds = sorted({run.seed for run in runs if run.seed is not None})
    total = math.fsum(s.train_tflop for s in map(spent_by, runs) if s.train_tflop is not None)
    lines = [
        "Trained on each dataset's training split only; every score is on its validation split "
        "(carved from the training images, seeded and stratified, where the source has none), "
        "and model selection reads that split alone. Nothing here reads a test split: only "
        "`harness eval` does, and its runs are not on this page.",
        "Copies of training images in the validation split: "
        + ("dropped (data.dedupe: drop)." if dedupe == ["drop"] else f"data.dedupe {', '.join(dedupe)} "
           "(counted; 'drop' removes them)."),
        f"Seeds: {', '.join(map(str, seeds)) or 'unknown'}; {len(runs)} run(s); training compute "
        f"{total:.3g} TFLOP in all (counted by the harness).",
    ]  # fmt: skip
    warning = synthetic_warning(results)
    return [*lines, warning] if warning else lines


def _runs(results: Results) -> list[RunRecord]:
    return [run for group in results.seed_runs.values() for run in group] or list(results.runs)
