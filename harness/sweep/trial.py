"""One trial: Optuna's suggestions turned into a spec and trained on `harness run`'s path.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from harness.core.errors import SpecError, TrackingError
from harness.runs.context import RunHooks
from harness.runs.provenance import run_key
from harness.runs.training import train_and_log
from harness.suite.studies import trial_spec
from harness.sweep.storage import ATTR_RUN, HEARTBEAT_S, MAX_RETRY

if TYPE_CHECKING:
    import optuna

    from harness.runs.context import RunContext
    from harness.spec.studies import StudySpec
    from harness.suite.load import Suite
    from harness.tracking.logger import RunLogger
    from harness.tracking.write import Tracker


def run_trial(
    trial: optuna.Trial, study: optuna.Study, suite: Suite, spec: StudySpec, data: Any, ctx: RunContext, parent: str
) -> str:
    """Suggest → spec → the one training path; tell Optuna the outcome. Returns the trial's state."""
    from optuna.trial import TrialState

    values = {key: param.suggest(trial, key) for key, param in spec.space.items()}
    name = f"{spec.name}-trial-{trial.number}"
    ctx.echo(f"\ntrial {trial.number}: " + ", ".join(f"{k}={_short(v)}" for k, v in values.items()))
    try:
        tspec = trial_spec(suite.path, spec, suite.experiments[spec.experiment], name, values)
    except SpecError as exc:  # each value was checked alone; this combination is invalid
        trial.set_user_attr("harness.failure", str(exc)[:500])
        study.tell(trial, state=TrialState.FAIL)
        ctx.echo(f"  trial {trial.number} FAILED: {exc}")
        return "FAIL"
    outcome: dict[str, Any] = {"pruned": False}
    hooks = _trial_hooks(trial, study, spec, name, parent, outcome, ctx)
    started = time.perf_counter()
    try:
        with heartbeat(study, trial):
            train_and_log(suite, tspec, data, run_key(tspec, data), ctx, hooks)
    except KeyboardInterrupt:
        _fail_and_requeue(study, trial)
        mark_run_failed(ctx.tracker, trial.user_attrs.get(ATTR_RUN))
        raise
    except TrackingError as exc:
        # The store went away: this trial is re-queued and reruns with the sweep, so its
        # recovery folder (if one was written) need not be replayed.
        _fail_and_requeue(study, trial)
        raise TrackingError(f"{exc} — trial {trial.number} was re-queued: rerun the sweep once the "
                            "server is back (replaying this trial's folder is not needed)") from None
    except Exception as exc:  # noqa: BLE001 - a broken trial fails alone; the sweep goes on
        trial.set_user_attr("harness.failure", f"{type(exc).__name__}: {exc}"[:500])
        study.tell(trial, state=TrialState.FAIL)
        mark_run_failed(ctx.tracker, trial.user_attrs.get(ATTR_RUN))
        ctx.echo(f"  trial {trial.number} FAILED: {type(exc).__name__}: {exc}")
        return "FAIL"
    seconds = time.perf_counter() - started
    if outcome["pruned"]:
        study.tell(trial, state=TrialState.PRUNED)
        ctx.echo(f"  trial {trial.number} PRUNED ({seconds:.0f} s)")
        return "PRUNED"
    study.tell(trial, outcome["value"])
    ctx.echo(f"  trial {trial.number} COMPLETE: {spec.objective} {outcome['value']:.4f} ({seconds:.0f} s)")
    return "COMPLETE"


def _trial_hooks(
    trial: optuna.Trial, study: optuna.Study, spec: StudySpec, name: str, parent: str, outcome: dict[str, Any],
    ctx: RunContext,
) -> RunHooks:  # fmt: skip
    """How a trial adapts the training run: nested under the sweep, reporting and pruning each
    epoch, and recording its objective in `outcome` before the run ends."""

    def stop(stats: Any) -> bool:
        if spec.objective not in stats.metrics():  # an epoch train.eval_every does not score
            return False
        value = stats.metrics()[spec.objective]
        if not math.isfinite(value):
            outcome["pruned"] = True  # a diverged trial: nothing to learn from more epochs
            return True
        trial.report(value, stats.epoch)
        outcome["pruned"] = trial.should_prune()
        if outcome["pruned"]:
            ctx.echo(f"  pruned after epoch {stats.epoch}: {spec.objective} {value:.4f}")
        return outcome["pruned"]

    def before_end(log: RunLogger, result: Any) -> None:
        value = result.history[-1].metrics()[spec.objective]
        outcome["value"] = value
        log.log_metrics({"objective": value, "epochs_run": len(result.history)})
        log.set_tags({"harness.trial_state": "PRUNED" if outcome["pruned"] else "COMPLETE"})

    return RunHooks(
        kind="trial",
        run_name=name,
        tags={
            "mlflow.parentRunId": parent,
            "harness.study": spec.name,
            "harness.optuna_study": study.study_name,
            "harness.trial_number": str(trial.number),
            "harness.trial_state": "RUNNING",
            "harness.objective": spec.objective,
        },
        stop=stop,
        before_end=before_end,
        started=lambda log: trial.set_user_attr(ATTR_RUN, log.run_id),
    )


def _fail_and_requeue(study: optuna.Study, trial: optuna.Trial) -> None:
    """An interrupted trial: FAIL it and queue the same parameters for the next invocation."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    try:
        frozen = study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)(study, frozen)
    except Exception:  # noqa: BLE001 - the storage may be what failed; the reaper retries later
        pass


def mark_run_failed(tracker: Tracker, run_id: str | None) -> None:
    """Set a failed trial's MLflow run's harness.trial_state to FAIL (its status says FAILED/KILLED)."""
    if run_id:
        try:
            tracker.client.set_tag(run_id, "harness.trial_state", "FAIL")
        except Exception:  # noqa: BLE001 - the run is already FAILED; the tag is a courtesy
            pass


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


@contextmanager
def heartbeat(study: optuna.Study, trial: optuna.Trial) -> Iterator[None]:
    """Keep a RUNNING trial's heartbeat fresh (RDB storages), so other hosts never reap it."""
    from optuna.storages import RDBStorage

    storage = getattr(study._storage, "_backend", study._storage)  # unwrap Optuna's cache layer
    if not isinstance(storage, RDBStorage):
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            try:
                storage.record_heartbeat(trial._trial_id)
            except Exception:  # noqa: BLE001 - a missed beat is retried; the trial goes on
                pass
            stop.wait(HEARTBEAT_S)

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
