"""Headline metrics over repeated seeds: mean, sd and a 95% interval per experiment.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from harness.analysis.stats import (
    Interval,
    bootstrap_scores,
    mean_interval,
    wilson_interval,
)
from harness.report.html import (
    Section,
    chance_html,
    count_text,
    duration_text,
    esc,
    missing_html,
    source_line,
    table_html,
)
from harness.report.protocol import protocol_lines
from harness.tracking.read import Results, RunRecord

if TYPE_CHECKING:
    pass


HEADLINE_METRICS: tuple[tuple[str, str], ...] = (
    ("final_val_accuracy", "Val. accuracy"),
    ("final_val_balanced_accuracy", "Balanced accuracy"),
    ("final_val_macro_f1", "Macro-F1"),
)


# Bootstrap intervals for one seed exist for these (from per-image predictions); not for F1.
BOOTSTRAPPED = {"final_val_accuracy": 0, "final_val_balanced_accuracy": 1}


def summary_section(suite: Results, table: Mapping[tuple[str, str], Headline] | None = None) -> Section:
    """Per experiment: seeds, and each headline metric as mean ± sd [95% interval]."""
    if not suite.runs:
        return Section("summary", missing_html("No finished training runs to summarise."))
    table = headlines(suite) if table is None else table
    rows = [_summary_row(run, suite.seed_runs.get(run.experiment) or (run,), table) for run in suite.runs]
    note = (
        "<p>Each experiment's final-epoch metrics over its repeated seeds: mean ± standard "
        "deviation, and a 95% interval — Student-t over seeds where there are several; for a "
        "single seed, a bootstrap over validation images (marked “img”; none for macro-F1). "
        "See <a href=\"#methods\">Methods</a>.</p>"
    )
    formatters = {"Parameters": count_text, "Training time (mean)": duration_text}
    protocol = "".join(f"<li>{esc(line)}</li>" for line in protocol_lines(suite))
    body = source_line(suite) + f'<ul class="protocol">{protocol}</ul>' + note
    body += chance_html(suite.runs) + table_html(rows, formatters)
    return Section("summary", body)


def _summary_row(
    run: RunRecord, seeds: Sequence[RunRecord], table: Mapping[tuple[str, str], Headline]
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "Experiment": run.experiment,
        "Paper iteration": run.paper_iteration,
        "Seeds": seed_list(seeds),
    }
    for key, label in HEADLINE_METRICS:
        row[label] = headline_cell(table.get((run.experiment, key)) or headline(seeds, key))
    row["Parameters"] = run.metric("n_parameters")
    row["Training time (mean)"] = _mean_metric(seeds, "train_seconds")
    tflop = _mean_metric(seeds, "train_tflop")
    row["Train TFLOP (mean)"] = f"{tflop:.3g}" if tflop is not None else None
    row["Comparisons"] = ", ".join(run.comparisons)
    return row


Headline = tuple[float, float | None, Interval | None, str]  # mean, sd, interval, how


def headlines(suite: Results) -> dict[tuple[str, str], Headline]:
    """headline() of every experiment and headline metric, computed once for the whole page."""
    table: dict[tuple[str, str], Headline] = {}
    for name, seeds in suite.seed_runs.items():
        images = _image_intervals(seeds)
        for key, _ in HEADLINE_METRICS:
            table[(name, key)] = headline(seeds, key, images)
    return table


def headline(
    seeds: Sequence[RunRecord], key: str, images: tuple[Interval, Interval] | None = None
) -> Headline:
    """(mean, sd, 95% interval, how the interval was made) of a final metric over seeds.

    `images`: the single run's (accuracy, balanced accuracy) bootstrap intervals, if computed.
    """
    values = [v for v in (run.metric(key) for run in seeds) if v is not None]
    if not values:
        return math.nan, None, None, "missing"
    summary = mean_interval(values)
    if summary.interval is not None:
        return summary.mean, summary.sd, summary.interval, f"t over {summary.n} seeds"
    if key in BOOTSTRAPPED:
        images = images if images is not None else _image_intervals(seeds)
        if images is not None:
            return summary.mean, None, images[BOOTSTRAPPED[key]], "img"
    return summary.mean, None, None, "one seed"


def _image_intervals(seeds: Sequence[RunRecord]) -> tuple[Interval, Interval] | None:
    """For a single run: bootstrap intervals of accuracy and balanced accuracy over images."""
    if len(seeds) != 1:
        return None
    predictions = seeds[0].artifacts.predictions if seeds[0].artifacts else None
    if predictions is None or not predictions.y_true.size:
        return None
    return bootstrap_scores(predictions.y_true, predictions.correct)


def headline_cell(value: Headline) -> str | None:
    mean, sd, interval, how = value
    if math.isnan(mean):
        return None
    text = f"{100 * mean:.1f}"
    text += f" ± {100 * sd:.1f}" if sd is not None else ""
    if interval is not None:
        text += f" [{100 * interval.low:.1f}, {100 * interval.high:.1f}]"
        text += " img" if how == "img" else ""
    return text + " %"


def seed_list(seeds: Sequence[RunRecord]) -> str:
    known = [str(run.seed) for run in seeds if run.seed is not None]
    return f"{len(seeds)} ({', '.join(known)})" if known else str(len(seeds))


def _mean_metric(seeds: Sequence[RunRecord], key: str) -> float | None:
    values = [v for v in (run.metric(key) for run in seeds) if v is not None]
    return math.fsum(values) / len(values) if values else None


def recall_intervals(
    seeds: Sequence[RunRecord],
) -> tuple[list[str], list[float], list[tuple[float, float]]] | None:
    """Per-class recall from the confusion matrices: (labels, means, 95% bounds).

    One seed: Wilson intervals on the class's correct/total counts. Several: Student-t over the
    seeds' recalls (each seed's recall is one observation).
    """
    matrices = [_confusion_counts(run) for run in seeds]
    if not matrices or any(matrix is None for matrix in matrices):
        return None
    labels = matrices[0][0]
    if any(matrix[0] != labels for matrix in matrices):
        return None
    if len(matrices) == 1:
        counts = matrices[0][1]
        intervals = [
            wilson_interval(int(row[i]), int(sum(row))) if sum(row) else None
            for i, row in enumerate(counts)
        ]
        return (
            labels,
            [interval.estimate if interval else 0.0 for interval in intervals],
            [(interval.low, interval.high) if interval else (0.0, 0.0) for interval in intervals],
        )
    means, bounds = [], []
    for i in range(len(labels)):
        recalls = [row[i] / sum(row) if sum(row) else 0.0 for _, counts in matrices for row in [counts[i]]]
        summary = mean_interval(recalls)
        means.append(summary.mean)
        interval = summary.interval
        bounds.append((max(0.0, interval.low), min(1.0, interval.high)) if interval else (0.0, 0.0))
    return labels, means, bounds


def _confusion_counts(run: RunRecord) -> tuple[list[str], list[list[float]]] | None:
    matrix = run.artifacts.confusion_matrix if run.artifacts else None
    if not matrix or not isinstance(matrix.get("labels"), list):
        return None
    labels = [str(label) for label in matrix["labels"]]
    counts = matrix.get("counts")
    if not isinstance(counts, list) or len(counts) != len(labels):
        return None
    if not all(isinstance(row, list) and len(row) == len(labels) for row in counts):
        return None
    return labels, counts
