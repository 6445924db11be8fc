"""`harness predict`: faces and emotions for image files, folders and videos.

Pictures are read one at a time and scored in small batches, rows are written as they come, so
memory stays flat in the length of a video. A picture that cannot be read is reported (its file
and the problem) and skipped; the command fails only when nothing could be predicted.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from harness.core.errors import HarnessError
from harness.predict.faces import Face, FacePredictor
from harness.predict.images import InputError, Picture, expand, is_video, open_picture, video_frames

BATCH = 32  # pictures scored together: a few dozen faces fill a batch well
OUTPUT_SUFFIXES = (".csv", ".jsonl")


@dataclass
class Outcome:
    """What a prediction run did: faces predicted, pictures read, problems met."""

    faces: int = 0
    pictures: int = 0
    no_face: int = 0  # pictures classified whole because no face was found
    problems: list[str] = field(default_factory=list)


def predict_paths(
    predictor: FacePredictor, paths: list[Path], *, every: int = 1, out: Path | None = None,
    annotate: Path | None = None, echo: Callable[[str], None] = print, progress: bool = True,
) -> Outcome:  # fmt: skip
    """Predict every picture under `paths`; rows to `echo` (a table) and to `out` (.csv/.jsonl)."""
    if out is not None and out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise HarnessError(f"--out {out}: write .csv or .jsonl")
    outcome = Outcome()
    files = expand(paths)
    with _writer(out, predictor.class_names) as write:
        echo(f"{'source':<40} {'frame':>6} {'face':>4} {'box (x, y, w, h)':<22} {'label':<10} score")
        for batch in _batches(_pictures(files, every, outcome), BATCH, progress and len(files) > 1):
            faces = predictor.faces(batch)
            for face in faces:
                write(face.row())
                echo(_line(face))
            outcome.pictures += len(batch)
            outcome.faces += len(faces)
            outcome.no_face += sum(not f.face_found for f in faces)
            if annotate is not None:
                _annotate(batch, faces, annotate)
    if not outcome.pictures:
        raise HarnessError("nothing predicted: " + ("; ".join(outcome.problems) or "no image or video given"))
    return outcome


def _pictures(files: list[Path], every: int, outcome: Outcome) -> Iterator[Picture]:
    for path in files:
        try:
            if is_video(path):
                yield from video_frames(path, every)
            else:
                yield Picture(str(path), None, open_picture(path, str(path)))
        except InputError as exc:
            outcome.problems.append(str(exc))
            print(f"harness: warning: {exc}", file=sys.stderr)


def _batches(pictures: Iterable[Picture], size: int, progress: bool) -> Iterator[list[Picture]]:
    from tqdm import tqdm

    batch: list[Picture] = []
    for picture in tqdm(pictures, desc="predicting", unit="img", disable=not progress, file=sys.stderr):
        batch.append(picture)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class _writer:
    """A context manager writing rows to a CSV or JSON-lines file (or nowhere)."""

    def __init__(self, out: Path | None, class_names: tuple[str, ...]) -> None:
        self.out, self.class_names = out, class_names
        self.handle: IO[str] | None = None

    def __enter__(self) -> Callable[[dict[str, Any]], None]:
        if self.out is None:
            return lambda row: None
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.out, "w", newline="", encoding="utf-8")  # noqa: SIM115 - closed in __exit__
        if self.out.suffix.lower() == ".jsonl":
            return lambda row: self.handle.write(json.dumps(row) + "\n")  # type: ignore[union-attr]
        fields = ["source", "frame", "face", "x", "y", "width", "height", "face_found", "label", "score",
                  *(f"p_{c}" for c in self.class_names)]  # fmt: skip
        writer = csv.DictWriter(self.handle, fieldnames=fields)
        writer.writeheader()
        return writer.writerow

    def __exit__(self, *exc: object) -> None:
        if self.handle is not None:
            self.handle.close()


def _line(face: Face) -> str:
    frame = "" if face.frame is None else str(face.frame)
    box = "whole image (no face)" if not face.face_found else str(face.box)
    return f"{face.source[-40:]:<40} {frame:>6} {face.face:>4} {box:<22} {face.label:<10} {face.score:.3f}"


def _annotate(batch: list[Picture], faces: list[Face], folder: Path) -> None:
    """Each picture with its faces' boxes and labels drawn, as a JPEG in `folder`."""
    from PIL import ImageDraw, ImageOps

    folder.mkdir(parents=True, exist_ok=True)
    for picture in batch:
        image = ImageOps.exif_transpose(picture.image).convert("RGB")
        draw = ImageDraw.Draw(image)
        width = max(2, image.width // 200)
        for face in (f for f in faces if f.source == picture.source and f.frame == picture.frame):
            x, y, w, h = face.box
            colour = "#2ca02c" if face.face_found else "#e0a100"
            draw.rectangle((x, y, x + w - 1, y + h - 1), outline=colour, width=width)
            text = f"{face.label} {face.score:.0%}" + ("" if face.face_found else " (no face found)")
            left, top, right, bottom = draw.textbbox((x, y), text)
            lift = bottom - top + 4
            draw.rectangle((x, max(0, y - lift), x + right - left + 6, max(lift, y)), fill=colour)
            draw.text((x + 3, max(0, y - lift) + 2), text, fill="white")
        name = Path(picture.source).stem + ("" if picture.frame is None else f"-frame{picture.frame:06d}")
        image.save(folder / f"{name}.jpg", quality=90)
