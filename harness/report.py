"""Turn a suite's MLflow runs into one self-contained HTML page that works offline.

MLflow runs -> frozen records (tracking.read) -> pandas tables and plotly figures -> one page with
plotly.js inlined once and images as data URIs. Whatever is missing (no experiment, a run without
a confusion matrix) is said on the page and returned as a warning; the page is always written.
"""

from __future__ import annotations

import base64
import html
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import __version__
from harness.tracking.read import RunRecord, Suite, load_suite, run_sort_key

if TYPE_CHECKING:
    import plotly.graph_objects as go

# (anchor, heading) of every section, in page order; the table of contents is built from this.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("summary", "Summary: headline metrics over seeds"),
    ("claims", "The study's claims, tested"),
    ("paper", "Paper vs reproduced"),
    ("learning-curves", "Learning curves (paper Figures 1–2)"),
    ("overfitting", "Overfitting: the train–validation gap"),
    ("imbalance", "Imbalanced vs balanced sampling"),
    ("architecture", "Plain vs residual vs ResNeXt"),
    ("confusion", "Confusion matrices"),
    ("sweeps", "Hyper-parameter sweeps"),
    ("beyond", "Beyond the study: a modern recipe"),
    ("examples", "Preprocessed examples (paper Figure 4)"),
    ("data-quality", "Data quality and duplicates"),
    ("methods", "Methods: intervals and tests"),
    ("provenance", "Where the numbers come from"),
)

ARCHITECTURE_TAG = "architecture"
IMBALANCE_TAG = "imbalance"
# Sampler names that mean "draw the data as it comes"; such a run is the baseline of its pair.
NATURAL_SAMPLERS = frozenset({"natural", "none", "shuffle", "random", "default"})
# Top-level spec keys that name or describe a run rather than configure it: two runs may differ
# here and still be "the same model with a different sampler".
IDENTITY_PARAM_ROOTS = frozenset(
    {"name", "description", "comparisons", "paper", "paper_iteration", "paper_val_accuracy", "tags"}
)
# Parameters that differ between repeated seeds of one experiment: never a reason not to pair.
SEED_PARAMS = frozenset({"train.seed", "train.seeds"})
AGGREGATE_REPORT_KEYS = frozenset(
    {"accuracy", "macro avg", "weighted avg", "micro avg", "samples avg"}
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EXAMPLE_ROW_PX = 40  # 32-pixel rows shown a little larger, pixelated, so faces stay legible

TRAIN_COLOUR = "#1f77b4"
VAL_COLOUR = "#ff7f0e"
PALETTE: tuple[str, ...] = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip


@dataclass(frozen=True)
class ReportSummary:
    """What build_report wrote: where, how many runs, what was missing, and how long it took."""

    out_path: Path
    n_runs: int
    warnings: list[str]
    seconds: float


@dataclass(frozen=True)
class Section:
    anchor: str
    body: str
    warnings: tuple[str, ...] = ()


def build_report(tracking_uri: str, experiment_name: str, out_path: Path) -> ReportSummary:
    """Write the suite's HTML report to `out_path` (atomically) and summarise what it holds."""
    started = time.perf_counter()
    out_path = Path(out_path)
    suite = load_suite(tracking_uri, experiment_name)
    generated = datetime.now(UTC)
    sections = _sections(suite, generated)
    warnings = [*suite.notes, *(warning for section in sections for warning in section.warnings)]
    _write_atomically(out_path, _page(suite, sections, warnings, generated))
    return ReportSummary(
        out_path=out_path,
        n_runs=len(suite.runs),
        warnings=warnings,
        seconds=time.perf_counter() - started,
    )


def _sections(suite: Suite, generated: datetime) -> list[Section]:
    from harness.report_beyond import beyond_section
    from harness.report_stats import (
        claims_section,
        headlines,
        methods_section,
        overfitting_section,
        paper_section,
        summary_section,
        sweeps_section,
    )

    runs = suite.runs
    table = headlines(suite)  # shared by the summary and the paper table
    return [
        summary_section(suite, table),
        claims_section(suite),
        paper_section(suite, table),
        _learning_curves_section(runs),
        overfitting_section(suite),
        _imbalance_section(runs, suite.seed_runs),
        _architecture_section(runs),
        _confusion_section(runs),
        sweeps_section(suite),
        beyond_section(suite, table),
        _examples_section(runs),
        _data_quality_section(runs),
        methods_section(),
        _provenance_section(suite, generated),
    ]


# ---------------------------------------------------------------------------------------------
# Page assembly
# ---------------------------------------------------------------------------------------------


def _page(suite: Suite, sections: list[Section], warnings: list[str], generated: datetime) -> str:
    from plotly.offline import get_plotlyjs

    title = f"FER study report: {suite.experiment_name}"
    headings = dict(SECTIONS)
    body = "\n".join(_section_html(section, headings[section.anchor]) for section in sections)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
<style>{_CSS}</style>
<script type="text/javascript">{get_plotlyjs()}</script>
</head>
<body>
<main>
<header>
<h1>{esc(title)}</h1>
<p class="lede">{len(suite.runs)} run(s) · tracking store <code>{esc(suite.tracking_uri)}</code> ·
generated {esc(_timestamp(generated))}</p>
</header>
{_contents()}
{_notes_html(warnings)}
{body}
</main>
</body>
</html>
"""


def _section_html(section: Section, heading: str) -> str:
    tag = "footer" if section.anchor == "provenance" else "section"
    return f'<{tag} id="{section.anchor}">\n<h2>{esc(heading)}</h2>\n{section.body}\n</{tag}>'


def _contents() -> str:
    items = "".join(
        f'<li><a href="#{anchor}">{esc(heading)}</a></li>' for anchor, heading in SECTIONS
    )
    return f'<nav id="contents" aria-label="Contents"><h2>Contents</h2><ol>{items}</ol></nav>'


def _notes_html(warnings: list[str]) -> str:
    if not warnings:
        return ""
    items = "".join(f"<li>{esc(warning)}</li>" for warning in warnings)
    return f'<aside id="notes" class="missing"><h2>What is missing</h2><ul>{items}</ul></aside>'


def _write_atomically(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder so a reader never sees half a page."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
    )
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide the report from other users
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------------------
# (a) Summary: headline metrics live in report_stats.py; chance levels and tables here
# ---------------------------------------------------------------------------------------------


def chance_html(runs: Sequence[RunRecord]) -> str:
    """Chance levels to read the table against: a uniform guess, and always the largest class."""
    counts = next((r.artifacts.class_counts for r in runs if r.artifacts and r.artifacts.class_counts), None)
    if not counts or not counts.get("validation"):
        return ""
    validation = [int(v) for v in counts["validation"]]
    k, total = sum(1 for v in validation if v > 0), sum(validation)
    if not k or not total:
        return ""
    majority = max(validation) / total
    return (
        f"<p>Chance on this validation split: a uniform guess scores {_percent(1 / k)} "
        f"({k} classes); always answering the largest class scores {_percent(majority)} accuracy "
        f"and {_percent(1 / k)} balanced accuracy.</p>"
    )


def table_html(rows: list[dict[str, Any]], formatters: dict[str, Callable[[Any], str]]) -> str:
    import pandas as pd

    frame = pd.DataFrame(rows)
    # pandas escapes every cell (escape=True), so MLflow text cannot inject markup.
    table = frame.to_html(
        index=False, escape=True, na_rep="—", border=0, classes="data", formatters=formatters
    )
    return f'<div class="table-wrap">{table}</div>'


# ---------------------------------------------------------------------------------------------
# (b) Learning curves
# ---------------------------------------------------------------------------------------------


def _learning_curves_section(runs: Sequence[RunRecord]) -> Section:
    with_curves = [run for run in runs if _has_accuracy_history(run)]
    warnings = tuple(
        f"run {run.experiment} has no per-epoch accuracy history"
        for run in runs
        if run not in with_curves
    )
    if not with_curves:
        return Section(
            "learning-curves", missing_html("No run has per-epoch accuracy to plot."), warnings
        )
    return Section("learning-curves", _accuracy_small_multiples(with_curves), warnings)


def _has_accuracy_history(run: RunRecord) -> bool:
    history = run.history
    columns = [column for column in ("train_accuracy", "val_accuracy") if column in history]
    return bool(columns) and bool(history[columns].notna().to_numpy().any())


def _accuracy_small_multiples(runs: Sequence[RunRecord]) -> str:
    from plotly.subplots import make_subplots

    columns = min(3, len(runs))
    rows = math.ceil(len(runs) / columns)
    fig = make_subplots(
        rows=rows,
        cols=columns,
        subplot_titles=[esc(run.experiment) for run in runs],
        horizontal_spacing=0.08,
        vertical_spacing=min(0.12, 0.5 / rows),
    )
    for index, run in enumerate(runs):
        row, col = divmod(index, columns)
        for trace in _train_val_traces(run, show_legend=index == 0):
            fig.add_trace(trace, row=row + 1, col=col + 1)
        fig.update_xaxes(title_text="epoch", row=row + 1, col=col + 1)
        if col == 0:
            fig.update_yaxes(title_text="accuracy", row=row + 1, col=col + 1)
    fig.update_yaxes(range=[0, 1], tickformat=".0%")
    fig.update_annotations(font_size=13)  # panel titles: smaller than the figure's title
    height = 280 * rows + 130
    fig.update_layout(
        title={"text": "Training vs validation accuracy per epoch, one panel per run"},
        # Raised ~40 px above the plotting area so it clears the first row's panel titles.
        legend={
            "orientation": "h",
            "x": 1,
            "xanchor": "right",
            "y": 1 + 40 / (height - 150),
            "yanchor": "bottom",
        },
    )
    return figure_html(fig, height=height)


def _train_val_traces(run: RunRecord, *, show_legend: bool) -> list[go.Scatter]:
    import plotly.graph_objects as go

    history = run.history
    traces = []
    for column, label, colour in (
        ("train_accuracy", "training", TRAIN_COLOUR),
        ("val_accuracy", "validation", VAL_COLOUR),
    ):
        if column not in history:
            continue
        traces.append(
            go.Scatter(
                x=history["epoch"].tolist(),
                y=rounded(history[column].tolist()),
                mode="lines+markers",
                name=label,
                legendgroup=label,
                showlegend=show_legend,
                line={"color": colour},
                hovertemplate=(
                    f"{esc(run.experiment)}<br>epoch %{{x}}<br>{label}: %{{y:.1%}}<extra></extra>"
                ),
            )
        )
    return traces


# ---------------------------------------------------------------------------------------------
# (c) Imbalanced vs balanced sampling
# ---------------------------------------------------------------------------------------------


def _imbalance_section(
    runs: Sequence[RunRecord], seed_runs: Mapping[str, Sequence[RunRecord]] | None = None
) -> Section:
    groups = sampler_groups(runs)
    if not groups:
        message = (
            "No two runs differ only in their sampler.* parameters, so there is no "
            "imbalanced/balanced pair to compare."
        )
        # With no runs at all the suite's own note already says why; don't repeat it per section.
        return Section("imbalance", missing_html(message), (message,) if runs else ())
    parts = [
        "<p>Each block compares runs whose parameters are identical except for "
        "<code>sampler.*</code>: per-class recall on the validation split (error bars: 95% "
        "intervals — Wilson's for one seed, Student-t over seeds for several), and how many "
        "training images of each class exist versus how many the sampler draws per epoch.</p>"
    ]
    warnings: list[str] = []
    for group in groups:
        html_part, group_warnings = _sampler_group_html(group, seed_runs or {})
        parts.append(html_part)
        warnings.extend(group_warnings)
    grouped = {run.run_id for group in groups for run in group}
    unpaired = [
        run.experiment
        for run in runs
        if IMBALANCE_TAG in run.comparisons and run.run_id not in grouped
    ]
    if unpaired:
        parts.append(
            '<p class="note">Tagged <code>imbalance</code> but without a sampler-only partner: '
            f"{esc(', '.join(unpaired))}.</p>"
        )
    return Section("imbalance", "\n".join(parts), tuple(warnings))


def sampler_groups(runs: Sequence[RunRecord]) -> list[list[RunRecord]]:
    """Groups of runs whose params differ only in sampler.* (natural sampler first)."""
    by_setup: dict[tuple[tuple[str, str], ...], list[RunRecord]] = {}
    for run in runs:
        if _sampler_params(run):
            by_setup.setdefault(_non_sampler_params(run), []).append(run)
    groups = [
        sorted(group, key=_baseline_first)
        for group in by_setup.values()
        if len({_sampler_params(run) for run in group}) > 1
    ]
    return sorted(groups, key=lambda group: run_sort_key(group[0]))


def _sampler_params(run: RunRecord) -> tuple[tuple[str, str], ...]:
    return tuple(
        sorted((key, value) for key, value in run.params.items() if _param_root(key) == "sampler")
    )


def _non_sampler_params(run: RunRecord) -> tuple[tuple[str, str], ...]:
    ignored = IDENTITY_PARAM_ROOTS | {"sampler"}
    return tuple(
        sorted(
            (key, value)
            for key, value in run.params.items()
            if _param_root(key) not in ignored and key not in SEED_PARAMS
        )
    )


def _param_root(key: str) -> str:
    return key.split(".", 1)[0]


def _sampler_name(run: RunRecord) -> str:
    return run.params.get("sampler.name", "?")


def _baseline_first(run: RunRecord) -> tuple[int, tuple[float, str, str]]:
    return (0 if _sampler_name(run) in NATURAL_SAMPLERS else 1, run_sort_key(run))


def _sampler_group_html(
    group: list[RunRecord], seed_runs: Mapping[str, Sequence[RunRecord]]
) -> tuple[str, list[str]]:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from harness.report_stats import recall_intervals

    names = " vs ".join(run.experiment for run in group)
    split = group[0].tags.get("harness.eval_split", "evaluation")
    # One colour per run, shared by its recall bars and its drawn-per-epoch bars.
    colours = {run.run_id: PALETTE[index % len(PALETTE)] for index, run in enumerate(group)}
    warnings: list[str] = []
    fig = make_subplots(
        rows=2,
        cols=1,
        vertical_spacing=0.2,
        subplot_titles=(
            f"Per-class recall on the {esc(split)} split",
            "Training images per class: available vs drawn per epoch",
        ),
    )
    for run in group:
        recall = _per_class_recall(run)
        if recall is None:
            warnings.append(
                f"run {run.experiment} has no classification report or confusion matrix"
            )
            continue
        labels, values = recall
        bounds = None
        estimate = recall_intervals(seed_runs.get(run.experiment) or (run,))
        if estimate is not None and estimate[0] == labels:
            _, values, bounds = estimate  # the mean over seeds, with its interval
        fig.add_trace(
            go.Bar(
                x=[esc(label) for label in labels],
                y=rounded(values),
                name=f"recall: {esc(run.experiment)} ({esc(_sampler_name(run))})",
                marker_color=colours[run.run_id],
                error_y=error_bars(values, bounds),
                hovertemplate="%{x}: recall %{y:.1%}<extra>" + esc(run.experiment) + "</extra>",
            ),
            row=1,
            col=1,
        )
    for trace in _class_count_traces(group, colours):
        fig.add_trace(trace, row=2, col=1)
    if not any(run.artifacts and run.artifacts.class_counts for run in group):
        warnings.append(f"runs {names} have no data/class_counts.json")
    fig.update_annotations(font_size=13)  # panel titles: smaller than the figure's title
    fig.update_xaxes(title_text="class", tickangle=-35)
    fig.update_yaxes(title_text="recall", range=[0, 1], tickformat=".0%", row=1, col=1)
    fig.update_yaxes(title_text="images", row=2, col=1)
    model = group[0].params.get("model.name", "model")
    fig.update_layout(
        title={"text": f"{esc(model)}: {esc(names)}"},
        barmode="group",
        legend={"orientation": "h", "y": -0.22, "yanchor": "top"},
    )
    formatters = {key: _percent for key in ("Val. accuracy", "Balanced accuracy", "Macro-F1")}
    formatters["Δ balanced accuracy vs first"] = _points
    table = table_html([_pair_row(run, group[0]) for run in group], formatters)
    return f'<div class="block">{figure_html(fig, height=780)}{table}</div>', warnings


def _class_count_traces(group: list[RunRecord], colours: dict[str, str]) -> list[go.Bar]:
    import plotly.graph_objects as go

    traces: list[go.Bar] = []
    available_shown = False
    for run in group:
        counts = run.artifacts.class_counts if run.artifacts else None
        if not counts:
            continue
        labels = [esc(label) for label in counts["labels"]]
        if not available_shown:
            traces.append(
                go.Bar(
                    x=labels,
                    y=list(counts["train"]),
                    name="available in the training split",
                    marker_color="#b0b0b0",  # neutral: the data, not any one run
                )
            )
            available_shown = True
        sampled = counts.get("sampled_per_epoch")
        # A natural sampler draws exactly what is available; a second identical bar adds nothing.
        if sampled and list(sampled) != list(counts["train"]):
            traces.append(
                go.Bar(
                    x=labels,
                    y=list(sampled),
                    name=f"drawn per epoch: {esc(run.experiment)}",
                    marker_color=colours[run.run_id],
                )
            )
    return traces


def error_bars(
    values: Sequence[float], bounds: Sequence[tuple[float, float]] | None
) -> dict[str, Any] | None:
    """Asymmetric plotly error bars from (low, high) bounds around `values`."""
    if bounds is None or len(bounds) != len(values):
        return None
    return {
        "type": "data",
        "symmetric": False,
        "array": rounded(max(0.0, high - value) for value, (_, high) in zip(values, bounds, strict=True)),
        "arrayminus": rounded(max(0.0, value - low) for value, (low, _) in zip(values, bounds, strict=True)),
        "thickness": 1.2,
        "width": 3,
    }


def _pair_row(run: RunRecord, baseline: RunRecord) -> dict[str, Any]:
    balanced = run.metric("final_val_balanced_accuracy")
    base = baseline.metric("final_val_balanced_accuracy")
    return {
        "Experiment": run.experiment,
        "Sampler": _sampler_name(run),
        "Val. accuracy": run.metric("final_val_accuracy"),
        "Balanced accuracy": balanced,
        "Macro-F1": run.metric("final_val_macro_f1"),
        "Δ balanced accuracy vs first": _difference(balanced, base),
    }


def _per_class_recall(run: RunRecord) -> tuple[list[str], list[float]] | None:
    """Recall per class from the classification report, else from the confusion matrix."""
    artifacts = run.artifacts
    labels = _class_labels(run)
    if artifacts is None or not labels:
        return None
    report = artifacts.classification_report
    if report and all(
        isinstance(report.get(label), dict) and "recall" in report[label] for label in labels
    ):
        return labels, [float(report[label]["recall"]) for label in labels]
    matrix = confusion_of(run)
    if matrix is None:
        return None
    counts = matrix[1]
    return labels, [row[i] / sum(row) if sum(row) else 0.0 for i, row in enumerate(counts)]


def _class_labels(run: RunRecord) -> list[str] | None:
    artifacts = run.artifacts
    if artifacts is None:
        return None
    for source in (artifacts.confusion_matrix, artifacts.class_counts):
        if source and isinstance(source.get("labels"), list):
            return [str(label) for label in source["labels"]]
    if artifacts.classification_report:
        return [key for key in artifacts.classification_report if key not in AGGREGATE_REPORT_KEYS]
    return None


# ---------------------------------------------------------------------------------------------
# (d) Architecture comparison
# ---------------------------------------------------------------------------------------------


def _architecture_section(runs: Sequence[RunRecord]) -> Section:
    tagged = [run for run in runs if ARCHITECTURE_TAG in run.comparisons]
    if not tagged:
        message = f"No finished run is tagged {ARCHITECTURE_TAG!r} in harness.comparisons."
        return Section("architecture", missing_html(message), (message,) if runs else ())
    rows = [
        {
            "Experiment": run.experiment,
            "Model": run.params.get("model.name"),
            "Parameters": run.metric("n_parameters"),
            "Paper val. accuracy": run.paper_val_accuracy,
            "Val. accuracy": run.metric("final_val_accuracy"),
            "Balanced accuracy": run.metric("final_val_balanced_accuracy"),
            "Macro-F1": run.metric("final_val_macro_f1"),
        }
        for run in tagged
    ]
    formatters = {
        key: _percent
        for key in ("Paper val. accuracy", "Val. accuracy", "Balanced accuracy", "Macro-F1")
    }
    body = "\n".join(
        [
            _architecture_bars(tagged),
            table_html(rows, {**formatters, "Parameters": count_text}),
            _architecture_curves(tagged),
        ]
    )
    return Section("architecture", body)


def _architecture_bars(runs: Sequence[RunRecord]) -> str:
    import plotly.graph_objects as go

    from harness.figures import paper_markers

    names = [esc(run.experiment) for run in runs]
    fig = go.Figure()
    for key, label in (
        ("final_val_accuracy", "validation accuracy"),
        ("final_val_balanced_accuracy", "balanced accuracy"),
        ("final_val_macro_f1", "macro-F1"),
    ):
        fig.add_trace(go.Bar(x=names, y=rounded([run.metric(key) for run in runs]), name=label))
    fig.add_trace(paper_markers(names, [run.paper_val_accuracy for run in runs], "paper-reported val. accuracy"))
    fig.update_layout(
        title={"text": "Final validation metrics by architecture"},
        barmode="group",
        xaxis={"title": {"text": "run"}},
        yaxis={
            "title": {"text": "score on the validation split"},
            "range": [0, 1],
            "tickformat": ".0%",
        },
    )
    return figure_html(fig, height=460)


def _architecture_curves(runs: Sequence[RunRecord]) -> str:
    import plotly.graph_objects as go

    fig = go.Figure()
    for index, run in enumerate(runs):
        history = run.history
        colour = PALETTE[index % len(PALETTE)]
        for column, label, dash in (
            ("val_accuracy", "validation", "solid"),
            ("train_accuracy", "training", "dot"),
        ):
            if column not in history or history.empty:
                continue
            fig.add_trace(
                go.Scatter(
                    x=history["epoch"].tolist(),
                    y=rounded(history[column].tolist()),
                    mode="lines",
                    name=f"{esc(run.experiment)}: {label}",
                    legendgroup=esc(run.experiment),
                    line={"color": colour, "dash": dash},
                )
            )
    fig.update_layout(
        title={"text": "Accuracy per epoch by architecture (solid: validation, dotted: training)"},
        xaxis={"title": {"text": "epoch"}},
        yaxis={"title": {"text": "accuracy"}, "range": [0, 1], "tickformat": ".0%"},
    )
    return figure_html(fig, height=460)


# ---------------------------------------------------------------------------------------------
# (e) Confusion matrices
# ---------------------------------------------------------------------------------------------


def _confusion_section(runs: Sequence[RunRecord]) -> Section:
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
    from harness.figures import confusion_heatmap

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


# ---------------------------------------------------------------------------------------------
# (f) Example images
# ---------------------------------------------------------------------------------------------


def _examples_section(runs: Sequence[RunRecord]) -> Section:
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


# ---------------------------------------------------------------------------------------------
# (g) Provenance footer
# ---------------------------------------------------------------------------------------------


def _data_quality_section(runs: Sequence[RunRecord]) -> Section:
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


def _provenance_section(suite: Suite, generated: datetime) -> Section:
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
        ("Dataset", _distinct(run.tags.get("harness.dataset") for run in runs)),
        ("Dataset digest", _distinct(run.tags.get("harness.dataset_digest") for run in runs)),
        ("Evaluation split", _distinct(run.tags.get("harness.eval_split") for run in runs)),
        ("Runs by status", f"{status} ({total} in the experiment)"),
        (
            "Runs shown",
            f"{len(all_runs)} run(s) of {len(runs)} experiment(s): the most recent FINISHED run "
            "with harness.kind=train per experiment name and seed (tag harness.seed); "
            f"{suite.n_superseded} older finished run(s) superseded; runs of kind eval, sweep "
            "and trial are not experiment runs",
        ),
        ("Generated", f"{_timestamp(generated)} by fer-harness {__version__}"),
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
        "Started (UTC)": _timestamp(run.start_time),
        "Dataset": run.tags.get("harness.dataset"),
        "Digest": (run.tags.get("harness.dataset_digest") or "")[:12] or None,
        "Split": run.tags.get("harness.eval_split"),
        "Commit": (run.tags.get("harness.git_commit") or "")[:12] or None,
        "Seed": run.tags.get("harness.seed"),
        "Description": run.tags.get("harness.description"),
    }


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def figure_html(fig: go.Figure, *, height: int) -> str:
    """A figure as a <div> plus its plotting call; plotly.js itself is inlined once in <head>."""
    import plotly.io as pio

    # Swapping in the small template on the plain dict skips plotly's per-property validation,
    # which costs more than everything else in the report put together.
    spec = fig.to_dict()
    spec["layout"].update(
        template=_template(), height=height, margin={"l": 70, "r": 30, "t": 80, "b": 70}
    )
    return pio.to_html(
        spec,
        validate=False,
        full_html=False,
        include_plotlyjs=False,
        default_width="100%",
        default_height=f"{height}px",
        config={"displaylogo": False, "responsive": True},
    )


def missing_html(message: str) -> str:
    return f'<p class="missing">{esc(message)}</p>'


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def rounded(values: Iterable[float | None], digits: int = 4) -> list[float | None]:
    """Round for the page: four digits are plenty on screen and keep figure JSON small."""
    return [
        None if value is None or math.isnan(value) else round(float(value), digits)
        for value in values
    ]


def _difference(value: float | None, reference: float | None) -> float | None:
    return None if value is None or reference is None else value - reference


def _distinct(values: Iterable[str | None]) -> str:
    found = sorted({value for value in values if value})
    return ", ".join(found) if found else "unknown (no runs)"


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _percent(value: float) -> str:
    return f"{100 * value:.1f} %"


def _points(value: float) -> str:
    return f"{100 * value:+.1f} pp"


def count_text(value: float) -> str:
    return f"{int(value):,}"


def duration_text(seconds: float) -> str:
    minutes, rest = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {rest:02d}s"


def _template() -> dict[str, Any]:
    """A deliberately small plotly template: the stock one adds ~8 kB of JSON to every figure."""
    return {
        "layout": {
            "font": {
                "family": "system-ui, -apple-system, Segoe UI, sans-serif",
                "size": 12,
                "color": "#222",
            },
            "paper_bgcolor": "white",
            "plot_bgcolor": "white",
            "colorway": list(PALETTE),
            "hovermode": "closest",
            "title": {"x": 0.01, "font": {"size": 15}},
            "xaxis": {
                "gridcolor": "#e6e6e6",
                "linecolor": "#999",
                "zeroline": False,
                "automargin": True,
            },
            "yaxis": {
                "gridcolor": "#e6e6e6",
                "linecolor": "#999",
                "zeroline": False,
                "automargin": True,
            },
        }
    }


_CSS = """
:root { color-scheme: light; }
body { margin: 0; background: #f6f7f9; color: #222;
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 1.5rem 1.25rem 3rem; background: white; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; }
h2 { font-size: 1.25rem; margin: 2.25rem 0 .75rem; border-bottom: 1px solid #ddd; padding-bottom: .25rem; }
h3 { font-size: 1.05rem; margin: 1.5rem 0 .5rem; }
.lede { color: #555; margin-top: 0; }
code { background: #f1f1f1; padding: 0 .25em; border-radius: 3px; font-size: .9em; }
nav ol { columns: 2; margin: 0; }
nav h2 { margin-top: 1rem; }
.missing { background: #fff6e0; border-left: 4px solid #e0a100; padding: .5rem .9rem; }
aside.missing h2 { margin-top: .25rem; border: 0; }
.note { color: #555; }
.table-wrap { overflow-x: auto; margin: .75rem 0; }
table.data { border-collapse: collapse; font-size: .9rem; width: 100%; }
table.data th, table.data td { padding: .3rem .55rem; border-bottom: 1px solid #e3e3e3; text-align: right; }
table.data th:first-child, table.data td:first-child { text-align: left; white-space: nowrap; }
table.data td:last-child, table.data th:last-child { text-align: left; }
table.data thead th { background: #f3f5f8; position: sticky; top: 0; }
.block { margin: 1rem 0 2rem; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 1rem; }
.card { border: 1px solid #e3e3e3; border-radius: 6px; padding: .25rem; }
figure.examples { margin: 1rem 0; }
.example-grid { display: flex; gap: .6rem; align-items: flex-start; overflow-x: auto; }
.row-labels { display: grid; align-items: center; text-align: right; font-size: .85rem; color: #444; }
.example-grid img { image-rendering: pixelated; width: auto; border: 1px solid #ccc; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; }
dl.facts dt { font-weight: 600; }
dl.facts dd { margin: 0; word-break: break-all; }
footer { margin-top: 2rem; font-size: .92rem; }
.source { color: #444; font-size: .9rem; }
ul.claims { padding-left: 1.2rem; }
ul.claims li { margin: .5rem 0; padding: .4rem .7rem; border-left: 4px solid #999; list-style: none; }
ul.claims li.ok { border-color: #2ca02c; background: #f0f8f0; }
ul.claims li.bad { border-color: #d62728; background: #fbefef; }
ul.claims li.unclear { border-color: #e0a100; background: #fff6e0; }
@media (max-width: 1100px) { .grid { grid-template-columns: 1fr; } }
"""
