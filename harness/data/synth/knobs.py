"""The synthetic generator's constants: AffectNet's class counts and format, and the difficulty knobs.

Tuned so a plain CNN on 32x32 face crops lands well above chance and far from solved; see
docs/data.md ("The embedded dataset").
"""

from __future__ import annotations

import numpy as np

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
