"""Learning curves: training and validation accuracy per epoch, one panel per run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from harness.report.html import (
    TRAIN_COLOUR,
    VAL_COLOUR,
    Section,
    esc,
    figure_html,
    missing_html,
    rounded,
)
from harness.tracking.read import RunRecord

if TYPE_CHECKING:
    import plotly.graph_objects as go


def learning_curves_section(runs: Sequence[RunRecord]) -> Section:
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
