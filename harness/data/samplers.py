"""Per-epoch samplers: which training indices one epoch visits (numpy only, seeded)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from harness.core.registry import Registry

# A sampler maps (labels, per_epoch, cap, rng) to the shuffled indices of one epoch.
Sampler = Callable[[np.ndarray, int, int, np.random.Generator], np.ndarray]
SAMPLERS: Registry[Sampler] = Registry("sampler", plugins="fer_harness.samplers")


@SAMPLERS.register("natural")
def natural(labels: np.ndarray, per_epoch: int, cap: int, rng: np.random.Generator) -> np.ndarray:
    """`per_epoch` images drawn without replacement from the (imbalanced) training set.

    The study drew 5,000 images per epoch from AffectNet's natural distribution; when the
    set is smaller than `per_epoch`, an epoch is one shuffled pass over it.
    """
    n = min(per_epoch, len(labels))
    return rng.permutation(len(labels))[:n]


@SAMPLERS.register("balanced")
def balanced(labels: np.ndarray, per_epoch: int, cap: int, rng: np.random.Generator) -> np.ndarray:
    """min(cap, n_class) images of every class, redrawn each epoch, then shuffled.

    This is the study's best iteration: at most `cap` (5,000 in the paper) images per class,
    so rare classes keep all their images and frequent ones are subsampled, never repeated.
    """
    picks = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        picks.append(rng.choice(members, size=min(cap, len(members)), replace=False))
    return rng.permutation(np.concatenate(picks)) if picks else np.empty(0, dtype=np.int64)


def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Inverse-frequency loss weights, n / (k · n_c) as scikit-learn's "balanced"; 0 for absent classes."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, len(labels) / (num_classes * np.maximum(counts, 1)), 0.0)
    return weights.astype(np.float32)
