"""A model reference turned into a ready predictor, and the registration of a run's model.

Wherever a model is named, a run id, an experiment name (its newest FINISHED training run), a
`runs:/RUN_ID` URI or a registered `models:/NAME@ALIAS` / `models:/NAME/VERSION` is accepted.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.models.build import rebuild_model
from harness.predict.faces import FacePredictor
from harness.runs.artifacts import model_card
from harness.runs.trained import TrainedModel, load_trained
from harness.tracking.registry import Registered, best_run, register, resolve_run

if TYPE_CHECKING:
    from harness.tracking.write import Tracker


@dataclass(frozen=True)
class Loaded:
    """A trained model ready to predict with, and the run it came from."""

    trained: TrainedModel
    model: Any  # torch module with its input layer, or an onnxruntime-backed one


@contextmanager
def loaded_model(tracker: Tracker, ref: str, runtime: str = "torch") -> Iterator[Loaded]:
    """The model `ref` names, downloaded into a temporary folder that lives as long as the block."""
    from harness.predict.onnx import export_onnx, onnx_module

    run = resolve_run(tracker, ref)
    with tempfile.TemporaryDirectory(prefix="harness-predict-") as tmp:
        trained = load_trained(tracker, run.info.run_id, Path(tmp))
        model = rebuild_model(trained.spec, len(trained.class_names), trained.weights, trained.run_id)
        if runtime == "onnx":
            model = onnx_module(export_onnx(model, trained.spec, trained.class_names, Path(tmp) / "model.onnx"))
        yield Loaded(trained, model)


def predictor(loaded: Loaded, detector: str) -> FacePredictor:
    """Faces-and-labels from a loaded model."""
    return FacePredictor(loaded.model, loaded.trained.spec, loaded.trained.class_names, detector)


def register_model(
    tracker: Tracker, ref: str | None, name: str, *, best: str | None, alias: str | None, force: bool
) -> Registered:
    """Register the run `ref` names (or, with `best`, the best run by that validation metric)."""
    run = best_run(tracker, best, ref) if best else resolve_run(tracker, ref or "")
    with tempfile.TemporaryDirectory(prefix="harness-register-") as tmp:
        trained = load_trained(tracker, run.info.run_id, Path(tmp))
        files = {"weights": trained.weights, "spec": trained.files["spec.yaml"],
                 "classes": trained.files["data/class_counts.json"]}  # fmt: skip
        card = model_card(trained.spec, trained.class_names)
        return register(tracker, run, name, files, card, alias=alias, force=force)
