"""Synthetic facial-expression dataset written in AffectNet's on-disk format.

Each face is drawn from its 68 iBUG landmarks: an identity (face shape, eye size, lip
thickness, skin, hair) is deformed by an expression (a small set of facial "action" controls
such as brow raise or mouth-corner pull), posed (roll, yaw, pitch, scale, position) and drawn
with PIL over a cluttered background; lighting, occluders, blur, sensor noise and JPEG
compression then degrade it. Class counts copy AffectNet's imbalance; validation is balanced.

Every image is seeded from (seed, split, index), so the worker pool's order never changes a
byte, and the CSVs are written last, so a folder whose CSVs exist is complete.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter
from tqdm import tqdm

from harness.core.classes import AFFECTNET_CLASSES
from harness.core.errors import DataError
from harness.core.locks import atomic_write_text
from harness.data.affectnet import COLUMNS

GENERATOR_VERSION = "1"

# AffectNet's manually annotated training set, images per expression code, as published with
# the dataset (Mollahosseini et al., 2017): the imbalance the study is about (happy ~35x disgust).
TRAIN_COUNTS_AFFECTNET: dict[int, int] = {
    0: 74874,  # neutral
    1: 134415,  # happy
    2: 25459,  # sad
    3: 14090,  # surprise
    4: 6378,  # fear
    5: 3803,  # disgust
    6: 24882,  # anger
    7: 3750,  # contempt
    8: 33088,  # none
    9: 11645,  # uncertain
    10: 82414,  # non-face
}
# Tiny scales (tests) would round the rare classes to zero; keep every class trainable.
MIN_TRAIN_PER_CLASS = 20

CSV_HEADER = COLUMNS  # AffectNet's columns, exactly as the adapter reads them
IMAGE_DIR = "Manually_Annotated_Images"
SPLITS = ("training", "validation")
# One image to render: (path relative to IMAGE_DIR, split index, index in split, expression code).
Task = tuple[str, int, int, int]
# AffectNet spreads images over numbered sub-folders; a few dozen keep directories small.
SUBDIRS = 64

# --- Difficulty knobs. Tuned so a plain CNN on 32x32 face crops lands well above chance and
# well below perfect: expressions overlap because their strength and per-control jitter vary.
# Strength of an expression relative to its prototype; low values are close to neutral.
INTENSITY_RANGE = (0.25, 1.1)
# Per-face Gaussian jitter added to every control (including ones the class does not use),
# so faces of one class differ and neighbouring classes blur into each other.
CONTROL_NOISE_SD = 0.12
# Identity shape variation (template units): brow height and mouth shape vary between
# people as much as a mild expression changes them, as in real faces.
IDENTITY_BROW_SHIFT = 0.05
IDENTITY_MOUTH_SCALE = (0.85, 1.15)
# Head pose.
ROLL_DEG = 18.0
YAW_DEG = 30.0
PITCH_DEG = 12.0
# Share of the shorter image side taken by the face box (AffectNet crops keep some context).
FACE_FRACTION = (0.55, 0.92)
# Photometric nuisance.
OCCLUSION_PROB = 0.2  # hand, sunglasses or an object over part of the face
GLASSES_PROB = 0.12  # clear glasses: changes the eye region without hiding it
BLUR_PROB = 0.35
BLUR_RADIUS = (0.3, 1.4)
LIGHT_GRADIENT_MAX = 0.45  # +-45 % brightness across the image from a directional light
BRIGHTNESS_RANGE = (0.7, 1.2)
CONTRAST_RANGE = (0.7, 1.15)
NOISE_SD_RANGE = (1.0, 10.0)  # sensor noise: sd in grey levels on white (255), less on darker
GRAYSCALE_PROB = 0.06  # AffectNet holds some black-and-white photographs
JPEG_QUALITY = (35, 95)
# Where an occluding hand rests (template units): chin, mouth corner, cheek, over an eye.
HAND_ANCHORS = (
    (-0.6, 0.75),
    (0.6, 0.75),
    (0.0, 0.95),
    (-0.85, 0.1),
    (0.85, 0.1),
    (-0.45, -0.45),
    (0.45, -0.45),
)
NONFACE_BLOB_PROB = 0.35  # a skin-coloured head shape with no features: a hard non-face
# Faces are drawn at twice the size and reduced: cheap anti-aliasing for PIL's polygons.
SUPERSAMPLE = 2

# Expression controls ("action units" of the drawing), in the order of CONTROLS.
CONTROLS = (
    "brow_raise",
    "brow_inner_up",
    "brow_lower",
    "brow_together",
    "eye_open",
    "smile",
    "frown",
    "jaw_open",
    "mouth_round",
    "mouth_stretch",
    "lip_press",
    "upper_lip_raise",
    "smirk",
)
UPPER_FACE = ("brow_raise", "brow_inner_up", "brow_lower", "brow_together", "eye_open")
# Narrowed eyes (negative eye_open) are meaningful; other controls only act one way.
CONTROL_LOW = {"eye_open": -1.0, "brow_raise": -0.3}
CONTROL_HIGH = 1.5

# Prototype (strong) expressions, by AffectNet code, after FACS descriptions (Ekman & Friesen).
PROTOTYPES: dict[int, dict[str, float]] = {
    0: {},
    1: {"smile": 1.0, "jaw_open": 0.3, "eye_open": -0.3, "brow_raise": 0.1},
    2: {
        "brow_inner_up": 1.0,
        "brow_together": 0.35,
        "frown": 1.0,
        "eye_open": -0.3,
        "lip_press": 0.2,
    },
    3: {"brow_raise": 1.0, "eye_open": 1.0, "jaw_open": 0.85, "mouth_round": 0.55},
    4: {
        "brow_raise": 0.5,
        "brow_inner_up": 0.7,
        "brow_together": 0.6,
        "eye_open": 1.0,
        "mouth_stretch": 1.0,
        "jaw_open": 0.25,
    },
    5: {
        "upper_lip_raise": 1.0,
        "brow_lower": 0.6,
        "brow_together": 0.3,
        "eye_open": -0.45,
        "frown": 0.35,
    },
    6: {"brow_lower": 1.0, "brow_together": 1.0, "eye_open": -0.3, "lip_press": 1.0},
    7: {"smirk": 1.0, "lip_press": 0.3, "eye_open": -0.1},
}
EXPRESSIVE_CODES = tuple(range(1, 8))
PROTOTYPE_VECTORS = {
    code: np.array([proto.get(name, 0.0) for name in CONTROLS])
    for code, proto in PROTOTYPES.items()
}
UPPER_FACE_MASK = np.array([name in UPPER_FACE for name in CONTROLS])
CONTROL_LOW_VECTOR = np.array([CONTROL_LOW.get(name, 0.0) for name in CONTROLS])

# Mean (valence, arousal) of each emotion at full intensity, from the circumplex placement of
# AffectNet's categories; scaled by the drawn intensity, jittered, clipped to [-1, 1].
VALENCE_AROUSAL: dict[int, tuple[float, float]] = {
    0: (0.0, 0.0),
    1: (0.7, 0.3),
    2: (-0.65, -0.3),
    3: (0.2, 0.7),
    4: (-0.55, 0.7),
    5: (-0.65, 0.4),
    6: (-0.55, 0.65),
    7: (-0.45, 0.3),
}
VALENCE_AROUSAL_SD = 0.1
NO_VALENCE_AROUSAL = -2.0  # what AffectNet writes for None, Uncertain and No-Face

# Skin tones from fair to deep; a face's tone is drawn between two neighbouring anchors.
SKIN_TONES = (
    (246, 218, 194),
    (232, 188, 152),
    (204, 152, 112),
    (166, 114, 78),
    (124, 82, 56),
    (84, 54, 38),
)
HAIR_COLOURS = (
    (22, 18, 16),
    (58, 38, 24),
    (105, 70, 42),
    (196, 160, 98),
    (150, 72, 36),
    (165, 162, 158),
)
HAIR_STYLES = ("bald", "short", "short", "long", "long")  # drawn uniformly: 1 in 5 bald
IRIS_COLOURS = ((72, 46, 26), (40, 28, 20), (70, 110, 150), (80, 110, 70), (110, 90, 60))
MOUTH_CAVITY = (72, 24, 30)
TEETH = (236, 232, 218)
EYE_WHITE = (238, 236, 228)


@dataclass(frozen=True)
class SynthSummary:
    """What `generate` wrote: where, how many images per class and split, and how long it took."""

    root: Path
    train_counts: dict[str, int]
    val_counts: dict[str, int]
    seconds: float


def train_counts(scale: float) -> dict[int, int]:
    """Training images per expression code: AffectNet's counts times `scale`, at least a few each."""
    if not scale > 0:
        raise DataError(f"synthetic dataset: scale must be > 0, got {scale}")
    return {
        code: max(round(n * scale), MIN_TRAIN_PER_CLASS)
        for code, n in TRAIN_COUNTS_AFFECTNET.items()
    }


def generate(
    root: Path,
    *,
    seed: int = 0,
    scale: float = 0.02,
    val_per_class: int = 100,
    min_size: int = 128,
    max_size: int = 224,
    workers: int | None = None,
    progress: bool = False,
) -> SynthSummary:
    """Write the synthetic dataset under `root` (images, SYNTH.json, then the two CSVs)."""
    start = time.perf_counter()
    root = Path(root)
    _check_arguments(seed, val_per_class, min_size, max_size)
    counts = {
        "training": train_counts(scale),
        "validation": dict.fromkeys(TRAIN_COUNTS_AFFECTNET, val_per_class),
    }
    _prepare_root(root)
    meta = {
        "generator": "fer-harness synth",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "scale": scale,
        "val_per_class": val_per_class,
        "min_size": min_size,
        "max_size": max_size,
        "train_counts": _by_name(counts["training"]),
        "val_counts": _by_name(counts["validation"]),
    }
    # SYNTH.json first marks the folder as ours, so an interrupted run can be redone here.
    atomic_write_text(root / "SYNTH.json", json.dumps(meta, indent=2) + "\n")
    tasks = [t for split in SPLITS for t in _split_tasks(seed, split, counts[split])]
    _make_subdirs(root, tasks)
    render = partial(_render_task, root=str(root), seed=seed, min_size=min_size, max_size=max_size)
    rows = _run_tasks(render, tasks, workers, progress)
    n_train = sum(counts["training"].values())
    # CSVs last: their presence is what marks the dataset complete.
    atomic_write_text(root / "validation.csv", csv_text(rows[n_train:]))
    atomic_write_text(root / "training.csv", csv_text(rows[:n_train]))
    return SynthSummary(
        root=root,
        train_counts=meta["train_counts"],
        val_counts=meta["val_counts"],
        seconds=time.perf_counter() - start,
    )


# --------------------------------------------------------------------------- orchestration


def _check_arguments(seed: int, val_per_class: int, min_size: int, max_size: int) -> None:
    if seed < 0:
        raise DataError(f"synthetic dataset: seed must be >= 0, got {seed}")
    if val_per_class < 0:
        raise DataError(f"synthetic dataset: val_per_class must be >= 0, got {val_per_class}")
    # Faces need room for their features, and the study resizes to 32 px: keep images larger.
    if not 64 <= min_size <= max_size:
        raise DataError(
            f"synthetic dataset: need 64 <= min_size <= max_size, got {min_size}, {max_size}"
        )


def _by_name(counts: Mapping[int, int]) -> dict[str, int]:
    return {AFFECTNET_CLASSES[code]: n for code, n in sorted(counts.items())}


def _prepare_root(root: Path) -> None:
    """Create `root`, or clear a previous synthetic dataset there; never touch foreign data."""
    if root.exists() and not root.is_dir():
        raise DataError(f"{root}: exists and is not a folder; cannot write the dataset there")
    if root.exists() and any(root.iterdir()):
        if not (root / "SYNTH.json").is_file():
            raise DataError(
                f"{root}: folder is not empty and holds no SYNTH.json; refusing to overwrite it"
            )
        # Drop the CSVs first so an interrupted regeneration never looks complete.
        for name in ("training.csv", "validation.csv", "SYNTH.json"):
            (root / name).unlink(missing_ok=True)
        shutil.rmtree(root / IMAGE_DIR, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)


def _split_tasks(seed: int, split: str, counts: Mapping[int, int]) -> list[Task]:
    """(relative path, split id, index, code) per image; classes shuffled like AffectNet's CSVs."""
    split_id = SPLITS.index(split)
    codes = np.repeat(np.array(sorted(counts), dtype=np.int64), [counts[c] for c in sorted(counts)])
    np.random.default_rng(np.random.SeedSequence([seed, split_id, 0, 0])).shuffle(codes)
    return [
        (_relative_path(seed, split, i), split_id, i, int(code)) for i, code in enumerate(codes)
    ]


def _relative_path(seed: int, split: str, index: int) -> str:
    # AffectNet names files by a hex digest inside numbered folders; mimic both.
    digest = hashlib.sha224(f"fer-harness-synth/{seed}/{split}/{index}".encode()).hexdigest()
    return f"{int(digest[:8], 16) % SUBDIRS + 1}/{digest}.jpg"


def _make_subdirs(root: Path, tasks: list[Task]) -> None:
    for sub in sorted({t[0].split("/")[0] for t in tasks}):
        (root / IMAGE_DIR / sub).mkdir(parents=True, exist_ok=True)


def _run_tasks(
    render: Callable[[Task], list[str]], tasks: list[Task], workers: int | None, progress: bool
) -> list[list[str]]:
    """Render every task, in a worker pool unless one worker is asked for; rows in task order."""
    n_workers = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    with tqdm(total=len(tasks), disable=not progress, unit="img", desc="synthetic data") as bar:
        if n_workers == 1:
            return _collect(map(render, tasks), bar)
        # spawn, not fork: the parent may hold torch's thread pools, which do not survive fork.
        with multiprocessing.get_context("spawn").Pool(n_workers) as pool:
            chunk = max(1, min(64, len(tasks) // (n_workers * 8)))
            return _collect(pool.imap(render, tasks, chunksize=chunk), bar)


def _collect(rows: Iterable[list[str]], bar: tqdm) -> list[list[str]]:
    collected = []
    for row in rows:
        collected.append(row)
        bar.update(1)
    return collected


def _render_task(task: Task, *, root: str, seed: int, min_size: int, max_size: int) -> list[str]:
    """Render one image to disk and return its CSV row (runs in a worker process)."""
    rel_path, split_id, index, code = task
    rng = np.random.default_rng(np.random.SeedSequence([seed, split_id, 1, index]))
    image, landmarks, box, valence, arousal = render_example(rng, code, min_size, max_size)
    quality = int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))
    image.save(os.path.join(root, IMAGE_DIR, rel_path), "JPEG", quality=quality)
    return [
        rel_path,
        *(str(v) for v in box),
        ";".join(f"{v:.2f}" for v in landmarks.ravel().tolist()),
        str(code),
        _va_text(valence),
        _va_text(arousal),
    ]


def _va_text(value: float) -> str:
    return "-2" if value == NO_VALENCE_AROUSAL else f"{value:.6f}"


# --------------------------------------------------------------------------- one example


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
    canvas = Image.new("RGB", (width * k, height * k), _muted_colour(rng))
    draw = ImageDraw.Draw(canvas)
    _draw_clutter(draw, rng, width * k, height * k, int(rng.integers(3, 10)))
    look = _sample_look(rng)
    # A non-face still gets (neutral) landmarks and a box: AffectNet's rows always have them.
    controls, intensity = _controls_for(rng, 0 if code == 10 else code)
    landmarks_t = _face_landmarks(rng, controls)
    parts = _face_parts(landmarks_t, look)
    pose, pixels, slices = _pose_and_project(rng, parts, width, height)
    # PIL wants flat coordinate lists: convert once, then cut per part.
    flat = (pixels * k).ravel().tolist()
    canvas_parts = {name: flat[2 * sl.start : 2 * sl.stop] for name, sl in slices.items()}
    if code == 10:
        _draw_non_face(draw, rng, canvas_parts, look, width * k, height * k)
    else:
        _draw_face(draw, canvas_parts, landmarks_t, controls, look, pose.scale * k)
        _draw_accessories(draw, rng, parts, look, pose)
    image = _photometric(canvas.reduce(k), rng)
    landmarks = pixels[slices["landmarks"]]
    box = _face_box(pixels[slices["outline"]], width, height)
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


# --------------------------------------------------------------------------- geometry
# Template space: x to the subject's left on screen (image right), y down, origin at the nose
# tip, half the face width = 1. Proportions follow the mean iBUG-68 shape.


def _mirror(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    return [(-x, y) for x, y in reversed(points)]


def _base_landmarks() -> np.ndarray:
    jaw_left = [(-0.99, -0.48), (-0.98, -0.21), (-0.95, 0.06), (-0.89, 0.32), (-0.79, 0.56),
                (-0.64, 0.78), (-0.45, 0.95), (-0.23, 1.08)]  # fmt: skip
    jaw = [*jaw_left, (0.0, 1.13), *_mirror(jaw_left)]
    brow_left = [(-0.80, -0.66), (-0.67, -0.77), (-0.51, -0.80), (-0.35, -0.78), (-0.19, -0.72)]
    nose = [(0.0, -0.52), (0.0, -0.35), (0.0, -0.17), (0.0, 0.0),
            (-0.19, 0.11), (-0.1, 0.15), (0.0, 0.17), (0.1, 0.15), (0.19, 0.11)]  # fmt: skip
    eye_left = [
        (-0.61, -0.49),
        (-0.5, -0.56),
        (-0.37, -0.56),
        (-0.26, -0.48),
        (-0.37, -0.42),
        (-0.5, -0.42),
    ]
    m = [(-x, y) for x, y in eye_left]
    # iBUG starts the right eye at its inner corner.
    eye_right = [m[3], m[2], m[1], m[0], m[5], m[4]]
    outer_lip = [(-0.38, 0.45), (-0.25, 0.39), (-0.1, 0.36), (0.0, 0.38), (0.1, 0.36), (0.25, 0.39),
                 (0.38, 0.45), (0.25, 0.55), (0.12, 0.6), (0.0, 0.61), (-0.12, 0.6), (-0.25, 0.55)]  # fmt: skip
    inner_lip = [(-0.31, 0.45), (-0.11, 0.445), (0.0, 0.45), (0.11, 0.445),
                 (0.31, 0.45), (0.11, 0.455), (0.0, 0.46), (-0.11, 0.455)]  # fmt: skip
    points = (
        jaw + brow_left + _mirror(brow_left) + nose + eye_left + eye_right + outer_lip + inner_lip
    )
    base = np.array(points, dtype=np.float64)
    base.setflags(write=False)
    return base


BASE_LANDMARKS = _base_landmarks()
BROWS = np.arange(17, 27)
BROW_INNER_WEIGHT = np.array([0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0])
EYE_LEFT, EYE_RIGHT = np.arange(36, 42), np.arange(42, 48)
# Lid and lip index pairs line up: UPPER_LID[i] lies above LOWER_LID[i], and so on.
UPPER_LID, LOWER_LID = np.array([37, 38, 43, 44]), np.array([41, 40, 47, 46])
MOUTH = np.arange(48, 68)
CORNERS = np.array([48, 54, 60, 64])
OUTER_UPPER, OUTER_LOWER = np.array([49, 50, 51, 52, 53]), np.array([59, 58, 57, 56, 55])
INNER_UPPER, INNER_LOWER = np.array([61, 62, 63]), np.array([67, 66, 65])
NOSTRILS = np.arange(31, 36)
CHIN = np.arange(4, 13)
CHIN_WEIGHT = np.array([0.2, 0.45, 0.7, 0.9, 1.0, 0.9, 0.7, 0.45, 0.2])


def _outward(points: np.ndarray) -> np.ndarray:
    """+1 for points right of the midline, -1 left of it: the sign that moves a point away from it."""
    return np.where(points[:, 0] >= 0, 1.0, -1.0)


OUTWARD = _outward(BASE_LANDMARKS)


def _shift(
    field: np.ndarray, idx, *, dx: float | np.ndarray = 0.0, dy: float | np.ndarray = 0.0
) -> None:
    """Add a displacement to landmarks `idx`: dx away from the midline, dy downwards."""
    field[idx, 0] += OUTWARD[idx] * dx
    field[idx, 1] += dy


def _eye_size_field() -> np.ndarray:
    field = np.zeros_like(BASE_LANDMARKS)
    for eye in (EYE_LEFT, EYE_RIGHT):
        field[eye] = BASE_LANDMARKS[eye] - BASE_LANDMARKS[eye].mean(axis=0)
    return field


def _identity_fields() -> dict[str, np.ndarray]:
    """Per-person shape variation: each field is the landmark shift for a coefficient of 1."""
    fields = {name: np.zeros_like(BASE_LANDMARKS) for name in IDENTITY_RANGES}
    base = BASE_LANDMARKS
    fields["eye_size"] = _eye_size_field()
    _shift(fields["eye_spacing"], np.r_[EYE_LEFT, EYE_RIGHT], dx=1.0)
    _shift(fields["brow_height"], BROWS, dy=1.0)
    _shift(fields["brow_arch"], BROWS, dy=-np.tile(np.sin(np.pi * np.linspace(0, 1, 5)), 2))
    _shift(fields["nose_length"], np.arange(30, 36), dy=1.0)
    fields["nose_width"][31:36, 0] = base[31:36, 0]
    fields["mouth_width"][MOUTH, 0] = base[MOUTH, 0]
    _shift(fields["mouth_height"], MOUTH, dy=1.0)
    mid = base[[60, 64], 1].mean()
    fields["upper_lip"][OUTER_UPPER, 1] = base[OUTER_UPPER, 1] - mid
    fields["lower_lip"][OUTER_LOWER, 1] = base[OUTER_LOWER, 1] - mid
    _shift(fields["chin"], CHIN, dy=CHIN_WEIGHT)
    return fields


def _expression_fields() -> dict[str, np.ndarray]:
    """Expression actions (roughly FACS action units): the landmark shift at strength 1."""
    fields = {name: np.zeros_like(BASE_LANDMARKS) for name in (*CONTROLS, "smirk_left")}
    _upper_face_fields(fields)
    _lower_face_fields(fields)
    return fields


def _upper_face_fields(f: dict[str, np.ndarray]) -> None:
    inner = BROW_INNER_WEIGHT
    _shift(f["brow_raise"], BROWS, dy=-0.13)
    _shift(f["brow_raise"], UPPER_LID, dy=-0.025)
    # Inner brows up, outer ends slightly down: the oblique brow of sadness and fear.
    _shift(f["brow_inner_up"], BROWS, dy=-(0.15 * inner - 0.03 * (1 - inner)))
    _shift(f["brow_lower"], BROWS, dy=0.11 * (0.4 + 0.6 * inner))
    _shift(f["brow_lower"], UPPER_LID, dy=0.015)
    _shift(f["brow_together"], BROWS, dx=-0.08 * inner)
    _shift(f["eye_open"], UPPER_LID, dy=-0.05)
    _shift(f["eye_open"], LOWER_LID, dy=0.02)


def _lower_face_fields(f: dict[str, np.ndarray]) -> None:
    base = BASE_LANDMARKS
    _shift(f["smile"], CORNERS, dx=0.07, dy=-0.11)
    _shift(f["smile"], [49, 53, 55, 59, 61, 63, 65, 67], dx=0.03, dy=-0.045)
    _shift(f["smile"], LOWER_LID, dy=-0.025)  # cheeks push the lower lids up
    _shift(f["frown"], CORNERS, dy=0.09)
    _shift(f["frown"], [55, 59], dy=0.03)
    _shift(f["frown"], [56, 57, 58], dy=-0.02)  # the chin pushes the lower lip up
    drop = 0.3
    _shift(f["jaw_open"], [56, 57, 58], dy=drop)
    _shift(f["jaw_open"], [55, 59], dy=0.7 * drop)
    _shift(f["jaw_open"], INNER_LOWER, dy=drop * np.array([0.85, 1.0, 0.85]))
    _shift(f["jaw_open"], CORNERS, dy=0.3 * drop)
    _shift(f["jaw_open"], CHIN, dy=0.75 * drop * CHIN_WEIGHT)
    _shift(f["jaw_open"], INNER_UPPER, dy=-0.1 * drop)
    f["mouth_round"][MOUTH, 0] = -0.35 * base[MOUTH, 0]
    _shift(f["mouth_round"], OUTER_UPPER, dy=-0.03)
    _shift(f["mouth_round"], OUTER_LOWER, dy=0.03)
    _shift(f["mouth_stretch"], CORNERS, dx=0.09, dy=0.03)
    _shift(f["mouth_stretch"], [49, 53, 55, 59], dx=0.04)
    _shift(f["mouth_stretch"], np.r_[OUTER_LOWER, INNER_LOWER], dy=0.05)
    _shift(f["mouth_stretch"], INNER_UPPER, dy=-0.02)
    f["lip_press"][MOUTH, 0] = -0.06 * base[MOUTH, 0]
    _shift(f["lip_press"], OUTER_UPPER, dy=0.035)
    _shift(f["lip_press"], OUTER_LOWER, dy=-0.04)
    _shift(f["lip_press"], INNER_LOWER, dy=base[INNER_UPPER, 1] - base[INNER_LOWER, 1])
    _shift(f["upper_lip_raise"], OUTER_UPPER, dy=-0.06)
    _shift(f["upper_lip_raise"], INNER_UPPER, dy=-0.08)
    _shift(f["upper_lip_raise"], NOSTRILS, dy=-0.03)
    _shift(f["upper_lip_raise"], [31, 35], dx=0.02)
    _shift(f["upper_lip_raise"], CORNERS, dy=0.02)
    for name, corner, near in (
        ("smirk", [54, 64], [53, 55, 63, 65]),
        ("smirk_left", [48, 60], [49, 59, 61, 67]),
    ):
        _shift(f[name], corner, dx=0.05, dy=-0.1)
        _shift(f[name], near, dy=-0.04)


def _stack(fields: dict[str, np.ndarray]) -> np.ndarray:
    """Fields as rows of one read-only matrix, so a face's shape is one vector-matrix product."""
    matrix = np.stack([field.ravel() for field in fields.values()])
    matrix.setflags(write=False)
    return matrix


# Ranges of the identity coefficients: people differ about as much as a mild expression moves
# a face, so shape alone does not give the class away.
IDENTITY_RANGES = {
    "eye_size": (-0.15, 0.2),
    "eye_spacing": (-0.04, 0.04),
    "brow_height": (-IDENTITY_BROW_SHIFT, IDENTITY_BROW_SHIFT),
    "brow_arch": (-0.03, 0.04),
    "nose_length": (-0.05, 0.05),
    "nose_width": (-0.15, 0.25),
    "mouth_width": (IDENTITY_MOUTH_SCALE[0] - 1.0, IDENTITY_MOUTH_SCALE[1] - 1.0),
    "mouth_height": (-0.04, 0.04),
    "upper_lip": (-0.3, 0.3),
    "lower_lip": (-0.25, 0.3),
    "chin": (-0.06, 0.1),
}
IDENTITY_LOW, IDENTITY_HIGH = np.array(list(IDENTITY_RANGES.values())).T
IDENTITY_BASIS = _stack(_identity_fields())
EXPRESSION_BASIS = _stack(_expression_fields())  # rows: CONTROLS, then smirk on the left side


def _face_landmarks(rng: np.random.Generator, controls: Mapping[str, float]) -> np.ndarray:
    """The 68 template-space landmarks of a random person showing the expression `controls`."""
    identity = rng.uniform(IDENTITY_LOW, IDENTITY_HIGH)
    expression = np.array([*(controls[name] for name in CONTROLS), 0.0])
    if rng.random() < 0.5:  # contempt's one-sided smirk: either side
        expression[[-2, -1]] = expression[[-1, -2]]
    flat = BASE_LANDMARKS.ravel() + identity @ IDENTITY_BASIS + expression @ EXPRESSION_BASIS
    return _keep_plausible(flat.reshape(68, 2))


def _keep_plausible(lm: np.ndarray) -> np.ndarray:
    """Stop lids and lips from crossing when several controls push them the same way."""
    lm[LOWER_LID, 1] = np.maximum(lm[LOWER_LID, 1], lm[UPPER_LID, 1] + 0.012)
    lm[INNER_LOWER, 1] = np.maximum(lm[INNER_LOWER, 1], lm[INNER_UPPER, 1])
    lm[OUTER_UPPER, 1] = np.minimum(lm[OUTER_UPPER, 1], lm[[60, 61, 62, 63, 64], 1] - 0.025)
    lm[OUTER_LOWER, 1] = np.maximum(lm[OUTER_LOWER, 1], lm[[60, 67, 66, 65, 64], 1] + 0.03)
    return lm


@dataclass(frozen=True)
class _Look:
    """Colours and shapes of one person (and their clothes) that expressions do not change."""

    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    iris: tuple[int, int, int]
    lips: tuple[int, int, int]
    shirt: tuple[int, int, int]
    hair_style: str  # "bald", "short", "long"
    hair_volume: float
    hairline: float  # height of the hairline arc above the temples
    parting: float  # tilt of the hairline, higher on one side: a side parting
    brow_thickness: float
    face_width: float
    gaze: tuple[float, float]


# Ranges of a person's continuous traits (template units where they are lengths).
LOOK_RANGES = {
    "hair_volume": (1.04, 1.18),
    "hairline": (0.5, 0.8),
    "parting": (-0.3, 0.3),
    "brow_thickness": (0.045, 0.085),
    "face_width": (0.9, 1.08),
    "gaze_x": (-0.04, 0.04),
    "gaze_y": (-0.01, 0.01),
    "skin_tone": (0.0, len(SKIN_TONES) - 1.0),
    "lip_redness": (0.25, 0.5),
}
LOOK_LOW, LOOK_HIGH = np.array(list(LOOK_RANGES.values())).T


def _sample_look(rng: np.random.Generator) -> _Look:
    u = dict(zip(LOOK_RANGES, rng.uniform(LOOK_LOW, LOOK_HIGH).tolist(), strict=True))
    hair, iris, style = rng.integers([len(HAIR_COLOURS), len(IRIS_COLOURS), len(HAIR_STYLES)])
    low = int(u["skin_tone"])
    high = min(low + 1, len(SKIN_TONES) - 1)
    skin = _jitter(_mix(SKIN_TONES[low], SKIN_TONES[high], u["skin_tone"] - low), rng, 6)
    return _Look(
        skin=skin,
        hair=_jitter(HAIR_COLOURS[hair], rng, 10),
        iris=IRIS_COLOURS[iris],
        lips=_mix(skin, (165, 62, 70), u["lip_redness"]),
        shirt=_muted_colour(rng),
        hair_style=HAIR_STYLES[style],
        hair_volume=u["hair_volume"],
        hairline=u["hairline"],
        parting=u["parting"],
        brow_thickness=u["brow_thickness"],
        face_width=u["face_width"],
        gaze=(u["gaze_x"], u["gaze_y"]),
    )


@cache
def _unit_arc(a0: float, a1: float, n: int) -> np.ndarray:
    """`n` points on the unit circle from angle a0 to a1 (0 = right, pi/2 = up; y points down)."""
    a = np.linspace(a0, a1, n)
    arc = np.stack([np.cos(a), -np.sin(a)], axis=1)
    arc.setflags(write=False)
    return arc


def _ellipse(
    cx: float, cy: float, rx: float, ry: float, a0: float, a1: float, n: int
) -> np.ndarray:
    """Points on an ellipse from angle a0 to a1 (0 = right, pi/2 = up, since y points down)."""
    return _unit_arc(a0, a1, n) * [rx, ry] + [cx, cy]


def _rigid(idx: list[int], offsets: list[tuple[float, float]] | None = None) -> tuple:
    return idx, offsets or [(0.0, 0.0)] * len(idx)


def _lid_mask(edge: list[int], reach: float) -> tuple:
    """Skin polygon from a lid edge out to `reach` beyond it (more than an iris radius)."""
    return _rigid(edge + edge[::-1], [(0.0, 0.0)] * len(edge) + [(0.0, reach)] * len(edge))


def _slices(lengths: list[int]) -> list[slice]:
    """Consecutive slices of the given lengths (np.split costs more than the parts it cuts)."""
    ends = np.cumsum(lengths).tolist()
    return [slice(end - n, end) for n, end in zip(lengths, ends, strict=True)]


# Parts that follow landmarks rigidly: (landmark indices, template offsets) per part name.
RIGID_PARTS = {
    "landmarks": _rigid(list(range(68))),
    "eye_left": _rigid(list(range(36, 42))),
    "eye_right": _rigid(list(range(42, 48))),
    "lid_up_left": _lid_mask([36, 37, 38, 39], -0.14),
    "lid_low_left": _lid_mask([39, 40, 41, 36], 0.14),
    "lid_up_right": _lid_mask([42, 43, 44, 45], -0.14),
    "lid_low_right": _lid_mask([45, 46, 47, 42], 0.14),
    "lash_left": _rigid([36, 37, 38, 39]),
    "lash_right": _rigid([42, 43, 44, 45]),
    "mouth": _rigid(list(range(48, 60))),
    "upper_lip": _rigid([48, 49, 50, 51, 52, 53, 54, 64, 63, 62, 61, 60]),
    "lower_lip": _rigid([54, 55, 56, 57, 58, 59, 48, 60, 67, 66, 65, 64]),
    "lip_line": _rigid([60, 61, 62, 63, 64]),
    "nose_base": _rigid([31, 32, 33, 34, 35]),
    "nose_left": _rigid([31, 31, 31], [(0.03, -0.14), (-0.03, -0.02), (0.0, 0.0)]),
    "nose_right": _rigid([35, 35, 35], [(-0.03, -0.14), (0.03, -0.02), (0.0, 0.0)]),
    "fold_left": _rigid([31, 48, 48], [(-0.1, -0.04), (-0.12, -0.12), (-0.09, 0.06)]),
    "fold_right": _rigid([35, 54, 54], [(0.1, -0.04), (0.12, -0.12), (0.09, 0.06)]),
    "nose_wrinkle_1": _rigid([27, 27, 27], [(-0.09, 0.06), (0.0, 0.03), (0.09, 0.06)]),
    "nose_wrinkle_2": _rigid([28, 28, 28], [(-0.1, 0.05), (0.0, 0.02), (0.1, 0.05)]),
    "glabella_left": _rigid([21, 21], [(0.05, -0.08), (0.07, 0.08)]),
    "glabella_right": _rigid([22, 22], [(-0.05, -0.08), (-0.07, 0.08)]),
}
RIGID_INDEX = np.concatenate([np.array(idx) for idx, _ in RIGID_PARTS.values()])
RIGID_OFFSETS = np.concatenate([np.array(off, dtype=np.float64) for _, off in RIGID_PARTS.values()])
RIGID_SLICES = _slices([len(idx) for idx, _ in RIGID_PARTS.values()])
# Brows as filled strokes: each brow point spread up and down by its share of the thickness.
BROW_TAPER = np.array([0.5, 0.85, 1.0, 1.0, 0.9]) / 2
BROW_STROKE_INDEX = {
    "brow_left": np.array([17, 18, 19, 20, 21, 21, 20, 19, 18, 17]),
    "brow_right": np.array([22, 23, 24, 25, 26, 26, 25, 24, 23, 22]),
}
BROW_STROKE_SPREAD = {
    "brow_left": np.r_[-BROW_TAPER, BROW_TAPER[::-1]],
    "brow_right": np.r_[-BROW_TAPER[::-1], BROW_TAPER],
}


def _face_parts(lm: np.ndarray, look: _Look) -> dict[str, np.ndarray]:
    """Every polygon and polyline of a face in template space, keyed by part name."""
    lm = lm * np.array([look.face_width, 1.0])
    rigid = lm[RIGID_INDEX] + RIGID_OFFSETS
    parts = {name: rigid[part] for name, part in zip(RIGID_PARTS, RIGID_SLICES, strict=True)}
    parts.update(_head_parts(lm, look))
    for name, idx in BROW_STROKE_INDEX.items():
        stroke = lm[idx].copy()
        stroke[:, 1] += BROW_STROKE_SPREAD[name] * look.brow_thickness
        parts[name] = stroke
    for side, eye in (("left", EYE_LEFT), ("right", EYE_RIGHT)):
        pts = lm[eye]
        centre = pts.mean(axis=0) + look.gaze
        # The iris as its centre and one rim point: the radius survives projection.
        rim = centre + (0.19 * (pts[:, 0].max() - pts[:, 0].min()), 0.0)
        parts[f"iris_{side}"] = np.array([centre, rim])
    teeth_h = min(_mouth_opening(lm) * 0.55, 0.07)
    upper = parts["lip_line"]
    parts["teeth"] = np.concatenate([upper, upper[::-1] + (0.0, teeth_h)])
    return parts


def _head_parts(lm: np.ndarray, look: _Look) -> dict[str, np.ndarray]:
    """Face outline (jaw and forehead), hair, ears, neck and shoulders."""
    temple_y = lm[[0, 16], 1].mean()
    half = (lm[16, 0] - lm[0, 0]) / 2
    vol, w = look.hair_volume, look.face_width
    length = 1.6 + 6.0 * (vol - 1.0)  # fuller hair falls longer
    back_top = _ellipse(0.0, temple_y, half * vol + 0.05, 1.05 * vol + 0.1, np.pi, 0.0, 13)
    back_ends = [(half * vol + 0.15, temple_y + length), (-half * vol - 0.15, temple_y + length)]
    cap_outer = _ellipse(0.0, temple_y, half * vol, 1.05 * vol + 0.08, np.pi + 0.3, -0.3, 17)
    ear_y = temple_y + 0.28
    return {
        "outline": np.concatenate(
            [lm[0:17], _ellipse(0.0, temple_y, half, 1.05, 0.0, np.pi, 11)[1:-1]]
        ),
        "hair_cap": np.concatenate(
            [cap_outer, _hairline(temple_y, half * 0.97, look.hairline, look.parting)]
        ),
        "hair_back": np.concatenate([back_top, back_ends]),
        "ear_left": _ellipse(-half - 0.01, ear_y, 0.11, 0.22, 0.0, 2 * np.pi, 12),
        "ear_right": _ellipse(half + 0.01, ear_y, 0.11, 0.22, 0.0, 2 * np.pi, 12),
        "neck": np.array([(-0.42 * w, 0.5), (0.42 * w, 0.5), (0.46 * w, 1.8), (-0.46 * w, 1.8)]),
        "torso": np.array(
            [(-0.5 * w, 1.4), (0.5 * w, 1.4), (2.0, 1.8), (2.4, 3.4), (-2.4, 3.4), (-2.0, 1.8)]
        ),
    }


def _hairline(temple_y: float, half: float, height: float, parting: float) -> np.ndarray:
    """The hairline from the right temple over the forehead to the left, higher on one side."""
    arc = _unit_arc(-0.2, np.pi + 0.2, 13)
    lift = -height * arc[:, 1] * (1.0 + parting * arc[:, 0])
    return np.stack([half * arc[:, 0], temple_y - lift], axis=1)


def _mouth_opening(lm: np.ndarray) -> float:
    return float(np.max(lm[INNER_LOWER, 1] - lm[INNER_UPPER, 1]))


# --------------------------------------------------------------------------- pose


@dataclass(frozen=True)
class _Pose:
    scale: float  # image pixels per template unit
    roll: float
    yaw: float
    pitch: float
    tx: float
    ty: float


def _depth(points: np.ndarray) -> np.ndarray:
    """A head-shaped depth (towards the camera) for each template point, with a nose bump."""
    x, y = points[:, 0], points[:, 1]
    head = 0.45 * np.sqrt(np.clip(1.0 - (x / 1.05) ** 2 - ((y + 0.2) / 1.5) ** 2, 0.0, 1.0))
    nose = 0.3 * np.exp(-((x / 0.16) ** 2) - ((y + 0.1) / 0.3) ** 2)
    return head + nose


def _rotate(points: np.ndarray, roll: float, yaw: float, pitch: float) -> np.ndarray:
    """Turn the head: yaw and pitch through the depth map, then roll in the image plane."""
    z = _depth(points)
    x = points[:, 0] * math.cos(yaw) + z * math.sin(yaw)
    y = points[:, 1] * math.cos(pitch) + z * math.sin(pitch)
    c, s = math.cos(roll), math.sin(roll)
    return np.stack([c * x - s * y, s * x + c * y], axis=1)


def _project(points: np.ndarray, pose: _Pose, k: float) -> np.ndarray:
    """Template points to image pixels (times the supersampling factor k)."""
    turned = _rotate(points, pose.roll, pose.yaw, pose.pitch)
    return k * (turned * pose.scale + (pose.tx, pose.ty))


def _pose_and_project(
    rng: np.random.Generator, parts: Mapping[str, np.ndarray], width: int, height: int
) -> tuple[_Pose, np.ndarray, dict[str, slice]]:
    """A random pose whose square face box lies inside the image; all parts' points in pixels.

    All parts turn in one numpy call; scale and position are then fitted to the turned
    outline (projection is linear in both), so nothing is projected twice.
    """
    angles = [math.radians(rng.uniform(-d, d)) for d in (ROLL_DEG, YAW_DEG, PITCH_DEG)]
    turned = _rotate(np.concatenate(list(parts.values())), *angles)
    slices = dict(zip(parts, _slices([len(v) for v in parts.values()]), strict=True))
    outline = turned[slices["outline"]]
    lo, hi = outline.min(axis=0), outline.max(axis=0)
    side = float(np.max(hi - lo))
    scale = rng.uniform(*FACE_FRACTION) * (min(width, height) - 2) / side
    centre, half = (lo + hi) / 2 * scale, side * scale / 2
    tx = rng.uniform(half + 1, width - half - 1) - centre[0]
    ty = rng.uniform(half + 1, height - half - 1) - centre[1]
    pose = _Pose(scale, *angles, float(tx), float(ty))
    return pose, turned * scale + (tx, ty), slices


def _face_box(outline_px: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    """AffectNet-style square box around the face outline, clipped to the image."""
    lo, hi = outline_px.min(axis=0), outline_px.max(axis=0)
    centre, half = (lo + hi) / 2, float(np.max(hi - lo)) / 2
    x0, y0 = max(0, math.floor(centre[0] - half)), max(0, math.floor(centre[1] - half))
    x1, y1 = min(width, math.ceil(centre[0] + half)), min(height, math.ceil(centre[1] + half))
    return x0, y0, x1 - x0, y1 - y0


# --------------------------------------------------------------------------- drawing


def _mix(a: tuple[int, ...], b: tuple[int, ...], t: float) -> tuple[int, int, int]:
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


def _jitter(colour: tuple[int, ...], rng: np.random.Generator, sd: float) -> tuple[int, int, int]:
    jittered = np.clip(np.array(colour) + rng.normal(0, sd, size=3), 0, 255)
    return tuple(np.rint(jittered).astype(int).tolist())  # type: ignore[return-value]


def _muted_colours(rng: np.random.Generator, n: int) -> list[tuple[int, int, int]]:
    """`n` random colours pulled 20-70 % towards grey, as objects look in photographs."""
    vivid = rng.integers(0, 256, size=(n, 3))
    towards_grey = rng.uniform(0.2, 0.7, size=(n, 1))
    colours = np.rint(vivid + (128 - vivid) * towards_grey).astype(int)
    return [tuple(c) for c in colours.tolist()]


def _muted_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return _muted_colours(rng, 1)[0]


def _flat(points: np.ndarray) -> list[float]:
    return points.ravel().tolist()


def _draw_clutter(
    draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int, height: int, n: int
) -> None:
    """Random shapes and stripes: the busy backgrounds of photographs taken in the wild."""
    # One draw per attribute for all shapes: per-shape numpy calls cost more than the drawing.
    kinds = rng.integers(5, size=n).tolist()
    origins = (rng.uniform(-0.2, 1.0, size=(n, 2)) * [width, height]).tolist()
    sizes = (rng.uniform(0.1, 0.7, size=(n, 2)) * [width, height]).tolist()
    for kind, (x0, y0), (w, h), colour in zip(
        kinds, origins, sizes, _muted_colours(rng, n), strict=True
    ):
        if kind == 0:
            draw.rectangle([x0, y0, x0 + w, y0 + h], fill=colour)
        elif kind == 1:
            draw.ellipse([x0, y0, x0 + w, y0 + h], fill=colour)
        elif kind == 2:
            corners = rng.uniform(0, 1, size=(int(rng.integers(3, 7)), 2)) * [w, h] + [x0, y0]
            draw.polygon(_flat(corners), fill=colour)
        elif kind == 3:
            draw.line([x0, y0, x0 + w, y0 + h], fill=colour, width=int(rng.integers(2, 12)))
        else:
            step = rng.uniform(0.05, 0.12) * width
            for i in range(int(w // step) + 1):
                draw.line(
                    [x0 + i * step, y0, x0 + i * step + h * 0.3, y0 + h],
                    fill=colour,
                    width=max(1, int(step / 3)),
                )


def _draw_face(
    draw: ImageDraw.ImageDraw,
    q: Mapping[str, list[float]],
    lm: np.ndarray,
    c: Mapping[str, float],
    look: _Look,
    px: float,
) -> None:
    """Draw the head from projected parts `q`, back to front: body, hair, face, features, brows."""
    shade = _mix(look.skin, (0, 0, 0), 0.25)
    draw.polygon(q["torso"], fill=look.shirt)
    if look.hair_style == "long":
        draw.polygon(q["hair_back"], fill=look.hair)
    draw.polygon(q["neck"], fill=_mix(look.skin, (0, 0, 0), 0.12))
    for ear in ("ear_left", "ear_right"):
        draw.polygon(q[ear], fill=look.skin, outline=shade)
    draw.polygon(q["outline"], fill=look.skin)
    _draw_eyes(draw, q, look, px)
    _draw_nose(draw, q, shade, px)
    _draw_lines(draw, q, c, look, px)
    _draw_mouth(draw, q, _mouth_opening(lm), c, look, px)
    brow_colour = _mix(look.hair, (10, 8, 6), 0.4)
    draw.polygon(q["brow_left"], fill=brow_colour)
    draw.polygon(q["brow_right"], fill=brow_colour)
    if look.hair_style != "bald":
        draw.polygon(q["hair_cap"], fill=look.hair)


def _draw_eyes(
    draw: ImageDraw.ImageDraw, q: Mapping[str, list[float]], look: _Look, px: float
) -> None:
    for side in ("left", "right"):
        draw.polygon(q[f"eye_{side}"], fill=EYE_WHITE)
        cx, cy, rim_x, rim_y = q[f"iris_{side}"]
        r = math.hypot(rim_x - cx, rim_y - cy)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=look.iris)
        rp = r * 0.45  # pupil
        draw.ellipse([cx - rp, cy - rp, cx + rp, cy + rp], fill=(12, 10, 10))
        # Skin-coloured lids clip the iris to the eye opening (PIL has no polygon clipping).
        draw.polygon(q[f"lid_up_{side}"], fill=look.skin)
        draw.polygon(q[f"lid_low_{side}"], fill=look.skin)
        draw.line(
            q[f"lash_{side}"],
            fill=(30, 22, 20),
            width=max(1, round(0.035 * px)),
            joint="curve",
        )


def _draw_nose(
    draw: ImageDraw.ImageDraw, q: Mapping[str, list[float]], shade: tuple[int, int, int], px: float
) -> None:
    width = max(1, round(0.025 * px))
    for name in ("nose_base", "nose_left", "nose_right"):
        draw.line(q[name], fill=shade, width=width, joint="curve")


def _draw_lines(
    draw: ImageDraw.ImageDraw,
    q: Mapping[str, list[float]],
    c: Mapping[str, float],
    look: _Look,
    px: float,
) -> None:
    """Expression lines, darker the stronger the action that makes them."""
    nasolabial = max(c["smile"], 0.8 * c["upper_lip_raise"]) - 0.15
    sneer = c["upper_lip_raise"] - 0.2
    frown = 0.6 * c["brow_lower"] + 0.5 * c["brow_together"] - 0.3
    strengths = {
        ("fold_left", "fold_right"): nasolabial,
        ("nose_wrinkle_1", "nose_wrinkle_2"): sneer,
        ("glabella_left", "glabella_right"): frown,
    }
    width = max(1, round(0.03 * px))
    for names, strength in strengths.items():
        t = float(np.clip(strength, 0.0, 1.0))
        if t > 0.05:
            colour = _mix(look.skin, (40, 20, 15), 0.45 * t)
            for name in names:
                draw.line(q[name], fill=colour, width=width, joint="curve")


def _draw_mouth(
    draw: ImageDraw.ImageDraw,
    q: Mapping[str, list[float]],
    opening: float,
    c: Mapping[str, float],
    look: _Look,
    px: float,
) -> None:
    draw.polygon(q["mouth"], fill=MOUTH_CAVITY)
    if opening > 0.03 and max(c["smile"], c["upper_lip_raise"], c["mouth_stretch"]) > 0.3:
        draw.polygon(q["teeth"], fill=TEETH)
    draw.polygon(q["upper_lip"], fill=look.lips)
    draw.polygon(q["lower_lip"], fill=_mix(look.lips, (255, 255, 255), 0.06))
    line = _mix(look.lips, (0, 0, 0), 0.5)
    draw.line(q["lip_line"], fill=line, width=max(1, round(0.02 * px)), joint="curve")


def _draw_accessories(
    draw: ImageDraw.ImageDraw,
    rng: np.random.Generator,
    parts: Mapping[str, np.ndarray],
    look: _Look,
    pose: _Pose,
) -> None:
    """Glasses, and sometimes an occluder: a hand, sunglasses or an object across the face."""
    k = SUPERSAMPLE
    px = pose.scale * k
    if rng.random() < GLASSES_PROB:
        _draw_glasses(
            draw, parts, pose, colour=_mix(_muted_colour(rng), (0, 0, 0), 0.5), filled=False, px=px
        )
    if rng.random() >= OCCLUSION_PROB:
        return
    kind = int(rng.integers(3))
    if kind == 0:
        _draw_glasses(draw, parts, pose, colour=(20, 20, 24), filled=True, px=px)
    elif kind == 1:
        _draw_hand(draw, rng, pose, _jitter(look.skin, rng, 10))
    else:
        _draw_bar(draw, rng, pose)


def _draw_bar(draw: ImageDraw.ImageDraw, rng: np.random.Generator, pose: _Pose) -> None:
    """A long object (microphone, strap, cup handle) across part of the face."""
    centre = rng.uniform((-0.6, -0.6), (0.6, 0.9))
    angle, half_width = rng.uniform(0, np.pi), rng.uniform(0.12, 0.3)
    along = np.array([math.cos(angle), math.sin(angle)]) * 3.0
    across = np.array([-math.sin(angle), math.cos(angle)]) * half_width
    corners = centre + np.array([-along - across, along - across, along + across, across - along])
    draw.polygon(_flat(_project(corners, pose, SUPERSAMPLE)), fill=_muted_colour(rng))


def _draw_glasses(
    draw: ImageDraw.ImageDraw,
    parts: Mapping[str, np.ndarray],
    pose: _Pose,
    *,
    colour,
    filled: bool,
    px: float,
) -> None:
    k = SUPERSAMPLE
    lm = parts["landmarks"]
    width = max(1, round(0.035 * px))
    centres = [lm[EYE_LEFT].mean(axis=0), lm[EYE_RIGHT].mean(axis=0)]
    for centre in centres:
        lens = _ellipse(centre[0], centre[1], 0.23, 0.16, 0.0, 2 * np.pi, 16)
        pts = _flat(_project(lens, pose, k))
        draw.polygon(pts, fill=colour if filled else None, outline=colour, width=width)
    bridge = np.array([centres[0] + [0.23, 0.0], centres[1] - [0.23, 0.0]])
    draw.line(_flat(_project(bridge, pose, k)), fill=colour, width=width)


def _draw_hand(
    draw: ImageDraw.ImageDraw, rng: np.random.Generator, pose: _Pose, skin: tuple[int, int, int]
) -> None:
    """A palm with fingers and a forearm reaching in from outside the face."""
    k = SUPERSAMPLE
    anchor = HAND_ANCHORS[int(rng.integers(len(HAND_ANCHORS)))]
    centre = np.array(anchor) + rng.normal(0, 0.05, size=2)
    # Fingers point back towards the face centre; the forearm leaves the other way.
    towards = -centre / (np.linalg.norm(centre) + 1e-6)
    px = pose.scale * k
    arm = np.array([centre, centre - towards * 3.0])
    draw.line(
        _flat(_project(arm, pose, k)),
        fill=_mix(skin, (0, 0, 0), 0.1),
        width=max(2, round(0.45 * px)),
    )
    palm = _ellipse(centre[0], centre[1], 0.3, 0.3, 0.0, 2 * np.pi, 14)
    draw.polygon(_flat(_project(palm, pose, k)), fill=skin)
    base = math.atan2(towards[1], towards[0])
    for offset in np.linspace(-0.55, 0.55, 4):
        direction = np.array([math.cos(base + offset), math.sin(base + offset)])
        finger = np.array([centre + direction * 0.2, centre + direction * rng.uniform(0.5, 0.62)])
        draw.line(_flat(_project(finger, pose, k)), fill=skin, width=max(2, round(0.12 * px)))


def _draw_non_face(
    draw: ImageDraw.ImageDraw,
    rng: np.random.Generator,
    q: Mapping[str, list[float]],
    look: _Look,
    width: int,
    height: int,
) -> None:
    """No face: more clutter and objects, sometimes a featureless head-shaped blob."""
    _draw_clutter(draw, rng, width, height, int(rng.integers(4, 12)))
    if rng.random() < NONFACE_BLOB_PROB:
        draw.polygon(q["outline"], fill=look.skin)
        if look.hair_style != "bald":
            draw.polygon(q["hair_cap"], fill=look.hair)
    for _ in range(int(rng.integers(1, 4))):  # a few object-like shapes near the "face" box
        cx, cy = rng.uniform(0.2, 0.8) * width, rng.uniform(0.2, 0.8) * height
        r = rng.uniform(0.08, 0.3) * min(width, height)
        if rng.random() < 0.5:
            draw.ellipse(
                [cx - r, cy - r, cx + r, cy + r],
                fill=_muted_colour(rng),
                outline=_muted_colour(rng),
                width=3,
            )
        else:
            draw.rounded_rectangle(
                [cx - r, cy - r * 0.7, cx + r, cy + r * 0.7],
                radius=r * 0.2,
                fill=_muted_colour(rng),
            )


def _photometric(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Blur, directional light, exposure, white balance, contrast, grain, sometimes grey.

    Light and grain form one greyscale shading image that multiplies the picture: PIL's
    lookup tables and channel ops are several times cheaper than float arithmetic on RGB.
    """
    if rng.random() < BLUR_PROB:
        # A box blur costs a third of PIL's Gaussian (three box passes) and looks alike here.
        image = image.filter(ImageFilter.BoxBlur(float(rng.uniform(*BLUR_RADIUS))))
    width, height = image.size
    angle = rng.uniform(0, 2 * np.pi)
    strength = np.float32(rng.uniform(0, LIGHT_GRADIENT_MAX))
    xs = np.linspace(-0.5, 0.5, width, dtype=np.float32) * np.float32(math.cos(angle))
    ys = np.linspace(-0.5, 0.5, height, dtype=np.float32) * np.float32(math.sin(angle))
    light = 1.0 + strength * (ys[:, None] + xs[None, :])
    # Grain: luminance noise proportional to brightness, like photon noise (uniform bytes are
    # four times cheaper than Gaussian draws; 73.9 is the sd of a uniform int8).
    grain = np.float32(rng.uniform(*NOISE_SD_RANGE) / 255.0 / 73.9)
    noise = np.frombuffer(rng.bytes(width * height), dtype=np.int8).reshape(height, width)
    light *= 1.0 + grain * noise
    peak = float(light.max())
    shading = Image.fromarray(np.clip(light * np.float32(255.0 / peak), 0, 255).astype(np.uint8))
    contrast = rng.uniform(*CONTRAST_RANGE)
    exposure, white_balance = rng.uniform(*BRIGHTNESS_RANGE), rng.uniform(0.94, 1.06, size=3)
    gain = exposure * white_balance
    levels = np.arange(256, dtype=np.float64)
    lut = np.concatenate([levels * g * contrast * peak + 128.0 * (1.0 - contrast) for g in gain])
    image = image.point(np.clip(lut, 0, 255).astype(np.uint8).tolist())
    if rng.random() < GRAYSCALE_PROB:
        image = image.convert("L").convert("RGB")
    return ImageChops.multiply(image, Image.merge("RGB", (shading, shading, shading)))


def iter_examples(
    seed: int, code: int, n: int, min_size: int = 128, max_size: int = 224
) -> Iterator[Example]:
    """`n` rendered examples of one class, for previews and contact sheets (not written to disk)."""
    for i in range(n):
        # Tag 9 keeps previews apart from the splits (0, 1), whose images they never repeat.
        rng = np.random.default_rng(np.random.SeedSequence([seed, 9, code, i]))
        yield render_example(rng, code, min_size, max_size)


def csv_text(rows: list[list[str]]) -> str:
    """AffectNet's CSV (header row, then `rows`) as text, one '\\n'-ended line a row."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    writer.writerows(rows)
    return out.getvalue()
