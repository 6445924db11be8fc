"""Random colours and jitter shared by the face's geometry and its drawing.
"""

from __future__ import annotations

import numpy as np


def mix(a: tuple[int, ...], b: tuple[int, ...], t: float) -> tuple[int, int, int]:
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


def jitter(colour: tuple[int, ...], rng: np.random.Generator, sd: float) -> tuple[int, int, int]:
    jittered = np.clip(np.array(colour) + rng.normal(0, sd, size=3), 0, 255)
    return tuple(np.rint(jittered).astype(int).tolist())  # type: ignore[return-value]


def muted_colours(rng: np.random.Generator, n: int) -> list[tuple[int, int, int]]:
    """`n` random colours pulled 20-70 % towards grey, as objects look in photographs."""
    vivid = rng.integers(0, 256, size=(n, 3))
    towards_grey = rng.uniform(0.2, 0.7, size=(n, 1))
    colours = np.rint(vivid + (128 - vivid) * towards_grey).astype(int)
    return [tuple(c) for c in colours.tolist()]


def muted_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return muted_colours(rng, 1)[0]


def flat(points: np.ndarray) -> list[float]:
    return points.ravel().tolist()
