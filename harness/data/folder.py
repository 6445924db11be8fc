"""Image-folder adapter: `<root>/<class>/<image>`, or split folders `<root>/{train,val,test}/<class>/`.

Class folder names map onto the canonical names through `harness.classes.CLASS_SYNONYMS`
(case-insensitive: `Angry/` and `happiness/` are `anger` and `happy`). A folder name that
maps onto no class is an error naming it, rather than a silent skip: dropping a mistyped
`hapy/` would quietly change the task. Hidden entries (`.DS_Store`, `.ipynb_checkpoints`)
are ignored; other files are listed, or skipped and counted (not an image by name, empty,
or lying outside any class folder).

The dataset's classes are the spec's class set restricted to the classes the training
folders hold (or to `source_classes`, for a source with a fixed list such as FER2013), in
the class set's order, so the model has one output per class it can learn.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from harness.core.classes import CLASS_SYNONYMS, canonical_class
from harness.core.errors import DataError
from harness.data.records import ImageRecord, Listing

# Split folder names (lower case) and the split each one is.
SPLIT_FOLDERS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
# By name only; a file with one of these suffixes that cannot be decoded is counted later,
# by the cache, as `unreadable`.
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm"}
)

# (split, canonical class) -> the image files found for it, in path order.
Found = dict[tuple[str, str], list[tuple[Path, os.stat_result]]]


def list_folder(
    root: Path,
    class_names: tuple[str, ...],
    *,
    name: str | None = None,
    source_classes: tuple[str, ...] | None = None,
) -> Listing:
    """List an image-folder dataset as records of `class_names` ∩ the classes it holds."""
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    listing = Listing(
        name=name or f"folder:{root.name}", root=root, class_names=(), train=[], val=[], skipped=Counter()
    )
    splits = split_folders(root)
    found = _scan(splits, listing)
    held = sorted({cls for (split, cls), files in found.items() if split == "train" and files})
    if not held:
        raise DataError(
            f"{splits['train']}: no class folder holds an image (expected <class>/<image> folders, "
            f"e.g. happy/0001.jpg; skipped: {dict(listing.skipped) or 'nothing'})"
        )
    present = source_classes or tuple(held)
    classes = tuple(c for c in class_names if c in present)
    if not classes:
        raise DataError(
            f"{root}: none of the classes found ({', '.join(present) or 'none'}) is in the "
            f"spec's class set ({', '.join(class_names)})"
        )
    listing = replace(listing, class_names=classes)
    index = {cls: i for i, cls in enumerate(classes)}
    records = {"train": listing.train, "val": listing.val, "test": listing.test}
    for (split, cls), files in sorted(found.items()):
        for path, stat in files:
            if cls not in index:
                listing.skip("class_not_in_set", str(path))
                continue
            records[split].append(ImageRecord(path, index[cls], None, stat.st_size, stat.st_mtime_ns))
    return listing


def split_folders(root: Path) -> dict[str, Path]:
    """The folder of each split: `train/`, `val/`, `test/` when present, else the root is `train`."""
    splits: dict[str, Path] = {}
    other_classes = []
    for entry in _visible_dirs(root):
        split = SPLIT_FOLDERS.get(entry.name.lower())
        if split is None:
            if canonical_class(entry.name) is not None:
                other_classes.append(entry.name)
            continue
        if split in splits:
            raise DataError(f"{root}: both {splits[split].name}/ and {entry.name}/ are {split} folders")
        splits[split] = entry
    if not splits:
        return {"train": root}
    if other_classes:
        raise DataError(
            f"{root}: mixes split folders ({', '.join(p.name for p in splits.values())}) with class "
            f"folders ({', '.join(other_classes)}); put the class folders inside train/"
        )
    if "train" not in splits:
        raise DataError(f"{root}: has {', '.join(p.name + '/' for p in splits.values())} but no train/ folder")
    return splits


def _scan(splits: dict[str, Path], listing: Listing) -> Found:
    """Every image file under each split's class folders; unknown class folders are errors."""
    found: Found = {}
    for split, folder in splits.items():
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith("."):
                continue
            if not entry.is_dir():
                listing.skip("not_in_class_folder", str(entry))
                continue
            cls = canonical_class(entry.name)
            if cls is None:
                raise DataError(
                    f"{entry}: folder name '{entry.name}' is not a known class; known names "
                    f"(case-insensitive): {', '.join(sorted(CLASS_SYNONYMS))}"
                )
            found.setdefault((split, cls), []).extend(_images(entry, listing))
    return found


def _images(folder: Path, listing: Listing) -> Iterable[tuple[Path, os.stat_result]]:
    """Image files under `folder` (recursively, in path order), with their stat; others counted."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in sorted(filenames):
            if filename.startswith("."):
                continue
            path = Path(dirpath) / filename
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                listing.skip("not_an_image", str(path))
                continue
            try:
                stat = path.stat()
            except OSError:
                listing.skip("missing_file", str(path))  # e.g. a dangling symlink
                continue
            if stat.st_size == 0:
                listing.skip("empty_file", str(path))
                continue
            yield path, stat


def _visible_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
