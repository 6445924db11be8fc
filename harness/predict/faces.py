"""Faces found in a picture, prepared as the run prepared its training faces, and classified.

Detection works offline from the OpenCV wheel (its bundled Haar cascade, `haar`); `none` takes the
whole picture as the face, for images that are already face crops. When a detector finds no face,
the whole picture is classified instead and the row says so (`face_found` false): never silent.

A face is cropped from the upright picture and prepared by harness.data.cache.prepare, the same
function that built the training cache, then scored by harness.train.scoring.probabilities with
the run's own test-time augmentation; so on a face crop with `detector: none` the label and the
probabilities are those `harness eval` computes for that image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.core.registry import Registry
from harness.data.cache import Preprocess, prepare
from harness.train.device import resolve_device, to_tensor, use_channels_last
from harness.train.scoring import probabilities

if TYPE_CHECKING:
    from harness.predict.images import Picture
    from harness.spec.schema import ExperimentSpec

Box = tuple[int, int, int, int]  # x, y, width, height in the upright picture's pixels
Detector = Callable[[Any], list[Box]]  # an upright PIL image -> face boxes
DETECTORS: Registry[Detector] = Registry("face detector")
# Haar cascades miss small faces and fire on textures at tiny scales: faces below this side
# (pixels) are not looked for.
MIN_FACE = 24


@DETECTORS.register("haar")
def haar(image: Any) -> list[Box]:
    """OpenCV's frontal-face Haar cascade, shipped inside the opencv-python-headless wheel."""

    grey = np.asarray(image.convert("L"))
    faces = _cascade().detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(MIN_FACE, MIN_FACE))
    return [tuple(int(v) for v in face) for face in faces]  # type: ignore[misc]


@DETECTORS.register("none")
def whole_image(image: Any) -> list[Box]:
    """No detection: the whole picture is the face (a face crop, as the datasets hold)."""
    return []


def _cascade() -> Any:
    import cv2

    global _CASCADE
    if _CASCADE is None:
        _CASCADE = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    return _CASCADE


_CASCADE: Any = None  # loaded once per process: reading the XML takes ~50 ms


@dataclass(frozen=True)
class Face:
    """One prediction: the face's box (the whole picture when none was found), the label and the
    probability of every class, in the model's output order."""

    source: str
    frame: int | None
    face: int
    box: Box
    face_found: bool
    label: str
    probabilities: dict[str, float] = field(repr=False)

    @property
    def score(self) -> float:
        """The probability of the predicted label."""
        return self.probabilities[self.label]

    def row(self) -> dict[str, Any]:
        """As a flat record: one column per class probability."""
        x, y, w, h = self.box
        record = {"source": self.source, "frame": self.frame, "face": self.face, "x": x, "y": y, "width": w,
                  "height": h, "face_found": self.face_found, "label": self.label, "score": round(self.score, 6)}  # fmt: skip
        return record | {f"p_{name}": round(p, 6) for name, p in self.probabilities.items()}


@dataclass
class FacePredictor:
    """A trained network with its spec and class names, turned into faces-and-labels."""

    model: Any  # a torch module (or harness.predict.onnx.OnnxModule), with its input layer
    spec: ExperimentSpec
    class_names: tuple[str, ...]
    detector: str = "haar"

    def __post_init__(self) -> None:
        self._detect = DETECTORS.get(self.detector)
        self._device = "cpu" if getattr(self.model, "is_onnx", False) else resolve_device(self.spec.train.device)
        self._channels_last = use_channels_last(self.spec, self._device)
        self.model = self.model.eval()
        if not getattr(self.model, "is_onnx", False):
            import torch

            self.model = self.model.to(self._device)
            if self._channels_last:
                self.model = self.model.to(memory_format=torch.channels_last)

    @property
    def prep(self) -> Preprocess:
        return Preprocess(self.spec.data.image_size, self.spec.data.channels)

    def faces(self, pictures: Sequence[Picture]) -> list[Face]:
        """Every face of every picture, classified in one batch."""
        crops, where = [], []
        for picture in pictures:
            for index, (box, found, array) in enumerate(self._crops(picture.image)):
                crops.append(array)
                where.append((picture, index, box, found))
        if not crops:
            return []
        probs = self.probabilities(np.stack(crops))
        return [
            Face(p.source, p.frame, i, box, found, self.class_names[int(row.argmax())],
                 {name: float(v) for name, v in zip(self.class_names, row, strict=True)})
            for (p, i, box, found), row in zip(where, probs, strict=True)
        ]  # fmt: skip

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities of prepared faces (N, H, W, C uint8)."""
        return probabilities(self.model, to_tensor(x, self._device), self.spec, self._device, channels_last=self._channels_last)

    def _crops(self, image: Any) -> list[tuple[Box, bool, np.ndarray]]:
        from PIL import ImageOps

        if self.detector == "none":
            # As the dataset adapters read a face crop: the picture as decoded, so prepare()
            # applies its EXIF orientation and JPEG draft decoding exactly as for training.
            upright = ImageOps.exif_transpose(image)
            return [((0, 0, *upright.size), True, prepare(image, None, self.prep))]
        upright = ImageOps.exif_transpose(image)
        boxes = self._detect(upright)
        if not boxes:
            return [((0, 0, *upright.size), False, prepare(upright, (0, 0, *upright.size), self.prep))]
        return [(box, True, prepare(upright, box, self.prep)) for box in boxes]
