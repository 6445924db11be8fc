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


# FER2013's emotion codes (0..6) in code order, with the harness's canonical names.
FER2013_CLASSES: tuple[str, ...] = ("anger", "disgust", "fear", "happy", "sad", "surprise", "neutral")

# Folder or label names other datasets use, normalised (lower case, '_' for spaces and '-'),
# mapped onto the canonical names. Every canonical name also maps onto itself.
CLASS_SYNONYMS: dict[str, str] = {
    **{name: name for name in AFFECTNET_CLASSES},
    "angry": "anger",
    "mad": "anger",
    "disgusted": "disgust",
    "disgusting": "disgust",
    "fearful": "fear",
    "scared": "fear",
    "afraid": "fear",
    "happiness": "happy",
    "joy": "happy",
    "sadness": "sad",
    "unhappy": "sad",
    "surprised": "surprise",
    "suprise": "surprise",  # a misspelling some public copies carry
    "calm": "neutral",
    "neutrality": "neutral",
    "contemptuous": "contempt",
    "nonface": "non_face",
    "no_face": "non_face",
}


def canonical_class(name: str) -> str | None:
    """The canonical class a folder or label name stands for (case-insensitive), or None."""
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    return CLASS_SYNONYMS.get(key)
