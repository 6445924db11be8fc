"""The inputs of `harness predict`: image files, folders of them and videos, read one at a time.

A photo is decoded fully here, so a truncated or corrupt file fails now, with its name, rather
than half-way through a batch; grey, RGBA, palette and 16-bit images are converted the way
training converts them (harness.data.cache.to_mode), and EXIF orientation is honoured. Pillow
refuses a decompression bomb (more than Image.MAX_IMAGE_PIXELS pixels) before decoding it. Video
frames are read one by one with OpenCV, every N-th kept, so memory stays flat in a video's length.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError, first_line

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})


class InputError(HarnessError):
    """One input cannot be read; the others are still predicted."""


@dataclass(frozen=True)
class Picture:
    """One image to predict: where it came from (a file, and a frame number for a video) and the
    opened PIL image (as decoded: its EXIF orientation not yet applied)."""

    source: str
    frame: int | None
    image: Any  # PIL.Image.Image


def open_picture(data: bytes | Path, source: str) -> Any:
    """A fully decoded PIL image from a file or bytes; InputError naming `source` if it is not one."""
    from PIL import Image

    try:
        raw = data.read_bytes() if isinstance(data, Path) else bytes(data)
    except OSError as exc:
        raise InputError(f"{source}: cannot read: {first_line(exc)}") from None
    if not raw:
        raise InputError(f"{source}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(raw))
            image.load()  # decode now: a truncated file fails here, named
    except Image.DecompressionBombError as exc:
        raise InputError(f"{source}: too large to decode safely ({first_line(exc, with_type=False, limit=160)})") from None
    except Image.DecompressionBombWarning:
        raise InputError(f"{source}: too large to decode safely (more than {Image.MAX_IMAGE_PIXELS:,} pixels)") from None
    except Exception as exc:  # noqa: BLE001 - every decoder failure is "not a readable image"
        raise InputError(f"{source}: not a readable image ({first_line(exc, limit=160)})") from None
    return image


def expand(paths: Sequence[Path]) -> list[Path]:
    """Files as given, and folders' images and videos (recursively, sorted); missing paths raise."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
        elif path.exists():
            found.append(path)
        else:
            raise InputError(f"{path}: no such file or folder")
    return found


def is_video(path: Path) -> bool:
    """Whether `path` is read as a video (by its suffix)."""
    return path.suffix.lower() in VIDEO_SUFFIXES


def video_frames(path: Path, every: int) -> Iterator[Picture]:
    """Every `every`-th frame of a video, one at a time (frame numbers from 0)."""
    import cv2
    from PIL import Image

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise InputError(f"{path}: cannot be opened as a video")
    try:
        index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if index % every == 0:
                yield Picture(str(path), index, Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)))
            index += 1
    finally:
        capture.release()
    if index == 0:
        raise InputError(f"{path}: no frame could be read from the video")
