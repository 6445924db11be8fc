"""Compute, counted: the FLOPs of one training and one evaluation image, and a budget's epochs.

A training budget is compute, not minutes: the same run is 4-7x faster on one CPU than on
another, but it does the same arithmetic. The count is PyTorch's own
(`torch.utils.flop_counter.FlopCounterMode`: matmuls and convolutions, forward and backward) on
a copy of the model on the meta device, so counting allocates nothing, draws no random number and
touches no BatchNorm statistic: a counted run is bit-identical to an uncounted one. The benchmarks
under bench/ use the same counter.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.core.errors import SpecError
from harness.train.augment import tta_views

if TYPE_CHECKING:
    import torch

# A batch this size is counted (and divided): BatchNorm in training mode needs more than one.
COUNT_BATCH = 2


@dataclass(frozen=True)
class ImageFlops:
    """FLOPs per image: one training step's share (forward + backward) and one evaluation
    (forward, times the test-time augmentation's views)."""

    train: float
    evaluate: float

    def train_tflop(self, images: int) -> float:
        """Training compute of `images` training images, in TFLOP."""
        return self.train * images / 1e12

    def eval_tflop(self, images: int) -> float:
        """Evaluation compute of `images` scored images, in TFLOP."""
        return self.evaluate * images / 1e12


def count_flops(model: torch.nn.Module, channels: int, size: int, tta: str = "none") -> ImageFlops:
    """Count one image's training and evaluation FLOPs on a meta-device copy of `model`."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    ghost = copy.deepcopy(model).to("meta")
    x = torch.zeros(COUNT_BATCH, channels, size, size, device="meta")
    ghost.train()
    with FlopCounterMode(display=False) as train_count:
        ghost(x).float().sum().backward()
    ghost.eval()
    views = len(tta_views(torch.zeros(1, channels, 8, 8), tta)) if tta != "none" else 1
    with torch.no_grad(), FlopCounterMode(display=False) as eval_count:
        ghost(x)
    return ImageFlops(
        train=train_count.get_total_flops() / COUNT_BATCH,
        evaluate=views * eval_count.get_total_flops() / COUNT_BATCH,
    )


def budget_epochs(budget_tflop: float, flops: ImageFlops, images_per_epoch: int) -> int:
    """The largest whole number of epochs whose training compute stays within the budget."""
    per_epoch = flops.train_tflop(images_per_epoch)
    epochs = math.floor(budget_tflop / per_epoch + 1e-9) if per_epoch > 0 else 0
    if epochs < 1:
        raise SpecError(
            f"a budget of {budget_tflop:g} TFLOP is less than one epoch "
            f"({per_epoch:.3g} TFLOP: {images_per_epoch:,} images at {flops.train / 1e9:.3g} GFLOP each)"
        )
    return epochs
