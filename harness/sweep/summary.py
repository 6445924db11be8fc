"""A study's trials as rows, its best trial, and the summary logged on the sweep's parent run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.core.errors import HarnessError
from harness.spec.studies import decode_choice
from harness.sweep.storage import ATTR_RUN, DONE_STATES, open_storage, optuna_study_name, redact

if TYPE_CHECKING:
    import optuna

    from harness.suite.load import Suite
    from harness.tracking.logger import RunLogger


@dataclass(frozen=True)
class TrialRow:
    """One trial as the summary, the CLI and the report see it."""

    number: int
    state: str
    value: float | None
    params: dict[str, Any]
    intermediate: dict[str, float]
    mlflow_run_id: str | None
    duration_s: float | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (optuna/trials.json)."""
        return dict(self.__dict__)


def summarize(study: optuna.Study, *, with_importances: bool = False) -> tuple[list[TrialRow], dict[str, float]]:
    """Every trial of the study as rows, and (optionally) Optuna's parameter importances."""

    rows = []
    for t in study.get_trials(deepcopy=False):
        duration = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else None
        rows.append(TrialRow(
            number=t.number,
            state=t.state.name,
            value=t.value if t.value is not None and math.isfinite(t.value) else None,
            params={k: decode_choice(v) for k, v in t.params.items()},
            intermediate={str(k): v for k, v in sorted(t.intermediate_values.items())},
            mlflow_run_id=t.user_attrs.get(ATTR_RUN),
            duration_s=duration,
        ))
    importances: dict[str, float] = {}
    if with_importances and sum(r.state == "COMPLETE" for r in rows) >= 2:
        import optuna

        try:
            importances = {k: float(v) for k, v in optuna.importance.get_param_importances(study).items()}
        except (RuntimeError, ValueError, ZeroDivisionError):
            importances = {}  # e.g. every completed trial has the same value
    return rows, importances


def best_row(study: optuna.Study, rows: list[TrialRow]) -> TrialRow | None:
    """The best COMPLETE trial, or None before one exists."""
    complete = [r for r in rows if r.state == "COMPLETE" and r.value is not None]
    if not complete:
        return None
    pick = max if study.direction.name == "MAXIMIZE" else min
    return pick(complete, key=lambda r: r.value)


PLOTS = ("optimization_history", "param_importances", "parallel_coordinate", "intermediate_values")


def log_summary(log: RunLogger, study: optuna.Study, rows: list[TrialRow], importances: dict[str, float], best: TrialRow | None) -> None:
    """The parent run's record: counts, the best trial, every trial, and Optuna's plots."""
    import optuna.visualization as vis

    counts = {name: sum(r.state == s for r in rows) for s, name in (("COMPLETE", "complete"), ("PRUNED", "pruned"), ("FAIL", "failed"))}
    metrics: dict[str, float] = {f"n_trials_{name}": n for name, n in counts.items()}
    epochs = [len(r.intermediate) for r in rows if r.state in DONE_STATES]
    metrics["epochs_run"] = sum(epochs)
    if best is not None:
        metrics["best_value"] = best.value
        metrics["best_trial"] = best.number
        log.log_params({f"best.{k}": str(v) for k, v in best.params.items()})
    log.log_metrics(metrics)
    log.log_json([r.as_dict() for r in rows], "optuna/trials.json")
    log.log_json(importances, "optuna/importances.json")
    log.log_json(best.as_dict() if best else {}, "optuna/best_trial.json")
    for plot in PLOTS:
        try:
            figure = getattr(vis, f"plot_{plot}")(study)
        except (ValueError, RuntimeError, ZeroDivisionError):
            continue  # too few trials for this plot yet
        log.log_text(figure.to_html(include_plotlyjs=True, full_html=True), f"optuna/{plot}.html")


def study_status(suite: Suite, name: str, storage_url: str) -> tuple[list[TrialRow], TrialRow | None]:
    """The stored study's trials and best trial, without running anything."""
    import optuna

    spec = suite.study(name)
    storage = open_storage(storage_url)
    try:
        study = optuna.load_study(study_name=optuna_study_name(suite, spec), storage=storage)
    except KeyError:
        raise HarnessError(
            f"no study '{optuna_study_name(suite, spec)}' in {redact(storage_url)} yet: run `harness sweep --study {name}`"
        ) from None
    rows, _ = summarize(study)
    return rows, best_row(study, rows)


