"""One `harness sweep` invocation: its parent MLflow run, its workers, its summary.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.core.errors import HarnessError
from harness.core.locks import file_lock
from harness.suite.studies import trial_spec
from harness.sweep.storage import (
    ATTR_PARENT,
    DONE_STATES,
    load_study,
    open_storage,
    optuna_study_name,
    redact,
)
from harness.sweep.summary import TrialRow, best_row, log_summary, summarize
from harness.sweep.worker import (
    Echo,
    SweepConfig,
    reap_trials,
    sweep_lock,
    work,
)

if TYPE_CHECKING:
    from harness.runs.context import RunContext
    from harness.suite.load import Suite


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
