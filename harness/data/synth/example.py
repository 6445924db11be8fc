"""One example: an identity, an expression and a pose turned into landmarks, a box and a picture.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw

from harness.data.synth.colour import muted_colour
from harness.data.synth.draw import (
    draw_accessories,
    draw_clutter,
    draw_face,
    draw_non_face,
    photometric,
)
from harness.data.synth.geometry import face_landmarks, face_parts, sample_look
from harness.data.synth.knobs import (
    CONTROL_HIGH,
    CONTROL_LOW_VECTOR,
    CONTROL_NOISE_SD,
    CONTROLS,
    EXPRESSIVE_CODES,
    INTENSITY_RANGE,
    NO_VALENCE_AROUSAL,
    PROTOTYPE_VECTORS,
    PROTOTYPES,
    SUPERSAMPLE,
    UPPER_FACE_MASK,
    VALENCE_AROUSAL,
    VALENCE_AROUSAL_SD,
)
from harness.data.synth.pose import face_box, pose_and_project


class Example(NamedTuple):
    """One rendered image and its AffectNet annotations."""

    image: Image.Image
    landmarks: np.ndarray  # (68, 2) image pixels, iBUG order
    box: tuple[int, int, int, int]  # face_x, face_y, face_width, face_height
    valence: float
    arousal: float


def render_example(
    rng: np.random.Generator, code: int, min_size: int = 128, max_size: int = 224
) -> Example:
    """One image of expression `code` with its landmarks, face box, valence and arousal."""
    width, height = _image_size(rng, min_size, max_size)
    k = SUPERSAMPLE
    canvas = Image.new("RGB", (width * k, height * k), muted_colour(rng))
    draw = ImageDraw.Draw(canvas)
    draw_clutter(draw, rng, width * k, height * k, int(rng.integers(3, 10)))
    look = sample_look(rng)
    # A non-face still gets (neutral) landmarks and a box: AffectNet's rows always have them.
    controls, intensity = _controls_for(rng, 0 if code == 10 else code)
    landmarks_t = face_landmarks(rng, controls)
    parts = face_parts(landmarks_t, look)
    pose, pixels, slices = pose_and_project(rng, parts, width, height)
    # PIL wants flat coordinate lists: convert once, then cut per part.
    flat = (pixels * k).ravel().tolist()
    canvas_parts = {name: flat[2 * sl.start : 2 * sl.stop] for name, sl in slices.items()}
    if code == 10:
        draw_non_face(draw, rng, canvas_parts, look, width * k, height * k)
    else:
        draw_face(draw, canvas_parts, landmarks_t, controls, look, pose.scale * k)
        draw_accessories(draw, rng, parts, look, pose)
    image = photometric(canvas.reduce(k), rng)
    landmarks = pixels[slices["landmarks"]]
    box = face_box(pixels[slices["outline"]], width, height)
    return Example(image, landmarks, box, *_valence_arousal(rng, code, intensity))


def _image_size(rng: np.random.Generator, min_size: int, max_size: int) -> tuple[int, int]:
    width = int(rng.integers(min_size, max_size + 1))
    # AffectNet crops are roughly square; allow a mild aspect ratio within the size bounds.
    height = int(np.clip(round(width * rng.uniform(0.85, 1.18)), min_size, max_size))
    return width, height


def _controls_for(rng: np.random.Generator, code: int) -> tuple[dict[str, float], float]:
    """Expression controls for one face of class `code`, and the intensity it was drawn at."""
    intensity = float(rng.uniform(*INTENSITY_RANGE))
    if code == 8:  # none: the upper face of one emotion with the lower face of another
        first, second = rng.choice(EXPRESSIVE_CODES, size=2, replace=False)
        target = np.where(UPPER_FACE_MASK, PROTOTYPE_VECTORS[first], PROTOTYPE_VECTORS[second])
    elif code == 9:  # uncertain: half-way between two expressions, neutral included
        first, second = rng.choice(len(PROTOTYPES), size=2, replace=False)
        t = rng.uniform(0.3, 0.7)
        target = (1 - t) * PROTOTYPE_VECTORS[first] + t * PROTOTYPE_VECTORS[second]
    else:
        target = PROTOTYPE_VECTORS[code]
    noise = rng.normal(0.0, CONTROL_NOISE_SD, size=len(CONTROLS))
    values = np.clip(intensity * target + noise, CONTROL_LOW_VECTOR, CONTROL_HIGH)
    controls = dict(zip(CONTROLS, values.tolist(), strict=True))
    if code == 1:  # smiles range from closed-lip to open, whatever the intensity
        controls["jaw_open"] *= float(rng.uniform(0.0, 2.0))
    return controls, intensity


def _valence_arousal(rng: np.random.Generator, code: int, intensity: float) -> tuple[float, float]:
    if code not in VALENCE_AROUSAL:
        return NO_VALENCE_AROUSAL, NO_VALENCE_AROUSAL
    mean = np.array(VALENCE_AROUSAL[code]) * min(intensity, 1.0)
    v, a = np.clip(mean + rng.normal(0.0, VALENCE_AROUSAL_SD, size=2), -1.0, 1.0)
    return round(float(v), 6), round(float(a), 6)


def iter_examples(
    seed: int, code: int, n: int, min_size: int = 128, max_size: int = 224
) -> Iterator[Example]:
    """`n` rendered examples of one class, for previews and contact sheets (not written to disk)."""
    for i in range(n):
        # Tag 9 keeps previews apart from the splits (0, 1), whose images they never repeat.
        rng = np.random.default_rng(np.random.SeedSequence([seed, 9, code, i]))
        yield render_example(rng, code, min_size, max_size)
