"""Evaluate a logged model on another dataset or split: the library behind `harness eval`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.core.errors import HarnessError, SpecError
from harness.data.dataset import load_split
from harness.data.duplicates import find_duplicates, hash_images, summary
from harness.data.sources import SOURCES
from harness.models.build import rebuild_model
from harness.runs.artifacts import log_scores
from harness.runs.provenance import code_version
from harness.runs.trained import TrainedModel, load_trained, with_tta
from harness.spec.schema import DataSpec
from harness.suite.validate import unknown
from harness.train.device import resolve_device, to_tensor, use_channels_last
from harness.train.metrics import evaluate
from harness.train.scoring import predict

if TYPE_CHECKING:
    import torch

    from harness.data.dataset import Split
    from harness.data.duplicates import DuplicateReport
    from harness.spec.schema import DataSpec, ExperimentSpec
    from harness.tracking.logger import RunLogger
    from harness.tracking.write import Tracker
    from harness.train.metrics import Evaluation


Echo = Callable[[str], None]


KIND_EVAL = "eval"


@dataclass(frozen=True)
class ClassMatch:
    """The model's classes against the data's, by canonical name."""

    shared: tuple[str, ...]  # scored, in the model's output order
    not_in_model: tuple[str, ...]  # the data's classes the model cannot predict: images unscored
    not_in_data: tuple[str, ...]  # the model's classes the data lacks: outputs masked


@dataclass(frozen=True)
class Scored:
    """Predictions on the images of shared classes (`keep`), as indices into `classes.shared`."""

    classes: ClassMatch
    evaluation: Evaluation
    keep: np.ndarray  # bool per image of the split: its class is shared
    y_true: np.ndarray
    y_pred: np.ndarray


@dataclass(frozen=True)
class EvalOutcome:
    """One evaluation: what was scored, how well, and where it was logged."""

    run_id: str  # the new eval run
    trained_by: str  # the training run
    experiment: str
    dataset: str
    split: str
    classes: ClassMatch
    evaluation: Evaluation
    n_scored: int
    n_unscored: int  # images of classes the model does not know
    tta: str  # the test-time augmentation scored with (the run's own, or --tta)
    duplicates: dict[str, int] = field(default_factory=dict)  # against the model's training images


def match_classes(model_classes: tuple[str, ...], data_classes: tuple[str, ...]) -> ClassMatch:
    """Shared classes (model order) and those only one side knows."""
    return ClassMatch(
        shared=tuple(c for c in model_classes if c in data_classes),
        not_in_model=tuple(c for c in data_classes if c not in model_classes),
        not_in_data=tuple(c for c in model_classes if c not in data_classes),
    )


def evaluate_run(
    tracker: Tracker,
    run_ref: str,
    data: Mapping[str, Any],
    *,
    project_root: Path,
    cache_dir: Path,
    split: str | None = None,
    dedupe: str | None = None,
    tta: str | None = None,
    echo: Echo = lambda _msg: None,
) -> EvalOutcome:
    """Score the model of `run_ref` (a run id, or an experiment's newest FINISHED training run)
    on a split of the dataset `data` ({"source", "path"}), and log it as an eval run.

    `tta` replaces the run's test-time augmentation (train.tta) for this scoring only."""

    with tempfile.TemporaryDirectory(prefix="harness-eval-") as tmp:
        trained = with_tta(load_trained(tracker, run_ref, Path(tmp)), tta)
        model_classes = ", ".join(trained.class_names)
        echo(f"model: run {trained.run_id} ({trained.experiment}, {trained.spec.model.name}), classes {model_classes}")
        data_spec = eval_data_spec(trained.spec.data, data, dedupe)
        images = load_split(data_spec, project_root, cache_dir, split, progress=True)
        echo(f"data {images.name}: {len(images.y)} {images.split} images, classes {', '.join(images.class_names)}")
        images, duplicates, dup_detail = _against_training(images, trained, data_spec)
        classes = match_classes(trained.class_names, images.class_names)
        if not classes.shared:
            raise HarnessError(
                f"{images.root}: shares no class with the model of run {trained.run_id} "
                f"(data: {', '.join(images.class_names)}; model: {', '.join(trained.class_names)})"
            )
        model = rebuild_model(trained.spec, len(trained.class_names), trained.weights, trained.run_id)
    keep, y_true = _scored(images, classes)
    columns = [trained.class_names.index(c) for c in classes.shared]
    y_pred = predict_shared(model, images.x[keep], columns, trained.spec)

    scored = Scored(classes, evaluate(y_true, y_pred, classes.shared), keep, y_true, y_pred)
    run_id = _log(tracker, project_root, trained, images, scored, duplicates, dup_detail, data_spec)
    return EvalOutcome(
        run_id=run_id,
        trained_by=trained.run_id,
        experiment=trained.experiment,
        dataset=images.name,
        split=images.split,
        classes=classes,
        evaluation=scored.evaluation,
        n_scored=int(keep.sum()),
        n_unscored=int((~keep).sum()),
        duplicates=duplicates,
        tta=trained.spec.train.tta,
    )


def eval_data_spec(trained: DataSpec, data: Mapping[str, Any], dedupe: str | None) -> DataSpec:
    """The model's data settings (image size, channels, blank/duplicate handling) on another
    source, keeping every class that source has (the broadest class set)."""
    from pydantic import ValidationError

    values = {**trained.model_dump(), **data, "classes": "all11"}
    if dedupe is not None:
        values["dedupe"] = dedupe
    try:
        spec = DataSpec.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise SpecError(f"--data: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
    if spec.source not in SOURCES:
        raise SpecError(f"--data: {unknown(SOURCES, spec.source)}")
    return spec


def predict_shared(model: torch.nn.Module, x: np.ndarray, columns: list[int], spec: ExperimentSpec) -> np.ndarray:
    """Predicted class per image among `columns` of the model's outputs (indices into `columns`)."""
    import torch

    class Columns(torch.nn.Module):
        """Keeps only the shared classes' logits, so the argmax never names an absent class."""

        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("index", torch.tensor(columns, dtype=torch.long))

        def forward(self, logits: torch.Tensor) -> torch.Tensor:
            return logits.index_select(1, self.index)

    device = resolve_device(spec.train.device)
    channels_last = use_channels_last(spec, device)
    restricted = torch.nn.Sequential(model, Columns()).to(device)
    if channels_last:
        restricted = restricted.to(memory_format=torch.channels_last)
    _, y_pred = predict(restricted, to_tensor(x, device), None, spec, device, channels_last=channels_last)
    return y_pred


def _scored(images: Split, classes: ClassMatch) -> tuple[np.ndarray, np.ndarray]:
    """Which images are scored (their class is shared) and their labels as shared indices."""
    to_shared = np.array([classes.shared.index(c) if c in classes.shared else -1 for c in images.class_names])
    labels = to_shared[images.y] if len(images.y) else np.zeros(0, np.int64)
    keep = labels >= 0
    return keep, labels[keep].astype(np.int64)


def _against_training(
    images: Split, trained: TrainedModel, spec: DataSpec
) -> tuple[Split, dict[str, int], dict[str, Any]]:
    """Count (and with "drop", remove) images that copy one of the model's training images."""
    from dataclasses import replace

    if spec.dedupe == "none" or trained.train_hashes is None:
        return images, {}, {}
    # Hash the images at the side the training images were hashed at: CANONICAL_PX (hash_x),
    # or the model's own size (runs logged before hashing became size-independent: side 0).
    canonical = images.hash_x is not None and images.hash_x.shape[1] == trained.train_hashes.side
    hashes = hash_images(images.hash_x if canonical else images.x, images.y, images.class_names)
    report: DuplicateReport = find_duplicates(
        trained.train_hashes, {images.split: hashes}, max_distance=spec.dedupe_distance
    )
    pair = f"train_{images.split}"
    counts = {
        "eval_dup_exact": report.exact_cross[pair],
        "eval_dup_near": report.near_cross[pair],
        "eval_dup_conflicting_labels": report.conflicting_labels,
        "eval_duplicates_dropped": 0,
    }
    detail = summary(report, {images.split: images.names}, spec.dedupe)
    if spec.dedupe == "drop":
        keep = np.ones(len(images.y), bool)
        keep[report.drop[images.split]] = False
        counts["eval_duplicates_dropped"] = int((~keep).sum())
        names = [n for n, k in zip(images.names, keep, strict=True) if k]
        hash_x = None if images.hash_x is None else images.hash_x[keep]
        images = replace(images, x=images.x[keep], y=images.y[keep], names=names, hash_x=hash_x)
        if len(images.y) == 0:
            raise HarnessError(f"{images.root}: every {images.split} image copies a training image")
    return images, counts, detail


def _log(
    tracker: Tracker,
    project_root: Path,
    trained: TrainedModel,
    images: Split,
    scored: Scored,
    duplicates: dict[str, int],
    dup_detail: dict[str, Any],
    data_spec: DataSpec,
) -> str:
    """A new eval run in the suite's experiment: metrics, tags and the confusion artifacts."""
    classes, keep = scored.classes, scored.keep
    tags = _eval_tags(project_root, trained, images, classes, data_spec)
    params = _eval_params(trained, images, data_spec)
    name = f"{trained.experiment}@{images.name}:{images.split}"
    with tracker.run(name, tags, params) as log:
        log.log_dataset(images.name, str(images.root), images.digest, context="evaluation")
        log.log_metrics(
            {
                "eval_accuracy": scored.evaluation.accuracy,
                "eval_balanced_accuracy": scored.evaluation.balanced_accuracy,
                "eval_macro_f1": scored.evaluation.macro_f1,
                "eval_images": int(keep.sum()),
                "eval_images_unscored": int((~keep).sum()),
                "data_skipped": sum(images.quality.values()),
                **duplicates,
            }
        )
        _log_artifacts(log, trained, images, scored)
        log.log_json({"skipped": images.quality, "examples": images.quality_examples}, "data/quality.json")
        if dup_detail:
            log.log_json(dup_detail, "data/duplicates.json")
        return log.run_id


def _eval_tags(
    project_root: Path, trained: TrainedModel, images: Split, classes: ClassMatch, data_spec: DataSpec
) -> dict[str, str]:
    """What an eval run scored, and against which training run (docs/design.md, "Evaluation runs")."""
    dedupe = data_spec.dedupe
    if dedupe != "none" and trained.train_hashes is None:
        dedupe = "unavailable: the training run logged no data/train_hashes.npz"
    return {
        "harness.kind": KIND_EVAL,
        "harness.trained_by": trained.run_id,
        "harness.experiment": trained.experiment,
        "harness.git_commit": code_version(project_root),
        "harness.eval_dataset": images.name,
        "harness.eval_dataset_path": str(images.root),
        "harness.eval_dataset_digest": images.digest,
        "harness.eval_split": images.split,
        "harness.eval_classes": ",".join(classes.shared),
        # Named in both directions: the data's classes the model cannot predict (their images
        # are not scored), and the model's classes the data lacks (their outputs are masked).
        "harness.classes_not_in_model": ",".join(classes.not_in_model),
        "harness.classes_not_in_data": ",".join(classes.not_in_data),
        "harness.dedupe": dedupe,
    }


def _eval_params(trained: TrainedModel, images: Split, data_spec: DataSpec) -> dict[str, str]:
    """How the images were prepared and scored."""
    return {
        "eval.source": data_spec.source,
        "eval.path": str(images.root),
        "eval.split": images.split,
        "eval.dedupe": data_spec.dedupe,
        "eval.dedupe_distance": str(data_spec.dedupe_distance),
        "data.image_size": str(data_spec.image_size),
        "data.channels": str(data_spec.channels),
        "model.name": trained.spec.model.name,
        "eval.tta": trained.spec.train.tta,
    }


def _log_artifacts(log: RunLogger, trained: TrainedModel, images: Split, scored: Scored) -> None:
    """The scores (runs.artifacts.log_scores, each image's file named) and the class match."""
    classes, keep = scored.classes, scored.keep
    title = f"{trained.experiment} on {images.name} ({images.split} split, shared classes, row-normalised)"
    names = [n for n, k in zip(images.names, keep, strict=True) if k]
    log_scores(log, scored.evaluation, scored.y_true, scored.y_pred, title, names)
    log.log_json(
        {
            "model_classes": list(trained.class_names),
            "data_classes": list(images.class_names),
            "scored_classes": list(classes.shared),
            "classes_not_in_model": list(classes.not_in_model),
            "classes_not_in_data": list(classes.not_in_data),
            "images_scored": int(keep.sum()),
            "images_unscored": int((~keep).sum()),
            "scored_per_class": np.bincount(scored.y_true, minlength=len(classes.shared)).tolist(),
        },
        "eval/classes.json",
    )


