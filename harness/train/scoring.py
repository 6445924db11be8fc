"""Predictions of a model on a tensor of images, with the spec's test-time augmentation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from harness.train.augment import tta_views
from harness.train.device import autocast, batch_input

if TYPE_CHECKING:
    import torch

    from harness.spec.schema import ExperimentSpec


def predict(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None,
    spec: ExperimentSpec,
    device: str,
    *,
    channels_last: bool = False,
) -> tuple[float, np.ndarray]:
    """Predicted classes for `x` in large batches; also the mean loss when `y` is given."""
    import torch

    model.eval()
    preds, loss_sum = [], torch.zeros((), device=device)
    batch = spec.train.eval_batch_size
    with torch.inference_mode():
        for start in range(0, len(x), batch):
            logits = scores(model, batch_input(x[start : start + batch], channels_last), spec, device)
            if y is not None:
                # Unweighted loss for reporting: validation loss is comparable across runs.
                loss_sum += torch.nn.functional.cross_entropy(logits, y[start : start + batch], reduction="sum")
            preds.append(logits.argmax(1))
    y_pred = torch.cat(preds).cpu().numpy() if preds else np.empty(0, np.int64)
    return float(loss_sum) / max(len(x), 1), y_pred


def probabilities(
    model: torch.nn.Module, x: torch.Tensor, spec: ExperimentSpec, device: str, *, channels_last: bool = False
) -> np.ndarray:
    """Class probabilities for `x` (N, classes): the softmax `predict`'s argmax is taken of."""
    import torch

    model.eval()
    out = []
    batch = spec.train.eval_batch_size
    with torch.inference_mode():
        for start in range(0, len(x), batch):
            logits = scores(model, batch_input(x[start : start + batch], channels_last), spec, device)
            out.append(logits.softmax(1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def scores(model: torch.nn.Module, xb: torch.Tensor, spec: ExperimentSpec, device: str) -> torch.Tensor:
    """One batch's fp32 logits, or with test-time augmentation the log of the views' mean softmax."""
    with autocast(spec, device):
        if spec.train.tta == "none":
            return model(xb).float()
        views = tta_views(xb, spec.train.tta)
        probs = sum(model(view).float().softmax(1) for view in views)
        return (probs / len(views)).log()
