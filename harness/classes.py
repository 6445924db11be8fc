"""Canonical class names, AffectNet's expression codes, and the class sets a spec may choose."""

from __future__ import annotations

# AffectNet's expression codes, in code order (0..10), with the harness's canonical names.
AFFECTNET_CLASSES: tuple[str, ...] = (
    "neutral",
    "happy",
    "sad",
    "surprise",
    "fear",
    "disgust",
    "anger",
    "contempt",
    "none",
    "uncertain",
    "non_face",
)

# The class sets a spec's `data.classes` may name. Order defines the model's output index.
CLASS_SETS: dict[str, tuple[str, ...]] = {
    "all11": AFFECTNET_CLASSES,
    "expressions8": AFFECTNET_CLASSES[:8],
    "basic7": AFFECTNET_CLASSES[:7],
}


def affectnet_code_to_name(code: int) -> str:
    """Map an AffectNet expression code (0..10) to its canonical class name."""
    if not 0 <= code < len(AFFECTNET_CLASSES):
        raise ValueError(f"expression code {code} is outside AffectNet's 0..10")
    return AFFECTNET_CLASSES[code]
