"""`harness export --onnx`: a run's model as one ONNX file, checked against torch on real faces.

The check uses the faces the run logged (data/examples.png: preprocessed training faces, one row
per class) when it has them: torch and onnxruntime must agree on every argmax and within 1e-4 on
every probability, or the export fails. The file is also logged with the run (model/model.onnx).
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harness.models.build import rebuild_model
from harness.predict.onnx import export_onnx, verify
from harness.runs.trained import load_trained
from harness.tracking.registry import resolve_run

if TYPE_CHECKING:
    from harness.tracking.write import Tracker

ONNX_ARTIFACT = "model/model.onnx"


def export_run(tracker: Tracker, ref: str, out: Path) -> dict[str, float]:
    """Export the run `ref` names to `out`, verify it, log it with the run; the check's figures."""
    run = resolve_run(tracker, ref)
    with tempfile.TemporaryDirectory(prefix="harness-export-") as tmp:
        trained = load_trained(tracker, run.info.run_id, Path(tmp))
        model = rebuild_model(trained.spec, len(trained.class_names), trained.weights, trained.run_id)
        export_onnx(model, trained.spec, trained.class_names, out)
        faces = logged_faces(tracker, trained.run_id, trained.spec.data.image_size, trained.spec.data.channels)
        checked = verify(model, out, faces)
    tracker.attach(trained.run_id, out, ONNX_ARTIFACT)
    tracker.add_metrics(trained.run_id, {"onnx_max_abs_prob_diff": checked["onnx_max_abs_prob_diff"]})
    return {**checked, "run_id": trained.run_id}  # type: ignore[dict-item]


def logged_faces(tracker: Tracker, run_id: str, size: int, channels: int) -> np.ndarray:
    """The run's example faces (N, C, H, W float in [0, 1]); random images if it logged none."""
    from PIL import Image

    try:
        with tempfile.TemporaryDirectory() as tmp:
            png = tracker.fetch(run_id, "data/examples.png", Path(tmp)).read_bytes()
        sheet = np.asarray(Image.open(io.BytesIO(png)))[::2, ::2]  # logged at zoom 2, nearest
    except Exception:  # noqa: BLE001 - an older run without examples: still check something
        return np.random.default_rng(0).random((16, channels, size, size)).astype(np.float32)
    sheet = sheet.reshape(*sheet.shape[:2], -1)[..., :channels]
    rows, cols = sheet.shape[0] // size, sheet.shape[1] // size
    faces = [sheet[r * size:(r + 1) * size, c * size:(c + 1) * size] for r in range(rows) for c in range(cols)]
    faces = [f for f in faces if not (f == 255).all()]  # the sheet's empty cells are white
    return np.stack(faces).transpose(0, 3, 1, 2).astype(np.float32) / 255.0

