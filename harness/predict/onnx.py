"""A run's network as one self-contained ONNX file, and onnxruntime behind the same interface.

The exported graph is the whole model — its input layer (the training set's standardisation or
ZCA statistics) and the network — taking float images in [0, 1], NCHW, with a dynamic batch
dimension, and returning logits in the model's class order (kept in the file's metadata). Test-
time augmentation stays outside the graph: `OnnxModule` is called by the same scoring code as
the torch model, so both runtimes score the same views.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.core.errors import HarnessError, first_line

if TYPE_CHECKING:
    import torch

    from harness.spec.schema import ExperimentSpec

OPSET = 18
# The export's check: a batch of faces through torch and onnxruntime.
TOLERANCE = 1e-4  # max |Δ probability|


def export_onnx(model: torch.nn.Module, spec: ExperimentSpec, class_names: tuple[str, ...], out: Path) -> Path:
    """Write `model` (eval mode, fp32, CPU) as one ONNX file at `out`, dynamic in the batch."""
    import contextlib
    import io
    import logging
    import warnings

    import onnx
    import torch

    model = model.eval().float().to("cpu").to(memory_format=torch.contiguous_format)
    example = torch.rand(2, spec.data.channels, spec.data.image_size, spec.data.image_size)
    batch = torch.export.Dim("batch", min=1, max=65536)
    out.parent.mkdir(parents=True, exist_ok=True)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():  # it narrates its passes
            warnings.simplefilter("ignore", FutureWarning)
            program = torch.onnx.export(
                model, (example,), dynamo=True, input_names=["image"], output_names=["logits"],
                dynamic_shapes=({0: batch},), opset_version=OPSET, verbose=False,
            )  # fmt: skip
            program.save(str(out), external_data=False)
    except Exception as exc:  # noqa: BLE001 - an operator the exporter lacks, say: name the model
        raise HarnessError(f"model {spec.model.name!r}: cannot be exported to ONNX: {first_line(exc)}") from None
    proto = onnx.load(str(out))
    meta = {"class_names": json.dumps(list(class_names)), "input": "float32 images in [0, 1], NCHW",
            "image_size": str(spec.data.image_size), "channels": str(spec.data.channels)}  # fmt: skip
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(out))
    return out


def onnx_module(path: Path) -> Any:
    """An onnxruntime session wrapped as a torch module: logits out, on the CPU."""
    import onnxruntime
    import torch

    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - a missing or corrupt file
        raise HarnessError(f"{path}: not a usable ONNX model: {first_line(exc)}") from None

    class OnnxModule(torch.nn.Module):
        is_onnx = True

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            image = x.detach().float().contiguous().cpu().numpy()
            return torch.from_numpy(session.run(None, {"image": image})[0])

    return OnnxModule()


def verify(model: torch.nn.Module, path: Path, faces: np.ndarray) -> dict[str, float]:
    """torch against onnxruntime on `faces` (N, C, H, W float in [0, 1]): the largest probability
    difference and whether every argmax agrees; HarnessError past TOLERANCE."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(faces, dtype=np.float32))
    with torch.inference_mode():
        expected = model.eval().float().to("cpu")(x).softmax(1).numpy()
    got = onnx_module(path)(x).softmax(1).numpy()
    delta = float(np.abs(expected - got).max())
    agree = bool((expected.argmax(1) == got.argmax(1)).all())
    if delta > TOLERANCE or not agree:
        raise HarnessError(f"{path}: onnxruntime disagrees with torch (max |Δp| {delta:.2g}, argmax equal: {agree})")
    return {"onnx_max_abs_prob_diff": delta, "onnx_images_checked": float(len(faces))}
