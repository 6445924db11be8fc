"""`harness sweep`: run or resume a study, print its best trial, or retrain it.
"""

from __future__ import annotations

import argparse
from typing import Any

from harness.cli.commands import echo, load_from_args, tracking_uri_of
from harness.core.errors import HarnessError


def cmd_sweep(args: argparse.Namespace) -> int:
    """harness sweep: run (or resume) a study; --best prints its best trial; --retrain-best trains it."""
    from harness.sweep.invocation import run_sweep
    from harness.sweep.storage import default_storage_url, redact
    from harness.sweep.summary import study_status

    if args.trials is not None and args.trials < 1:
        raise HarnessError("--trials must be at least 1")
    if args.workers < 1:
        raise HarnessError("--workers must be at least 1")
    if args.timeout is not None and args.timeout <= 0:
        raise HarnessError("--timeout must be positive")
    suite = load_from_args(args)
    suite.study(args.study)  # an unknown study fails before anything connects
    storage = args.storage or default_storage_url(suite.root)
    if args.best:
        rows, best = study_status(suite, args.study, storage)
        _print_trials(rows, limit=0)
        _print_best(args, best)
        return 0
    ctx = _run_context(args, suite)
    if args.retrain_best:
        return _retrain_best(args, suite, ctx, storage)
    echo(f"tracking to {ctx.tracker.tracking_uri}, experiment '{suite.name}'; Optuna storage {redact(storage)}")
    outcome = run_sweep(
        suite, args.study, ctx, storage_url=storage, trials=args.trials, timeout=args.timeout,
        workers=args.workers, profile=args.profile,
    )
    echo(f"\n{outcome.ran} trial(s) run now; sweep run {outcome.parent_run_id}")
    _print_trials(outcome.rows)
    _print_best(args, outcome.best)
    return 0


def _print_trials(rows: list[Any], limit: int = 50) -> None:
    counts = {s: sum(r.state == s for r in rows) for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")}
    print(f"{len(rows)} trials: " + ", ".join(f"{n} {s.lower()}" for s, n in counts.items() if n))
    for r in rows[-limit:] if limit else []:
        value = f"{r.value:.4f}" if r.value is not None else "-"
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.params.items())
        print(f"  #{r.number:<4} {r.state:<9} {value:<8} {params}")


def _print_best(args: argparse.Namespace, best: Any) -> None:
    if best is None:
        print("no completed trial yet")
        return
    print(f"best: trial {best.number}, value {best.value:.4f}, MLflow run {best.mlflow_run_id}")
    for k, v in best.params.items():
        print(f"  {k}: {v}")
    print(f"retrain it as a normal run: harness sweep --study {args.study} --retrain-best")


def _retrain_best(args: argparse.Namespace, suite: Any, ctx: Any, storage: str) -> int:
    from harness.runs.context import RunHooks
    from harness.runs.data import load_data
    from harness.runs.experiment import run_experiment
    from harness.suite.studies import trial_spec
    from harness.sweep.summary import study_status

    study = suite.study(args.study)
    _, best = study_status(suite, args.study, storage)
    if best is None:
        raise HarnessError(f"study '{args.study}' has no completed trial to retrain")
    spec = trial_spec(suite.path, study, suite.experiments[study.experiment], f"{study.name}-best", best.params)
    spec = spec.model_copy(update={"description": f"Best trial ({best.number}) of study '{study.name}'"})
    hooks = RunHooks(tags={"harness.from_study": study.name, "harness.from_trial": str(best.number)})
    echo(f"retraining trial {best.number} of '{study.name}' as experiment '{spec.name}'")
    outcome = run_experiment(suite, spec, load_data(spec, ctx.project_root, ctx.cache_dir, echo), ctx, hooks)
    acc = f"val acc {outcome.val_accuracy:.3f}" if outcome.val_accuracy is not None else outcome.reason
    print(f"{outcome.name:<34} {outcome.status:<9} {acc:<22} {outcome.run_id or ''}")
    return 0


def _run_context(args: argparse.Namespace, suite: Any) -> Any:
    from harness.runs.context import RunContext
    from harness.tracking.write import connect

    return RunContext(
        tracker=connect(tracking_uri_of(args, suite.root), suite.name, description=suite.description),
        project_root=suite.root,
        cache_dir=args.cache_dir or suite.root / ".cache" / "harness",
        force=getattr(args, "force", False),
        echo=echo,
    )
