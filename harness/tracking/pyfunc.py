"""The photo-level model: an MLflow pyfunc whose input is photos and whose output is faces.

`mlflow.pyfunc.load_model("models:/fer@champion").predict(frame)` takes a DataFrame with an
`image` column (file bytes, or their base64 text), a list of those, or an array of pictures
(N, H, W[, C] uint8), and returns one row per face found: the picture's index, the box, the
label, the probability of every class (columns `p_<class>`, in the model's output order) and
`face_found` (false when no face was found and the whole picture was classified). A picture that
cannot be read gives one row with its `error`, and the others are still predicted. Detection,
cropping and the run's own preprocessing happen inside (harness.predict.faces); the parameter
`detector` ("haar", "none") chooses the detector per call.
"""

from __future__ import annotations

import base64
import binascii
import json
import warnings
from pathlib import Path
from typing import Any

import mlflow.pyfunc

from harness.predict.faces import FacePredictor
from harness.predict.images import InputError, Picture, open_picture

# The artifacts a photo model carries: everything `load_context` rebuilds it from.
ARTIFACTS = ("weights", "spec", "classes")


# MLflow suggests type hints on `predict` when the class is defined; the signature says it all.
warnings.filterwarnings("ignore", message=".*Add type hints to the `predict` method", category=UserWarning)
# Saved "from code": the model directory holds this script, not a pickle of the class.
MODEL_SCRIPT = """from mlflow.models import set_model

from harness.tracking.pyfunc import FacePhotoModel

set_model(FacePhotoModel())
"""


class FacePhotoModel(mlflow.pyfunc.PythonModel):
    """Photos in, faces and emotions out (see the module docstring)."""

    def load_context(self, context: Any) -> None:
        import yaml

        from harness.models.build import rebuild_model
        from harness.spec.schema import ExperimentSpec

        spec = ExperimentSpec.model_validate(yaml.safe_load(Path(context.artifacts["spec"]).read_text()))
        classes = tuple(json.loads(Path(context.artifacts["classes"]).read_text())["labels"])
        model = rebuild_model(spec, len(classes), Path(context.artifacts["weights"]))
        self.predictors = {name: FacePredictor(model, spec, classes, name) for name in ("haar", "none")}
        self.class_names = classes

    # No type hints here: MLflow would read them as an input schema (the signature says it).
    def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201
        import pandas as pd

        predictor = self.predictors[(params or {}).get("detector", "haar")]
        rows: list[dict[str, Any]] = []
        for index, item in enumerate(_items(model_input)):
            try:
                picture = Picture(str(index), None, _picture(item, str(index)))
            except InputError as exc:
                # A row of the same columns and types, so the response stays plain JSON.
                empty = {"face": -1, "x": 0, "y": 0, "width": 0, "height": 0, "face_found": False, "label": "",
                         "score": 0.0, **{f"p_{name}": 0.0 for name in self.class_names}}  # fmt: skip
                rows.append({"image": index, **empty, "error": str(exc)})
                continue
            rows += [{"image": index, **_row(face.row()), "error": ""} for face in predictor.faces([picture])]
        columns = ["image", "face", "x", "y", "width", "height", "face_found", "label", "score",
                   *(f"p_{name}" for name in self.class_names), "error"]  # fmt: skip
        return pd.DataFrame(rows, columns=columns)


def _items(model_input: Any) -> list[Any]:
    import numpy as np
    import pandas as pd

    if isinstance(model_input, pd.DataFrame):
        column = "image" if "image" in model_input.columns else model_input.columns[0]
        return list(model_input[column])
    if isinstance(model_input, np.ndarray):
        return list(model_input) if model_input.ndim >= 3 else [model_input]
    if isinstance(model_input, dict):
        return list(model_input.get("image", []))
    return list(model_input)


def _picture(item: Any, source: str) -> Any:
    import numpy as np
    from PIL import Image

    if isinstance(item, np.ndarray):
        if item.dtype != np.uint8 or item.ndim not in (2, 3):
            raise InputError(f"{source}: an array picture must be (H, W) or (H, W, C) uint8")
        return Image.fromarray(item.squeeze(-1) if item.ndim == 3 and item.shape[2] == 1 else item)
    if isinstance(item, str):
        try:
            item = base64.b64decode(item, validate=True)
        except (binascii.Error, ValueError):
            raise InputError(f"{source}: not base64 text of an image file") from None
    if not isinstance(item, bytes | bytearray):
        raise InputError(f"{source}: expected image file bytes, base64 text or an array, got {type(item).__name__}")
    return open_picture(bytes(item), source)


def _row(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("source", "frame")}


def photo_model_files(files: dict[str, Path], class_names: tuple[str, ...], metadata: dict[str, Any]) -> dict[str, bytes]:
    """The photo model saved as an MLflow pyfunc directory, as {relative path: bytes}."""
    import tempfile

    import torch
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    columns = [ColSpec("long", "image"), ColSpec("long", "face"), *(ColSpec("long", c) for c in ("x", "y", "width", "height")),
               ColSpec("boolean", "face_found"), ColSpec("string", "label"), ColSpec("double", "score"),
               *(ColSpec("double", f"p_{c}") for c in class_names), ColSpec("string", "error")]  # fmt: skip
    signature = ModelSignature(
        inputs=Schema([ColSpec("string", "image")]), outputs=Schema(columns),
        params=ParamSchema([ParamSpec("detector", "string", "haar")]),
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="harness-photo-") as tmp, warnings.catch_warnings():
        # MLflow suggests type hints for validation; the signature above already says it all.
        warnings.simplefilter("ignore", UserWarning)
        path, script = Path(tmp) / "photo", Path(tmp) / "photo_model.py"
        script.write_text(MODEL_SCRIPT)
        mlflow.pyfunc.save_model(
            str(path), python_model=str(script), artifacts={k: str(v) for k, v in files.items()},
            signature=signature, metadata=metadata, input_example=_example_input(),
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "opencv-python-headless<5", "pillow", "pandas"],
        )  # fmt: skip
        return {str(f.relative_to(path)): f.read_bytes() for f in sorted(path.rglob("*")) if f.is_file()}


def _example_input() -> Any:
    """A request's worth of input: one small grey picture, as base64 JPEG text."""
    import io

    import pandas as pd
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (48, 48), 128).save(buffer, format="JPEG")
    return pd.DataFrame({"image": [base64.b64encode(buffer.getvalue()).decode()]})
