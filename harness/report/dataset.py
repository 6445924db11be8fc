"""What the runs trained on: preprocessed examples, skipped inputs and duplicates.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from harness.report.html import Section, esc, missing_html, table_html
from harness.tracking.read import RunRecord

if TYPE_CHECKING:
    pass


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


EXAMPLE_ROW_PX = 40  # 32-pixel rows shown a little larger, pixelated, so faces stay legible


def examples_section(runs: Sequence[RunRecord]) -> Section:
    for run in runs:
        png = run.artifacts.examples_png if run.artifacts else None
        if png and png.startswith(PNG_SIGNATURE):
            labelled = bool(run.artifacts and run.artifacts.examples)
            warnings = (
                ()
                if labelled
                else (
                    f"run {run.experiment} has no readable data/examples.json; image rows are unlabelled",
                )
            )
            return Section("examples", _examples_html(run, png), warnings)
    message = "No run has a data/examples.png to show."
    return Section("examples", missing_html(message), (message,) if runs else ())


def _examples_html(run: RunRecord, png: bytes) -> str:
    meta = (run.artifacts.examples if run.artifacts else None) or {}
    labels = [str(label) for label in meta.get("labels", [])]
    rows = max(len(labels), 1)
    height = rows * EXAMPLE_ROW_PX
    data_uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    label_column = "".join(f"<span>{esc(label)}</span>" for label in labels)
    image_size = run.params.get("data.image_size", "32")
    return f"""<figure class="examples">
<figcaption><strong>Preprocessed {esc(image_size)}×{esc(image_size)} training images, one row per
class</strong> (from run {esc(run.experiment)}; rows labelled by class, columns are examples).</figcaption>
<div class="example-grid">
<div class="row-labels" style="height:{height}px;grid-template-rows:repeat({rows},1fr)">{label_column}</div>
<img src="{data_uri}" alt="preprocessed training images, one row per class" style="height:{height}px">
</div>
</figure>"""


def data_quality_section(runs: Sequence[RunRecord]) -> Section:
    """One row per dataset (by digest): images used, inputs skipped by reason, duplicates found."""
    rows: dict[str, dict[str, Any]] = {}
    for run in runs:
        digest = run.tags.get("harness.dataset_digest") or run.run_id
        quality = run.artifacts.quality if run.artifacts else None
        if digest in rows or quality is None:
            continue
        counts = (run.artifacts.class_counts if run.artifacts else None) or {}
        skipped = quality.get("skipped") or {}
        duplicates = quality.get("duplicates") or {}
        rows[digest] = {
            "Dataset": run.tags.get("harness.dataset"),
            "Digest": digest[:12],
            "Training images": sum(counts.get("train") or []) or None,
            "Validation images": sum(counts.get("validation") or []) or None,
            "Skipped inputs": ", ".join(f"{k}: {v}" for k, v in sorted(skipped.items())) or "none",
            "Duplicates": ", ".join(f"{k.removeprefix('dup_')}: {v}" for k, v in sorted(duplicates.items()))
            or "not checked",
            "First run": run.experiment,
        }
    if not rows:
        return Section("data-quality", missing_html("No run logged data/quality.json."))
    note = (
        "<p>Inputs the adapters skipped (missing, unreadable, out-of-range labels, blank images…) "
        "and duplicate images found within the training split and between training and validation "
        "(exact: identical pixels after preprocessing; near: perceptual hash within "
        "<code>data.dedupe_distance</code> bits). Whether copies were dropped from validation is "
        "the run's <code>data.dedupe</code> setting.</p>"
    )
    return Section("data-quality", note + table_html(list(rows.values()), {}))
