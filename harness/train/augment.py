"""Batched, on-device training augmentation and the recipe's per-step helpers.

Everything here acts on a whole float batch at once (N, C, H, W), on the batch's own device,
with torch's global generator (seeded by `fit`), so augmentation costs one `grid_sample` per
batch instead of a PIL call per image, and a CPU run is reproducible bit for bit.

- `augment_batch`: one random affine per image (resized crop, flip, rotation) applied in a
  single `grid_sample`, then optional random erasing.
- `mix_batch`: mixup or cutmix of a batch with a shuffled copy of itself.
- `ModelEma`: an exponential moving average of the weights, evaluated instead of the raw model.
- `lr_scheduler`: per-step one-cycle or warm-up + cosine schedules.

With an `AugmentSpec` at its defaults every function here is a no-op, which is how the study's
iterations (no augmentation) stay exactly as they were.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from harness.spec.schema import AugmentSpec


def is_geometric(spec: AugmentSpec) -> bool:
    """Whether any affine transform (crop, flip, rotation) is on."""
    return spec.flip or spec.rotate > 0 or spec.crop[0] < 1.0


def augment_batch(x: torch.Tensor, spec: AugmentSpec) -> torch.Tensor:
    """A randomly augmented copy of the float batch `x` (N, C, H, W); `x` itself if nothing is on."""
    if is_geometric(spec):
        x = _affine(x, spec)
    if spec.erasing > 0:
        x = _erase(x, spec.erasing)
    return x


def _affine(x: torch.Tensor, spec: AugmentSpec) -> torch.Tensor:
    """Random resized crop (side fraction in `spec.crop`, anywhere inside the image), horizontal
    flip and rotation (uniform in ±`spec.rotate` degrees), composed into one affine per image.

    The output grid in normalised coordinates [-1, 1] maps to input coordinates
    ``s·R(θ)·F·p + t``: a crop of side fraction s, rotated, flipped by F, at offset t with
    |t| ≤ 1 − s so the crop stays inside the image (before rotation). Samples falling outside
    the image (a rotation's corners, the outer half pixel of a crop) repeat the nearest edge
    pixel ("border" padding) rather than reading as black, so no artificial dark edges appear.
    """
    import torch

    n = x.shape[0]
    dev = x.device
    lo, hi = spec.crop
    scale = lo + (hi - lo) * torch.rand(n, device=dev)
    angle = (torch.rand(n, device=dev) * 2 - 1) * math.radians(spec.rotate)
    flip = torch.ones(n, device=dev)
    if spec.flip:
        flip = torch.where(torch.rand(n, device=dev) < 0.5, -1.0, 1.0)
    room = 1.0 - scale
    tx = (torch.rand(n, device=dev) * 2 - 1) * room
    ty = (torch.rand(n, device=dev) * 2 - 1) * room
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack(
        [torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1
    )
    return _sample(x, theta)


def _sample(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """`x` resampled through one affine per image (`theta`: N×2×3, normalised coordinates):
    bilinear, border padding, in `x`'s memory layout. Training crops and TTA views share it."""
    import torch
    import torch.nn.functional as F

    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.contiguous(memory_format=torch.channels_last) if _is_nhwc(x) else out


# Ten-crop TTA: the side fraction of the corner crops (training crops take 90-100% of the side).
TTA_CROP = 0.9


def tta_views(x: torch.Tensor, mode: str) -> list[torch.Tensor]:
    """The views of the float batch `x` whose softmax test-time augmentation averages.

    "flip": the batch and its mirror. "crops": the ten-crop views — the whole image and its four
    corner crops of TTA_CROP of the side, resampled to the input size by the same bilinear
    `grid_sample` as training crops, each with its mirror.
    """
    import torch

    if mode == "flip":
        return [x, x.flip(3)]
    if mode != "crops":
        raise ValueError(f"unknown test-time augmentation {mode!r}")
    views = [x]
    room = 1.0 - TTA_CROP
    for tx, ty in ((-room, -room), (-room, room), (room, -room), (room, room)):
        theta = torch.tensor([[TTA_CROP, 0.0, tx], [0.0, TTA_CROP, ty]], dtype=x.dtype, device=x.device)
        views.append(_sample(x, theta.expand(x.shape[0], 2, 3)))
    return views + [view.flip(3) for view in views]


def _is_nhwc(x: torch.Tensor) -> bool:
    import torch

    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def _erase(x: torch.Tensor, prob: float) -> torch.Tensor:
    """Random erasing (Zhong et al., 2017): with probability `prob` per image, one rectangle of
    2–33% of the area, aspect ratio 0.3–3.3 (log-uniform), is set to 0."""
    import torch

    n, _, h, w = x.shape
    dev = x.device
    area = (0.02 + 0.31 * torch.rand(n, device=dev)) * h * w
    ratio = torch.exp((torch.rand(n, device=dev) * 2 - 1) * math.log(3.3))
    eh = torch.sqrt(area * ratio).clamp(1, h)
    ew = torch.sqrt(area / ratio).clamp(1, w)
    top = torch.rand(n, device=dev) * (h - eh)
    left = torch.rand(n, device=dev) * (w - ew)
    rows = torch.arange(h, device=dev).view(1, h, 1)
    cols = torch.arange(w, device=dev).view(1, 1, w)
    inside = (
        (rows >= top.view(n, 1, 1)) & (rows < (top + eh).view(n, 1, 1))
        & (cols >= left.view(n, 1, 1)) & (cols < (left + ew).view(n, 1, 1))
    )
    chosen = (torch.rand(n, device=dev) < prob).view(n, 1, 1)
    keep = ~(inside & chosen)
    return x * keep.unsqueeze(1).to(x.dtype)


def mix_batch(
    x: torch.Tensor, y: torch.Tensor, spec: AugmentSpec
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, float]:
    """Mixup or cutmix: (mixed x, y, y of the partner images or None, weight of y).

    When both are on, each batch picks one of the two with equal odds (as timm does). The loss is
    then ``lam·CE(y) + (1 − lam)·CE(y_partner)``.
    """
    import torch

    use_mixup, use_cutmix = spec.mixup > 0, spec.cutmix > 0
    if not (use_mixup or use_cutmix):
        return x, y, None, 1.0
    if use_mixup and use_cutmix:
        use_cutmix = bool(torch.rand(()) < 0.5)
    alpha = spec.cutmix if use_cutmix else spec.mixup
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.randperm(x.shape[0], device=x.device)
    if not use_cutmix:
        return x * lam + x[perm] * (1 - lam), y, y[perm], lam
    _, _, h, w = x.shape
    cut_h, cut_w = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
    cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
    mixed = x.clone()
    mixed[:, :, top:bottom, left:right] = x[perm][:, :, top:bottom, left:right]
    lam = 1 - (bottom - top) * (right - left) / (h * w)  # the area actually pasted
    return mixed, y, y[perm], lam


