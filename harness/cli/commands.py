"""The `harness` commands: each parses nothing, calls one library function and prints.

Library modules are imported inside the commands, so `harness --help` loads none of them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError


def echo(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _data_override(value: str | None) -> dict[str, Any]:
    if not value:
        return {}
    kind, sep, path = value.partition(":")
    if sep and kind and "/" not in kind and "\\" not in kind:
        return {"source": kind, "path": path}
    return {"source": "affectnet", "path": value}


# The command-line flags that override spec fields, named in any error about their value.
OVERRIDE_FLAGS = {
    "data.source": "--data", "data.path": "--data", "train.epochs": "--epochs", "train.seed": "--seed",
    "train.seeds": "--seeds",
}  # fmt: skip


def load_from_args(args: argparse.Namespace, overrides: dict[str, dict[str, Any]] | None = None) -> Any:
    """The suite file of `--config` with `--profile` and any command-line overrides."""
    from harness.suite.load import load_suite

    return load_suite(args.config, profile=args.profile, overrides=overrides, override_origins=OVERRIDE_FLAGS)


def tracking_uri_of(args: argparse.Namespace, root: Path) -> str:
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
    suite = load_from_args(args, overrides)
    specs = suite.select(args.names)
    from harness.runs.context import RunContext
    from harness.runs.data import load_datasets
    from harness.runs.experiment import run_suite
    from harness.tracking.write import check_reachable, connect

    uri = tracking_uri_of(args, suite.root)
    cache_dir = args.cache_dir or suite.root / ".cache" / "harness"
    started = time.perf_counter()
    # Order matters: a store that is down fails before the (long) preprocessing, and bad data
    # fails before anything is written to the store.
    check_reachable(uri)
    datasets = load_datasets(specs, suite.root, cache_dir, echo)
    tracker = connect(uri, suite.name, recovery_dir=cache_dir / "recovery", description=suite.description)
    ctx = RunContext(tracker=tracker, project_root=suite.root, cache_dir=cache_dir, force=args.force, echo=echo)
    echo(f"tracking to {uri}, experiment '{suite.name}'")
    outcomes = run_suite(suite, specs, ctx, datasets)
    echo(f"\n{len(outcomes)} experiment(s) in {time.perf_counter() - started:.0f} s:")
    for o in outcomes:
        acc = f"val acc {o.val_accuracy:.3f}" if o.val_accuracy is not None else o.reason
        print(f"{o.name:<34} {o.status:<9} {acc:<22} {o.run_id or ''}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """harness eval: score a logged model on another dataset (or split) and log an eval run."""
    from harness.runs.evaluate import evaluate_run
    from harness.suite.load import load_suite
    from harness.tracking.write import connect

    suite = load_suite(args.config)
    uri = tracking_uri_of(args, suite.root)
    cache_dir = args.cache_dir or suite.root / ".cache" / "harness"
    tracker = connect(uri, suite.name, recovery_dir=cache_dir / "recovery", description=suite.description)
    echo(f"tracking to {uri}, experiment '{suite.name}'")
    outcome = evaluate_run(
        tracker,
        args.run,
        _data_override(args.data),
        project_root=suite.root,
        cache_dir=cache_dir,
        split=args.split,
        dedupe=args.dedupe,
        tta=args.tta,
        echo=echo,
    )
    classes = outcome.classes
    if classes.not_in_model:
        echo(f"not scored ({outcome.n_unscored} images): the model has no class {', '.join(classes.not_in_model)}")
    if classes.not_in_data:
        echo(f"masked: the data has no class {', '.join(classes.not_in_data)}")
    if outcome.duplicates:
        d = outcome.duplicates
        echo(
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
    from harness.analysis.compare import compare_runs, describe
    from harness.suite.load import load_suite
    from harness.tracking.write import open_existing

    suite = load_suite(args.config)
    uri_a = tracking_uri_of(args, suite.root)
    tracker_a = open_existing(uri_a, suite.name)
    tracker_b = open_existing(args.tracking_uri_b, suite.name) if args.tracking_uri_b else tracker_a
    for line in describe(compare_runs(tracker_a, args.run_a, tracker_b, args.run_b)):
        print(line)
    return 0


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
    suite = load_from_args(args)
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

    suite = load_from_args(args)
    data = next((s.data for s in suite.experiments.values() if s.data.source == "synthetic"), None)
    if data is None:
        from harness.spec.schema import DataSpec

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
    echo(f"{verb} {root} ({time.perf_counter() - started:.1f} s)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """harness report: rebuild reports/index.html from MLflow."""
    from harness.report.page import build_report

    suite = load_from_args(args)
    out = args.out or suite.root / "reports" / ("index.html" if args.format == "html" else "results.md")
    profile = f" --profile {suite.profile}" if suite.profile else ""
    command = f"harness report --config {args.config}{profile} --format {args.format} --out {out}"
    summary = build_report(
        tracking_uri_of(args, suite.root), suite.name, out, claims=suite.claims, references=suite.references,
        fmt=args.format, command=command, profile=suite.profile,
    )  # fmt: skip
    for warning in summary.warnings:
        echo(f"note: {warning}")
    echo(f"wrote {summary.out_path} ({summary.n_runs} runs, {summary.seconds:.1f} s)")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    """harness schema: the suite file's JSON Schema, and docs/config.md's field tables."""
    from harness.suite.jsonschema import schema_text
    from harness.suite.reference import docs_text

    text = schema_text()
    outputs = [(args.out, lambda current: text), (args.docs, docs_text)]
    stale = []
    for path, render in outputs:
        if path is None:
            continue
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        wanted = render(current)
        if current != wanted:
            stale.append(str(path))
            if not args.check:
                path.write_text(wanted, encoding="utf-8")
    if args.out is None and args.docs is None:
        sys.stdout.write(text)
    if args.check and stale:
        echo(f"out of date: {', '.join(stale)} (run harness schema without --check)")
        return 1
    for path in stale:
        echo(f"wrote {path}")
    return 0
