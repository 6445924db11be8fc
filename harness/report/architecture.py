"""Plain vs residual vs ResNeXt: final metrics and curves of the runs tagged `architecture`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from harness.analysis.figures import paper_markers
from harness.report.html import (
    PALETTE,
    Section,
    count_text,
    esc,
    figure_html,
    missing_html,
    percent_text,
    rounded,
    table_html,
)
from harness.tracking.read import RunRecord

if TYPE_CHECKING:
    pass


ARCHITECTURE_TAG = "architecture"


def architecture_section(runs: Sequence[RunRecord]) -> Section:
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
        key: percent_text
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
