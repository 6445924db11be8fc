"""Head pose: the landmarks rotated in 3D (roll, yaw, pitch) and projected onto the image.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from harness.data.synth.geometry import consecutive_slices
from harness.data.synth.knobs import FACE_FRACTION, PITCH_DEG, ROLL_DEG, YAW_DEG


@dataclass(frozen=True)
class Pose:
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


def project(points: np.ndarray, pose: Pose, k: float) -> np.ndarray:
    """Template points to image pixels (times the supersampling factor k)."""
    turned = _rotate(points, pose.roll, pose.yaw, pose.pitch)
    return k * (turned * pose.scale + (pose.tx, pose.ty))


def pose_and_project(
    rng: np.random.Generator, parts: Mapping[str, np.ndarray], width: int, height: int
) -> tuple[Pose, np.ndarray, dict[str, slice]]:
    """A random pose whose square face box lies inside the image; all parts' points in pixels.

    All parts turn in one numpy call; scale and position are then fitted to the turned
    outline (projection is linear in both), so nothing is projected twice.
    """
    angles = [math.radians(rng.uniform(-d, d)) for d in (ROLL_DEG, YAW_DEG, PITCH_DEG)]
    turned = _rotate(np.concatenate(list(parts.values())), *angles)
    slices = dict(zip(parts, consecutive_slices([len(v) for v in parts.values()]), strict=True))
    outline = turned[slices["outline"]]
    lo, hi = outline.min(axis=0), outline.max(axis=0)
    side = float(np.max(hi - lo))
    scale = rng.uniform(*FACE_FRACTION) * (min(width, height) - 2) / side
    centre, half = (lo + hi) / 2 * scale, side * scale / 2
    tx = rng.uniform(half + 1, width - half - 1) - centre[0]
    ty = rng.uniform(half + 1, height - half - 1) - centre[1]
    pose = Pose(scale, *angles, float(tx), float(ty))
    return pose, turned * scale + (tx, ty), slices


def face_box(outline_px: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    """AffectNet-style square box around the face outline, clipped to the image."""
    lo, hi = outline_px.min(axis=0), outline_px.max(axis=0)
    centre, half = (lo + hi) / 2, float(np.max(hi - lo)) / 2
    x0, y0 = max(0, math.floor(centre[0] - half)), max(0, math.floor(centre[1] - half))
    x1, y1 = min(width, math.ceil(centre[0] + half)), min(height, math.ceil(centre[1] + half))
    return x0, y0, x1 - x0, y1 - y0
