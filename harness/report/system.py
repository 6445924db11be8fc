"""System metrics of the longest runs: CPU and memory (GPU where there was one) over each run,
as MLflow's system-metrics monitor logged them (harness.tracking.system)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.report.html import Section, duration_text, esc, figure_html, missing_html, rounded
from harness.tracking.read import SYSTEM_METRICS, Results, RunRecord, system_history

if TYPE_CHECKING:
    import pandas as pd

ANCHOR = "system"
LONGEST = 3  # runs shown
NONE = (
    "No run has system metrics yet: they are logged once a minute while a run trains "
    "(harness.tracking.system), so runs shorter than that, or older than the feature, have none."
)


def longest_runs(suite: Results, n: int = LONGEST) -> list[RunRecord]:
    """The `n` finished training runs (every seed) that trained longest."""
    runs = [run for seeds in suite.seed_runs.values() for run in seeds]
    timed = [run for run in runs if run.metric("train_seconds") is not None]
    return sorted(timed, key=lambda run: -(run.metric("train_seconds") or 0.0))[:n]


def system_section(suite: Results) -> Section:
    """One row of panels per system metric, one line per long run."""
    histories = [(run, system_history(suite.tracking_uri, run.run_id)) for run in longest_runs(suite)]
    histories = [(run, frame) for run, frame in histories if not frame.empty]
    if not histories:
        return Section(ANCHOR, missing_html(NONE))
    names = ", ".join(
        f"{esc(run.experiment)} (seed {run.seed}, {duration_text(run.metric('train_seconds') or 0.0)} of training)"
        for run, _ in histories
    )
    intro = f"<p>The {len(histories)} longest runs with system metrics: {names}.</p>"
    return Section(ANCHOR, intro + _figure(histories))


def _figure(histories: list[tuple[RunRecord, pd.DataFrame]]) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    present = [(key, title) for key, title in SYSTEM_METRICS if any(key in frame for _, frame in histories)]
    fig = make_subplots(rows=len(present), cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=[title for _, title in present])  # fmt: skip
    for row, (key, _) in enumerate(present, start=1):
        for index, (run, frame) in enumerate(histories):
            if key not in frame:
                continue
            fig.add_trace(
                go.Scatter(x=rounded(frame["minutes"]), y=rounded(frame[key], 2), mode="lines",
                           name=f"{run.experiment} (seed {run.seed})", legendgroup=str(index),
                           showlegend=row == 1),
                row=row, col=1,
            )  # fmt: skip
    fig.update_xaxes(title_text="minutes since the run started", row=len(present), col=1)
    return figure_html(fig, height=220 * len(present) + 80)
