"""Carve a validation split out of the training records, for sources that have none.

Stratified by class: in each class, the `fraction` of images whose seeded SHA-256 of their
path (relative to the dataset root, plus the row for CSV images) ranks lowest is held out —
at least one image when the class has two or more, never all of them. Ranking by a hash of
each image's own name, rather than shuffling the list, makes every image's fate independent
of the others: adding or removing files moves almost nothing between the splits.

The held-out names are saved to `<cache_dir>/splits/<key>.json`, keyed by the training list
(names and labels), the class names, fraction and seed. A saved split is read back rather
than recomputed, so a run's validation set stays the same even if this method changes, and
`harness eval` or a person can see which images were held out. Nothing is written into the
dataset folder, which may be read-only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from harness.core.errors import DataError
from harness.core.locks import atomic_write_bytes
from harness.data.records import ImageRecord, Listing

# Bump when the carving method changes; saved splits of older versions are still honoured.
SPLIT_VERSION = 1
METHOD = "per class, the fraction with the lowest sha256(f'{seed}:{name}') is validation"


def carve_validation(
    listing: Listing, *, fraction: float, seed: int, cache_dir: Path
) -> tuple[Listing, Path]:
    """Move a stratified, seeded, saved `fraction` of the training records to validation."""
    names = [record_name(r, listing.root) for r in listing.train]
    labels = [r.label for r in listing.train]
    path = cache_dir / "splits" / f"{split_key(names, labels, listing.class_names, fraction, seed)}.json"
    held_out = _load(path, set(names))
    if held_out is None:
        held_out = stratified_pick(names, labels, fraction, seed)
        _save(path, listing, names, labels, held_out, fraction, seed)
    train = [r for r, n in zip(listing.train, names, strict=True) if n not in held_out]
    val = [r for r, n in zip(listing.train, names, strict=True) if n in held_out]
    return replace(listing, train=train, val=val), path


def record_name(record: ImageRecord, root: Path) -> str:
    """The record's path relative to the dataset root (POSIX), with '#row' for a CSV row."""
    try:
        name = record.path.relative_to(root).as_posix()
    except ValueError:
        name = record.path.as_posix()
    return name if record.row is None else f"{name}#{record.row}"


def split_key(
    names: Sequence[str], labels: Sequence[int], classes: Sequence[str], fraction: float, seed: int
) -> str:
    """A digest of what determines the split: the training names and labels, classes, fraction, seed."""
    digest = hashlib.sha256(json.dumps([SPLIT_VERSION, list(classes), fraction, seed]).encode())
    for name, label in zip(names, labels, strict=True):
        digest.update(f"{name}|{label}\n".encode())
    return digest.hexdigest()[:24]


def stratified_pick(names: Sequence[str], labels: Sequence[int], fraction: float, seed: int) -> set[str]:
    """The names held out: per class, round(fraction · n) of them (≥ 1 if n ≥ 2, ≤ n − 1)."""
    by_class: dict[int, list[str]] = {}
    for name, label in zip(names, labels, strict=True):
        by_class.setdefault(label, []).append(name)
    held_out: set[str] = set()
    for members in by_class.values():
        n = len(members)
        k = min(max(int(fraction * n + 0.5), 1), n - 1) if n >= 2 else 0
        ranked = sorted(members, key=lambda m: hashlib.sha256(f"{seed}:{m}".encode()).digest())
        held_out.update(ranked[:k])
    return held_out


def _load(path: Path, names: set[str]) -> set[str] | None:
    """The saved held-out names, or None when absent, unreadable or not about these records."""
    try:
        saved = json.loads(path.read_text())
        held_out = set(saved["val"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return held_out if held_out and held_out <= names else None


def _save(
    path: Path,
    listing: Listing,
    names: Sequence[str],
    labels: Sequence[int],
    held_out: set[str],
    fraction: float,
    seed: int,
) -> None:
    counts = {"train": [0] * len(listing.class_names), "val": [0] * len(listing.class_names)}
    for name, label in zip(names, labels, strict=True):
        counts["val" if name in held_out else "train"][label] += 1
    doc = {
        "version": SPLIT_VERSION,
        "method": METHOD,
        "dataset": listing.name,
        "root": str(listing.root),
        "fraction": fraction,
        "seed": seed,
        "classes": list(listing.class_names),
        "counts": counts,
        "val": sorted(held_out),
    }
    try:
        atomic_write_bytes(path, (json.dumps(doc, indent=1) + "\n").encode())
    except OSError as exc:
        raise DataError(f"{path}: cannot save the carved validation split: {exc}") from None
