"""ResNet and ResNeXt as one class, after timm's `resnet.py`.

ResNeXt is ResNet with bottleneck blocks whose 3x3 convolution is grouped: ``cardinality`` groups
of ``base_width`` channels per 64 of a stage's width. ``depths=(3, 4, 6, 3)``,
``widths=(64, 128, 256, 512)``, ``cardinality=32``, ``base_width=4`` with ``stem="imagenet"`` is
ResNeXt-50 32x4d.

Adapting the AffectNet ResNeXt to 32x32 input: the ImageNet stem (7x7 stride-2 conv and a stride-2
max-pool) shrinks a 32 px face to 8x8 before the first block and to 1x1 by the fourth stage, so the
default ``small`` stem is one 3x3 stride-1 conv + BN + ReLU with no pooling, as in the CIFAR
ResNets, and the stages halve the resolution from the second stage on (32→16→8 for three stages).
``stem="imagenet"`` remains for the literal reading (the unmodified network fed 32 px faces), which
is about 8x cheaper because every block then runs at 8x8 or less. Full-resolution bottleneck stages
are expensive on a CPU (1x1 convs, BN and ReLU over 32x32 maps are memory-bound and the grouped 3x3
conv runs at a fraction of a dense conv's speed), so the default is three stages of one bottleneck
each, widths 16/32/64 (outputs 64/128/256), cardinality 8. Pass the ResNeXt-50 params above for a
GPU profile.

Both builders end in global average pooling, dropout and a linear layer. Convolutions get Kaiming
(fan-out) init and the last BN of every residual branch starts at zero, so each block starts as
the identity and the deep network trains like a shallow one at first (Goyal et al., 2017).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from harness.models.registry import register_model, require

Stem = Literal["small", "strided", "deep", "imagenet"]


def _downsample(in_ch: int, out_ch: int, stride: int) -> nn.Module | None:
    """1x1 projection for the shortcut when the block changes shape, else None (identity)."""
    if stride == 1 and in_ch == out_ch:
        return None
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
    )


class BasicBlock(nn.Module):
    """Two 3x3 convs with BN; out channels = planes."""

    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int, cardinality: int, base_width: int):
        super().__init__()
        # timm's rule as well: grouped convs belong to the bottleneck design only.
        if cardinality != 1 or base_width != 64:
            raise ValueError("BasicBlock supports only cardinality=1 and base_width=64")
        self.conv1 = nn.Conv2d(in_ch, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_ch, planes, stride)

    def zero_init_last(self) -> None:
        """Start the residual branch at zero so the block is the identity."""
        nn.init.zeros_(self.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.act(self.bn1(self.conv1(x)))
        return self.act(self.bn2(self.conv2(out)) + shortcut)


class Bottleneck(nn.Module):
    """1x1 reduce → grouped 3x3 (the stride) → 1x1 expand to 4·planes, each with BN."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int, cardinality: int, base_width: int):
        super().__init__()
        width = bottleneck_width(planes, cardinality, base_width)
        out_ch = planes * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(
            width, width, 3, stride=stride, padding=1, groups=cardinality, bias=False
        )
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.act = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_ch, out_ch, stride)

    def zero_init_last(self) -> None:
        """Start the residual branch at zero so the block is the identity."""
        nn.init.zeros_(self.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.act(self.bn1(self.conv1(x)))
        out = self.act(self.bn2(self.conv2(out)))
        return self.act(self.bn3(self.conv3(out)) + shortcut)


def bottleneck_width(planes: int, cardinality: int, base_width: int) -> int:
    """Channels of a bottleneck's grouped 3x3 conv: `base_width` per group per 64 planes."""
    return int(planes * base_width / 64) * cardinality


def _stem(in_channels: int, width: int, stem: Stem) -> nn.Sequential:
    if stem == "imagenet":
        return nn.Sequential(
            nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
    if stem == "deep":
        # ResNet-C's deep stem, cut to two convs: a full-resolution 3x3 conv of width/2 channels,
        # then a stride-2 3x3 conv. The stages run at half resolution as with "strided", but the
        # face's full-resolution detail passes a non-linearity before it is subsampled.
        # Measured 48 px, 1 channel, widths 32-256: 279 img/s against 328 for "strided".
        mid = max(1, width // 2)
        return nn.Sequential(
            nn.Conv2d(in_channels, mid, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
    # Small faces keep their full resolution into the first stage ("small"), or half of it
    # ("strided": a stride-2 3x3 conv, 4x cheaper stages; measured 48 px: 54 → ~200 img/s on 2 cores).
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, stride=2 if stem == "strided" else 1, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
    )


class ResNet(nn.Module):
    """Stem → stages of residual blocks (stride 2 from the second) → global avg pool → linear."""

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        num_classes: int,
        in_channels: int,
        *,
        depths: tuple[int, ...],
        widths: tuple[int, ...],
        stem_width: int,
        stem: Stem,
        cardinality: int = 1,
        base_width: int = 64,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.stem = _stem(in_channels, stem_width, stem)
        stages: list[nn.Module] = []
        in_ch = stem_width
        for i, (depth, planes) in enumerate(zip(depths, widths, strict=True)):
            blocks = []
            for j in range(depth):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(block(in_ch, planes, stride, cardinality, base_width))
                in_ch = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_ch, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, BasicBlock | Bottleneck):
                m.zero_init_last()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.stages(self.stem(x))).flatten(1)
        return self.fc(self.dropout(x))


def _check_resnet(
    model: str,
    depths: tuple[int, ...],
    widths: tuple[int, ...],
    stem_width: int,
    dropout: float,
    stem: str,
) -> None:
    require(len(depths) > 0, model, "depths must name at least one stage")
    require(
        len(depths) == len(widths),
        model,
        f"depths and widths need one entry per stage, got {len(depths)} and {len(widths)}",
    )
    require(min(depths) >= 1, model, f"depths must be positive, got {tuple(depths)}")
    require(min(widths) >= 1, model, f"widths must be positive, got {tuple(widths)}")
    require(stem_width >= 1, model, f"stem_width must be positive, got {stem_width}")
    require(0.0 <= dropout < 1.0, model, f"dropout must be in [0, 1), got {dropout}")
    require(
        stem in ("small", "strided", "deep", "imagenet"), model,
        f"stem must be 'small', 'strided', 'deep' or 'imagenet', got {stem!r}",
    )


@register_model
def resnext(
    num_classes: int,
    in_channels: int,
    image_size: int,
    *,
    depths: tuple[int, ...] = (1, 1, 1),  # one bottleneck per stage: trainable on 2 CPU cores
    # Bottleneck planes; stage outputs are 4x these, ending at the study CNN's 256 channels.
    widths: tuple[int, ...] = (16, 32, 64),
    cardinality: int = 8,
    # Grouped convs of 8 groups x 4/8/16 channels; 4 per group is also ResNeXt-50 32x4d's.
    base_width: int = 16,
    stem_width: int = 16,
    stem: Stem = "small",
    dropout: float = 0.0,
) -> nn.Module:
    """AffectNet-style ResNeXt adapted to 32 px faces (bottleneck blocks, grouped 3x3 convs)."""
    model = "resnext"
    _check_resnet(model, depths, widths, stem_width, dropout, stem)
    require(cardinality >= 1, model, f"cardinality must be positive, got {cardinality}")
    require(base_width >= 1, model, f"base_width must be positive, got {base_width}")
    require(
        bottleneck_width(min(widths), 1, base_width) >= 1,
        model,
        f"widths {tuple(widths)} and base_width {base_width} leave a stage with no channels"
        " per group (need width * base_width >= 64)",
    )
    return ResNet(
        Bottleneck, num_classes, in_channels,
        depths=tuple(depths), widths=tuple(widths), stem_width=stem_width, stem=stem,
        cardinality=cardinality, base_width=base_width, dropout=dropout,
    )  # fmt: skip


@register_model
def resnet(
    num_classes: int,
    in_channels: int,
    image_size: int,
    *,
    depths: tuple[int, ...] = (1, 1, 1, 1),  # ResNet-10-like: cheap enough for CPU sweeps
    widths: tuple[int, ...] = (32, 64, 128, 256),  # the study's CNN widths, for comparability
    stem_width: int = 32,
    stem: Stem = "small",
    dropout: float = 0.0,
) -> nn.Module:
    """ResNet with basic blocks and BN, for the modern-recipe experiments."""
    _check_resnet("resnet", depths, widths, stem_width, dropout, stem)
    return ResNet(
        BasicBlock, num_classes, in_channels,
        depths=tuple(depths), widths=tuple(widths), stem_width=stem_width, stem=stem,
        dropout=dropout,
    )  # fmt: skip
