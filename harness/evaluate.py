"""Evaluate a logged model on another dataset or split: the library behind `harness eval`.

A training run holds everything needed: its resolved spec (`spec.yaml`), its weights
(`model/weights.pt`, whose input layer carries the training set's standardisation or ZCA
statistics as buffers), its class names (`data/class_counts.json`) and, when it checked
duplicates, its training images' hashes (`data/train_hashes.npz`).

The other dataset is preprocessed as the model's was (image size, channels) but keeps its own
classes. Only the classes both sides know are scored: images of classes the model has no
output for are left out, and the model's outputs for classes the data lacks are masked before
the argmax, so a prediction is always a class that could be right. Images that copy one of the
model's training images (exactly, or within the spec's pHash distance) are counted, and
dropped when `data.dedupe` (or the caller) says "drop".

The result is a new MLflow run in the suite's experiment, tagged `harness.kind=eval` and
`harness.trained_by=<training run id>`; it is not a nested child of the training run, and the
report, which reads only `harness.kind=train` runs, ignores it.
"""

from __future__ import annotations

import io
import json
import pickle
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.errors import HarnessError, TrackingError
from harness.tracking.write import first_line

if TYPE_CHECKING:
    import torch

    from harness.data.dataset import Split
    from harness.data.duplicates import DuplicateReport, ImageHashes
    from harness.metrics import Evaluation
    from harness.spec import DataSpec, ExperimentSpec
    from harness.tracking.write import RunLogger, Tracker

Echo = Callable[[str], None]
KIND_EVAL = "eval"


@dataclass(frozen=True)
class TrainedModel:
    """What a training run left behind that evaluation needs."""

    run_id: str
    experiment: str  # the spec name
    spec: ExperimentSpec
    class_names: tuple[str, ...]
    weights: Path
    train_hashes: ImageHashes | None  # absent for runs trained with data.dedupe: none


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
    from harness.data.dataset import load_split

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
    from harness.metrics import evaluate

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


def with_tta(trained: TrainedModel, tta: str | None) -> TrainedModel:
    """`trained` with its spec's test-time augmentation replaced by `tta` (None: unchanged)."""
    from dataclasses import replace

    from pydantic import ValidationError

    from harness.errors import SpecError

    if tta is None or tta == trained.spec.train.tta:
        return trained
    current = trained.spec.train
    try:
        train = type(current).model_validate({**current.model_dump(), "tta": tta})
    except ValidationError as exc:
        raise SpecError(f"tta: {exc.errors()[0]['msg']} (got {tta!r})") from None
    return replace(trained, spec=trained.spec.model_copy(update={"train": train}))


def eval_data_spec(trained: DataSpec, data: Mapping[str, Any], dedupe: str | None) -> DataSpec:
    """The model's data settings (image size, channels, blank/duplicate handling) on another
    source, keeping every class that source has (the broadest class set)."""
    from pydantic import ValidationError

    from harness.errors import SpecError
    from harness.spec import DataSpec

    values = {**trained.model_dump(), **data, "classes": "all11"}
    if dedupe is not None:
        values["dedupe"] = dedupe
    try:
        return DataSpec.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise SpecError(f"--data: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None


# ----------------------------------------------------------------------------- the trained model


def load_trained(tracker: Tracker, run_ref: str, folder: Path) -> TrainedModel:
    """Find the training run and download its spec, class names, weights and hashes into `folder`."""
    import yaml

    from harness.spec import ExperimentSpec

    run = tracker.find_training_run(run_ref)
    run_id = run.info.run_id
    files = tracker.download_for_eval(run_id, folder)
    try:
        spec = ExperimentSpec.model_validate(yaml.safe_load(files["spec.yaml"].read_text()))
        class_names = tuple(json.loads(files["data/class_counts.json"].read_text())["labels"])
    except Exception as exc:  # noqa: BLE001 - malformed or from an incompatible harness version
        raise TrackingError(f"run {run_id}: cannot read its spec or class names: {first_line(exc)}") from None
    hashes = None
    if "data/train_hashes.npz" in files:
        from harness.data.duplicates import ImageHashes

        with np.load(files["data/train_hashes.npz"], allow_pickle=False) as npz:
            hashes = ImageHashes.from_npz(npz)
    return TrainedModel(run_id, spec.name, spec, class_names, files["model/weights.pt"], hashes)


def rebuild_model(spec: ExperimentSpec, num_classes: int, weights: Path, run_id: str = "") -> torch.nn.Module:
    """The spec's network behind a placeholder input layer, then the logged state_dict loaded
    into both: the input layer's statistics are buffers, so they come with the weights."""
    import torch

    from harness.inputs import standardize_layer, zca_layer
    from harness.models import create_model

    data = spec.data
    net = create_model(
        spec.model.name, num_classes=num_classes, in_channels=data.channels, image_size=data.image_size,
        **spec.model.params,
    )  # fmt: skip
    if data.whitening == "zca":
        dim = data.channels * data.image_size**2
        first = zca_layer(np.zeros(dim, np.float32), np.zeros((dim, dim), np.float32))
    else:
        first = standardize_layer(np.zeros(data.channels, np.float32), np.ones(data.channels, np.float32))
    model = torch.nn.Sequential(first, net)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # not plain tensors: never unpickled with code
        raise TrackingError(f"run {run_id}: model/weights.pt refused by the safe loader: {first_line(exc)}") from None
    try:
        model.load_state_dict(state)
    except (RuntimeError, OSError, ValueError) as exc:
        raise TrackingError(f"run {run_id}: model/weights.pt does not fit its spec: {first_line(exc)}") from None
    return model.eval()


# ----------------------------------------------------------------------------- scoring


def predict_shared(model: torch.nn.Module, x: np.ndarray, columns: list[int], spec: ExperimentSpec) -> np.ndarray:
    """Predicted class per image among `columns` of the model's outputs (indices into `columns`)."""
    import torch

    from harness.train import predict, resolve_device, to_tensor, use_channels_last

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

    from harness.data.duplicates import find_duplicates, hash_images, summary

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


# ----------------------------------------------------------------------------- logging


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
    from harness.runner import code_version

    classes, keep = scored.classes, scored.keep
    dedupe = data_spec.dedupe
    if dedupe != "none" and trained.train_hashes is None:
        dedupe = "unavailable: the training run logged no data/train_hashes.npz"
    tags = {
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
    params = {
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


def _log_artifacts(log: RunLogger, trained: TrainedModel, images: Split, scored: Scored) -> None:
    """The confusion matrix (JSON, CSV, HTML), classification report, predictions and class match."""
    from harness.figures import confusion_heatmap
    from harness.metrics import confusion_csv

    classes, keep = scored.classes, scored.keep
    confusion = scored.evaluation.confusion_dict()
    log.log_json(confusion, "eval/confusion_matrix.json")
    log.log_text(confusion_csv(confusion), "eval/confusion_matrix.csv")
    title = f"{trained.experiment} on {images.name} ({images.split} split, shared classes, row-normalised)"
    figure = confusion_heatmap(confusion["labels"], confusion["counts"], confusion["normalized"], title)
    log.log_text(figure.to_html(include_plotlyjs=True, full_html=True), "eval/confusion_matrix.html")
    log.log_json(scored.evaluation.report, "eval/classification_report.json")
    names = [n for n, k in zip(images.names, keep, strict=True) if k]
    log.log_text(_predictions_csv(scored.y_true, scored.y_pred, names), "eval/predictions.csv")
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


def _predictions_csv(y_true: np.ndarray, y_pred: np.ndarray, names: list[str]) -> str:
    """index,y_true,y_pred (indices into the scored classes), then the image's file."""
    out = io.StringIO()
    out.write("index,y_true,y_pred,image\n")
    for i, (t, p, name) in enumerate(zip(y_true, y_pred, names, strict=True)):
        quoted = '"' + name.replace('"', '""') + '"' if ("," in name or '"' in name) else name
        out.write(f"{i},{t},{p},{quoted}\n")
    return out.getvalue()
