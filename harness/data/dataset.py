"""From a data spec to in-memory uint8 arrays: list records, then load or build the cache."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harness.errors import DataError

if TYPE_CHECKING:
    from harness.data.cache import Arrays
    from harness.data.records import ImageRecord
    from harness.spec import DataSpec


@dataclass(frozen=True)
class Dataset:
    """Preprocessed training and validation images (N, H, W, C uint8) with integer labels."""

    name: str
    root: Path
    class_names: tuple[str, ...]
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    digest: str  # identifies the file list and labels, logged with every run
    cache_path: Path | None = None
    quality: dict[str, int] = field(default_factory=dict)  # skipped items by reason
    quality_examples: dict[str, str] = field(default_factory=dict)
    split_path: Path | None = None  # the saved validation split, when it was carved from training

    @property
    def num_classes(self) -> int:
        """How many classes the model predicts."""
        return len(self.class_names)

    def class_counts(self, labels: np.ndarray) -> list[int]:
        """Images per class, in class order."""
        return np.bincount(labels, minlength=self.num_classes).tolist()


def resolve_path(spec: DataSpec, project_root: Path) -> Path:
    """The dataset folder: relative paths are relative to the project (suite file) folder."""
    path = Path(spec.path).expanduser()
    return path if path.is_absolute() else (project_root / path)


def load_dataset(
    spec: DataSpec, project_root: Path, cache_dir: Path, *, progress: bool = False
) -> Dataset:
    """List the source's records, then load (or build) their preprocessed arrays.

    A source without a validation split gets one carved from its training records (see
    `harness.data.splits`); its test split, if any, is left for a later evaluation.
    """
    from harness.data.cache import Preprocess, load_or_build
    from harness.data.sources import SOURCES
    from harness.spec import class_names

    root = resolve_path(spec, project_root)
    listing = SOURCES.get(spec.source)(spec, root, class_names(spec))
    split_path = None
    if not listing.val and listing.train:
        from harness.data.splits import carve_validation

        listing, split_path = carve_validation(
            listing, fraction=spec.val_fraction, seed=spec.split_seed, cache_dir=cache_dir
        )
    splits = {"train": listing.train, "val": listing.val}
    for split, records in splits.items():
        if not records:
            reasons = ", ".join(f"{k}: {v}" for k, v in listing.skipped.items()) or "none listed"
            raise DataError(f"{root}: no usable {split} images (skipped {reasons})")
    prep = Preprocess(image_size=spec.image_size, channels=spec.channels)
    arrays, cache_path, _ = load_or_build(cache_dir, splits, prep, progress=progress)
    quality = dict(listing.skipped)
    examples = dict(listing.skipped_examples)
    unreadable = [p for a in arrays.values() for p in a.unreadable]
    if unreadable:
        quality["unreadable"] = len(unreadable)
        examples["unreadable"] = unreadable[0]
    if spec.drop_blank:
        arrays, blank = _drop_blank(arrays, splits)
        if blank:
            quality["blank_image"], examples["blank_image"] = len(blank), blank[0]
    for split, a in arrays.items():
        if len(a.y) == 0:
            raise DataError(f"{root}: no readable {split} images ({len(a.unreadable)} unreadable)")
    return Dataset(
        name=listing.name,
        root=root,
        class_names=listing.class_names,
        x_train=arrays["train"].x,
        y_train=arrays["train"].y,
        x_val=arrays["val"].x,
        y_val=arrays["val"].y,
        digest=_digest(splits, listing.class_names),
        cache_path=cache_path,
        quality=quality,
        quality_examples=examples,
        split_path=split_path,
    )


def _drop_blank(
    arrays: dict[str, Arrays], splits: dict[str, list[ImageRecord]]
) -> tuple[dict[str, Arrays], list[str]]:
    """The arrays without images whose pixels all share one value, and those images' names.

    Such images carry no face (FER2013 has 11 all-black training images); they are dropped
    after the cache, so the cache holds every decodable image whatever the setting.
    """
    from harness.data.cache import Arrays

    kept, blank = dict(arrays), []
    for split, a in arrays.items():
        if len(a.y) == 0:
            continue
        flat = a.x.reshape(len(a.x), -1)
        is_blank = flat.min(axis=1) == flat.max(axis=1)
        if is_blank.any():
            blank += _names(splits[split], a, np.flatnonzero(is_blank))
            kept[split] = Arrays(a.x[~is_blank], a.y[~is_blank], a.unreadable)
    return kept, blank


def _names(records: list[ImageRecord], a: Arrays, rows: np.ndarray) -> list[str]:
    """Names of decoded rows `rows`: the records minus the unreadable ones, in order."""
    unreadable = set(a.unreadable)
    decoded = [r.location() for r in records if r.location() not in unreadable]
    if len(decoded) != len(a.y):  # a file listed twice, once unreadable: positions are ambiguous
        return [f"decoded image {i}" for i in rows]
    return [decoded[i] for i in rows]


def _digest(splits: dict, class_names: tuple[str, ...]) -> str:
    """A content-independent identity of the dataset: relative paths, sizes, labels, boxes."""
    digest = hashlib.sha256("|".join(class_names).encode())
    for split, records in sorted(splits.items()):
        digest.update(split.encode())
        for r in records:
            # The row is appended only when set, so the digests of file datasets are unchanged.
            row = "" if r.row is None else f"|{r.row}"
            digest.update(f"{r.path.name}|{r.size}|{r.label}|{r.box}{row}\n".encode())
    return digest.hexdigest()[:16]
