"""What a source adapter returns: image records for each split, before any decoding."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ImageRecord:
    """One labelled image on disk, with the face box to crop (x, y, w, h) when the source has one."""

    path: Path
    label: int  # index into the listing's class_names
    box: tuple[int, int, int, int] | None = None
    size: int = 0  # bytes on disk, part of the dataset digest
    mtime_ns: int = 0  # part of the cache key: a rewritten file rebuilds the cache
    # Images stored as text rows of a larger file (FER2013's CSV) have no file of their own:
    # `row` is the 1-based line number (part of the cache key and digest) and `span` the byte
    # offset and length of its space-separated grey levels, so a worker reads only that slice.
    row: int | None = None
    span: tuple[int, int] | None = None

    def location(self) -> str:
        """How messages name this image: its file, with ':row' for a CSV row."""
        return str(self.path) if self.row is None else f"{self.path}:{self.row}"


@dataclass(frozen=True)
class Listing:
    """A dataset's splits as records, plus what was skipped and why."""

    name: str
    root: Path
    class_names: tuple[str, ...]
    train: list[ImageRecord]
    val: list[ImageRecord]
    # A held-out test split (FER2013's PrivateTest, a `test/` folder): never used for training
    # or model selection, and not decoded by `harness run`; empty when the source has none.
    test: list[ImageRecord] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    skipped_examples: dict[str, str] = field(default_factory=dict)  # reason -> first example

    def skip(self, reason: str, example: str) -> None:
        """Count one skipped row or file, keeping the first example of each reason."""
        self.skipped[reason] += 1
        self.skipped_examples.setdefault(reason, example)
