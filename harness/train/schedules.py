"""What runs after every optimizer step: the learning-rate schedule and the weight average.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from harness.spec.schema import TrainSpec


class ModelEma:
    """An exponential moving average of a model's weights (Polyak averaging, as in timm's ModelEmaV2).

    ``ema = d·ema + (1 − d)·w`` after every optimizer step, with the decay warmed up as
    ``min(decay, (1 + t) / (10 + t))`` so the average is not dominated by the random initial
    weights in a short run. Buffers (BatchNorm statistics) are copied, not averaged.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.updates = 0

    def update(self, model: torch.nn.Module) -> None:
        """Move the average one step towards `model`'s current weights."""
        import torch

        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        with torch.no_grad():
            ema_p = [p for p in self.module.parameters()]
            new_p = [p.detach() for p in model.parameters()]
            torch._foreach_lerp_(ema_p, new_p, 1.0 - d)
            for ema_b, b in zip(self.module.buffers(), model.buffers(), strict=True):
                ema_b.copy_(b)


def lr_scheduler(optimizer: Any, train: TrainSpec, total_steps: int) -> Any:
    """The per-step schedule `train.schedule` names, or None for a constant learning rate.

    - ``onecycle``: PyTorch's OneCycleLR: warm up from lr/25 to lr over `train.warmup` of the
      steps (0.3 when 0), then cosine-anneal to lr/10⁴; SGD's momentum cycles inversely.
    - ``cosine``: linear warm-up from 0 over `train.warmup` of the steps, then cosine to 0.
    """
    import torch

    if train.schedule == "constant" or total_steps < 1:
        return None
    if train.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=train.lr, total_steps=total_steps, pct_start=train.warmup or 0.3
        )
    warm = int(round(train.warmup * total_steps))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(total_steps - warm, 1)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclass(frozen=True)
class StepTools:
    """What runs after every optimizer step besides the step itself (each None when off)."""

    scheduler: Any = None  # a per-step LR scheduler (train.schedule)
    ema: ModelEma | None = None  # the weight average (train.ema)

    def after_step(self, model: torch.nn.Module) -> None:
        """Advance the schedule and the weight average by one step."""
        if self.scheduler is not None:
            self.scheduler.step()
        if self.ema is not None:
            self.ema.update(model)
