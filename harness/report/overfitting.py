"""Overfitting: the train-validation gap per epoch for every run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.analysis.stats import (
    mean_interval,
)
from harness.report import html
from harness.tracking.read import Results, RunRecord, run_sort_key


def overfitting_section(suite: Results) -> html.Section:
    """The gap between training and validation accuracy per epoch, one line per run."""
    experiments = sorted(suite.seed_runs.items(), key=lambda item: run_sort_key(item[1][0]))
    with_gap = [(name, runs) for name, runs in experiments if any(_has_gap(run) for run in runs)]
    if not with_gap:
        return html.Section("overfitting", html.missing_html("No run has per-epoch training and validation accuracy."))
    fig = _gap_figure(with_gap)
    rows = [_gap_row(name, runs) for name, runs in with_gap]
    note = (
        "<p>The study's central diagnosis is overfitting: training accuracy running away from "
        "validation accuracy. Each line is one run (every seed), the gap in percentage points "
        "of training accuracy (on the images drawn that epoch) minus validation accuracy (on "
        "the whole validation split).</p>"
    )
    return html.Section("overfitting", html.source_line(suite, "per-epoch accuracy") + note + fig + html.table_html(rows, {}))


def _has_gap(run: RunRecord) -> bool:
    history = run.history
    return {"train_accuracy", "val_accuracy"} <= set(history) and bool(
        (history["train_accuracy"] - history["val_accuracy"]).notna().any()
    )


def _gap_figure(groups: Sequence[tuple[str, Sequence[RunRecord]]]) -> str:
    import plotly.graph_objects as go

    fig = go.Figure()
    for index, (name, runs) in enumerate(groups):
        colour = html.PALETTE[index % len(html.PALETTE)]
        for position, run in enumerate(run for run in runs if _has_gap(run)):
            history = run.history
            gap = 100 * (history["train_accuracy"] - history["val_accuracy"])
            seed = f" (seed {run.seed})" if run.seed is not None else ""
            fig.add_trace(
                go.Scatter(
                    x=history["epoch"].tolist(),
                    y=html.rounded(gap.tolist(), 2),
                    mode="lines+markers",
                    name=html.esc(name),
                    legendgroup=html.esc(name),
                    showlegend=position == 0,
                    line={"color": colour, "dash": "solid" if index < len(html.PALETTE) else "dot"},
                    hovertemplate=f"{html.esc(name)}{seed}<br>epoch %{{x}}<br>gap %{{y:+.1f}} pp<extra></extra>",
                )
            )
    fig.add_hline(y=0, line={"color": "#555", "dash": "dash"})
    fig.update_layout(
        title={"text": "Train − validation accuracy gap per epoch, every run"},
        xaxis={"title": {"text": "epoch"}},
        yaxis={"title": {"text": "training − validation accuracy (pp)"}},
    )
    return html.figure_html(fig, height=480)


def _gap_row(name: str, runs: Sequence[RunRecord]) -> dict[str, Any]:
    finals, peaks = [], []
    for run in runs:
        if not _has_gap(run):
            continue
        gap = (run.history["train_accuracy"] - run.history["val_accuracy"]).dropna()
        finals.append(float(gap.iloc[-1]))
        peaks.append(float(gap.max()))
    final = mean_interval(finals)
    spread = f" ± {100 * final.sd:.1f}" if final.sd is not None else ""
    return {
        "Experiment": name,
        "Runs": len(finals),
        "Final-epoch gap, pp (mean ± sd)": f"{100 * final.mean:+.1f}{spread}",
        "Largest gap, pp (max over runs)": f"{100 * max(peaks):+.1f}",
    }
