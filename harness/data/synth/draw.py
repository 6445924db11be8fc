"""Drawing a face (or a non-face) with PIL, with the scene's clutter, occluders and photometry.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from harness.data.synth.colour import flat, jitter, mix, muted_colour, muted_colours
from harness.data.synth.geometry import EYE_LEFT, EYE_RIGHT, Look, ellipse, mouth_opening
from harness.data.synth.knobs import (
    BLUR_PROB,
    BLUR_RADIUS,
    BRIGHTNESS_RANGE,
    CONTRAST_RANGE,
    EYE_WHITE,
    GLASSES_PROB,
    GRAYSCALE_PROB,
    HAND_ANCHORS,
    LIGHT_GRADIENT_MAX,
    MOUTH_CAVITY,
    NOISE_SD_RANGE,
    NONFACE_BLOB_PROB,
    OCCLUSION_PROB,
    SUPERSAMPLE,
    TEETH,
)
from harness.data.synth.pose import Pose, project


def draw_clutter(
    draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int, height: int, n: int
) -> None:
    """Random shapes and stripes: the busy backgrounds of photographs taken in the wild."""
    # One draw per attribute for all shapes: per-shape numpy calls cost more than the drawing.
    kinds = rng.integers(5, size=n).tolist()
    origins = (rng.uniform(-0.2, 1.0, size=(n, 2)) * [width, height]).tolist()
    sizes = (rng.uniform(0.1, 0.7, size=(n, 2)) * [width, height]).tolist()
    for kind, (x0, y0), (w, h), colour in zip(
        kinds, origins, sizes, muted_colours(rng, n), strict=True
    ):
        if kind == 0:
            draw.rectangle([x0, y0, x0 + w, y0 + h], fill=colour)
        elif kind == 1:
            draw.ellipse([x0, y0, x0 + w, y0 + h], fill=colour)
        elif kind == 2:
            corners = rng.uniform(0, 1, size=(int(rng.integers(3, 7)), 2)) * [w, h] + [x0, y0]
            draw.polygon(flat(corners), fill=colour)
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


def draw_face(
    draw: ImageDraw.ImageDraw,
    q: Mapping[str, list[float]],
    lm: np.ndarray,
    c: Mapping[str, float],
    look: Look,
    px: float,
) -> None:
    """Draw the head from projected parts `q`, back to front: body, hair, face, features, brows."""
    shade = mix(look.skin, (0, 0, 0), 0.25)
    draw.polygon(q["torso"], fill=look.shirt)
    if look.hair_style == "long":
        draw.polygon(q["hair_back"], fill=look.hair)
    draw.polygon(q["neck"], fill=mix(look.skin, (0, 0, 0), 0.12))
    for ear in ("ear_left", "ear_right"):
        draw.polygon(q[ear], fill=look.skin, outline=shade)
    draw.polygon(q["outline"], fill=look.skin)
    _draw_eyes(draw, q, look, px)
    _draw_nose(draw, q, shade, px)
    _draw_lines(draw, q, c, look, px)
    _draw_mouth(draw, q, mouth_opening(lm), c, look, px)
    brow_colour = mix(look.hair, (10, 8, 6), 0.4)
    draw.polygon(q["brow_left"], fill=brow_colour)
    draw.polygon(q["brow_right"], fill=brow_colour)
    if look.hair_style != "bald":
        draw.polygon(q["hair_cap"], fill=look.hair)


def _draw_eyes(
    draw: ImageDraw.ImageDraw, q: Mapping[str, list[float]], look: Look, px: float
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
    look: Look,
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
            colour = mix(look.skin, (40, 20, 15), 0.45 * t)
            for name in names:
                draw.line(q[name], fill=colour, width=width, joint="curve")


def _draw_mouth(
    draw: ImageDraw.ImageDraw,
    q: Mapping[str, list[float]],
    opening: float,
    c: Mapping[str, float],
    look: Look,
    px: float,
) -> None:
    draw.polygon(q["mouth"], fill=MOUTH_CAVITY)
    if opening > 0.03 and max(c["smile"], c["upper_lip_raise"], c["mouth_stretch"]) > 0.3:
        draw.polygon(q["teeth"], fill=TEETH)
    draw.polygon(q["upper_lip"], fill=look.lips)
    draw.polygon(q["lower_lip"], fill=mix(look.lips, (255, 255, 255), 0.06))
    line = mix(look.lips, (0, 0, 0), 0.5)
    draw.line(q["lip_line"], fill=line, width=max(1, round(0.02 * px)), joint="curve")


def draw_accessories(
    draw: ImageDraw.ImageDraw,
    rng: np.random.Generator,
    parts: Mapping[str, np.ndarray],
    look: Look,
    pose: Pose,
) -> None:
    """Glasses, and sometimes an occluder: a hand, sunglasses or an object across the face."""
    k = SUPERSAMPLE
    px = pose.scale * k
    if rng.random() < GLASSES_PROB:
        _draw_glasses(
            draw, parts, pose, colour=mix(muted_colour(rng), (0, 0, 0), 0.5), filled=False, px=px
        )
    if rng.random() >= OCCLUSION_PROB:
        return
    kind = int(rng.integers(3))
    if kind == 0:
        _draw_glasses(draw, parts, pose, colour=(20, 20, 24), filled=True, px=px)
    elif kind == 1:
        _draw_hand(draw, rng, pose, jitter(look.skin, rng, 10))
    else:
        _draw_bar(draw, rng, pose)


def _draw_bar(draw: ImageDraw.ImageDraw, rng: np.random.Generator, pose: Pose) -> None:
    """A long object (microphone, strap, cup handle) across part of the face."""
    centre = rng.uniform((-0.6, -0.6), (0.6, 0.9))
    angle, half_width = rng.uniform(0, np.pi), rng.uniform(0.12, 0.3)
    along = np.array([math.cos(angle), math.sin(angle)]) * 3.0
    across = np.array([-math.sin(angle), math.cos(angle)]) * half_width
    corners = centre + np.array([-along - across, along - across, along + across, across - along])
    draw.polygon(flat(project(corners, pose, SUPERSAMPLE)), fill=muted_colour(rng))


def _draw_glasses(
    draw: ImageDraw.ImageDraw,
    parts: Mapping[str, np.ndarray],
    pose: Pose,
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
        lens = ellipse(centre[0], centre[1], 0.23, 0.16, 0.0, 2 * np.pi, 16)
        pts = flat(project(lens, pose, k))
        draw.polygon(pts, fill=colour if filled else None, outline=colour, width=width)
    bridge = np.array([centres[0] + [0.23, 0.0], centres[1] - [0.23, 0.0]])
    draw.line(flat(project(bridge, pose, k)), fill=colour, width=width)


def _draw_hand(
    draw: ImageDraw.ImageDraw, rng: np.random.Generator, pose: Pose, skin: tuple[int, int, int]
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
        flat(project(arm, pose, k)),
        fill=mix(skin, (0, 0, 0), 0.1),
        width=max(2, round(0.45 * px)),
    )
    palm = ellipse(centre[0], centre[1], 0.3, 0.3, 0.0, 2 * np.pi, 14)
    draw.polygon(flat(project(palm, pose, k)), fill=skin)
    base = math.atan2(towards[1], towards[0])
    for offset in np.linspace(-0.55, 0.55, 4):
        direction = np.array([math.cos(base + offset), math.sin(base + offset)])
        finger = np.array([centre + direction * 0.2, centre + direction * rng.uniform(0.5, 0.62)])
        draw.line(flat(project(finger, pose, k)), fill=skin, width=max(2, round(0.12 * px)))


def draw_non_face(
    draw: ImageDraw.ImageDraw,
    rng: np.random.Generator,
    q: Mapping[str, list[float]],
    look: Look,
    width: int,
    height: int,
) -> None:
    """No face: more clutter and objects, sometimes a featureless head-shaped blob."""
    draw_clutter(draw, rng, width, height, int(rng.integers(4, 12)))
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
                fill=muted_colour(rng),
                outline=muted_colour(rng),
                width=3,
            )
        else:
            draw.rounded_rectangle(
                [cx - r, cy - r * 0.7, cx + r, cy + r * 0.7],
                radius=r * 0.2,
                fill=muted_colour(rng),
            )


def photometric(image: Image.Image, rng: np.random.Generator) -> Image.Image:
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
