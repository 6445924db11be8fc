"""Trained networks as MLflow Models: logged with their run, the photo-level model, the registry.

Every training run logs its network as an MLflow 3 LoggedModel (`mlflow.pytorch` flavour) linked
to the run and its final metrics, so it appears in `mlflow ui`'s Models tab. Its metadata is what
a consumer needs to use it right: the class names in output order, the input size and channels,
the preprocessing and the test-time augmentation its reported score used (a peer's wrong class
order in its documentation cost 8 points of accuracy; here the order travels with the weights).

`harness register` logs a second model from the same run, the photo-level pyfunc
(harness.tracking.pyfunc), and registers it: a version of a registered model, with an alias.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.errors import TrackingError, first_line

NETWORK = "network"  # the LoggedModel name of a run's network
PHOTO = "photo"  # ... and of its photo-level model
MODEL_TYPE = "fer-classifier"
# A registered model's versions must agree on these: a new version with other classes or another
# input would silently change what `models:/NAME@alias` means (a "name clash").
CONTRACT = ("harness.class_names", "harness.image_size", "harness.channels")


@dataclass(frozen=True)
class ModelCard:
    """What a consumer needs to feed a model and read its output."""

    class_names: tuple[str, ...]
    image_size: int
    channels: int
    tta: str
    experiment: str
    spec_hash: str

    def metadata(self) -> dict[str, Any]:
        """The MLmodel file's metadata."""
        return {
            "class_names": list(self.class_names),
            "input": {"shape": ["batch", self.channels, self.image_size, self.image_size], "dtype": "float32",
                      "range": [0.0, 1.0], "layout": "NCHW"},
            "preprocessing": {"crop": "the face box (harness predict: detected, or the whole image)",
                              "resize": f"PIL bilinear to {self.image_size}x{self.image_size}",
                              "colour": "grey (1 channel)" if self.channels == 1 else "RGB (grey images replicated)",
                              "scale": "pixel / 255", "normalisation": "inside the model (its first layer)"},
            "output": "logits, one per class in class_names order",
            "tta": self.tta,
            "experiment": self.experiment,
            "spec_hash": self.spec_hash,
        }  # fmt: skip

    def tags(self) -> dict[str, str]:
        """The same facts as tags, which the registry checks new versions against."""
        return {"harness.class_names": ",".join(self.class_names), "harness.image_size": str(self.image_size),
                "harness.channels": str(self.channels), "harness.tta": self.tta,
                "harness.experiment": self.experiment}  # fmt: skip


def network_files(model: Any, card: ModelCard, example: Any) -> dict[str, bytes]:
    """The network saved as an MLflow pytorch model directory, as {relative path: bytes}."""
    import mlflow.pytorch
    import torch
    from mlflow.models import infer_signature

    model = model.eval().to("cpu").float().to(memory_format=torch.contiguous_format)
    with torch.inference_mode():
        output = model(torch.from_numpy(example)).numpy()
    signature = infer_signature(example, output)
    with tempfile.TemporaryDirectory(prefix="harness-model-") as tmp:
        path = Path(tmp) / NETWORK
        mlflow.pytorch.save_model(
            model, str(path), signature=signature, input_example=example, metadata=card.metadata(),
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
        )  # fmt: skip
        return _read_dir(path)


def log_model_event(client: Any, run_id: str, event: Mapping[str, Any]) -> str:
    """A "model" journal event sent: a LoggedModel of the run, its files, its metrics; its id."""
    from mlflow.entities import LoggedModelOutput, Metric

    run = client.get_run(run_id)
    model = client.create_logged_model(
        run.info.experiment_id, name=event["name"], source_run_id=run_id, tags=dict(event["tags"]),
        params={k: v for k, v in run.data.params.items()}, model_type=MODEL_TYPE,
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="harness-model-") as tmp:
        _write_dir(Path(tmp), event["files"])
        client.log_model_artifacts(model.model_id, tmp)
    client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=0)])
    metrics = [Metric(k, v, event["timestamp"], 0, model_id=model.model_id, run_id=run_id)
               for k, v in run.data.metrics.items() if k.startswith(("final_val_", "train_tflop"))]  # fmt: skip
    if metrics:
        client.log_batch(run_id, metrics=metrics, synchronous=True)
    client.finalize_logged_model(model.model_id, "READY")
    return model.model_id


def logged_model(client: Any, run_id: str, name: str) -> Any | None:
    """The run's LoggedModel called `name`, if it has one."""
    run = client.get_run(run_id)
    try:
        models = client.search_logged_models([run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'")
    except Exception as exc:  # noqa: BLE001 - a store too old for logged models
        raise TrackingError(f"run {run_id}: cannot list its models: {first_line(exc)}") from None
    return next((m for m in models if m.name == name), None)


def _read_dir(path: Path) -> dict[str, bytes]:
    return {str(f.relative_to(path)): f.read_bytes() for f in sorted(path.rglob("*")) if f.is_file()}


def _write_dir(path: Path, files: Mapping[str, bytes]) -> None:
    for name, data in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def example_input(x: Any) -> Any:
    """A model's input example: up to two preprocessed faces as float [0, 1], NCHW."""
    import numpy as np

    batch = np.ascontiguousarray(x[:2].transpose(0, 3, 1, 2), dtype=np.float32) / 255.0
    return batch

