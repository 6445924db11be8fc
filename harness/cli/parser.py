"""The argument parser of every `harness` command.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.cli.commands import (
    cmd_compare,
    cmd_eval,
    cmd_list,
    cmd_recover,
    cmd_report,
    cmd_run,
    cmd_schema,
    cmd_synth,
)
from harness.cli.models import cmd_export, cmd_predict, cmd_register, cmd_ui
from harness.cli.sweep import cmd_sweep

DEFAULT_CONFIG = "experiments.yaml"


# harness.data.dataset.EVAL_SPLITS, repeated so `--help` imports nothing heavy.
EVAL_SPLIT_CHOICES = ("test", "validation", "train", "all")


# harness.spec.TrainSpec.tta's values, repeated for the same reason.
TTA_CHOICES = ("none", "flip", "crops")


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
    for add in (_add_run, _add_eval, _add_compare, _add_sweep, _add_list, _add_data, _add_report, _add_recover, _add_schema, _add_register, _add_predict, _add_export, _add_ui):
        add(sub)
    return parser


def _add_run(sub: Any) -> None:
    """`harness run`."""
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


def _add_eval(sub: Any) -> None:
    """`harness eval`."""
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


def _add_compare(sub: Any) -> None:
    """`harness compare`."""
    cmp = sub.add_parser("compare", help="pair two training runs on their validation images: B − A with a 95%% interval, McNemar's test")
    cmp.add_argument("run_a", metavar="A", help="the baseline: a training run id, or an experiment name (its newest FINISHED training run)")
    cmp.add_argument("run_b", metavar="B", help="the run compared with it, given the same way")
    cmp.add_argument("--config", default=DEFAULT_CONFIG, type=Path, help="suite file, naming the MLflow experiment (default: %(default)s)")
    cmp.add_argument("--tracking-uri", help="the store holding A (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db beside the suite file)")
    cmp.add_argument("--tracking-uri-b", metavar="URI", help="the store holding B, if another one (default: A's)")
    cmp.set_defaults(func=cmd_compare)


def _add_sweep(sub: Any) -> None:
    """`harness sweep`."""
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


def _add_list(sub: Any) -> None:
    """`harness list`."""
    lst = sub.add_parser("list", help="list the suite's experiments and studies")
    _add_common(lst)
    lst.set_defaults(func=cmd_list)


def _add_data(sub: Any) -> None:
    """`harness data`."""
    data = sub.add_parser("data", help="dataset commands")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    synth = data_sub.add_parser("synth", help="generate the embedded synthetic AffectNet-format dataset")
    _add_common(synth)
    synth.add_argument("--out", type=Path, help="output folder (default: the suite's data.path)")
    synth.add_argument("--seed", type=int, help="generator seed (default: the suite's data.synth_seed)")
    synth.add_argument("--scale", type=float, help="fraction of AffectNet's training counts (default: the suite's)")
    synth.add_argument("--val-per-class", type=int, help="validation images per class (default: the suite's)")
    synth.set_defaults(func=cmd_synth)


def _add_report(sub: Any) -> None:
    """`harness report`."""
    report = sub.add_parser("report", help="write the HTML report from the MLflow store (no retraining)")
    _add_common(report)
    report.add_argument("--out", type=Path, help="output file (default: reports/index.html beside the suite file)")
    report.add_argument("--format", choices=("html", "markdown"), default="html", help="html: the interactive page; markdown: the numbers, for docs/results/ (default: %(default)s)")
    report.set_defaults(func=cmd_report)


def _add_recover(sub: Any) -> None:
    """`harness recover`."""
    recover = sub.add_parser("recover", help="replay a run kept locally when the tracking server went away")
    recover.add_argument("folder", type=Path, metavar="FOLDER", help="the recovery folder named in the error message")
    recover.add_argument("--tracking-uri", help="replay into this store instead of the one the run was started on")
    recover.set_defaults(func=cmd_recover)


def _add_schema(sub: Any) -> None:
    """`harness schema`."""
    schema = sub.add_parser("schema", help="write the suite file's JSON Schema (for editors), or the config reference")
    schema.add_argument("--out", type=Path, help="write the schema here (default: print it)")
    schema.add_argument("--docs", type=Path, metavar="MARKDOWN", help="rewrite the field tables of this page (docs/config.md)")
    schema.add_argument("--check", action="store_true", help="write nothing; exit 1 if --out or --docs is out of date")
    schema.set_defaults(func=cmd_schema)

MODEL_HELP = "a run id, an experiment name (its newest FINISHED training run), runs:/RUN_ID, or models:/NAME@ALIAS | models:/NAME/VERSION"


def _add_model_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=DEFAULT_CONFIG, type=Path, help="suite file, naming the MLflow experiment (default: %(default)s)")
    parser.add_argument("--profile", help=argparse.SUPPRESS)
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db beside the suite file)")


def _add_register(sub: Any) -> None:
    """`harness register`."""
    reg = sub.add_parser("register", help="register a run's photo-level model in the MLflow model registry")
    reg.add_argument("model", nargs="?", metavar="RUN|EXPERIMENT", help=MODEL_HELP + "; with --best, an experiment name narrows the choice")
    reg.add_argument("--name", required=True, help="the registered model's name")
    reg.add_argument("--best", metavar="METRIC", help="the FINISHED training run with the best validation metric (val_accuracy, val_balanced_accuracy, val_macro_f1) of the suite's experiment")
    reg.add_argument("--alias", help="set this alias (e.g. champion) on the new version")
    reg.add_argument("--force", action="store_true", help="register even if the name holds a model of other classes or input (a name clash)")
    _add_model_common(reg)
    reg.set_defaults(func=cmd_register)


def _add_predict(sub: Any) -> None:
    """`harness predict`."""
    pred = sub.add_parser("predict", help="faces and emotions for image files, folders and videos")
    pred.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    pred.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="images, folders (searched recursively) and videos")
    pred.add_argument("--detector", choices=("haar", "none"), default="haar", help="haar: OpenCV's face detector; none: each image is a face crop (default: %(default)s)")
    pred.add_argument("--every", type=int, default=1, metavar="N", help="videos: predict every N-th frame (default: %(default)s)")
    pred.add_argument("--out", type=Path, metavar="FILE", help="write one row per face to FILE.csv or FILE.jsonl")
    pred.add_argument("--annotate", type=Path, metavar="DIR", help="write each picture with its faces' boxes and labels drawn into DIR")
    pred.add_argument("--runtime", choices=("torch", "onnx"), default="torch", help="score with PyTorch or with onnxruntime on the exported model (default: %(default)s)")
    _add_model_common(pred)
    pred.set_defaults(func=cmd_predict)


def _add_export(sub: Any) -> None:
    """`harness export`."""
    exp = sub.add_parser("export", help="export a run's model to ONNX, checked against torch on its faces")
    exp.add_argument("model", metavar="RUN", help=MODEL_HELP)
    exp.add_argument("--onnx", required=True, type=Path, metavar="FILE", help="the ONNX file to write (one self-contained file, dynamic batch)")
    _add_model_common(exp)
    exp.set_defaults(func=cmd_export)


def _add_ui(sub: Any) -> None:
    """`harness ui`."""
    ui = sub.add_parser("ui", help="mlflow ui on the suite's store, opened at its training runs")
    ui.add_argument("--port", type=int, default=5000, help="(default: %(default)s)")
    ui.add_argument("--host", default="127.0.0.1", help="bind address; keep 127.0.0.1 unless the network is trusted (default: %(default)s)")
    _add_model_common(ui)
    ui.set_defaults(func=cmd_ui)
