"""One tracked training run: build, fit, evaluate and log a spec (the path runs and trials share).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.core.testhooks import pause_point
from harness.models.build import build_model
from harness.runs.artifacts import final_scores, log_artifacts, log_inputs
from harness.runs.context import RunContext, RunHooks, RunOutcome
from harness.runs.provenance import run_tags
from harness.train.device import resolve_device, resolve_precision
from harness.train.loop import fit

if TYPE_CHECKING:
    from harness.data.dataset import Dataset
    from harness.spec.schema import ExperimentSpec
    from harness.suite.load import Suite
    from harness.tracking.logger import RunLogger
    from harness.train.loop import EpochStats, FitResult


def train_and_log(
    suite: Suite, spec: ExperimentSpec, data: Dataset, key: str, ctx: RunContext, hooks: RunHooks = RunHooks()
) -> RunOutcome:
    """Build, train and evaluate `spec` inside one tracked run (no skip check: see run_experiment)."""

    device = resolve_device(spec.train.device)
    precision = resolve_precision(spec.train.precision, device)
    model = build_model(spec, data)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    tags = {
        **run_tags(suite, spec, data, key, ctx.project_root),
        "harness.device": device,
        "harness.precision": precision,
        "harness.kind": hooks.kind,
        **hooks.tags,
    }
    with ctx.tracker.run(hooks.run_name or spec.name, tags, spec.flat_params()) as log:
        ctx.echo(f"  run {log.run_id} on {device} ({precision}), {n_params:,} parameters")
        if hooks.started is not None:
            hooks.started(log)
        log_inputs(log, spec, data)

        def on_epoch(stats: EpochStats) -> bool:
            log.log_epoch(stats.metrics(), step=stats.epoch)
            if stats.epoch == 1:
                pause_point("training")
            ctx.echo(
                f"  epoch {stats.epoch:>3}/{spec.train.epochs}: train acc {stats.train_accuracy:.3f} "
                f"loss {stats.train_loss:.3f} | val acc {stats.val_accuracy:.3f} "
                f"bal {stats.val_balanced_accuracy:.3f} | {stats.images / max(stats.train_seconds, 1e-9):.0f} img/s"
            )
            return hooks.stop is not None and hooks.stop(stats)

        result = fit(model, data, spec, device=device, on_epoch=on_epoch)
        _log_result(log, spec, data, result, n_params)
        if hooks.before_end is not None:
            hooks.before_end(log, result)
    ev = result.evaluation
    ctx.echo(f"  done: val accuracy {ev.accuracy:.3f}, balanced {ev.balanced_accuracy:.3f}, macro-F1 {ev.macro_f1:.3f}")
    return RunOutcome(spec.name, "finished", log.run_id, val_accuracy=ev.accuracy)


def _log_result(log: RunLogger, spec: ExperimentSpec, data: Dataset, result: FitResult, n_params: int) -> None:
    """Final metrics and every artifact the report needs."""
    log.log_metrics(
        {
            **final_scores(result.evaluation, data),
            "final_train_accuracy": result.history[-1].train_accuracy,
            "n_parameters": n_params,
            "train_seconds": result.train_seconds,
            "train_images_per_second": result.images_per_second,
        }
    )
    log_artifacts(log, spec, data, result.evaluation, result.y_pred, result.sampled_per_epoch, result.model)
