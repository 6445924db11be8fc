"""A plugin for fer-harness: a model, a sampler and a data source from outside the package."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import nn

from harness.data.records import ImageRecord, Listing


def tiny_mlp(num_classes: int, in_channels: int, image_size: int, *, hidden: int = 32) -> nn.Module:
    """A two-layer perceptron on the flattened face: the smallest model worth benchmarking."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(in_channels * image_size**2, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
    )


def first_half(labels: np.ndarray, per_epoch: int, cap: int, rng: np.random.Generator) -> np.ndarray:
    """The first half of the training images, shuffled: a sampler that ignores the classes."""
    return rng.permutation(max(len(labels) // 2, 1))[:per_epoch]


def noise(spec, root: Path, class_names: tuple[str, ...]) -> Listing:  # noqa: ANN001 - a DataSpec
    """Images of uniform noise written under `root`, labelled round-robin: a data source."""
    from PIL import Image

    train: list[ImageRecord] = []
    val: list[ImageRecord] = []
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", 40), ("val", 14)):
        for i in range(count):
            path = root / f"{split}-{i}.png"
            if not path.exists():
                Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(path)
            stat = path.stat()
            record = ImageRecord(path=path, label=i % len(class_names), size=stat.st_size, mtime_ns=stat.st_mtime_ns)
            (train if split == "train" else val).append(record)
    return Listing(name="noise", root=root, class_names=class_names, train=train, val=val)

