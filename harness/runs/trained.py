"""What a finished training run left behind, loaded back: spec, class names, weights, hashes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harness.core.errors import SpecError, TrackingError, first_line
from harness.data.duplicates import ImageHashes
from harness.spec.schema import ExperimentSpec

if TYPE_CHECKING:
    from harness.tracking.write import Tracker


@dataclass(frozen=True)
class TrainedModel:
    """What a training run left behind that evaluation needs."""

    run_id: str
    experiment: str  # the spec name
    spec: ExperimentSpec
    class_names: tuple[str, ...]
    weights: Path
    train_hashes: ImageHashes | None  # absent for runs trained with data.dedupe: none
    files: dict[str, Path] = field(default_factory=dict)  # every file downloaded, by artifact path


def with_tta(trained: TrainedModel, tta: str | None) -> TrainedModel:
    """`trained` with its spec's test-time augmentation replaced by `tta` (None: unchanged)."""
    from dataclasses import replace

    from pydantic import ValidationError

    if tta is None or tta == trained.spec.train.tta:
        return trained
    current = trained.spec.train
    try:
        train = type(current).model_validate({**current.model_dump(), "tta": tta})
    except ValidationError as exc:
        raise SpecError(f"tta: {exc.errors()[0]['msg']} (got {tta!r})") from None
    return replace(trained, spec=trained.spec.model_copy(update={"train": train}))


def load_trained(tracker: Tracker, run_ref: str, folder: Path) -> TrainedModel:
    """Find the training run and download its spec, class names, weights and hashes into `folder`."""
    import yaml

    run = tracker.find_training_run(run_ref)
    run_id = run.info.run_id
    files = tracker.download_for_eval(run_id, folder)
    try:
        spec = ExperimentSpec.model_validate(yaml.safe_load(files["spec.yaml"].read_text()))
        class_names = tuple(json.loads(files["data/class_counts.json"].read_text())["labels"])
    except Exception as exc:  # noqa: BLE001 - malformed or from an incompatible harness version
        raise TrackingError(
            f"run {run_id}: its model's spec or class names (spec.yaml, data/class_counts.json) are not ones this "
            f"harness knows, so neither is its preprocessing: {first_line(exc)}"
        ) from None
    hashes = None
    if "data/train_hashes.npz" in files:
        with np.load(files["data/train_hashes.npz"], allow_pickle=False) as npz:
            hashes = ImageHashes.from_npz(npz)
    return TrainedModel(run_id, spec.name, spec, class_names, files["model/weights.pt"], hashes, files)
