"""Confusion matrices, one card per run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from harness.analysis.figures import confusion_heatmap
from harness.report.html import Section, esc, figure_html, missing_html, rounded
from harness.tracking.read import RunRecord

if TYPE_CHECKING:
    pass


def confusion_section(runs: Sequence[RunRecord]) -> Section:
    cards: list[str] = []
    warnings: list[str] = []
    for run in runs:
        figure = _confusion_figure(run)
        if figure is None:
            warnings.append(_no_confusion_reason(run))
        else:
            cards.append(f'<div class="card">{figure}</div>')
    if not cards:
        return Section(
            "confusion", missing_html("No run has a confusion matrix."), tuple(warnings)
        )
    intro = (
        "<p>Rows are true classes, columns predictions; colour is the share of the row, "
        "hover shows image counts.</p>"
    )
    return Section(
        "confusion", f'{intro}<div class="grid">{"".join(cards)}</div>', tuple(warnings)
    )


def _no_confusion_reason(run: RunRecord) -> str:
    if run.artifacts and run.artifacts.confusion_matrix:
        return (
            f"run {run.experiment} has a malformed confusion matrix "
            "(eval/confusion_matrix.json: counts are not a labels x labels table of numbers)"
        )
    return f"run {run.experiment} has no confusion matrix" + _problem_suffix(
        run, "eval/confusion_matrix.json"
    )


def confusion_of(run: RunRecord) -> tuple[list[str], list[list[int]], list[list[float]]] | None:
    """(labels, counts, row-normalised) if the run's confusion matrix is well-formed."""
    matrix = run.artifacts.confusion_matrix if run.artifacts else None
    if not matrix:
        return None
    labels = [str(label) for label in matrix["labels"]]
    counts = matrix["counts"]
    if not _is_square(counts, len(labels)):
        return None
    normalized = matrix.get("normalized")
    if not _is_square(normalized, len(labels)):
        normalized = [[value / sum(row) if sum(row) else 0.0 for value in row] for row in counts]
    return labels, counts, normalized


def _confusion_figure(run: RunRecord) -> str | None:
    matrix = confusion_of(run)
    if matrix is None:
        return None
    labels, counts, normalized = (
        [esc(label) for label in matrix[0]],
        matrix[1],
        [rounded(row) for row in matrix[2]],
    )
    split = run.tags.get("harness.eval_split", "evaluation")
    fig = confusion_heatmap(
        labels,
        counts,
        normalized,
        f"{esc(run.experiment)}: confusion matrix ({esc(split)}, row-normalised)",
    )
    return figure_html(fig, height=520)


def _is_square(rows: Any, size: int) -> bool:
    """Whether `rows` is a size x size list of numbers (a hand-edited JSON might not be)."""
    return (
        isinstance(rows, list)
        and len(rows) == size
        and all(
            isinstance(row, list)
            and len(row) == size
            and all(isinstance(value, int | float) for value in row)
            for row in rows
        )
    )


def _problem_suffix(run: RunRecord, path: str) -> str:
    problems = run.artifacts.problems if run.artifacts else ()
    found = [problem for problem in problems if problem.startswith(path)]
    return f" ({found[0]})" if found else ""
