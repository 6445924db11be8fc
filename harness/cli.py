"""The `harness` command: parse arguments, call one library function, map errors to exit codes.

Exit codes: 0 success, 2 a user-facing error (bad spec, bad data, tracking store down),
1 an unexpected internal error, 130 interrupted (Ctrl-C / SIGTERM). Heavy libraries are
imported inside the command functions so `harness --help` answers at once.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

DEFAULT_CONFIG = "experiments.yaml"
# harness.data.dataset.EVAL_SPLITS, repeated so `--help` imports nothing heavy.
EVAL_SPLIT_CHOICES = ("test", "validation", "train", "all")
# harness.spec.TrainSpec.tta's values, repeated for the same reason.
TTA_CHOICES = ("none", "flip", "crops")


def _echo(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=DEFAULT_CONFIG, type=Path, help="suite file (default: %(default)s)")
    parser.add_argument("--profile", help="a profile from the suite file, e.g. 'full' for the paper-length study")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db beside the suite file)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="harness",
        description="Experiment-tracking benchmark harness for facial expression recognition.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="train experiments from the suite file, tracked in MLflow")
    run.add_argument("names", nargs="*", metavar="NAME", help="experiments to run (default: all)")
    _add_common(run)
    run.add_argument("--data", metavar="[KIND:]PATH", help="train on another dataset, e.g. affectnet:/data/AffectNet (a bare PATH means affectnet)")
    run.add_argument("--epochs", type=int, help="override train.epochs")
    run.add_argument("--seed", type=int, help="override train.seed (the first seed)")
    run.add_argument("--seeds", type=int, metavar="K", help="train each experiment K times, seeds S..S+K-1 (override train.seeds)")
    run.add_argument("--force", action="store_true", help="retrain even if an identical run FINISHED")
    run.add_argument("--cache-dir", type=Path, help="preprocessing cache (default: .cache/harness beside the suite file)")
    run.set_defaults(func=cmd_run)

    ev = sub.add_parser("eval", help="score a logged model on another dataset or split, tracked in MLflow")
    ev.add_argument("--run", required=True, metavar="RUN_ID_OR_NAME", help="a training run id, or an experiment name (its newest FINISHED training run)")
    ev.add_argument("--data", required=True, metavar="KIND:PATH", help="the dataset to score on, e.g. fer2013:/data/fer2013 or folder:/data/faces (a bare PATH means affectnet)")
    ev.add_argument("--split", choices=EVAL_SPLIT_CHOICES, help="default: test if the source has one, else its own validation split, else every image")
    ev.add_argument("--dedupe", choices=("none", "report", "drop"), help="images copying a training image of the model: count, or drop (default: the run's data.dedupe)")
    ev.add_argument("--tta", choices=TTA_CHOICES, help="test-time augmentation: none, flip (mirror average) or crops (ten-crop) (default: the run's train.tta)")
    ev.add_argument("--config", default=DEFAULT_CONFIG, type=Path, help="suite file, naming the MLflow experiment (default: %(default)s)")
    ev.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db beside the suite file)")
    ev.add_argument("--cache-dir", type=Path, help="preprocessing cache (default: .cache/harness beside the suite file)")
    ev.set_defaults(func=cmd_eval)

    cmp = sub.add_parser("compare", help="pair two training runs on their validation images: B − A with a 95%% interval, McNemar's test")
    cmp.add_argument("run_a", metavar="A", help="the baseline: a training run id, or an experiment name (its newest FINISHED training run)")
    cmp.add_argument("run_b", metavar="B", help="the run compared with it, given the same way")
    cmp.add_argument("--config", default=DEFAULT_CONFIG, type=Path, help="suite file, naming the MLflow experiment (default: %(default)s)")
    cmp.add_argument("--tracking-uri", help="the store holding A (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db beside the suite file)")
    cmp.add_argument("--tracking-uri-b", metavar="URI", help="the store holding B, if another one (default: A's)")
    cmp.set_defaults(func=cmd_compare)

    sw = sub.add_parser("sweep", help="tune an experiment with an Optuna study from the suite file")
    sw.add_argument("--study", required=True, help="a study under `studies:` in the suite file, e.g. residual")
    _add_common(sw)
    sw.add_argument("--trials", type=int, help="the study's total number of finished trials (default: the study's `trials`)")
    sw.add_argument("--timeout", type=float, metavar="SECONDS", help="start no new trial after this long")
    sw.add_argument("--workers", type=int, default=1, help="local worker processes sharing the storage (default: 1)")
    sw.add_argument("--storage", metavar="URL", help="Optuna storage: journal:PATH (default: journal:optuna.journal beside mlflow.db), or sqlite:///..., postgresql://..., mysql://...")
    sw.add_argument("--cache-dir", type=Path, help="preprocessing cache (default: .cache/harness beside the suite file)")
    what = sw.add_mutually_exclusive_group()
    what.add_argument("--best", action="store_true", help="print the best trial so far and exit (trains nothing)")
    what.add_argument("--retrain-best", action="store_true", help="train the best trial's spec as a normal tracked run named STUDY-best")
    sw.set_defaults(func=cmd_sweep)

    lst = sub.add_parser("list", help="list the suite's experiments and studies")
    _add_common(lst)
    lst.set_defaults(func=cmd_list)

    data = sub.add_parser("data", help="dataset commands")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    synth = data_sub.add_parser("synth", help="generate the embedded synthetic AffectNet-format dataset")
    _add_common(synth)
    synth.add_argument("--out", type=Path, help="output folder (default: the suite's data.path)")
    synth.add_argument("--seed", type=int, help="generator seed (default: the suite's data.synth_seed)")
    synth.add_argument("--scale", type=float, help="fraction of AffectNet's training counts (default: the suite's)")
    synth.add_argument("--val-per-class", type=int, help="validation images per class (default: the suite's)")
    synth.set_defaults(func=cmd_synth)

    report = sub.add_parser("report", help="write the HTML report from the MLflow store (no retraining)")
    _add_common(report)
    report.add_argument("--out", type=Path, help="output file (default: reports/index.html beside the suite file)")
    report.set_defaults(func=cmd_report)

    recover = sub.add_parser("recover", help="replay a run kept locally when the tracking server went away")
    recover.add_argument("folder", type=Path, metavar="FOLDER", help="the recovery folder named in the error message")
    recover.add_argument("--tracking-uri", help="replay into this store instead of the one the run was started on")
    recover.set_defaults(func=cmd_recover)
    return parser


def _data_override(value: str | None) -> dict[str, Any]:
    if not value:
        return {}
    kind, sep, path = value.partition(":")
    if sep and kind and "/" not in kind and "\\" not in kind:
        return {"source": kind, "path": path}
    return {"source": "affectnet", "path": value}


def _load(args: argparse.Namespace, overrides: dict[str, dict[str, Any]] | None = None) -> Any:
    from harness.spec import load_suite

    return load_suite(args.config, profile=args.profile, overrides=overrides)


def _tracking_uri(args: argparse.Namespace, root: Path) -> str:
    from harness.tracking.write import default_tracking_uri

    return args.tracking_uri or default_tracking_uri(root)


def cmd_run(args: argparse.Namespace) -> int:
    """harness run: train the named experiments (all by default)."""
    overrides: dict[str, dict[str, Any]] = {}
    if args.data:
        overrides["data"] = _data_override(args.data)
    if args.seeds is not None and args.seeds < 1:
        raise HarnessError("--seeds must be at least 1")
    flags = (("epochs", args.epochs), ("seed", args.seed), ("seeds", args.seeds))
    train = {k: v for k, v in flags if v is not None}
    if train:
        overrides["train"] = train
    suite = _load(args, overrides)
    specs = suite.select(args.names)
    from harness.runner import RunContext, load_datasets, run_suite
    from harness.tracking.write import check_reachable, connect

    uri = _tracking_uri(args, suite.root)
    cache_dir = args.cache_dir or suite.root / ".cache" / "harness"
    started = time.perf_counter()
    # Order matters: a store that is down fails before the (long) preprocessing, and bad data
    # fails before anything is written to the store.
    check_reachable(uri)
    datasets = load_datasets(specs, suite.root, cache_dir, _echo)
    tracker = connect(uri, suite.name, recovery_dir=cache_dir / "recovery")
    ctx = RunContext(tracker=tracker, project_root=suite.root, cache_dir=cache_dir, force=args.force, echo=_echo)
    _echo(f"tracking to {uri}, experiment '{suite.name}'")
    outcomes = run_suite(suite, specs, ctx, datasets)
    _echo(f"\n{len(outcomes)} experiment(s) in {time.perf_counter() - started:.0f} s:")
    for o in outcomes:
        acc = f"val acc {o.val_accuracy:.3f}" if o.val_accuracy is not None else o.reason
        print(f"{o.name:<34} {o.status:<9} {acc:<22} {o.run_id or ''}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """harness eval: score a logged model on another dataset (or split) and log an eval run."""
    from harness.evaluate import evaluate_run
    from harness.spec import load_suite
    from harness.tracking.write import connect

    suite = load_suite(args.config)
    uri = _tracking_uri(args, suite.root)
    cache_dir = args.cache_dir or suite.root / ".cache" / "harness"
    tracker = connect(uri, suite.name, recovery_dir=cache_dir / "recovery")
    _echo(f"tracking to {uri}, experiment '{suite.name}'")
    outcome = evaluate_run(
        tracker,
        args.run,
        _data_override(args.data),
        project_root=suite.root,
        cache_dir=cache_dir,
        split=args.split,
        dedupe=args.dedupe,
        tta=args.tta,
        echo=_echo,
    )
    classes = outcome.classes
    if classes.not_in_model:
        _echo(f"not scored ({outcome.n_unscored} images): the model has no class {', '.join(classes.not_in_model)}")
    if classes.not_in_data:
        _echo(f"masked: the data has no class {', '.join(classes.not_in_data)}")
    if outcome.duplicates:
        d = outcome.duplicates
        _echo(
            f"copies of the model's training images: {d['eval_dup_exact']} exact + {d['eval_dup_near']} near"
            + (f", {d['eval_duplicates_dropped']} dropped" if d["eval_duplicates_dropped"] else ", kept")
        )
    ev = outcome.evaluation
    print(
        f"{outcome.experiment} on {outcome.dataset} ({outcome.split}, {outcome.n_scored} images, "
        f"{len(classes.shared)} classes, TTA {outcome.tta}): accuracy {ev.accuracy:.3f}, balanced {ev.balanced_accuracy:.3f}, "
        f"macro-F1 {ev.macro_f1:.3f}  run {outcome.run_id}"
    )
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """harness compare: B against A on the validation images both runs scored (reads only)."""
    from harness.compare import compare_runs, describe
    from harness.spec import load_suite
    from harness.tracking.write import open_existing

    suite = load_suite(args.config)
    uri_a = _tracking_uri(args, suite.root)
    tracker_a = open_existing(uri_a, suite.name)
    tracker_b = open_existing(args.tracking_uri_b, suite.name) if args.tracking_uri_b else tracker_a
    for line in describe(compare_runs(tracker_a, args.run_a, tracker_b, args.run_b)):
        print(line)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """harness sweep: run (or resume) a study; --best prints its best trial; --retrain-best trains it."""
    from harness.sweep import default_storage_url, redact, run_sweep, study_status

    if args.trials is not None and args.trials < 1:
        raise HarnessError("--trials must be at least 1")
    if args.workers < 1:
        raise HarnessError("--workers must be at least 1")
    if args.timeout is not None and args.timeout <= 0:
        raise HarnessError("--timeout must be positive")
    suite = _load(args)
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
    _echo(f"tracking to {ctx.tracker.tracking_uri}, experiment '{suite.name}'; Optuna storage {redact(storage)}")
    outcome = run_sweep(
        suite, args.study, ctx, storage_url=storage, trials=args.trials, timeout=args.timeout,
        workers=args.workers, profile=args.profile,
    )
    _echo(f"\n{outcome.ran} trial(s) run now; sweep run {outcome.parent_run_id}")
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
    from harness.runner import RunHooks, load_data, run_experiment
    from harness.studies import trial_spec
    from harness.sweep import study_status

    study = suite.study(args.study)
    _, best = study_status(suite, args.study, storage)
    if best is None:
        raise HarnessError(f"study '{args.study}' has no completed trial to retrain")
    spec = trial_spec(suite.path, study, suite.experiments[study.experiment], f"{study.name}-best", best.params)
    spec = spec.model_copy(update={"description": f"Best trial ({best.number}) of study '{study.name}'"})
    hooks = RunHooks(tags={"harness.from_study": study.name, "harness.from_trial": str(best.number)})
    _echo(f"retraining trial {best.number} of '{study.name}' as experiment '{spec.name}'")
    outcome = run_experiment(suite, spec, load_data(spec, ctx.project_root, ctx.cache_dir, _echo), ctx, hooks)
    acc = f"val acc {outcome.val_accuracy:.3f}" if outcome.val_accuracy is not None else outcome.reason
    print(f"{outcome.name:<34} {outcome.status:<9} {acc:<22} {outcome.run_id or ''}")
    return 0


def _run_context(args: argparse.Namespace, suite: Any) -> Any:
    from harness.runner import RunContext
    from harness.tracking.write import connect

    return RunContext(
        tracker=connect(_tracking_uri(args, suite.root), suite.name),
        project_root=suite.root,
        cache_dir=args.cache_dir or suite.root / ".cache" / "harness",
        force=getattr(args, "force", False),
        echo=_echo,
    )


def cmd_recover(args: argparse.Namespace) -> int:
    """harness recover: replay a recovery folder into the tracking store."""
    from harness.tracking.recovery import recover

    result = recover(args.folder, args.tracking_uri)
    what = {
        "completed": "the original run now holds every result and is FINISHED",
        "recreated": "the original run is not in this store: a new FINISHED run holds the results",
        "already finished": "the spec had finished in another run since: nothing replayed",
    }[result.how]
    print(f"recovered {args.folder}: {what}  run {result.run_id}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """harness list: the suite's experiments with model, sampler and the paper's accuracy."""
    suite = _load(args)
    print(f"suite '{suite.name}' ({suite.path}), {len(suite.experiments)} experiments")
    print(f"{'name':<34} {'iter':<5} {'model':<16} {'sampler':<9} {'paper':<6} tags")
    for spec in suite.experiments.values():
        paper = f"{spec.paper_val_accuracy:.3f}" if spec.paper_val_accuracy is not None else "-"
        iteration = str(spec.iteration) if spec.iteration is not None else "-"
        print(f"{spec.name:<34} {iteration:<5} {spec.model.name:<16} {spec.sampler.name:<9} {paper:<6} {','.join(spec.tags)}")
    if suite.studies:
        print(f"\nstudies ({len(suite.studies)}): harness sweep --study NAME")
        for study in suite.studies.values():
            print(f"{study.name:<20} {study.experiment:<26} {study.objective:<22} {study.trials:>3} trials  "
                  f"{', '.join(study.space)}")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    """harness data synth: generate (once) the synthetic dataset the suite trains on."""
    from harness.data.dataset import resolve_path
    from harness.data.synthetic import ensure_synthetic

    suite = _load(args)
    data = next((s.data for s in suite.experiments.values() if s.data.source == "synthetic"), None)
    if data is None:
        from harness.spec import DataSpec

        data = DataSpec()
    root = args.out or resolve_path(data, suite.root)
    seed = data.synth_seed if args.seed is None else args.seed
    scale = data.synth_scale if args.scale is None else args.scale
    val = data.synth_val_per_class if args.val_per_class is None else args.val_per_class
    if scale <= 0 or scale > 1 or val < 1:
        raise HarnessError("--scale must be in (0, 1] and --val-per-class at least 1")
    started = time.perf_counter()
    made = ensure_synthetic(root, seed=seed, scale=scale, val_per_class=val)
    verb = "generated" if made else "already present:"
    _echo(f"{verb} {root} ({time.perf_counter() - started:.1f} s)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """harness report: rebuild reports/index.html from MLflow."""
    from harness.report import build_report

    suite = _load(args)
    out = args.out or suite.root / "reports" / "index.html"
    summary = build_report(_tracking_uri(args, suite.root), suite.name, out)
    for warning in summary.warnings:
        _echo(f"note: {warning}")
    _echo(f"wrote {summary.out_path} ({summary.n_runs} runs, {summary.seconds:.1f} s)")
    return 0


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `harness` console script; returns the exit code."""
    # MLflow 3 sends usage telemetry from background threads unless told not to. The harness
    # records nothing outside the user's own store and runs offline; MLFLOW_DISABLE_TELEMETRY=false
    # in the environment turns MLflow's telemetry back on.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    parser = build_parser()
    args = parser.parse_args(argv)
    # SIGTERM ends a run the way Ctrl-C does, so MLflow marks it KILLED, not RUNNING forever.
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return args.func(args)
    except HarnessError as exc:
        if args.debug:
            raise
        print(f"harness: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("harness: interrupted (a run in progress is marked KILLED); rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line, no traceback
        if args.debug:
            raise
        print(f"harness: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
