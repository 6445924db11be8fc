"""Imbalanced vs balanced sampling: runs that differ only in their sampler, class by class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from harness.report.confusion import confusion_of
from harness.report.html import (
    PALETTE,
    Section,
    difference_of,
    error_bars,
    esc,
    figure_html,
    missing_html,
    percent_text,
    points_text,
    rounded,
    table_html,
)
from harness.report.summary import recall_intervals
from harness.tracking.read import RunRecord, run_sort_key

if TYPE_CHECKING:
    import plotly.graph_objects as go


IMBALANCE_TAG = "imbalance"


# Sampler names that mean "draw the data as it comes"; such a run is the baseline of its pair.
NATURAL_SAMPLERS = frozenset({"natural"})


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


def imbalance_section(
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
    from plotly.subplots import make_subplots

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
    for trace in _recall_traces(group, colours, seed_runs, warnings):
        fig.add_trace(trace, row=1, col=1)
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
    formatters = {key: percent_text for key in ("Val. accuracy", "Balanced accuracy", "Macro-F1")}
    formatters["Δ balanced accuracy vs first"] = points_text
    table = table_html([_pair_row(run, group[0]) for run in group], formatters)
    return f'<div class="block">{figure_html(fig, height=780)}{table}</div>', warnings


def _recall_traces(
    group: list[RunRecord], colours: dict[str, str], seed_runs: Mapping[str, Sequence[RunRecord]],
    warnings: list[str],
) -> list[go.Bar]:  # fmt: skip
    """Per-class recall bars, one trace per run (the mean over its seeds, with 95% intervals)."""
    import plotly.graph_objects as go

    traces = []
    for run in group:
        recall = _per_class_recall(run)
        if recall is None:
            warnings.append(f"run {run.experiment} has no classification report or confusion matrix")
            continue
        labels, values = recall
        bounds = None
        estimate = recall_intervals(seed_runs.get(run.experiment) or (run,))
        if estimate is not None and estimate[0] == labels:
            _, values, bounds = estimate  # the mean over seeds, with its interval
        traces.append(
            go.Bar(
                x=[esc(label) for label in labels],
                y=rounded(values),
                name=f"recall: {esc(run.experiment)} ({esc(_sampler_name(run))})",
                marker_color=colours[run.run_id],
                error_y=error_bars(values, bounds),
                hovertemplate="%{x}: recall %{y:.1%}<extra>" + esc(run.experiment) + "</extra>",
            )
        )
    return traces


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


def _pair_row(run: RunRecord, baseline: RunRecord) -> dict[str, Any]:
    balanced = run.metric("final_val_balanced_accuracy")
    base = baseline.metric("final_val_balanced_accuracy")
    return {
        "Experiment": run.experiment,
        "Sampler": _sampler_name(run),
        "Val. accuracy": run.metric("final_val_accuracy"),
        "Balanced accuracy": balanced,
        "Macro-F1": run.metric("final_val_macro_f1"),
        "Δ balanced accuracy vs first": difference_of(balanced, base),
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
