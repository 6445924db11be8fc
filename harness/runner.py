"""Run experiments: spec → dataset → model → fit → metrics → MLflow. The one training path.

`harness run` comes through `run_experiment`; sweep trials call `train_and_log` with RunHooks
(extra tags, an early-stop check for pruning) — the same code path, not a second trainer. A spec
that differs from a finished run only in how the model is scored (spec.EVAL_ONLY: test-time
augmentation, evaluation batch size) re-scores that run's weights (`rescore_and_log`): training
them again would give the same weights.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.locks import file_lock
from harness.testhooks import pause_point
from harness.tracking.write import KIND_TRAIN, first_line

if TYPE_CHECKING:
    import numpy as np

    from harness.data.dataset import Dataset
    from harness.data.duplicates import Dedupe
    from harness.metrics import Evaluation
    from harness.spec import ExperimentSpec, Suite
    from harness.tracking.write import RunLogger, Tracker
    from harness.train import EpochStats, FitResult

Echo = Callable[[str], None]
EXAMPLES_PER_ROW = 8
INTENDED_SKIPS = frozenset({"class_not_in_set", "blank_image", "duplicate_of_train"})
MAX_NAMED = 5  # unreadable images named one a line; the rest are counted
# What a re-scored run takes over from the run that trained its weights: the cost of training them.
TRAINING_METRICS = ("final_train_accuracy", "n_parameters", "train_seconds", "train_images_per_second")


@dataclass(frozen=True)
class RunOutcome:
    """What happened to one experiment: trained, or skipped and why."""

    name: str
    status: str  # "finished" | "rescored" (another run's weights, scored as this spec says) | "skipped"
    run_id: str | None
    val_accuracy: float | None = None
    reason: str = ""


@dataclass(frozen=True)
class RunHooks:
    """How a caller (a sweep trial) adapts one tracked training run without a second trainer."""

    kind: str = "train"  # the harness.kind tag: "train" for `harness run`, "trial" for sweeps
    tags: Mapping[str, str] = field(default_factory=dict)  # extra tags, e.g. mlflow.parentRunId
    run_name: str | None = None  # default: the spec's name
    # Called with the open run before training starts (e.g. to note its id on an Optuna trial).
    started: Callable[[RunLogger], None] | None = None
    # Sees each epoch's stats after they are logged; True stops training (Optuna pruning).
    stop: Callable[[EpochStats], bool] | None = None
    # Called with the open run and the fit result just before the run ends FINISHED.
    before_end: Callable[[RunLogger, FitResult], None] | None = None


@dataclass(frozen=True)
class RunContext:
    """Where runs read data from and write results to."""

    tracker: Tracker
    project_root: Path
    cache_dir: Path
    force: bool = False
    echo: Echo = lambda _msg: None


def code_version(root: Path) -> str:
    """The git commit of the code (with '-dirty' if it has uncommitted changes), or 'unknown'."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root, capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def run_key(spec: ExperimentSpec, dataset: Dataset) -> str:
    """Identity of a training run: same spec on the same data → same key → skipped if finished."""
    return hashlib.sha256(f"{spec.spec_hash()}:{dataset.digest}".encode()).hexdigest()[:16]


def weights_key(spec: ExperimentSpec, dataset: Dataset) -> str:
    """Identity of the weights a run trains: its run key less the evaluation-only settings."""
    return hashlib.sha256(f"{spec.weights_hash()}:{dataset.digest}".encode()).hexdigest()[:16]


def run_suite(
    suite: Suite, specs: Sequence[ExperimentSpec], ctx: RunContext, datasets: dict[str, Dataset] | None = None
) -> list[RunOutcome]:
    """Run each spec in order, sharing loaded datasets between specs with the same data section.

    `datasets` (from `load_datasets`) are used where given; the others load on first use.
    """
    reaped = ctx.tracker.reap_stale_runs()
    if reaped:
        ctx.echo(f"marked {len(reaped)} run(s) of dead processes FAILED: {', '.join(reaped)}")
    datasets = dict(datasets or {})
    outcomes = []
    # Repeated seeds become separate runs; their run keys differ because train.seed does.
    seeded = [one for spec in specs for one in spec.seed_specs()]
    for i, spec in enumerate(seeded, start=1):
        repeat = f" (seed {spec.train.seed})" if spec.train.seeds > 1 else ""
        ctx.echo(f"[{i}/{len(seeded)}] {spec.name}{repeat}: {spec.description}")
        key = spec.data.model_dump_json()
        if key not in datasets:
            datasets[key] = load_data(spec, ctx.project_root, ctx.cache_dir, ctx.echo)
        outcomes.append(run_experiment(suite, spec, datasets[key], ctx))
    return outcomes


def load_datasets(
    specs: Sequence[ExperimentSpec], project_root: Path, cache_dir: Path, echo: Echo
) -> dict[str, Dataset]:
    """Every distinct dataset the specs train on, keyed as `run_suite` expects.

    `harness run` loads them before it touches the tracking store, so bad data is reported
    before a store or an MLflow experiment is created.
    """
    datasets: dict[str, Dataset] = {}
    for spec in specs:
        key = spec.data.model_dump_json()
        if key not in datasets:
            datasets[key] = load_data(spec, project_root, cache_dir, echo)
    return datasets


def load_data(spec: ExperimentSpec, project_root: Path, cache_dir: Path, echo: Echo) -> Dataset:
    """Load the spec's dataset through the cache; each reason for skipping is named, with an example."""
    from harness.data.dataset import load_dataset

    data = load_dataset(spec.data, project_root, cache_dir, progress=True)
    echo(
        f"  data {data.name}: {len(data.y_train)} train / {len(data.y_val)} validation images, "
        f"{data.num_classes} classes"
    )
    for reason, count in sorted(data.quality.items()):
        # Leaving out another class set's images or blank faces is asked for; the rest is damage.
        kind = "note" if reason in INTENDED_SKIPS else "warning"
        example = data.quality_examples.get(reason)
        if reason == "unreadable" and data.unreadable:
            for name, why in list(data.unreadable.items())[:MAX_NAMED]:
                echo(f"  warning: skipped unreadable image {name}: {why}")
            if count > MAX_NAMED:
                echo(f"  warning: skipped {count - MAX_NAMED} more unreadable images (data/quality.json)")
            continue
        echo(f"  {kind}: skipped {count} ({reason})" + (f", e.g. {example}" if example else ""))
    if data.duplicates is not None:
        echo(f"  {data.duplicates.describe()}")
    return data


def run_experiment(
    suite: Suite, spec: ExperimentSpec, data: Dataset, ctx: RunContext, hooks: RunHooks = RunHooks()
) -> RunOutcome:
    """Train and track one spec unless an identical run already FINISHED (or is running now)."""
    key = run_key(spec, data)
    if not ctx.force and (done := ctx.tracker.find_finished(key)):
        ctx.echo(f"  skipped: finished run {done} has the same spec and data (--force retrains)")
        # Descriptions, comparison groups and ladder rungs are not part of what is trained: the
        # suite file may have changed them since, and the report reads them from the run.
        ctx.tracker.refresh_tags(done, describing_tags(spec))
        return RunOutcome(spec.name, "skipped", done, reason="already finished")
    with file_lock(ctx.cache_dir / "locks" / f"{key}.lock", blocking=False) as acquired:
        if not acquired:
            ctx.echo("  skipped: another harness process is training this spec right now")
            return RunOutcome(spec.name, "skipped", None, reason="running elsewhere")
        # Re-check under the lock: a concurrent process may have just finished it.
        if not ctx.force and (done := ctx.tracker.find_finished(key)):
            ctx.echo(f"  skipped: finished run {done} has the same spec and data (finished a moment ago)")
            return RunOutcome(spec.name, "skipped", done, reason="already finished")
        wkey = weights_key(spec, data)
        if not ctx.force and (source := ctx.tracker.find_finished(wkey, tag="weights_key")):
            rescored = rescore_and_log(suite, spec, data, key, source, ctx, hooks)
            if rescored is not None:
                return rescored
        return train_and_log(suite, spec, data, key, ctx, hooks)


def describing_tags(spec: ExperimentSpec) -> dict[str, str]:
    """The tags that describe an experiment (from the suite file) rather than what it trained."""
    tags = {"harness.comparisons": ",".join(spec.tags), "harness.description": spec.description}
    if spec.iteration is not None:
        tags["harness.paper_iteration"] = str(spec.iteration)
    if spec.paper_val_accuracy is not None:
        tags["harness.paper_val_accuracy"] = str(spec.paper_val_accuracy)
    if spec.ladder is not None:
        tags["harness.ladder_rung"] = str(spec.ladder)
    return tags


def _tags(suite: Suite, spec: ExperimentSpec, data: Dataset, key: str, root: Path) -> dict[str, str]:
    tags = {
        "harness.experiment": spec.name,
        "harness.spec_hash": spec.spec_hash(),
        "harness.run_key": key,
        "harness.weights_key": weights_key(spec, data),
        "harness.git_commit": code_version(root),
        "harness.dataset": data.name,
        "harness.dataset_digest": data.digest,
        "harness.eval_split": "validation",
        "harness.seed": str(spec.train.seed),
        "harness.kind": KIND_TRAIN,
        "harness.suite_file": str(suite.path),
    }
    tags.update(describing_tags(spec))
    if suite.profile:
        tags["harness.profile"] = suite.profile
    return tags


def build_model(spec: ExperimentSpec, data: Dataset) -> Any:
    """The registered model for `spec`, behind an input layer fitted on the training images."""
    import torch

    from harness.inputs import with_input_layer
    from harness.models import create_model

    torch.manual_seed(spec.train.seed)
    net = create_model(
        spec.model.name,
        num_classes=data.num_classes,
        in_channels=spec.data.channels,
        image_size=spec.data.image_size,
        **spec.model.params,
    )
    return with_input_layer(net, data.x_train, spec.data.whitening, spec.train.seed)


def train_and_log(
    suite: Suite, spec: ExperimentSpec, data: Dataset, key: str, ctx: RunContext, hooks: RunHooks = RunHooks()
) -> RunOutcome:
    """Build, train and evaluate `spec` inside one tracked run (no skip check: see run_experiment)."""
    from harness.train import fit, resolve_device, resolve_precision

    device = resolve_device(spec.train.device)
    precision = resolve_precision(spec.train.precision, device)
    model = build_model(spec, data)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    tags = {
        **_tags(suite, spec, data, key, ctx.project_root),
        "harness.device": device,
        "harness.precision": precision,
        "harness.kind": hooks.kind,
        **hooks.tags,
    }
    with ctx.tracker.run(hooks.run_name or spec.name, tags, spec.flat_params()) as log:
        ctx.echo(f"  run {log.run_id} on {device} ({precision}), {n_params:,} parameters")
        if hooks.started is not None:
            hooks.started(log)
        _log_inputs(log, spec, data)

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
    from harness.metrics import evaluate
    from harness.train import resolve_device, resolve_precision

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
        **_tags(suite, spec, data, key, ctx.project_root),
        "harness.device": device,
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
        _log_inputs(log, spec, data)
        last = _log_training_curve(log, epochs) or spec.train.epochs
        scores = {"val_loss": val_loss, "val_accuracy": ev.accuracy}
        scores |= {"val_balanced_accuracy": ev.balanced_accuracy, "val_macro_f1": ev.macro_f1}
        log.log_epoch(scores, step=last)
        taken = {name: final[name] for name in TRAINING_METRICS if name in final}
        log.log_metrics({**_final_scores(ev, data), **taken, "rescore_seconds": seconds})
        _log_artifacts(log, spec, data, ev, y_pred, sampled, model)
    ctx.echo(f"  done: val accuracy {ev.accuracy:.3f}, balanced {ev.balanced_accuracy:.3f}, macro-F1 {ev.macro_f1:.3f}")
    return RunOutcome(spec.name, "rescored", log.run_id, val_accuracy=ev.accuracy, reason=f"weights of {source}")


def _load_source(spec: ExperimentSpec, data: Dataset, source: str, ctx: RunContext) -> tuple[Any, ...] | None:
    """The source run's model, first-epoch class counts, final metrics and per-epoch metrics."""
    from harness.errors import TrackingError
    from harness.evaluate import rebuild_model

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

    from harness.train import predict, to_tensor, use_channels_last

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


def _log_inputs(log: RunLogger, spec: ExperimentSpec, data: Dataset) -> None:
    """The resolved spec, the dataset it ran on and what loading that dataset skipped."""
    log.log_text(spec.to_yaml(), "spec.yaml")
    log.log_dataset(data.name, str(data.root), data.digest)
    quality = {"skipped": data.quality, "examples": data.quality_examples}
    if data.unreadable:
        quality["unreadable"] = dict(list(data.unreadable.items())[:1000])
    if data.duplicates is not None:
        quality["duplicates"] = data.duplicates.report.counts()
    log.log_json(quality, "data/quality.json")


def _final_scores(ev: Evaluation, data: Dataset) -> dict[str, float]:
    return {
        "final_val_accuracy": ev.accuracy,
        "final_val_balanced_accuracy": ev.balanced_accuracy,
        "final_val_macro_f1": ev.macro_f1,
        "data_skipped": sum(data.quality.values()),
    }


def _log_result(log: RunLogger, spec: ExperimentSpec, data: Dataset, result: FitResult, n_params: int) -> None:
    """Final metrics and every artifact the report needs."""
    log.log_metrics(
        {
            **_final_scores(result.evaluation, data),
            "final_train_accuracy": result.history[-1].train_accuracy,
            "n_parameters": n_params,
            "train_seconds": result.train_seconds,
            "train_images_per_second": result.images_per_second,
        }
    )
    _log_artifacts(log, spec, data, result.evaluation, result.y_pred, result.sampled_per_epoch, result.model)


def _log_artifacts(
    log: RunLogger, spec: ExperimentSpec, data: Dataset, ev: Evaluation, y_pred: np.ndarray,
    sampled: list[int], model: Any,
) -> None:  # fmt: skip
    """Every artifact the report and `harness eval` read: scores, predictions, data, weights."""
    import torch

    from harness.figures import confusion_heatmap
    from harness.metrics import confusion_csv

    if data.duplicates is not None:
        _log_duplicates(log, data.duplicates)
    confusion = ev.confusion_dict()
    log.log_json(confusion, "eval/confusion_matrix.json")
    log.log_text(confusion_csv(confusion), "eval/confusion_matrix.csv")
    figure = confusion_heatmap(
        confusion["labels"], confusion["counts"], confusion["normalized"],
        f"{spec.name}: confusion matrix (validation split, row-normalised)",
    )
    log.log_text(figure.to_html(include_plotlyjs=True, full_html=True), "eval/confusion_matrix.html")
    log.log_json(ev.report, "eval/classification_report.json")
    log.log_text(_predictions_csv(data.y_val, y_pred), "eval/predictions.csv")
    log.log_json(
        {
            "labels": list(data.class_names),
            "train": data.class_counts(data.y_train),
            "sampled_per_epoch": sampled,
            "validation": data.class_counts(data.y_val),
        },
        "data/class_counts.json",
    )
    png, rows = examples_grid(data.x_train, data.y_train, data.class_names, seed=spec.train.seed)
    log.log_bytes(png, "data/examples.png")
    log.log_json({"labels": rows, "per_row": EXAMPLES_PER_ROW}, "data/examples.json")
    pause_point("artifacts")
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    log.log_bytes(buffer.getvalue(), "model/weights.pt")


def _log_duplicates(log: RunLogger, dedupe: Dedupe) -> None:
    """Duplicate counts as metrics, the images involved, and the training images' hashes.

    The hashes (~16 bytes an image: 400 kB for FER2013) let `harness eval` find copies of this
    model's training images in any other dataset without loading the training set again.
    """
    import numpy as np

    counts = {f"data_{k}": v for k, v in dedupe.report.counts().items()}
    log.log_metrics({**counts, "data_duplicates_dropped": dedupe.dropped("val")})
    log.log_json(dedupe.detail, "data/duplicates.json")
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **dedupe.train_hashes.to_npz())
    log.log_bytes(buffer.getvalue(), "data/train_hashes.npz")


def _predictions_csv(y_true: np.ndarray, y_pred: np.ndarray) -> str:
    rows = ["index,y_true,y_pred"] + [f"{i},{t},{p}" for i, (t, p) in enumerate(zip(y_true, y_pred, strict=True))]
    return "\n".join(rows) + "\n"


def examples_grid(
    x: np.ndarray, y: np.ndarray, class_names: Sequence[str], *, seed: int = 0, zoom: int = 2
) -> tuple[bytes, list[str]]:
    """A PNG with one row per class of up to 8 random preprocessed images (the paper's Figure 4)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    size = x.shape[1]
    rows = [c for c in range(len(class_names)) if (y == c).any()]
    sheet = np.full((len(rows) * size, EXAMPLES_PER_ROW * size, x.shape[3]), 255, np.uint8)
    for r, cls in enumerate(rows):
        members = np.flatnonzero(y == cls)
        picks = rng.choice(members, size=min(EXAMPLES_PER_ROW, len(members)), replace=False)
        for c, i in enumerate(picks):
            sheet[r * size : (r + 1) * size, c * size : (c + 1) * size] = x[i]
    image = Image.fromarray(sheet.squeeze(-1) if sheet.shape[2] == 1 else sheet)
    image = image.resize((image.width * zoom, image.height * zoom), Image.Resampling.NEAREST)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue(), [class_names[c] for c in rows]
