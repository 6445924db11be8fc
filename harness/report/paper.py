"""Paper vs reproduced: the study's reported accuracy per iteration beside ours, and both rankings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from harness.analysis.figures import paper_markers
from harness.analysis.stats import (
    Interval,
)
from harness.report import html
from harness.report.summary import Headline, headline, headlines
from harness.tracking.read import Results, RunRecord


def paper_section(suite: Results, table: Mapping[tuple[str, str], Headline] | None = None) -> html.Section:
    """Per paper iteration: the study's accuracy, ours with its interval, the gap, both rankings."""
    rows = [run for run in suite.runs if run.paper_iteration is not None]
    if not rows:
        return html.Section("paper", html.missing_html("No run reproduces one of the paper's iterations."))
    table = headlines(suite) if table is None else table
    ours = {
        run.experiment: table.get((run.experiment, "final_val_accuracy"))
        or headline(suite.seed_runs.get(run.experiment) or (run,), "final_val_accuracy")
        for run in rows
    }
    ranked = [run for run in rows if run.paper_val_accuracy is not None and not math.isnan(ours[run.experiment][0])]
    paper_rank = _ranks({run.experiment: run.paper_val_accuracy for run in ranked})
    our_rank = _ranks({run.experiment: ours[run.experiment][0] for run in ranked})
    table = [
        {
            "Iteration": run.paper_iteration,
            "Experiment": run.experiment,
            "Paper val. accuracy": _pct(run.paper_val_accuracy),
            "Ours: mean [95% CI]": _ours_cell(ours[run.experiment]),
            "Gap (ours − paper), pp": _gap(ours[run.experiment][0], run.paper_val_accuracy),
            "Paper rank": _rank_text(paper_rank.get(run.experiment)),
            "Our rank": _rank_text(our_rank.get(run.experiment)),
        }
        for run in rows
    ]
    order = (
        "<p>Rank 1 is the highest accuracy among the iterations the paper gives a number for "
        "(ties share a rank). Paper order: "
        f"{html.esc(_ordering(paper_rank))}; ours: {html.esc(_ordering(our_rank))}.</p>"
        if ranked
        else ""
    )
    note = (
        "<p>The paper's numbers are AffectNet validation accuracy after ~15 epochs of 5,000 "
        "images; ours are on the data and schedule named below, so the gap measures the setting "
        "as much as the code. The ranking is the comparable part.</p>"
    )
    body = (
        html.source_line(suite)
        + note
        + html.table_html(table, {})
        + order
        + _paper_figure(rows, ours)
    )
    return html.Section("paper", body)


def _ranks(values: Mapping[str, float]) -> dict[str, int]:
    """1 = highest; equal values share the better rank."""
    ordered = sorted(values.values(), reverse=True)
    return {name: ordered.index(value) + 1 for name, value in values.items()}


def _rank_text(rank: int | None) -> str | None:
    return None if rank is None else str(rank)


def _ordering(ranks: Mapping[str, int]) -> str:
    return " > ".join(name for name, _ in sorted(ranks.items(), key=lambda item: (item[1], item[0])))


def _ours_cell(values: tuple[float, float | None, Interval | None, str]) -> str | None:
    mean, _, interval, how = values
    if math.isnan(mean):
        return None
    text = f"{100 * mean:.1f} %"
    if interval is not None:
        text += f" [{100 * interval.low:.1f}, {100 * interval.high:.1f}]"
        text += " (images)" if how == "img" else f" ({how})"
    return text


def _paper_figure(runs: Sequence[RunRecord], ours: Mapping[str, tuple[Any, ...]]) -> str:
    import plotly.graph_objects as go

    names = [f"{html.esc(run.paper_iteration)}: {html.esc(run.experiment)}" for run in runs]
    means = [ours[run.experiment][0] for run in runs]
    intervals = [ours[run.experiment][2] for run in runs]
    fig = go.Figure()
    fig.add_trace(
        go.Bar(
            x=names,
            y=html.rounded(None if math.isnan(m) else m for m in means),
            name="reproduced (mean, 95% interval)",
            marker_color=html.PALETTE[0],
            error_y={
                "type": "data",
                "symmetric": False,
                "array": html.rounded((i.high - m) if i else 0.0 for i, m in zip(intervals, means, strict=True)),
                "arrayminus": html.rounded((m - i.low) if i else 0.0 for i, m in zip(intervals, means, strict=True)),
            },
        )
    )
    fig.add_trace(paper_markers(names, [run.paper_val_accuracy for run in runs], "paper-reported"))
    fig.update_layout(
        title={"text": "Validation accuracy per paper iteration: paper vs reproduced"},
        xaxis={"title": {"text": "paper iteration: experiment"}},
        yaxis={"title": {"text": "validation accuracy"}, "range": [0, 1], "tickformat": ".0%"},
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 1, "xanchor": "right"},
    )
    return html.figure_html(fig, height=440)


def _pct(value: float | None) -> str | None:
    return None if value is None else f"{100 * value:.1f} %"


def _gap(ours: float, paper: float | None) -> str | None:
    if paper is None or math.isnan(ours):
        return None
    return f"{100 * (ours - paper):+.1f}"
