"""The one writer of a run's artifacts: spec, data quality, scores, predictions, examples, weights.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from harness.analysis.figures import confusion_heatmap
from harness.core.testhooks import pause_point
from harness.tracking.models import NETWORK, ModelCard, example_input, network_files
from harness.train.metrics import confusion_csv

if TYPE_CHECKING:
    import numpy as np

    from harness.data.dataset import Dataset
    from harness.data.duplicates import Dedupe
    from harness.spec.schema import ExperimentSpec
    from harness.tracking.logger import RunLogger
    from harness.train.metrics import Evaluation


EXAMPLES_PER_ROW = 8


def log_inputs(log: RunLogger, spec: ExperimentSpec, data: Dataset) -> None:
    """The resolved spec, the dataset it ran on and what loading that dataset skipped."""
    log.log_text(spec.to_yaml(), "spec.yaml")
    log.log_dataset(data.name, str(data.root), data.digest)
    quality = {"skipped": data.quality, "examples": data.quality_examples}
    if data.unreadable:
        quality["unreadable"] = dict(list(data.unreadable.items())[:1000])
    if data.duplicates is not None:
        quality["duplicates"] = data.duplicates.report.counts()
    log.log_json(quality, "data/quality.json")


def final_scores(ev: Evaluation, data: Dataset) -> dict[str, float]:
    return {
        "final_val_accuracy": ev.accuracy,
        "final_val_balanced_accuracy": ev.balanced_accuracy,
        "final_val_macro_f1": ev.macro_f1,
        "data_skipped": sum(data.quality.values()),
    }


def log_artifacts(
    log: RunLogger, spec: ExperimentSpec, data: Dataset, ev: Evaluation, y_pred: np.ndarray,
    sampled: list[int], model: Any,
) -> None:  # fmt: skip
    """Every artifact the report and `harness eval` read: scores, predictions, data, weights."""
    import torch

    if data.duplicates is not None:
        _log_duplicates(log, data.duplicates)
    log_scores(log, ev, data.y_val, y_pred, f"{spec.name}: confusion matrix (validation split, row-normalised)")
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
    card = model_card(spec, data.class_names)
    log.log_model(NETWORK, network_files(model, card, example_input(data.x_val if len(data.x_val) else data.x_train)), card.tags())


def model_card(spec: ExperimentSpec, class_names: Sequence[str]) -> ModelCard:
    """What a consumer of `spec`'s trained model needs to know (harness.tracking.models)."""
    data = spec.data
    return ModelCard(tuple(class_names), data.image_size, data.channels, spec.train.tta, spec.name, spec.spec_hash())


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


def log_scores(
    log: RunLogger, ev: Evaluation, y_true: np.ndarray, y_pred: np.ndarray, title: str,
    names: Sequence[str] | None = None,
) -> None:  # fmt: skip
    """The scores of one evaluation: the confusion matrix (JSON, CSV, interactive HTML), the
    per-class report and the per-image predictions (with each image's file, when `names`)."""
    confusion = ev.confusion_dict()
    log.log_json(confusion, "eval/confusion_matrix.json")
    log.log_text(confusion_csv(confusion), "eval/confusion_matrix.csv")
    figure = confusion_heatmap(confusion["labels"], confusion["counts"], confusion["normalized"], title)
    log.log_text(figure.to_html(include_plotlyjs=True, full_html=True), "eval/confusion_matrix.html")
    log.log_json(ev.report, "eval/classification_report.json")
    log.log_text(predictions_csv(y_true, y_pred, names), "eval/predictions.csv")


def predictions_csv(y_true: np.ndarray, y_pred: np.ndarray, names: Sequence[str] | None = None) -> str:
    """index,y_true,y_pred (class indices), then the image's file when `names` are given."""
    out = io.StringIO()
    out.write("index,y_true,y_pred" + (",image" if names is not None else "") + "\n")
    for i, (t, p) in enumerate(zip(y_true, y_pred, strict=True)):
        if names is None:
            out.write(f"{i},{t},{p}\n")
            continue
        name = names[i]
        quoted = '"' + name.replace('"', '""') + '"' if ("," in name or '"' in name) else name
        out.write(f"{i},{t},{p},{quoted}\n")
    return out.getvalue()


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
