"""Where the numbers come from: the store, the experiment, the data, every run used.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from harness import __version__
from harness.report.html import Section, distinct_text, esc, table_html, timestamp_text
from harness.tracking.read import Results, RunRecord, run_sort_key

if TYPE_CHECKING:
    pass


def provenance_section(suite: Results, generated: datetime) -> Section:
    runs = suite.runs
    all_runs = [run for group in suite.seed_runs.values() for run in group] or list(runs)
    status = (
        ", ".join(f"{name}: {count}" for name, count in sorted(suite.status_counts.items()))
        or "no runs"
    )
    total = sum(suite.status_counts.values())
    facts = [
        ("Tracking store", suite.tracking_uri),
        ("Experiment", f"{suite.experiment_name} (id {suite.experiment_id or 'none: not found'})"),
        ("Dataset", distinct_text(run.tags.get("harness.dataset") for run in runs)),
        ("Dataset digest", distinct_text(run.tags.get("harness.dataset_digest") for run in runs)),
        ("Evaluation split", distinct_text(run.tags.get("harness.eval_split") for run in runs)),
        ("Runs by status", f"{status} ({total} in the experiment)"),
        (
            "Runs shown",
            f"{len(all_runs)} run(s) of {len(runs)} experiment(s): the most recent FINISHED run "
            "with harness.kind=train per experiment name and seed (tag harness.seed); "
            f"{suite.n_superseded} older finished run(s) superseded; runs of kind eval, sweep "
            "and trial are not experiment runs",
        ),
        ("Generated", f"{timestamp_text(generated)} by fer-harness {__version__}"),
    ]
    items = "".join(f"<dt>{esc(key)}</dt><dd>{esc(value)}</dd>" for key, value in facts)
    body = f'<dl class="facts">{items}</dl>'
    if runs:
        ordered = sorted(all_runs, key=lambda run: (run_sort_key(run), run.seed or 0))
        body += "<h3>Runs used</h3>" + table_html([_provenance_row(run) for run in ordered], {})
    return Section("provenance", body)


def _provenance_row(run: RunRecord) -> dict[str, Any]:
    return {
        "Experiment": run.experiment,
        "Run id": run.run_id,
        "Started (UTC)": timestamp_text(run.start_time),
        "Dataset": run.tags.get("harness.dataset"),
        "Digest": (run.tags.get("harness.dataset_digest") or "")[:12] or None,
        "Split": run.tags.get("harness.eval_split"),
        "Commit": (run.tags.get("harness.git_commit") or "")[:12] or None,
        "Seed": run.tags.get("harness.seed"),
        "Description": run.tags.get("harness.description"),
    }
