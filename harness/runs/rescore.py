"""A spec that differs from a finished run only in how it scores: that run's weights, re-scored.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.core.errors import TrackingError, first_line
from harness.models.build import rebuild_model
from harness.runs.artifacts import final_scores, log_artifacts, log_inputs
from harness.runs.context import RunContext, RunHooks, RunOutcome
from harness.runs.provenance import machine_tags, run_tags
from harness.train.device import resolve_device, resolve_precision, to_tensor, use_channels_last
from harness.train.flops import count_flops
from harness.train.metrics import evaluate
from harness.train.scoring import predict

if TYPE_CHECKING:
    import numpy as np

    from harness.data.dataset import Dataset
    from harness.spec.schema import ExperimentSpec
    from harness.suite.load import Suite
    from harness.tracking.logger import RunLogger


# What a re-scored run takes over from the run that trained its weights: the cost of training them.
TRAINING_METRICS = (
    "final_train_accuracy", "n_parameters", "train_seconds", "train_images_per_second", "epochs_run",
    "train_tflop", "train_gflop_per_s", "gflop_per_train_image",
)  # fmt: skip


def rescore_and_log(
    suite: Suite, spec: ExperimentSpec, data: Dataset, key: str, source: str, ctx: RunContext,
    hooks: RunHooks = RunHooks(),
) -> RunOutcome | None:  # fmt: skip
    """Score the weights of `source` as `spec` says, in a new tracked run, instead of training.

    `source` is a FINISHED training run whose spec trains exactly what `spec` trains on the same
    data (the same weights key); only evaluation settings differ. The new run is a training run
    like any other (the report and `harness eval` read it so), tagged `harness.weights_from`: its
    validation metrics are its own, its training metrics and per-epoch training curve are the
    source's, and its per-epoch validation curve has the last epoch only (the earlier epochs'
    weights are gone). Returns None, after a warning, when the source cannot be read: then the
    caller trains.
    """

    loaded = _load_source(spec, data, source, ctx)
    if loaded is None:
        return None
    model, sampled, final, epochs = loaded
    device = resolve_device(spec.train.device)
    started = time.perf_counter()
    model, val_loss, y_pred = _score(model, spec, data, device)
    ev = evaluate(data.y_val, y_pred, data.class_names)
    seconds = time.perf_counter() - started
    tags = {
        **run_tags(suite, spec, data, key, ctx.project_root),
        "harness.device": device,
        **machine_tags(device),
        "harness.precision": resolve_precision(spec.train.precision, device),
        "harness.kind": hooks.kind,
        **hooks.tags,
        "harness.weights_from": source,
    }
    with ctx.tracker.run(hooks.run_name or spec.name, tags, spec.flat_params()) as log:
        ctx.echo(
            f"  run {log.run_id}: re-scoring the weights of finished run {source}, which trained the same "
            "spec but for how it is scored (--force trains them again)"
        )
        log_inputs(log, spec, data)
        last = _log_training_curve(log, epochs) or spec.train.epochs
        scores = {"val_loss": val_loss, "val_accuracy": ev.accuracy}
        scores |= {"val_balanced_accuracy": ev.balanced_accuracy, "val_macro_f1": ev.macro_f1}
        log.log_epoch(scores, step=last)
        taken = {name: final[name] for name in TRAINING_METRICS if name in final}
        flops = count_flops(model, spec.data.channels, spec.data.image_size, spec.train.tta)
        scoring = {"rescore_seconds": seconds, "eval_tflop": flops.eval_tflop(len(data.y_val))}
        log.log_metrics({**final_scores(ev, data), **taken, **scoring})
        log_artifacts(log, spec, data, ev, y_pred, sampled, model)
    ctx.echo(f"  done: val accuracy {ev.accuracy:.3f}, balanced {ev.balanced_accuracy:.3f}, macro-F1 {ev.macro_f1:.3f}")
    return RunOutcome(spec.name, "rescored", log.run_id, val_accuracy=ev.accuracy, reason=f"weights of {source}")


def _load_source(spec: ExperimentSpec, data: Dataset, source: str, ctx: RunContext) -> tuple[Any, ...] | None:
    """The source run's model, first-epoch class counts, final metrics and per-epoch metrics."""

    try:
        with tempfile.TemporaryDirectory(prefix="harness-rescore-") as tmp:
            files = ctx.tracker.download_for_eval(source, Path(tmp))
            sampled = json.loads(files["data/class_counts.json"].read_text())["sampled_per_epoch"]
            model = rebuild_model(spec, data.num_classes, files["model/weights.pt"], source)
        final, epochs = ctx.tracker.training_record(source)
    except (TrackingError, OSError, ValueError, KeyError, TypeError) as exc:
        ctx.echo(f"  warning: cannot re-score finished run {source}'s weights ({first_line(exc)}); training instead")
        return None
    return model, sampled, final, epochs


def _score(model: Any, spec: ExperimentSpec, data: Dataset, device: str) -> tuple[Any, float, np.ndarray]:
    """The validation loss and predictions as fit() computes them: on the device, in the memory
    layout the weights were trained in, with the spec's test-time augmentation."""
    import torch

    channels_last = use_channels_last(spec, device)
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    x_val, y_val = to_tensor(data.x_val, device), torch.from_numpy(data.y_val).to(device)
    val_loss, y_pred = predict(model, x_val, y_val, spec, device, channels_last=channels_last)
    return model, val_loss, y_pred


def _log_training_curve(log: RunLogger, epochs: Mapping[str, Mapping[int, float]]) -> int | None:
    """The source's per-epoch training loss and accuracy; returns its last epoch (None if none)."""
    keys = ("train_loss", "train_accuracy")
    steps = sorted({step for key in keys for step in epochs.get(key, {})})
    for step in steps:
        log.log_epoch({key: epochs[key][step] for key in keys if step in epochs.get(key, {})}, step=step)
    return steps[-1] if steps else None
