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
            xb = batch_input(x[start : start + batch], channels_last)
            with autocast(spec, device):
                if spec.train.tta == "none":
                    logits = model(xb).float()
                else:
                    # The mean of the softmax over the views, as log-probabilities.
                    views = tta_views(xb, spec.train.tta)
                    probs = sum(model(view).float().softmax(1) for view in views)
                    logits = (probs / len(views)).log()
            if y is not None:
                # Unweighted loss for reporting: validation loss is comparable across runs.
                loss_sum += torch.nn.functional.cross_entropy(logits, y[start : start + batch], reduction="sum")
            preds.append(logits.argmax(1))
    y_pred = torch.cat(preds).cpu().numpy() if preds else np.empty(0, np.int64)
    return float(loss_sum) / max(len(x), 1), y_pred
