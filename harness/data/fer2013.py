"""FER2013 adapter: the original `fer2013.csv`, or the image-folder form (`train/<class>/*.jpg`).

The CSV has columns ``emotion, pixels, Usage`` (order read from the header; a header-less file
is read in that order). `pixels` holds the 48x48 grey levels of one face as 2,304
space-separated integers; nothing is decoded while listing: each record points at its row's
byte span and the cache's worker processes parse it. Usage ``Training`` is the training split,
``PublicTest`` the validation split, and ``PrivateTest`` the held-out test split that model
selection never sees (`Listing.test`). A CSV without a Usage column is all training data.

Emotion codes 0..6 (Angry, Disgust, Fear, Happy, Sad, Surprise, Neutral) map onto the
canonical names; the dataset's classes are those 7 in the order of the spec's class set
(`harness.classes`), restricted to that set. Rows with missing or extra fields, a label code
outside 0..6, an unknown Usage or a pixel count other than 2,304 are skipped and counted;
non-numeric or out-of-range grey levels surface as `unreadable` when the cache decodes them.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from harness.core.classes import FER2013_CLASSES
from harness.core.errors import DataError
from harness.data.folder import list_folder
from harness.data.records import ImageRecord, Listing

# Where a dataset folder may hold the CSV: Kaggle's archive unpacks to fer2013/fer2013.csv.
CSV_NAMES = ("fer2013.csv", "fer2013/fer2013.csv")
USAGES = {"training": "train", "publictest": "val", "privatetest": "test"}
PIXELS = 48 * 48
HEADERLESS = {3: ("emotion", "pixels", "usage"), 2: ("emotion", "pixels")}
STRIP = b' "\t'  # around a field: spaces, tabs and CSV quotes
BOM = b"\xef\xbb\xbf"  # the UTF-8 byte-order mark some editors write first


def list_fer2013(root: Path, class_names: tuple[str, ...]) -> Listing:
    """FER2013 from its CSV (a file, or a folder holding it: preferred) or from its image folders."""
    classes = tuple(c for c in class_names if c in FER2013_CLASSES)
    if not classes:
        raise DataError(f"{root}: the spec's class set shares no class with FER2013's {FER2013_CLASSES}")
    csv_path = find_csv(root)
    if csv_path is not None:
        return list_fer2013_csv(csv_path, classes)
    if root.is_dir():
        return list_folder(root, classes, name="fer2013", source_classes=FER2013_CLASSES)
    raise DataError(f"{root}: not found (expected fer2013.csv, or a folder with train/<class>/ images)")


def find_csv(root: Path) -> Path | None:
    """`root` itself when it is a file, else the first of CSV_NAMES inside it."""
    if root.is_file():
        return root
    return next((root / n for n in CSV_NAMES if (root / n).is_file()), None)


def list_fer2013_csv(path: Path, classes: tuple[str, ...]) -> Listing:
    """One pass over the CSV: each usable row becomes a record pointing at its pixel text."""
    listing = Listing(name="fer2013", root=path.parent, class_names=classes, train=[], val=[], skipped=Counter())
    splits = {"train": listing.train, "val": listing.val, "test": listing.test}
    index = {cls: i for i, cls in enumerate(classes)}
    try:
        stat = path.stat()
        with open(path, "rb") as fh:
            first = fh.readline()
            columns, n_fields, header = _columns(path, first)
            offset, line_no = (len(first), 1) if header else (len(BOM) if first.startswith(BOM) else 0, 0)
            fh.seek(offset)
            for line in fh:
                line_no += 1
                row = _parse_row(line, offset, columns, n_fields, listing, f"{path.name}:{line_no}")
                offset += len(line)
                if row is None:
                    continue
                split, code, span = row
                cls = FER2013_CLASSES[code]
                if cls not in index:
                    listing.skip("class_not_in_set", f"{path.name}:{line_no}")
                    continue
                record = ImageRecord(path, index[cls], None, stat.st_size, stat.st_mtime_ns, line_no, span)
                splits[split].append(record)
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None
    return listing


def _columns(path: Path, first: bytes) -> tuple[dict[str, int], int, bool]:
    """Column positions and count from the header (names case-insensitive), or FER2013's order."""
    if not first.strip():
        raise DataError(f"{path}: the CSV is empty")
    line = first.removeprefix(BOM).rstrip(b"\r\n")
    names = [_clean(f).decode("utf-8", "replace").lower() for f in line.split(b",")]
    if _int(line.split(b",")[0]) is None:  # a header: its first cell is no emotion code
        missing = [c for c in ("emotion", "pixels") if c not in names]
        if missing:
            raise DataError(f"{path}: header lacks column(s) {', '.join(missing)}")
        wanted = ("emotion", "pixels", "usage")
        return {c: names.index(c) for c in wanted if c in names}, len(names), True
    if len(names) not in HEADERLESS:
        raise DataError(f"{path}: line 1 is neither the header emotion,pixels,Usage nor a data row")
    return {c: i for i, c in enumerate(HEADERLESS[len(names)])}, len(names), False


def _parse_row(
    line: bytes, offset: int, columns: dict[str, int], n_fields: int, listing: Listing, where: str
) -> tuple[str, int, tuple[int, int]] | None:
    """(split, emotion code, byte span of the grey levels) for a usable row; None (counted) if not."""
    body = line.rstrip(b"\r\n")
    if not body.strip():
        return None
    fields = body.split(b",")
    if len(fields) != n_fields:
        listing.skip("row_missing_fields" if len(fields) < n_fields else "row_extra_fields", where)
        return None
    code = _int(fields[columns["emotion"]])
    if code is None or not 0 <= code < len(FER2013_CLASSES):
        listing.skip("bad_label", where)
        return None
    split = "train"
    if "usage" in columns:
        usage = _clean(fields[columns["usage"]]).decode("utf-8", "replace").lower()
        if usage not in USAGES:
            listing.skip("bad_usage", where)
            return None
        split = USAGES[usage]
    span = _pixel_span(fields, columns["pixels"], offset)
    if _count(fields[columns["pixels"]]) != PIXELS:
        listing.skip("wrong_pixel_count", where)
        return None
    return split, code, span


def _pixel_span(fields: list[bytes], column: int, offset: int) -> tuple[int, int]:
    """The file offset and length of the grey levels, without surrounding quotes or spaces."""
    start = offset + sum(len(f) + 1 for f in fields[:column])
    raw = fields[column]
    inner = _clean(raw)
    lead = len(raw) - len(raw.lstrip(STRIP))
    return start + lead, len(inner)


def _count(pixels: bytes) -> int:
    """How many grey levels a field holds; the fast count is exact unless spacing is irregular."""
    inner = _clean(pixels)
    count = inner.count(b" ") + 1 if inner else 0
    return count if count == PIXELS else len(inner.split())


def _clean(field: bytes) -> bytes:
    return field.strip(STRIP)


def _int(field: bytes) -> int | None:
    try:
        return int(_clean(field))
    except ValueError:
        return None
