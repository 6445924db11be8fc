"""Preprocessing cache: decode, crop and resize every image once, in parallel, into uint8 arrays.

The cache key is a digest of the file list (paths, sizes, modification times, labels, boxes,
and the row for images stored as CSV rows) and the preprocessing settings, so a changed file or setting rebuilds it. The arrays are
written to a temporary name and renamed into place, with a checksum recorded beside them
that is verified on load: a half-written or damaged cache is detected and rebuilt.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from harness.core.locks import atomic_write_bytes, file_lock
from harness.core.testhooks import pause_point
from harness.data import jpeg
from harness.data.records import ImageRecord

# Bump when decoding/cropping/resizing changes, so old caches are not reused.
PREPROCESS_VERSION = 2  # the short grey-JPEG path gives the same bytes, so it needed no bump
# Images per task sent to a worker process: smaller chunks cost more in hand-offs than the
# last chunk leaves a core idle (64 and 128 were slower than 256 on FER2013, measured).
CHUNK = 256
# Bytes read before the short grey-JPEG path decides (a plain header is well under 1 KiB): a
# larger or colour image costs only this much before it is opened the usual way.
JPEG_HEAD = 16384
# EXIF's orientation tag; 1 (or none) means the pixels are stored upright.
ORIENTATION = 0x0112
# A worker's mapping of the shared output array, by name (a worker serves one decode_all).
_ATTACHED: dict = {}
# What every worker needs, imported once by the fork server rather than by each worker.
WORKER_MODULES = ["harness.data.cache", "PIL.Image", "PIL.ImageOps", "PIL.JpegImagePlugin"]


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes an array: output side length and channel count."""

    image_size: int
    channels: int

    def key(self) -> dict[str, int]:
        """The settings as they enter the cache key."""
        return {"image_size": self.image_size, "channels": self.channels, "version": PREPROCESS_VERSION}


@dataclass(frozen=True)
class Arrays:
    """Decoded images (N, H, W, C uint8) and labels for one split, minus unreadable files."""

    x: np.ndarray
    y: np.ndarray
    unreadable: list[str]
    # Why each unreadable image failed ("DecompressionBombError: ..."), keyed like `unreadable`.
    errors: dict[str, str] = field(default_factory=dict)


def decode(record: ImageRecord, prep: Preprocess) -> np.ndarray | None:
    """Open, crop to the face box, and resize one image with PIL; None if it cannot be read."""
    result = decode_or_error(record, prep)
    return None if isinstance(result, str) else result


class Source(NamedTuple):
    """What decoding needs of a record, in plain values: a worker unpickles 256 of them a chunk,
    ~25x faster than 256 ImageRecords with their Paths (measured)."""

    path: str
    box: tuple[int, int, int, int] | None
    span: tuple[int, int] | None
    row: int | None

    @classmethod
    def of(cls, record: ImageRecord) -> Source:
        return cls(str(record.path), record.box, record.span, record.row)


def decode_or_error(record: ImageRecord | Source, prep: Preprocess) -> np.ndarray | str:
    """The preprocessed image, or why it cannot be read, in one line.

    PIL refuses images of more than 2 x Image.MAX_IMAGE_PIXELS pixels (~179 M) with a
    DecompressionBombError before decoding them, so a decompression bomb costs nothing.
    """
    try:
        fast = _open_plain_grey_jpeg(record, prep)
        if fast is not None:
            return prepare(fast, record.box, prep)
        with open_image(record) as im:
            array = prepare(im, record.box, prep)
    except Exception as exc:  # noqa: BLE001 - any decoder failure means "unreadable", counted by the caller
        text = str(exc).strip().splitlines()
        return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__
    return array


def _open_plain_grey_jpeg(record: ImageRecord | Source, prep: Preprocess):  # noqa: ANN202 - a PIL image or None
    """A small grey JPEG file decoded without `Image.open`'s header parsing (harness.data.jpeg),
    where `prepare` would decode it whole anyway (no draft reduction); None: open it as usual."""
    if record.span is not None:
        return None
    with open(record.path, "rb") as fh:
        data = fh.read(JPEG_HEAD)  # a header, or all of a small face
        frame = jpeg.grey_frame(data)
        if frame is None:
            return None
        box = _clamp(record.box, frame.width, frame.height)
        if min(box[2], box[3]) / prep.image_size >= 2:  # prepare's draft decoding would shrink it
            return None
        data += fh.read()
    return jpeg.decode_grey(data, frame)


def prepare(im, box: tuple[int, int, int, int] | None, prep: Preprocess) -> np.ndarray:  # noqa: ANN001 - a PIL image
    """An opened image as the model sees it: cropped to `box` (the whole image if None, upright
    by its EXIF orientation), resized with PIL's bilinear filter, in the spec's channels.

    Training, evaluation and prediction all prepare faces here, so a face crop given to
    `harness predict --detector none` is the same array `harness eval` scores.
    """
    from PIL import Image, ImageOps

    mode = "RGB" if prep.channels == 3 else "L"
    if box is None and im.getexif().get(ORIENTATION, 1) != 1:
        # Folder datasets carry no box: honour EXIF orientation, use the whole image. Only when
        # tagged: exif_transpose otherwise returns a decoded copy, which has no format, so the
        # draft decoding below would never apply.
        im = ImageOps.exif_transpose(im)
    full_w, full_h = im.size
    box = _clamp(box, full_w, full_h)
    scale = min(box[2], box[3]) / prep.image_size
    if im.format == "JPEG" and (scale >= 2 or im.mode != "L"):
        # Reduced-size DCT decoding: never below the target size for the face box. (A grey JPEG
        # less than twice the target is decoded whole whatever draft is told: skipped.)
        im.draft(mode, (max(1, int(full_w / scale)), max(1, int(full_h / scale))))
    sx, sy = im.size[0] / full_w, im.size[1] / full_h
    crop = (box[0] * sx, box[1] * sy, (box[0] + box[2]) * sx, (box[1] + box[3]) * sy)
    # A grey image is resized on its one channel, then widened: the same values, a third of the
    # resampling work (FER2013's faces).
    im = to_mode(im, "L" if im.mode == "L" else mode)
    im = im.resize((prep.image_size, prep.image_size), Image.Resampling.BILINEAR, box=crop)
    if im.mode == "L" and mode == "RGB":
        # PIL's L -> RGB copies the grey level into each channel: the same bytes, done by numpy
        # on the small array (a third of the bytes to copy out of PIL).
        return np.repeat(_pixels(im, 1), 3, axis=2)
    return _pixels(to_mode(im, mode), prep.channels)


def _pixels(im, channels: int) -> np.ndarray:  # noqa: ANN001 - a PIL image
    """An 8-bit image's pixels as a read-only (H, W, C) array, like np.asarray(im) but without
    its array-interface round trip (~5 us a 32 px face, a twentieth of its preprocessing)."""
    w, h = im.size
    return np.frombuffer(im.tobytes(), np.uint8).reshape(h, w, channels)


def open_image(record: ImageRecord | Source):  # noqa: ANN201 - a PIL image
    """The record's image: its file, or (for a CSV row) a grey image from the row's pixel text."""
    from PIL import Image

    if record.span is None:
        return Image.open(record.path)
    offset, length = record.span
    with open(record.path, "rb") as fh:
        fh.seek(offset)
        text = fh.read(length)
    with warnings.catch_warnings():
        # Text that is not all integers raises (numpy < 2 only warns): the record is unreadable.
        warnings.simplefilter("error")
        values = np.fromstring(text, dtype=np.int64, sep=" ")  # 4x faster than int() per value
    side = int(round(len(values) ** 0.5))
    if side * side != len(values) or side == 0 or values.min() < 0 or values.max() > 255:
        raise ValueError(f"{record.path}:{record.row}: not a square of 8-bit grey levels")
    return Image.fromarray(values.astype(np.uint8).reshape(side, side))


def _clamp(box: tuple[int, int, int, int] | None, w: int, h: int) -> tuple[int, int, int, int]:
    if box is None:
        return (0, 0, w, h)
    x, y = min(max(box[0], 0), w - 1), min(max(box[1], 0), h - 1)
    return (x, y, max(1, min(box[2], w - x)), max(1, min(box[3], h - y)))


def to_mode(im, mode: str):  # noqa: ANN001, ANN202 - PIL images
    """Convert any PIL mode (CMYK, palette, 16-bit, alpha) to 8-bit RGB or L."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(im, dtype=np.float64)
        peak = array.max() or 1.0
        from PIL import Image

        im = Image.fromarray((array * (255.0 / peak)).astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA").convert(mode)
    return im if im.mode == mode else im.convert(mode)


def _decode_into(out: np.ndarray, records: Sequence[ImageRecord | Source], prep: Preprocess) -> tuple[np.ndarray, dict[int, str]]:
    """Decode records into the rows of `out`; which rows are readable, and why the others are not."""
    ok = np.zeros(len(records), bool)
    errors = {}
    for i, record in enumerate(records):
        result = decode_or_error(record, prep)
        if isinstance(result, str):
            errors[i] = result
        else:
            out[i], ok[i] = result, True
    return ok, errors


def _decode_chunk(args: tuple[str, int, int, list[Source], Preprocess]) -> tuple[np.ndarray, dict[int, str]]:
    """A worker's task: decode one chunk straight into the parent's shared array (rows from `start`).

    Only the readable flags and the errors travel back: pickling the pixels through the pool's
    pipe, then copying them into place, cost the parent as much as a worker's decoding.
    """
    name, total, start, records, prep = args
    x = np.ndarray(_shape(total, prep), np.uint8, buffer=_attach(name).buf)
    return _decode_into(x[start : start + len(records)], records, prep)


def _attach(name: str):  # noqa: ANN202 - a SharedMemory
    """The shared array's memory, mapped once per worker (a mapping per task faults its pages in
    again: slower than the decoding of a small chunk). The worker's exit unmaps it."""
    from multiprocessing import shared_memory

    if name not in _ATTACHED:
        _ATTACHED[name] = shared_memory.SharedMemory(name=name)
    return _ATTACHED[name]


def _shape(n: int, prep: Preprocess) -> tuple[int, int, int, int]:
    return (n, prep.image_size, prep.image_size, prep.channels)


def worker_count(n: int, workers: int | None = None) -> int:
    """Processes decode_all uses for `n` records: `workers` (default: every core), no more than
    there are chunks."""
    return min(workers or os.cpu_count() or 1, -(-n // CHUNK))


def decode_all(
    records: Sequence[ImageRecord], prep: Preprocess, *, workers: int | None = None, progress: bool = False
) -> Arrays:
    """Decode records in parallel processes, each writing its chunks into one shared array."""
    n = len(records)
    workers = worker_count(n, workers)
    bar = _progress_bar(n) if progress else None
    try:
        if workers <= 1:
            x = np.zeros(_shape(n, prep), np.uint8)
            ok, errors = _serial(x, records, prep, bar)
        else:
            x, ok, errors = _parallel(records, prep, workers, bar)
    finally:
        if bar is not None:
            bar.close()
    y = np.fromiter((r.label for r in records), dtype=np.int64, count=n)
    unreadable = [records[i].location() for i in np.flatnonzero(~ok)]
    named = {records[i].location(): e for i, e in errors.items()}
    if ok.all():
        return Arrays(x=x, y=y, unreadable=unreadable, errors=named)
    return Arrays(x=x[ok], y=y[ok], unreadable=unreadable, errors=named)


def _serial(x: np.ndarray, records: Sequence[ImageRecord], prep: Preprocess, bar) -> tuple[np.ndarray, dict[int, str]]:  # noqa: ANN001 - a tqdm bar or None
    """One process, chunk by chunk (so progress and the test pause point behave as with workers)."""
    ok = np.zeros(len(records), bool)
    errors: dict[int, str] = {}
    for start in range(0, len(records), CHUNK):
        chunk_ok, chunk_errors = _decode_into(x[start : start + CHUNK], records[start : start + CHUNK], prep)
        _collect(ok, errors, start, chunk_ok, chunk_errors, bar)
    return ok, errors


def _parallel(
    records: Sequence[ImageRecord], prep: Preprocess, workers: int, bar  # noqa: ANN001 - a tqdm bar or None
) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """Worker processes decode chunks into shared memory; the parent copies the result out once."""
    import multiprocessing
    from multiprocessing import shared_memory

    n = len(records)
    shm = shared_memory.SharedMemory(create=True, size=max(1, int(np.prod(_shape(n, prep)))))
    try:
        sources = [Source.of(r) for r in records]
        tasks = [(shm.name, n, start, sources[start : start + CHUNK], prep) for start in range(0, n, CHUNK)]
        ok = np.zeros(n, bool)
        errors: dict[int, str] = {}
        # Not fork: a forked child can inherit a lock held by another thread of the parent
        # (MLflow's and torch's thread pools) and hang forever; it was seen here. The fork
        # server is a fresh process, started once per parent (like spawn, ~0.4 s here), that
        # forks each later pool's workers with WORKER_MODULES already imported (~0.02 s).
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(WORKER_MODULES)
        pool = context.Pool(workers, initializer=_worker_signals)
        try:
            for start, (chunk_ok, chunk_errors) in zip(range(0, n, CHUNK), pool.imap(_decode_chunk, tasks), strict=True):
                _collect(ok, errors, start, chunk_ok, chunk_errors, bar)
        finally:
            pool.terminate()
        return _take(shm, _shape(n, prep)), ok, errors
    finally:
        shm.close()
        shm.unlink()


def _take(shm, shape: tuple[int, ...]) -> np.ndarray:  # noqa: ANN001 - a SharedMemory
    """The workers' output as an array that outlives `shm`: on Linux the same pages, mapped again
    from /dev/shm (they stay after the name is unlinked, until the array is freed); elsewhere a
    copy. Copying 24 MB (FER2013 at 32 px) into fresh memory cost a tenth of decoding it here."""
    import mmap

    try:
        with open(Path("/dev/shm") / shm.name.lstrip("/"), "r+b") as fh:
            mapped = mmap.mmap(fh.fileno(), 0)
    except (OSError, ValueError):
        return np.ndarray(shape, np.uint8, buffer=shm.buf).copy()
    return np.frombuffer(mapped, np.uint8, count=int(np.prod(shape))).reshape(shape)


def _collect(ok: np.ndarray, errors: dict[int, str], start: int, chunk_ok: np.ndarray, chunk_errors: dict[int, str], bar) -> None:  # noqa: ANN001 - a tqdm bar or None
    ok[start : start + len(chunk_ok)] = chunk_ok
    errors.update({start + i: e for i, e in chunk_errors.items()})
    if bar is not None:
        bar.update(len(chunk_ok))
    pause_point("preprocessing")


def _progress_bar(total: int):  # noqa: ANN202 - a tqdm bar
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc="preprocessing", leave=False)


def _worker_signals() -> None:
    """Workers die on SIGTERM and leave Ctrl-C to the parent, which ends the pool itself."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def cache_key(splits: dict[str, Sequence[ImageRecord]], prep: Preprocess) -> str:
    """A digest of every record (path, size, mtime, label, box, CSV row) and the preprocessing settings."""
    digest = hashlib.sha256(json.dumps(prep.key(), sort_keys=True).encode())
    for split, records in sorted(splits.items()):
        digest.update(split.encode())
        for r in records:
            # The row is appended only when set, so file-based keys stay what they were.
            row = "" if r.row is None else f"|{r.row}"
            digest.update(f"{r.path}|{r.size}|{r.mtime_ns}|{r.label}|{r.box}{row}\n".encode())
    return digest.hexdigest()[:24]


def load_or_build(
    cache_dir: Path,
    splits: dict[str, Sequence[ImageRecord]],
    prep: Preprocess,
    *,
    workers: int | None = None,
    progress: bool = False,
) -> tuple[dict[str, Arrays], Path, bool]:
    """Load the cached arrays for these records, building (and saving) them if absent or damaged.

    Returns the arrays per split, the cache file, and whether it was built now.
    """
    key = cache_key(splits, prep)
    path = cache_dir / f"{key}.npz"
    cached = _load(path)
    if cached is not None:
        return cached, path, False
    with file_lock(cache_dir / f"{key}.lock"):
        cached = _load(path)  # another process may have built it while we waited
        if cached is not None:
            return cached, path, False
        arrays = {s: decode_all(r, prep, workers=workers, progress=progress) for s, r in splits.items()}
        # A split with nothing readable is an error for the caller; such arrays are not worth
        # keeping, and a failed run should leave the cache as it found it.
        if all(len(a.y) for a in arrays.values()):
            _save(path, arrays)
        return arrays, path, True


def _save(path: Path, arrays: dict[str, Arrays]) -> None:
    buffer = io.BytesIO()
    payload = {}
    for split, a in arrays.items():
        payload[f"{split}_x"], payload[f"{split}_y"] = a.x, a.y
    np.savez(buffer, **payload)
    data = buffer.getvalue()
    meta = {
        "sha256": hashlib.sha256(data).hexdigest(),
        "unreadable": {s: a.unreadable for s, a in arrays.items()},
        "errors": {s: a.errors for s, a in arrays.items()},
    }
    # Data first, then the manifest naming its checksum: a crash between leaves no manifest.
    atomic_write_bytes(path, data)
    atomic_write_bytes(path.with_suffix(".json"), json.dumps(meta).encode())


def _load(path: Path) -> dict[str, Arrays] | None:
    try:
        meta = json.loads(path.with_suffix(".json").read_text())
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != meta["sha256"]:
            return None
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            splits = {k[: -len("_x")] for k in npz.files if k.endswith("_x")}
            return {
                s: Arrays(
                    npz[f"{s}_x"], npz[f"{s}_y"], list(meta["unreadable"].get(s, [])),
                    dict(meta.get("errors", {}).get(s, {})),
                )
                for s in splits
            }
    except (OSError, ValueError, KeyError, TypeError):
        return None
