"""One tracked training run: build, fit, evaluate and log a spec (the path runs and trials share).

Before training, the run counts its compute per image (harness.train.flops) and, when the spec
sets `train.budget_tflop`, derives its epoch count from it: the largest whole number of epochs
within the budget, so one-cycle and cosine schedules know their length. It logs the compute it
spent (`train_tflop`, `eval_tflop`) beside its scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.core.errors import SpecError
from harness.core.testhooks import pause_point
from harness.models.build import build_model
from harness.runs.artifacts import final_scores, log_artifacts, log_inputs
from harness.runs.checkpoint import Checkpointer, Resume, find_resume, local_folder
from harness.runs.context import RunContext, RunHooks, RunOutcome
from harness.runs.provenance import machine_tags, run_tags
from harness.tracking.write import KIND_TRAIN
from harness.train.device import resolve_device, resolve_precision
from harness.train.flops import ImageFlops, budget_epochs, count_flops
from harness.train.loop import fit, images_per_epoch

if TYPE_CHECKING:
    from harness.data.dataset import Dataset
    from harness.spec.schema import ExperimentSpec
    from harness.suite.load import Suite
    from harness.tracking.logger import RunLogger
    from harness.train.history import EpochStats
    from harness.train.loop import FitResult


@dataclass(frozen=True)
class Plan:
    """What a run will train: the spec with its epochs (a budget's, if it has one), the model,
    its compute per image and the images each epoch draws."""

    spec: ExperimentSpec
    model: Any
    flops: ImageFlops
    images_per_epoch: int

    @property
    def budgeted(self) -> bool:
        return self.spec.train.budget_tflop is not None


def plan_run(spec: ExperimentSpec, data: Dataset) -> Plan:
    """Build the model, count its FLOPs per image and resolve a budget into epochs."""
    model = build_model(spec, data)
    flops = count_flops(model, spec.data.channels, spec.data.image_size, spec.train.tta)
    images = images_per_epoch(spec, data.y_train)
    if spec.train.budget_tflop is not None:
        epochs = budget_epochs(spec.train.budget_tflop, flops, images)
        spec = spec.model_copy(update={"train": spec.train.model_copy(update={"epochs": epochs})})
    return Plan(spec, model, flops, images)


def train_and_log(
    suite: Suite, spec: ExperimentSpec, data: Dataset, key: str, ctx: RunContext, hooks: RunHooks = RunHooks()
) -> RunOutcome:
    """Build, train and evaluate `spec` inside one tracked run (no skip check: see run_experiment)."""
    device = resolve_device(spec.train.device)
    precision = resolve_precision(spec.train.precision, device)
    try:
        plan = plan_run(spec, data)
    except SpecError as exc:
        raise SpecError(f"{suite.path}: experiments.{spec.name}.train.budget_tflop: {exc}") from None
    n_params = sum(p.numel() for p in plan.model.parameters() if p.requires_grad)
    resume = None if ctx.force else find_resume(ctx.tracker, ctx.cache_dir, key, hooks.kind, ctx.echo)
    tags = {
        **run_tags(suite, spec, data, key, ctx.project_root),
        "harness.device": device,
        **machine_tags(device),
        "harness.precision": precision,
        "harness.kind": hooks.kind,
        **hooks.tags,
        **_resume_tags(resume),
    }
    # `harness run` continues the killed run itself; a retried sweep trial is a new trial, so it
    # opens a run of its own that starts from the failed trial's checkpoint.
    reopen = resume.run_id if resume is not None and hooks.kind == KIND_TRAIN else None
    params = {**spec.flat_params(), **_plan_params(plan)}
    with ctx.tracker.run(hooks.run_name or spec.name, tags, params, resume=reopen) as log:
        ctx.echo(f"  run {log.run_id} on {device} ({precision}), {n_params:,} parameters, {_compute_line(plan)}")
        if resume is not None:
            ctx.echo(f"  resuming after epoch {resume.state.epoch} from {resume.source}")
        if hooks.started is not None:
            hooks.started(log)
        if reopen is None:
            log_inputs(log, spec, data)
        checkpoints = Checkpointer(local_folder(ctx.cache_dir, log.run_id), key, log,
                                   plan.spec.train.checkpoint_min_seconds())  # fmt: skip
        result = fit(
            plan.model, data, plan.spec, device=device, on_epoch=_epoch_logger(log, plan.spec, ctx, hooks),
            start=resume.state if resume is not None else None,
            on_state=checkpoints.save, state_every=plan.spec.train.checkpoint_interval(), state_due=checkpoints.due,
        )  # fmt: skip
        _log_result(log, plan, data, result, n_params)
        if hooks.before_end is not None:
            hooks.before_end(log, result)
    checkpoints.discard()
    if resume is not None:
        Checkpointer(local_folder(ctx.cache_dir, resume.run_id), key, log).discard()
    ev = result.evaluation
    ctx.echo(f"  done: val accuracy {ev.accuracy:.3f}, balanced {ev.balanced_accuracy:.3f}, macro-F1 {ev.macro_f1:.3f}")
    return RunOutcome(spec.name, "finished", log.run_id, val_accuracy=ev.accuracy)


def _resume_tags(resume: Resume | None) -> dict[str, str]:
    if resume is None:
        return {}
    return {"harness.resumed_from": f"run {resume.run_id} after epoch {resume.state.epoch} ({resume.source})"}


def _epoch_logger(log: RunLogger, spec: ExperimentSpec, ctx: RunContext, hooks: RunHooks) -> Any:
    def on_epoch(stats: EpochStats) -> bool:
        log.log_epoch(stats.metrics(), step=stats.epoch)
        if stats.epoch == 1:
            pause_point("training")
        val = (
            f"val acc {stats.val_accuracy:.3f} bal {stats.val_balanced_accuracy:.3f}"
            if stats.evaluated else "not scored (train.eval_every)"
        )  # fmt: skip
        ctx.echo(
            f"  epoch {stats.epoch:>3}/{spec.train.epochs}: train acc {stats.train_accuracy:.3f} "
            f"loss {stats.train_loss:.3f} | {val} | {stats.images / max(stats.train_seconds, 1e-9):.0f} img/s"
        )
        return hooks.stop is not None and hooks.stop(stats)

    return on_epoch


def _plan_params(plan: Plan) -> dict[str, str]:
    """What a budget decided, beside the spec's own params."""
    if not plan.budgeted:
        return {}
    return {"budget.epochs": str(plan.spec.train.epochs), "budget.images_per_epoch": str(plan.images_per_epoch)}


def _compute_line(plan: Plan) -> str:
    per_image = f"{plan.flops.train / 1e9:.3g} GFLOP a training image"
    planned = plan.flops.train_tflop(plan.images_per_epoch * plan.spec.train.epochs)
    if plan.budgeted:
        return f"{per_image}: {plan.spec.train.epochs} epochs = {planned:.1f} of {plan.spec.train.budget_tflop:g} TFLOP"
    return f"{per_image}: {planned:.1f} TFLOP planned"


def compute_metrics(flops: ImageFlops, result: FitResult, n_val: int) -> dict[str, float]:
    """The compute a fit spent: training and evaluation TFLOP, and its achieved GFLOP/s."""
    train_tflop = flops.train_tflop(result.images_seen)
    return {
        "train_tflop": train_tflop,
        "eval_tflop": flops.eval_tflop(n_val * result.evaluations),
        "train_gflop_per_s": 1e3 * train_tflop / max(result.train_seconds, 1e-9),
        "gflop_per_train_image": flops.train / 1e9,
    }


def _log_result(log: RunLogger, plan: Plan, data: Dataset, result: FitResult, n_params: int) -> None:
    """Final metrics, compute and every artifact the report needs."""
    log.log_metrics(
        {
            **final_scores(result.evaluation, data),
            "final_train_accuracy": result.history[-1].train_accuracy,
            "n_parameters": n_params,
            "train_seconds": result.train_seconds,
            "train_images_per_second": result.images_per_second,
            "epochs_run": len(result.history),
            **compute_metrics(plan.flops, result, len(data.y_val)),
        }
    )
    log_artifacts(log, plan.spec, data, result.evaluation, result.y_pred, result.sampled_per_epoch, result.model)

