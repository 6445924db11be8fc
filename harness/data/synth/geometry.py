"""Face geometry: 68 iBUG landmarks from an identity and expression "action units" (FACS-like).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

import numpy as np

from harness.data.synth.colour import jitter, mix, muted_colour
from harness.data.synth.knobs import (
    CONTROLS,
    HAIR_COLOURS,
    HAIR_STYLES,
    IDENTITY_BROW_SHIFT,
    IDENTITY_MOUTH_SCALE,
    IRIS_COLOURS,
    SKIN_TONES,
)


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
OUTER_UPPER, OUTER_LOWER = np.array([49, 50, 51, 52, 53]), np.array([59, 58, 57, 56, 55])
INNER_UPPER, INNER_LOWER = np.array([61, 62, 63]), np.array([67, 66, 65])


CORNERS = np.array([48, 54, 60, 64])


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


def face_landmarks(rng: np.random.Generator, controls: Mapping[str, float]) -> np.ndarray:
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
class Look:
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


def sample_look(rng: np.random.Generator) -> Look:
    u = dict(zip(LOOK_RANGES, rng.uniform(LOOK_LOW, LOOK_HIGH).tolist(), strict=True))
    hair, iris, style = rng.integers([len(HAIR_COLOURS), len(IRIS_COLOURS), len(HAIR_STYLES)])
    low = int(u["skin_tone"])
    high = min(low + 1, len(SKIN_TONES) - 1)
    skin = jitter(mix(SKIN_TONES[low], SKIN_TONES[high], u["skin_tone"] - low), rng, 6)
    return Look(
        skin=skin,
        hair=jitter(HAIR_COLOURS[hair], rng, 10),
        iris=IRIS_COLOURS[iris],
        lips=mix(skin, (165, 62, 70), u["lip_redness"]),
        shirt=muted_colour(rng),
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


def ellipse(
    cx: float, cy: float, rx: float, ry: float, a0: float, a1: float, n: int
) -> np.ndarray:
    """Points on an ellipse from angle a0 to a1 (0 = right, pi/2 = up, since y points down)."""
    return _unit_arc(a0, a1, n) * [rx, ry] + [cx, cy]


def _rigid(idx: list[int], offsets: list[tuple[float, float]] | None = None) -> tuple:
    return idx, offsets or [(0.0, 0.0)] * len(idx)


def _lid_mask(edge: list[int], reach: float) -> tuple:
    """Skin polygon from a lid edge out to `reach` beyond it (more than an iris radius)."""
    return _rigid(edge + edge[::-1], [(0.0, 0.0)] * len(edge) + [(0.0, reach)] * len(edge))


def consecutive_slices(lengths: list[int]) -> list[slice]:
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


RIGID_SLICES = consecutive_slices([len(idx) for idx, _ in RIGID_PARTS.values()])


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


def face_parts(lm: np.ndarray, look: Look) -> dict[str, np.ndarray]:
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
    teeth_h = min(mouth_opening(lm) * 0.55, 0.07)
    upper = parts["lip_line"]
    parts["teeth"] = np.concatenate([upper, upper[::-1] + (0.0, teeth_h)])
    return parts


def _head_parts(lm: np.ndarray, look: Look) -> dict[str, np.ndarray]:
    """Face outline (jaw and forehead), hair, ears, neck and shoulders."""
    temple_y = lm[[0, 16], 1].mean()
    half = (lm[16, 0] - lm[0, 0]) / 2
    vol, w = look.hair_volume, look.face_width
    length = 1.6 + 6.0 * (vol - 1.0)  # fuller hair falls longer
    back_top = ellipse(0.0, temple_y, half * vol + 0.05, 1.05 * vol + 0.1, np.pi, 0.0, 13)
    back_ends = [(half * vol + 0.15, temple_y + length), (-half * vol - 0.15, temple_y + length)]
    cap_outer = ellipse(0.0, temple_y, half * vol, 1.05 * vol + 0.08, np.pi + 0.3, -0.3, 17)
    ear_y = temple_y + 0.28
    return {
        "outline": np.concatenate(
            [lm[0:17], ellipse(0.0, temple_y, half, 1.05, 0.0, np.pi, 11)[1:-1]]
        ),
        "hair_cap": np.concatenate(
            [cap_outer, _hairline(temple_y, half * 0.97, look.hairline, look.parting)]
        ),
        "hair_back": np.concatenate([back_top, back_ends]),
        "ear_left": ellipse(-half - 0.01, ear_y, 0.11, 0.22, 0.0, 2 * np.pi, 12),
        "ear_right": ellipse(half + 0.01, ear_y, 0.11, 0.22, 0.0, 2 * np.pi, 12),
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


def mouth_opening(lm: np.ndarray) -> float:
    return float(np.max(lm[INNER_LOWER, 1] - lm[INNER_UPPER, 1]))
