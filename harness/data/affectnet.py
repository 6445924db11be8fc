"""AffectNet adapter: `training.csv` / `validation.csv` plus image folders (real or synthetic).

The CSV columns are ``subDirectory_filePath, face_x, face_y, face_width, face_height,
facial_landmarks, expression, valence, arousal``; the header row is optional (detected).
Rows whose image is missing, whose path leaves the dataset root, whose label code is not
an integer in 0..10, or whose class is outside the spec's class set are skipped and counted.
"""

from __future__ import annotations

import csv
import functools
import os
from collections import Counter
from pathlib import Path

from harness.core.classes import AFFECTNET_CLASSES
from harness.core.errors import DataError
from harness.data.records import ImageRecord, Listing

COLUMNS = (
    "subDirectory_filePath",
    "face_x",
    "face_y",
    "face_width",
    "face_height",
    "facial_landmarks",
    "expression",
    "valence",
    "arousal",
)
CSV_FOLDERS = ("", "Manually_Annotated_file_lists")
IMAGE_FOLDERS = ("Manually_Annotated_Images", "Manually_Annotated/Manually_Annotated_Images", "")


def find_csv(root: Path, filename: str) -> Path | None:
    """The first `filename` found at the root or in AffectNet's file-list folder."""
    for folder in CSV_FOLDERS:
        candidate = root / folder / filename
        if candidate.is_file():
            return candidate
    return None


def image_root(root: Path) -> Path:
    """The folder that `subDirectory_filePath` is relative to."""
    for folder in IMAGE_FOLDERS:
        if folder and (root / folder).is_dir():
            return root / folder
    return root


def list_affectnet(root: Path, class_names: tuple[str, ...], name: str = "affectnet") -> Listing:
    """Read both CSVs of an AffectNet-format dataset into records of the chosen class set."""
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    train_csv = find_csv(root, "training.csv")
    val_csv = find_csv(root, "validation.csv")
    if train_csv is None or val_csv is None:
        missing = "training.csv" if train_csv is None else "validation.csv"
        raise DataError(
            f"{root}: no {missing} (looked in the folder and in Manually_Annotated_file_lists/)"
        )
    listing = Listing(name=name, root=root, class_names=class_names, train=[], val=[], skipped=Counter())
    images = image_root(root)
    index = {cls: i for i, cls in enumerate(class_names)}
    listing.train.extend(_read_csv(train_csv, images, index, listing))
    listing.val.extend(_read_csv(val_csv, images, index, listing))
    return listing


def _read_csv(path: Path, images: Path, index: dict[str, int], listing: Listing) -> list[ImageRecord]:
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None
    if not rows:
        raise DataError(f"{path}: the CSV is empty")
    columns = _columns(path, rows[0])
    body = rows[1:] if rows[0] and rows[0][0].strip() == COLUMNS[0] else rows
    records = []
    for line_no, row in enumerate(body, start=len(rows) - len(body) + 1):
        record = _parse_row(row, columns, images, index, listing, f"{path.name}:{line_no}")
        if record is not None:
            records.append(record)
    return records


def _columns(path: Path, first: list[str]) -> dict[str, int]:
    """Column positions from the header, or AffectNet's fixed order when there is none."""
    if first and first[0].strip() == COLUMNS[0]:
        header = [c.strip() for c in first]
        missing = [c for c in ("subDirectory_filePath", "expression") if c not in header]
        if missing:
            raise DataError(f"{path}: header lacks column(s) {', '.join(missing)}")
        return {c: header.index(c) for c in COLUMNS if c in header}
    return {c: i for i, c in enumerate(COLUMNS)}


def _parse_row(
    row: list[str],
    columns: dict[str, int],
    images: Path,
    index: dict[str, int],
    listing: Listing,
    where: str,
) -> ImageRecord | None:
    if not row or all(not cell.strip() for cell in row):
        return None
    if len(row) <= max(columns["subDirectory_filePath"], columns["expression"]):
        listing.skip("row_missing_fields", where)
        return None
    code = _int(row[columns["expression"]])
    if code is None or not 0 <= code < len(AFFECTNET_CLASSES):
        listing.skip("bad_label", where)
        return None
    label = index.get(AFFECTNET_CLASSES[code])
    if label is None:
        listing.skip("class_not_in_set", where)
        return None
    path = _safe_path(images, row[columns["subDirectory_filePath"]].strip())
    if path is None:
        listing.skip("unsafe_path", where)
        return None
    try:
        stat = path.stat()
    except OSError:
        listing.skip("missing_file", where)
        return None
    return ImageRecord(path, label, _box(row, columns), stat.st_size, stat.st_mtime_ns)


def _safe_path(images: Path, relative: str) -> Path | None:
    """The image's path if it stays inside the image root; None for absolute or escaping paths,
    and for symlinks inside the dataset that lead out of it (the root itself may be a link)."""
    if not relative or os.path.isabs(relative) or relative.startswith("~"):
        return None
    candidate = os.path.normpath(os.path.join(images, relative))
    root = os.path.normpath(images)
    if os.path.commonpath([root, candidate]) != root:
        return None
    real_root = _realpath(root)
    if os.path.commonpath([real_root, os.path.realpath(candidate)]) != real_root:
        return None
    return Path(candidate)


@functools.lru_cache(maxsize=8)
def _realpath(folder: str) -> str:
    return os.path.realpath(folder)


def _box(row: list[str], columns: dict[str, int]) -> tuple[int, int, int, int] | None:
    keys = ("face_x", "face_y", "face_width", "face_height")
    if not all(k in columns and columns[k] < len(row) for k in keys):
        return None
    values = [_int(row[columns[k]]) for k in keys]
    if any(v is None for v in values):
        return None
    x, y, w, h = values  # type: ignore[misc]
    return (x, y, w, h) if w > 0 and h > 0 and x >= 0 and y >= 0 else None


def _int(text: str) -> int | None:
    try:
        return int(float(text))
    except (TypeError, ValueError, OverflowError):
        return None
