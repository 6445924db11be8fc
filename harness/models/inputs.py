"""Input layers fitted on the training set: per-channel standardisation and ZCA whitening.

They sit inside the saved model, so a logged model takes images scaled to [0, 1] and needs
no separate preprocessing state to be evaluated later.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from harness.spec.schema import DataSpec

# ZCA regulariser on [0, 1]-scaled pixels: small enough to whiten, large enough that noise in
# the smallest eigen-directions is not blown up (0.1 is the usual CIFAR choice).
ZCA_EPSILON = 0.1
# Images used to fit ZCA: a 3,072-dim covariance is well estimated from this many.
ZCA_MAX_IMAGES = 10_000


def channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of (N, H, W, C) uint8 images, on the [0, 1] scale."""
    flat = x.reshape(-1, x.shape[-1]).astype(np.float64) / 255.0
    return flat.mean(0), np.maximum(flat.std(0), 1e-3)


def fit_zca(x: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and ZCA matrix W (D×D, D = C·H·W, channel-first order) fitted on training images."""
    rng = np.random.default_rng(seed)
    if len(x) > ZCA_MAX_IMAGES:
        x = x[rng.choice(len(x), ZCA_MAX_IMAGES, replace=False)]
    flat = x.transpose(0, 3, 1, 2).reshape(len(x), -1).astype(np.float64) / 255.0
    mean = flat.mean(0)
    centred = flat - mean
    cov = centred.T @ centred / max(len(flat) - 1, 1)
    eigvals, eigvecs = np.linalg.eigh(cov)
    w = (eigvecs * (1.0 / np.sqrt(np.maximum(eigvals, 0) + ZCA_EPSILON))) @ eigvecs.T
    return mean.astype(np.float32), w.astype(np.float32)


class Standardize(nn.Module):
    """(x - mean) / std per channel, with the training set's statistics as buffers."""

    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class ZCAWhiten(nn.Module):
    """A fixed ZCA whitening of the flattened image (mean and matrix as buffers), shape restored."""

    def __init__(self, mean: np.ndarray, w: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean))
        self.register_buffer("w", torch.tensor(w))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # flatten/reshape from the input's own shape (not len(x)), so an exported graph keeps a
        # dynamic batch dimension.
        flat = x.flatten(1) - self.mean
        # Whitening in fp32 even under autocast: the transform is ill-conditioned by design.
        # (a meta tensor, when FLOPs are counted, has no autocast of its own)
        kind = x.device.type if x.device.type in ("cpu", "cuda") else "cpu"
        with torch.autocast(device_type=kind, enabled=False):
            out = flat.float() @ self.w
        return out.reshape(x.shape).contiguous(
            memory_format=torch.channels_last
            if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
            else torch.contiguous_format
        )


def standardize_layer(mean: np.ndarray, std: np.ndarray) -> torch.nn.Module:
    """A layer computing (x - mean) / std per channel."""
    return Standardize(mean, std)


def zca_layer(mean: np.ndarray, w: np.ndarray) -> torch.nn.Module:
    """A fixed layer applying ZCA whitening to flattened images, then restoring their shape."""
    return ZCAWhiten(mean, w)


def with_input_layer(net: torch.nn.Module, x_train: np.ndarray, whitening: str, seed: int) -> torch.nn.Module:
    """Prepend standardisation (or ZCA whitening) fitted on the training images to `net`."""
    if whitening == "zca":
        first = zca_layer(*fit_zca(x_train, seed))
    else:
        first = standardize_layer(*channel_stats(x_train))
    return torch.nn.Sequential(first, net)


def placeholder_input_layer(data: DataSpec) -> torch.nn.Module:
    """The input layer `data` calls for, with zero statistics: a state_dict fills them in."""
    if data.whitening == "zca":
        dim = data.channels * data.image_size**2
        return zca_layer(np.zeros(dim, np.float32), np.zeros((dim, dim), np.float32))
    return standardize_layer(np.zeros(data.channels, np.float32), np.ones(data.channels, np.float32))
