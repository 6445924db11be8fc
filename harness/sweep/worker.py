"""One sweep worker: take trials under the budget, reap those of dead processes, run them.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.core.errors import HarnessError
from harness.core.locks import file_lock
from harness.runs.context import RunContext
from harness.runs.data import load_data
from harness.suite.load import load_suite
from harness.suite.studies import trial_spec
from harness.sweep.storage import (
    ATTR_HOST,
    ATTR_PARENT,
    ATTR_PID,
    ATTR_RUN,
    ATTR_START,
    DONE_STATES,
    MAX_RETRY,
    load_study,
    open_storage,
    optuna_study_name,
)
from harness.sweep.trial import mark_run_failed, run_trial
from harness.tracking.write import _alive, _start_time, connect

if TYPE_CHECKING:
    import optuna

    from harness.spec.studies import StudySpec
    from harness.suite.load import Suite
    from harness.tracking.write import Tracker


Echo = Callable[[str], None]


MAX_FAILURES = 3  # a worker stops after this many trials raised errors: a bug, not bad luck


@dataclass(frozen=True)
class SweepConfig:
    """What a worker process needs (picklable: workers start with `spawn`)."""

    config_path: str
    profile: str | None
    study: str
    tracking_uri: str
    storage_url: str
    cache_dir: str
    trials: int
    deadline: float | None  # time.time() after which no trial starts
    parent_run_id: str
    threads: int | None = None  # torch threads per worker (None: leave torch's default)


def work(cfg: SweepConfig, echo: Echo, worker: int = 0) -> int:
    """Run trials until the study holds `cfg.trials` finished ones (or the deadline); returns how many this worker ran."""

    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    suite = load_suite(cfg.config_path, profile=cfg.profile)
    spec = suite.study(cfg.study)
    base = trial_spec(suite.path, spec, suite.experiments[spec.experiment], f"{spec.name}-base", {})
    tracker = connect(cfg.tracking_uri, suite.name)
    ctx = RunContext(tracker=tracker, project_root=suite.root, cache_dir=Path(cfg.cache_dir), echo=echo)
    storage = open_storage(cfg.storage_url)
    salt = _salt(storage, suite, spec, worker)
    study = load_study(storage, suite, spec, salt=salt, epochs=base.train.epochs)
    data = load_data(base, ctx.project_root, ctx.cache_dir, echo)
    lock = sweep_lock(Path(cfg.cache_dir), cfg.storage_url, study.study_name)
    ran = failures = 0
    while True:
        with file_lock(lock):
            reap_trials(study, tracker)
            if cfg.deadline is not None and time.time() >= cfg.deadline:
                echo("timeout reached: no new trials")
                break
            if budget_used(study) >= cfg.trials:
                break
            trial = study.ask()
            _claim(trial, cfg.parent_run_id)
        state = run_trial(trial, study, suite, spec, data, ctx, cfg.parent_run_id)
        ran += 1
        if state == "FAIL":
            failures += 1
            if failures >= MAX_FAILURES:
                raise HarnessError(f"study '{spec.name}': {failures} trials failed in this worker; stopping "
                                   "(see the FAILED trial runs' harness.failure tag)")
    return ran


def _salt(storage: Any, suite: Suite, spec: StudySpec, worker: int) -> int:
    """How many trials exist, mixed with the worker index: new draws after every resume."""
    import optuna

    try:
        n = len(optuna.load_study(study_name=optuna_study_name(suite, spec), storage=storage).get_trials(deepcopy=False))
    except KeyError:
        n = 0
    return n * 101 + worker


def sweep_lock(cache_dir: Path, storage_url: str, study_name: str) -> Path:
    """The file lock workers on this machine hold while reaping, counting and asking."""
    key = hashlib.sha256(f"{storage_url}|{study_name}".encode()).hexdigest()[:16]
    return cache_dir / "locks" / f"sweep-{key}.lock"


def budget_used(study: optuna.Study) -> int:
    """Trials that count against --trials: finished (complete or pruned) and running ones."""
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)))


def _claim(trial: optuna.Trial, parent_run_id: str) -> None:
    trial.set_user_attr(ATTR_HOST, socket.gethostname())
    trial.set_user_attr(ATTR_PID, os.getpid())
    trial.set_user_attr(ATTR_START, _start_time(os.getpid()))
    trial.set_user_attr(ATTR_PARENT, parent_run_id)


def reap_trials(study: optuna.Study, tracker: Tracker) -> list[int]:
    """Fail (and re-queue) RUNNING trials whose process is gone; returns their numbers.

    Same host: the recorded pid is dead. Other hosts (RDB storage): the heartbeat expired.
    A trial whose MLflow run had already FINISHED is told its result instead of retried.
    """
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    tracker.reap_stale_runs()
    optuna.storages.fail_stale_trials(study)  # heartbeat storages only; a no-op for journals
    host, reaped = socket.gethostname(), []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = t.user_attrs
        if attrs.get(ATTR_HOST) != host or _alive(int(attrs.get(ATTR_PID, 0) or 0), str(attrs.get(ATTR_START, ""))):
            continue
        finished = _finished_result(tracker, attrs.get(ATTR_RUN))
        if finished is not None:
            state, value = finished
            study.tell(t.number, value if state == "COMPLETE" else None,
                       state=TrialState[state], skip_if_finished=True)
            continue
        study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        mark_run_failed(tracker, attrs.get(ATTR_RUN))
        RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)(study, study.get_trials()[t.number])
        reaped.append(t.number)
    return reaped


def _finished_result(tracker: Tracker, run_id: str | None) -> tuple[str, float] | None:
    """(state, objective) of a trial run that FINISHED before its process died, else None."""
    if not run_id:
        return None
    try:
        run = tracker.client.get_run(run_id)
    except Exception:  # noqa: BLE001 - no such run: nothing to recover
        return None
    state = run.data.tags.get("harness.trial_state")
    value = run.data.metrics.get("objective")
    if run.info.status != "FINISHED" or state not in DONE_STATES or value is None:
        return None
    return state, value


