"""The student study's CNN family: conv stages with max-pooling, optional residual blocks, MLP head.

One class, `StudyCNN`, covers every CNN the study trained; the builders only choose where its
residual blocks go:

- ``cnn``: the plain network. Each width gets conv3x3 → ReLU → 2x2 max-pool, so a 32x32 input
  goes 32→16→8→4→2; then flatten, dense 512, ReLU, dense ``num_classes``.
- ``residual_cnn``: the same plus the study's "5 residual blocks of width 256". The study
  describes a block as "linear activation, convolution, ReLU, addition", i.e.
  ``x + ReLU(conv3x3(x))`` with the convolution itself linear. Read literally, the blocks would run
  on 32x32x256 feature maps, which trains at 6–15 img/s on a 2-core CPU and is unusable. We put
  them where the network is already 256 wide: on the last stage's feature maps (4x4 at 32 px, after
  the third pool and before the last one). That keeps the block, its width, its count and its place
  between the conv stack and the dense head, at about 1/64 of the literal design's cost. We keep
  the single-conv block rather than the two-conv ResNet block because the study's description names
  one convolution.
- ``interleaved_cnn``: residual blocks between the conv layers, at each stage's own width: one
  block after each conv layer and a second one in the last (256-wide) stage, 5 in all, so it has
  as many blocks as ``residual_cnn`` and differs only in where they sit.

Future-work knobs, all off by default so the defaults are the study's models: ``norm`` adds
BatchNorm or a layer norm over (C, H, W) (GroupNorm with one group) after every convolution;
``activation="gtu"`` replaces the ReLU inside every residual block with a gated tanh unit
tanh(a)·sigmoid(b), the block's convolution producing both halves (the stage convs keep their ReLU,
and the plain ``cnn``, having no blocks, has no such param); ``final_relu`` puts a
ReLU on the logits, the study's worst model; ``dropout`` acts before the output layer.

``pool_first`` moves each stage's max-pool from after the activation to right after the stage's
convolution: conv → pool → norm → ReLU, the order of fast CIFAR trainers (airbench). Max-pooling
commutes with ReLU, so the plain ``cnn`` without a norm computes exactly the same function; with
batch norm the statistics come from the pooled maps, and the norm and activation (forward and
backward) touch a quarter of the pixels: measured +20% training throughput at 48 px on 2 CPU cores.
A stage's residual blocks then run on the pooled maps too, at a quarter of their cost.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

import torch
from torch import nn

from harness.models.registry import register_model, require

Norm = Literal["none", "batch", "layer"]
Activation = Literal["relu", "gtu"]

# The study's conv widths; four 2x2 pools take 32 px to 2x2 before the dense layer.
STUDY_WIDTHS = (32, 64, 128, 256)


class GatedTanh(nn.Module):
    """Gated tanh unit: the channels split in halves a, b and give tanh(a) * sigmoid(b)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return torch.tanh(a) * torch.sigmoid(b)


def conv_unit(
    in_ch: int, out_ch: int, norm: Norm, activation: Activation, pool: bool = False
) -> nn.Sequential:
    """conv3x3 ('same' padding) → [2x2 max-pool if `pool`] → optional norm → activation."""
    # A GTU consumes two channels per output channel, so the conv produces twice as many.
    conv_ch = 2 * out_ch if activation == "gtu" else out_ch
    # The norm's own shift makes a conv bias redundant.
    layers: list[nn.Module] = [nn.Conv2d(in_ch, conv_ch, 3, padding=1, bias=norm == "none")]
    if pool:
        layers.append(nn.MaxPool2d(2))
    if norm == "batch":
        layers.append(nn.BatchNorm2d(conv_ch))
    elif norm == "layer":
        layers.append(nn.GroupNorm(1, conv_ch))
    layers.append(GatedTanh() if activation == "gtu" else nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class ResidualBlock(nn.Module):
    """The study's block: x + act(conv3x3(x)), width unchanged."""

    def __init__(self, width: int, norm: Norm, activation: Activation) -> None:
        super().__init__()
        self.branch = conv_unit(width, width, norm, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)


class StudyCNN(nn.Module):
    """Conv stages (conv, residual blocks, max-pool) → flatten → dense → ReLU → dense logits.

    `activation` is the residual blocks'; the stage convs and the dense layer always use ReLU.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        image_size: int,
        widths: tuple[int, ...],
        blocks_per_stage: tuple[int, ...],
        dense: int,
        dropout: float,
        norm: Norm,
        activation: Activation,
        final_relu: bool,
        pool_first: bool = False,
    ) -> None:
        super().__init__()
        stages: list[nn.Module] = []
        prev = in_channels
        for width, n_blocks in zip(widths, blocks_per_stage, strict=True):
            blocks = [ResidualBlock(width, norm, activation) for _ in range(n_blocks)]
            stages.append(nn.Sequential(conv_unit(prev, width, norm, "relu", pool_first), *blocks))
            if not pool_first:
                stages.append(nn.MaxPool2d(2))
            prev = width
        self.features = nn.Sequential(*stages)
        # Each floor-halving pool composes to image_size // 2**n_pools.
        side = image_size // 2 ** len(widths)
        head: list[nn.Module] = [
            nn.Flatten(),
            nn.Linear(widths[-1] * side * side, dense),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(dense, num_classes),
        ]
        if final_relu:
            head.append(nn.ReLU())
        self.head = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _study_cnn(model: str, num_classes: int, in_channels: int, image_size: int,
               blocks_per_stage: tuple[int, ...], **params: Any) -> StudyCNN:  # fmt: skip
    """Validate the params the study's CNNs share (named after `model`), then build."""
    widths, blocks_per_stage = tuple(params.pop("widths")), tuple(blocks_per_stage)
    dense, dropout, norm, activation = params["dense"], params["dropout"], params["norm"], params["activation"]
    require(len(widths) > 0 and min(widths) >= 1, model, f"widths must be positive, got {widths}")
    require(dense >= 1, model, f"dense must be positive, got {dense}")
    require(0.0 <= dropout < 1.0, model, f"dropout must be in [0, 1), got {dropout}")
    require(norm in get_args(Norm), model, f"norm must be one of {get_args(Norm)}, got {norm!r}")
    require(
        activation in get_args(Activation),
        model,
        f"activation must be one of {get_args(Activation)}, got {activation!r}",
    )
    require(
        image_size >= 2 ** len(widths),
        model,
        f"image_size {image_size} is too small for {len(widths)} 2x2 max-pools"
        f" (needs at least {2 ** len(widths)})",
    )
    return StudyCNN(num_classes, in_channels, image_size, widths, blocks_per_stage, **params)


@register_model
def cnn(
    num_classes: int,
    in_channels: int,
    image_size: int,
    *,
    widths: tuple[int, ...] = STUDY_WIDTHS,
    dense: int = 512,  # the study's hidden dense layer
    dropout: float = 0.0,  # the study used none
    norm: Norm = "none",
    final_relu: bool = False,
    pool_first: bool = False,  # conv → pool → norm → ReLU (see the module docstring)
) -> nn.Module:
    """The study's plain CNN (~25% validation accuracy at 32 px)."""
    return _study_cnn(
        "cnn", num_classes, in_channels, image_size, (0,) * len(widths),
        widths=widths, dense=dense, dropout=dropout, norm=norm, activation="relu",
        final_relu=final_relu, pool_first=pool_first,
    )  # fmt: skip


@register_model
def residual_cnn(
    num_classes: int,
    in_channels: int,
    image_size: int,
    *,
    num_blocks: int = 5,  # the study's "5 residual blocks of width 256"
    widths: tuple[int, ...] = STUDY_WIDTHS,
    dense: int = 512,
    dropout: float = 0.0,
    norm: Norm = "none",
    activation: Activation = "relu",
    final_relu: bool = False,
    pool_first: bool = False,
) -> nn.Module:
    """The plain CNN plus `num_blocks` residual blocks on the last (256-wide) stage (29.7%)."""
    require(num_blocks >= 0, "residual_cnn", f"num_blocks must be >= 0, got {num_blocks}")
    blocks = (0,) * (len(widths) - 1) + (num_blocks,) if widths else ()
    return _study_cnn(
        "residual_cnn", num_classes, in_channels, image_size, blocks,
        widths=widths, dense=dense, dropout=dropout, norm=norm, activation=activation,
        final_relu=final_relu, pool_first=pool_first,
    )  # fmt: skip


@register_model
def interleaved_cnn(
    num_classes: int,
    in_channels: int,
    image_size: int,
    *,
    # One block after every conv layer, two in the 256-wide stage: 5, as in residual_cnn.
    blocks_per_stage: tuple[int, ...] = (1, 1, 1, 2),
    widths: tuple[int, ...] = STUDY_WIDTHS,
    dense: int = 512,
    dropout: float = 0.0,
    norm: Norm = "none",
    activation: Activation = "relu",
    final_relu: bool = False,
    pool_first: bool = False,
) -> nn.Module:
    """Residual blocks interleaved with the conv layers at each stage's width."""
    model = "interleaved_cnn"
    require(
        len(blocks_per_stage) == len(widths),
        model,
        f"blocks_per_stage needs one count per width ({len(widths)}), got {len(blocks_per_stage)}",
    )
    require(
        min(blocks_per_stage, default=0) >= 0,
        model,
        f"blocks_per_stage must be >= 0, got {tuple(blocks_per_stage)}",
    )
    return _study_cnn(
        model, num_classes, in_channels, image_size, tuple(blocks_per_stage),
        widths=widths, dense=dense, dropout=dropout, norm=norm, activation=activation,
        final_relu=final_relu, pool_first=pool_first,
    )  # fmt: skip
