"""`harness sweep`: an Optuna study from the suite file, each trial through `harness run`'s path.

A trial only turns Optuna's suggestions into a spec (harness.studies.trial_spec) and calls
runner.train_and_log with hooks that report the objective each epoch and stop pruned trials.

MLflow: one parent run per invocation (harness.kind=sweep) holding the study's summary and
Optuna's plots; one nested run per trial (harness.kind=trial, mlflow.parentRunId).

Storage and resumption: the study lives in an Optuna storage — by default a journal file
beside mlflow.db, which several processes on one machine share safely. `--trials N` is the
study's total: a rerun after Ctrl-C, kill -9 or a reboot runs only what is missing. A trial
left RUNNING by a dead process (same host: its pid is gone; other hosts: RDB heartbeat
expired) is failed and re-queued with the same parameters (at most MAX_RETRY times). Workers
on one machine take trials under a file lock, so together they never exceed the budget.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import signal
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError, SpecError, TrackingError
from harness.locks import file_lock

if TYPE_CHECKING:
    import optuna

    from harness.runner import RunContext
    from harness.spec import Suite
    from harness.studies import StudySpec
    from harness.tracking.write import RunLogger, Tracker

Echo = Callable[[str], None]
JOURNAL_FILE = "optuna.journal"  # beside mlflow.db
HEARTBEAT_S = 20  # RDB storages: a RUNNING trial refreshes its heartbeat this often ...
GRACE_S = 90  # ... and is failed (then retried) when silent for this long
MAX_RETRY = 2  # re-runs of a trial whose process died, with the same parameters
MAX_FAILURES = 3  # a worker stops after this many trials raised errors: a bug, not bad luck
DONE_STATES = ("COMPLETE", "PRUNED")
ATTR_HOST, ATTR_PID, ATTR_START = "harness.host", "harness.pid", "harness.pid_start"
ATTR_RUN, ATTR_PARENT = "mlflow_run_id", "mlflow_parent_run_id"


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


# ----------------------------------------------------------------------------- storage


def default_storage_url(project_root: Path) -> str:
    """A journal file beside mlflow.db: safe for several processes on this machine."""
    return f"journal:{(project_root / JOURNAL_FILE).resolve()}"


def open_storage(url: str) -> Any:
    """An Optuna storage: `journal:PATH` (or a bare path) or any SQLAlchemy URL (sqlite, postgresql, mysql)."""
    import optuna
    from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    _quiet_optuna()
    try:
        if "://" not in url:
            path = Path(url.removeprefix("journal:")).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            # An O_EXCL lock file works on every filesystem; one left by a killed process
            # expires after the grace period.
            return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))
        return _rdb_storage(url, RDBStorage, RetryHeartbeatStaleTrialCallback)
    except (optuna.exceptions.OptunaError, ImportError, OSError, ValueError) as exc:
        raise HarnessError(f"cannot open Optuna storage {redact(url)}: {_one_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy: server down, bad credentials, ...
        raise HarnessError(f"cannot open Optuna storage {redact(url)}: {_one_line(exc)}") from None


def _rdb_storage(url: str, rdb: Any, retry: Any, attempts: int = 5) -> Any:
    """RDBStorage, retried: workers starting together race to create Optuna's schema
    ("type ... already exists"); the loser finds it made on its next try."""
    for attempt in range(attempts):
        try:
            return rdb(
                url,
                heartbeat_interval=HEARTBEAT_S,
                grace_period=GRACE_S,
                heartbeat_stale_trial_callback=retry(max_retry=MAX_RETRY),
                engine_kwargs={"pool_pre_ping": True},
            )
        except Exception as exc:  # noqa: BLE001 - SQLAlchemy errors of every driver
            if attempt == attempts - 1 or "already exists" not in str(exc) and "duplicate" not in str(exc).lower():
                raise
            time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")


def redact(url: str) -> str:
    """A storage URL without its password, fit for logs and tags."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def optuna_study_name(suite: Suite, study: StudySpec) -> str:
    """The study's name inside the storage: one storage can hold several suites' studies."""
    return f"{suite.name}.{study.name}"


def _sampler(spec: StudySpec, salt: int) -> Any:
    """Seeded, yet distinct per worker and per resume, so no two processes repeat a draw."""
    import optuna

    seed = spec.sampler.seed * 1_000_003 + salt
    if spec.sampler.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=spec.sampler.n_startup_trials)


def _pruner(spec: StudySpec, epochs: int) -> Any:
    import optuna

    p = spec.pruner
    if p.name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps)
    if p.name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=p.min_resource, max_resource=epochs, reduction_factor=p.reduction_factor
        )
    return optuna.pruners.NopPruner()


def load_study(
    storage: Any, suite: Suite, spec: StudySpec, *, salt: int = 0, epochs: int = 1, enqueue: bool = False
) -> optuna.Study:
    """Create the study or load it; a changed space is refused.

    With `enqueue`, a study without trials gets its starting trials: call it under the sweep
    lock, so two invocations starting together do not queue them twice.
    """
    import optuna

    from harness.studies import encode_choice

    name = optuna_study_name(suite, spec)
    try:
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            direction=spec.resolved_direction,
            sampler=_sampler(spec, salt),
            pruner=_pruner(spec, epochs),
            load_if_exists=True,
        )
    except ValueError as exc:  # e.g. an existing study with another direction
        raise HarnessError(f"study '{name}': {exc}") from None
    digest = study.user_attrs.get("harness.space_digest")
    if digest is None:
        study.set_user_attr("harness.space_digest", spec.space_digest())
        study.set_user_attr("harness.objective", spec.objective)
    elif digest != spec.space_digest():
        raise HarnessError(
            f"study '{name}' in the Optuna storage was made with another search space, objective or "
            f"base experiment; give it another name in {suite.path}, or pass --storage to start afresh"
        )
    if enqueue and not study.get_trials(deepcopy=False):
        for values in spec.enqueue:
            study.enqueue_trial({k: encode_choice(v) for k, v in values.items()}, skip_if_exists=True)
    return study


# ----------------------------------------------------------------------------- one worker


def work(cfg: SweepConfig, echo: Echo, worker: int = 0) -> int:
    """Run trials until the study holds `cfg.trials` finished ones (or the deadline); returns how many this worker ran."""
    from harness.runner import RunContext, load_data
    from harness.spec import load_suite
    from harness.studies import trial_spec
    from harness.tracking.write import connect

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
    from harness.tracking.write import _start_time

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

    from harness.tracking.write import _alive

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
        _mark_run_failed(tracker, attrs.get(ATTR_RUN))
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


@contextmanager
def _heartbeat(study: optuna.Study, trial: optuna.Trial) -> Iterator[None]:
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


def run_trial(
    trial: optuna.Trial, study: optuna.Study, suite: Suite, spec: StudySpec, data: Any, ctx: RunContext, parent: str
) -> str:
    """Suggest → spec → the one training path; tell Optuna the outcome. Returns the trial's state."""
    from optuna.trial import TrialState

    from harness.runner import RunHooks, run_key, train_and_log
    from harness.studies import trial_spec

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

    def stop(stats: Any) -> bool:
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

    hooks = RunHooks(
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
    started = time.perf_counter()
    try:
        with _heartbeat(study, trial):
            train_and_log(suite, tspec, data, run_key(tspec, data), ctx, hooks)
    except KeyboardInterrupt:
        _fail_and_requeue(study, trial)
        _mark_run_failed(ctx.tracker, trial.user_attrs.get(ATTR_RUN))
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
        _mark_run_failed(ctx.tracker, trial.user_attrs.get(ATTR_RUN))
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


def _fail_and_requeue(study: optuna.Study, trial: optuna.Trial) -> None:
    """An interrupted trial: FAIL it and queue the same parameters for the next invocation."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    try:
        frozen = study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)(study, frozen)
    except Exception:  # noqa: BLE001 - the storage may be what failed; the reaper retries later
        pass


def _mark_run_failed(tracker: Tracker, run_id: str | None) -> None:
    """Set a failed trial's MLflow run's harness.trial_state to FAIL (its status says FAILED/KILLED)."""
    if run_id:
        try:
            tracker.client.set_tag(run_id, "harness.trial_state", "FAIL")
        except Exception:  # noqa: BLE001 - the run is already FAILED; the tag is a courtesy
            pass


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


# ----------------------------------------------------------------------------- the invocation


@dataclass(frozen=True)
class SweepOutcome:
    """What one `harness sweep` invocation did and where the study stands."""

    study_name: str
    parent_run_id: str
    ran: int
    rows: list[TrialRow]
    best: TrialRow | None


def run_sweep(
    suite: Suite,
    name: str,
    ctx: RunContext,
    *,
    storage_url: str,
    trials: int | None = None,
    timeout: float | None = None,
    workers: int = 1,
    profile: str | None = None,
) -> SweepOutcome:
    """Run the study `name` up to its trial budget, in `workers` processes, under one parent run."""
    from harness.studies import trial_spec

    spec = suite.study(name)
    total = trials or spec.trials
    base = trial_spec(suite.path, spec, suite.experiments[spec.experiment], f"{spec.name}-base", {})
    storage = open_storage(storage_url)
    reaped = ctx.tracker.reap_stale_runs()
    if reaped:
        ctx.echo(f"marked {len(reaped)} run(s) of dead processes FAILED: {', '.join(reaped)}")
    with file_lock(sweep_lock(ctx.cache_dir, storage_url, optuna_study_name(suite, spec))):
        study = load_study(storage, suite, spec, epochs=base.train.epochs, enqueue=True)
        requeued = reap_trials(study, ctx.tracker)
    if requeued:
        ctx.echo(f"trials {', '.join(map(str, requeued))} were left RUNNING by a dead process: failed and re-queued")
    done = sum(r.state in DONE_STATES for r in summarize(study)[0])
    ctx.echo(f"study {study.study_name} in {redact(storage_url)}: {done} of {total} trials finished")
    tags = {
        "harness.kind": "sweep",
        "harness.study": spec.name,
        "harness.optuna_study": study.study_name,
        "harness.optuna_storage": redact(storage_url),
        "harness.experiment": spec.experiment,
        "harness.objective": spec.objective,
        "harness.direction": spec.resolved_direction,
        "harness.suite_file": str(suite.path),
    }
    params = {
        "study.trials": str(total), "study.workers": str(workers), "study.sampler": spec.sampler.name,
        "study.pruner": spec.pruner.name, "study.objective": spec.objective, "study.experiment": spec.experiment,
    }
    with ctx.tracker.run(f"sweep-{spec.name}", tags, params) as log:
        cfg = SweepConfig(
            config_path=str(suite.path), profile=profile, study=name, tracking_uri=ctx.tracker.tracking_uri,
            storage_url=storage_url, cache_dir=str(ctx.cache_dir), trials=total,
            deadline=time.time() + timeout if timeout else None, parent_run_id=log.run_id,
        )
        if workers == 1:
            work(cfg, ctx.echo)
        else:
            _run_workers(cfg, workers, ctx.echo)
        rows, importances = summarize(study, with_importances=True)
        ran = sum(t.user_attrs.get(ATTR_PARENT) == log.run_id for t in study.get_trials(deepcopy=False))
        best = best_row(study, rows)
        log_summary(log, study, rows, importances, best)
    return SweepOutcome(study.study_name, log.run_id, ran, rows, best)


def _run_workers(cfg: SweepConfig, workers: int, echo: Echo) -> None:
    """`workers` processes sharing the storage; Ctrl-C or SIGTERM stops them all cleanly."""
    import multiprocessing

    threads = max(1, (os.cpu_count() or 1) // workers)
    cfg = SweepConfig(**{**cfg.__dict__, "threads": threads})
    mp = multiprocessing.get_context("spawn")
    procs = [mp.Process(target=_worker_main, args=(cfg, i), name=f"sweep-worker-{i}") for i in range(workers)]
    for p in procs:
        p.start()
    echo(f"{workers} workers started (pids {', '.join(str(p.pid) for p in procs)}), {threads} thread(s) each")
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt as exc:
        # Ctrl-C reached the workers too: give them time to record their trials as
        # interrupted before a SIGTERM (which would interrupt that clean-up) and a SIGKILL.
        # A SIGTERM sent to this process only (the CLI raises "signal 15") is passed on at once.
        deadline = time.monotonic() + (0 if str(exc).startswith("signal") else 15)
        for p in procs:
            p.join(timeout=max(0.0, deadline - time.monotonic()))
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGTERM)
                p.join(timeout=30)
            if p.is_alive():
                p.kill()
        raise
    failed = [f"worker {i} (exit {p.exitcode})" for i, p in enumerate(procs) if p.exitcode != 0]
    if failed:
        raise HarnessError(f"{', '.join(failed)} failed; finished trials are kept, rerun to go on")


def _worker_main(cfg: SweepConfig, index: int) -> None:
    """A worker process: its own output prefix, SIGTERM as Ctrl-C, a one-line error on failure."""
    import sys

    def raise_interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, raise_interrupt)

    def echo(message: str) -> None:
        for line in message.splitlines() or [""]:
            print(f"[w{index}] {line}", file=sys.stderr, flush=True)

    try:
        work(cfg, echo, worker=index + 1)
    except KeyboardInterrupt:
        sys.exit(130)
    except HarnessError as exc:
        echo(f"harness: error: {exc}")
        sys.exit(2)


# ----------------------------------------------------------------------------- summary


def summarize(study: optuna.Study, *, with_importances: bool = False) -> tuple[list[TrialRow], dict[str, float]]:
    """Every trial of the study as rows, and (optionally) Optuna's parameter importances."""
    from harness.studies import decode_choice

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


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
