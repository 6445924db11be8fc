"""Hyper-parameter sweeps: per Optuna study, its trials, best trial, history and importances.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from harness.report import html
from harness.tracking.read import Results, SweepRecord

if TYPE_CHECKING:
    import plotly.graph_objects as go


TRIAL_COLOURS = {"COMPLETE": "#1f77b4", "PRUNED": "#b0b0b0", "FAIL": "#d62728"}


def sweeps_section(suite: Results) -> html.Section:
    """Per Optuna study: counts, the best trial, optimisation history, parameter importances."""
    if not suite.sweeps:
        return html.Section(
            "sweeps",
            html.missing_html(
                "No sweep in this experiment (no run tagged harness.kind=sweep): run "
                "`harness sweep` to add one."
            ),
        )
    parts = [
        "<p>One block per Optuna study, from its latest sweep run (the latest finished one if "
        "any finished). Trial values are the study's objective on the validation split.</p>"
    ]
    warnings: list[str] = []
    for sweep in suite.sweeps:
        parts.append(_sweep_block(sweep))
        warnings.extend(f"sweep {sweep.study}: {problem}" for problem in sweep.problems)
    return html.Section("sweeps", "\n".join(parts), tuple(warnings))


def _sweep_block(sweep: SweepRecord) -> str:
    states = _state_counts(sweep)
    objective = sweep.objective or "objective"
    facts = (
        f"<p>Base experiment <code>{html.esc(sweep.experiment or '?')}</code>; objective "
        f"<code>{html.esc(objective)}</code> ({html.esc(sweep.direction or 'direction unknown')}) on the "
        f"validation split; sweep run <code>{html.esc(sweep.run_id)}</code> ({html.esc(sweep.status)}). "
        f"Trials: {states['COMPLETE']} completed, {states['PRUNED']} pruned, "
        f"{states['FAIL']} failed"
        + (f", {states['RUNNING']} running" if states.get("RUNNING") else "")
        + ".</p>"
    )
    parts = [f'<div class="block"><h3>Study {html.esc(sweep.study)}</h3>', facts, _best_trial_html(sweep)]
    if sweep.trials:
        parts.append(_history_figure(sweep))
    else:
        parts.append(html.missing_html("No trials recorded (optuna/trials.json missing or empty)."))
    parts.append(_importance_html(sweep))
    if sweep.problems:
        parts.append('<p class="note">Missing: ' + html.esc("; ".join(sweep.problems)) + "</p>")
    parts.append("</div>")
    return "\n".join(parts)


def _state_counts(sweep: SweepRecord) -> dict[str, int]:
    counts = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0, "RUNNING": 0}
    if sweep.trials:
        for trial in sweep.trials:
            state = str(trial.get("state", "")).upper()
            counts[state] = counts.get(state, 0) + 1
        return counts
    for state, metric in (("COMPLETE", "n_trials_complete"), ("PRUNED", "n_trials_pruned"), ("FAIL", "n_trials_failed")):
        counts[state] = int(sweep.metrics.get(metric, 0))
    return counts


def _best_trial_html(sweep: SweepRecord) -> str:
    best = sweep.best_trial or {}
    value = best.get("value", sweep.metrics.get("best_value"))
    params = best.get("params") or {
        key.removeprefix("best."): value for key, value in sweep.params.items() if key.startswith("best.")
    }
    if value is None and not params:
        return html.missing_html("No best trial yet (no trial completed).")
    row: dict[str, Any] = {
        "Best trial": best.get("number"),
        sweep.objective or "objective": f"{value:.4f}" if isinstance(value, int | float) else value,
        **{f"{key}": _param_text(val) for key, val in sorted(params.items())},
        "MLflow run": best.get("mlflow_run_id"),
    }
    return html.table_html([row], {})


def _param_text(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _history_figure(sweep: SweepRecord) -> str:
    import plotly.graph_objects as go

    fig = go.Figure()
    complete = sorted(
        (t for t in sweep.trials if t.get("state") == "COMPLETE" and _number(t.get("value")) is not None),
        key=lambda t: int(t.get("number", 0)),
    )
    fig.add_trace(_trial_scatter(complete, "completed trial", "COMPLETE", "value"))
    pruned = [t for t in sweep.trials if t.get("state") == "PRUNED" and _last_intermediate(t) is not None]
    if pruned:
        fig.add_trace(_trial_scatter(pruned, "pruned trial (last reported value)", "PRUNED", "last"))
    if complete:
        fig.add_trace(_best_so_far(complete, sweep.direction != "minimize"))
    objective = sweep.objective or "objective"
    fig.update_layout(
        title={"text": f"Optimisation history of study {html.esc(sweep.study)}"},
        xaxis={"title": {"text": "trial number"}},
        yaxis={"title": {"text": html.esc(objective)}},
        legend={"orientation": "h", "y": -0.2, "yanchor": "top"},
    )
    return html.figure_html(fig, height=420)


def _trial_scatter(trials: Sequence[Mapping[str, Any]], name: str, state: str, source: str) -> go.Scatter:
    import plotly.graph_objects as go

    values = [_number(t.get("value")) if source == "value" else _last_intermediate(t) for t in trials]
    return go.Scatter(
        x=[int(t.get("number", 0)) for t in trials],
        y=html.rounded(values),
        mode="markers",
        name=name,
        marker={"color": TRIAL_COLOURS[state], "size": 8, "symbol": "circle" if state == "COMPLETE" else "x"},
        hovertemplate="trial %{x}: %{y:.4f}<extra>" + name + "</extra>",
    )


def _best_so_far(trials: Sequence[Mapping[str, Any]], maximize: bool) -> go.Scatter:
    import plotly.graph_objects as go

    best: list[float] = []
    for trial in trials:
        value = float(trial["value"])
        best.append(value if not best else (max if maximize else min)(best[-1], value))
    return go.Scatter(
        x=[int(t.get("number", 0)) for t in trials],
        y=html.rounded(best),
        mode="lines",
        line={"shape": "hv", "color": html.PALETTE[3]},
        name="best so far",
    )


def _importance_html(sweep: SweepRecord) -> str:
    import plotly.graph_objects as go

    importances = {
        str(key): float(value)
        for key, value in (sweep.importances or {}).items()
        if _number(value) is not None
    }
    if not importances:
        return '<p class="note">No parameter importances (too few completed trials, or not logged).</p>'
    ordered = sorted(importances.items(), key=lambda item: item[1])
    fig = go.Figure(
        go.Bar(
            x=html.rounded(value for _, value in ordered),
            y=[html.esc(name) for name, _ in ordered],
            orientation="h",
            marker_color=html.PALETTE[0],
            name="importance",
        )
    )
    fig.update_layout(
        title={"text": f"Parameter importances of study {html.esc(sweep.study)} (Optuna, fANOVA)"},
        xaxis={"title": {"text": "importance (share of objective variance)"}},
        yaxis={"title": {"text": "parameter"}},
    )
    return html.figure_html(fig, height=160 + 36 * len(ordered))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(value) else float(value)


def _last_intermediate(trial: Mapping[str, Any]) -> float | None:
    intermediate = trial.get("intermediate")
    if not isinstance(intermediate, Mapping) or not intermediate:
        return None
    steps = sorted(intermediate, key=lambda step: float(step) if _is_number_text(step) else math.inf)
    return _number(intermediate[steps[-1]])


def _is_number_text(text: Any) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True
