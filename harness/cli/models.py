"""`harness register`, `predict`, `export` and `ui`: trained models put to use."""

from __future__ import annotations

import argparse
from typing import Any

from harness.cli.commands import echo, load_from_args, tracking_uri_of


def _tracker(args: argparse.Namespace) -> tuple[Any, Any]:
    from harness.tracking.write import open_existing

    suite = load_from_args(args)
    return suite, open_existing(tracking_uri_of(args, suite.root), suite.name, profile=suite.profile or "")


def cmd_register(args: argparse.Namespace) -> int:
    """harness register: a run's photo-level model as a new version of a registered model."""
    from harness.core.errors import HarnessError
    from harness.deploy.models import register_model

    if args.model is None and args.best is None:
        raise HarnessError("name a run or an experiment, or pick one with --best METRIC")
    _, tracker = _tracker(args)
    done = register_model(tracker, args.model, args.name, best=args.best, alias=args.alias, force=args.force)
    alias = f", alias '{done.alias}'" if done.alias else ""
    print(f"registered run {done.run_id} as '{done.name}' version {done.version}{alias}: "
          f"models:/{done.name}{'@' + done.alias if done.alias else '/' + done.version}")  # fmt: skip
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """harness predict: faces and emotions for images, folders and videos."""
    from harness.core.errors import HarnessError
    from harness.deploy.models import loaded_model, predictor
    from harness.deploy.predict import predict_paths

    if args.every < 1:
        raise HarnessError("--every must be at least 1")
    _, tracker = _tracker(args)
    with loaded_model(tracker, args.model, runtime=args.runtime) as loaded:
        trained = loaded.trained
        echo(f"model: run {trained.run_id} ({trained.experiment}), classes {', '.join(trained.class_names)}, "
             f"runtime {args.runtime}, detector {args.detector}")  # fmt: skip
        outcome = predict_paths(predictor(loaded, args.detector), args.paths, every=args.every, out=args.out, annotate=args.annotate)
    echo(f"{outcome.faces} face(s) in {outcome.pictures} picture(s); {outcome.no_face} classified whole (no face found); "
         f"{len(outcome.problems)} unreadable" + (f"; rows in {args.out}" if args.out else "")
         + (f"; drawn in {args.annotate}" if args.annotate else ""))  # fmt: skip
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """harness export: a run's model as one ONNX file, checked against torch."""
    from harness.deploy.export import export_run

    _, tracker = _tracker(args)
    checked = export_run(tracker, args.model, args.onnx)
    print(f"wrote {args.onnx}: onnxruntime matches torch on {int(checked['onnx_images_checked'])} faces "
          f"(max |Δ probability| {checked['onnx_max_abs_prob_diff']:.1e}); logged with run {checked['run_id']}")  # fmt: skip
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    """harness ui: mlflow ui on the suite's store, at its training runs."""
    from harness.deploy.ui import serve_ui
    from harness.tracking.write import connect

    suite = load_from_args(args)
    uri = tracking_uri_of(args, suite.root)
    tracker = connect(uri, suite.name, description=suite.description)
    return serve_ui(uri, tracker.experiment_id, host=args.host, port=args.port, echo=echo)
