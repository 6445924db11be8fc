"""A fit's whole state between two epochs, captured and restored: what resuming needs.

The state holds every tensor and counter a fit's next epoch depends on: the weights, the
optimizer's moments, the schedule's position, the weight average, the sampler's numpy stream and
torch's random streams (augmentation draws from them), and the epochs so far. It is made only of
tensors and plain Python values, so it can be saved with `torch.save` and read back with
`torch.load(weights_only=True)`; restored into a fresh fit of the same spec, the next epoch
computes exactly what it would have computed without the interruption.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from harness.train.history import EpochStats
from harness.train.schedules import StepTools


@dataclass
class Loop:
    """Everything one fit mutates: the model and its average, the optimizer and its schedule,
    the sampler's random stream; and the tensors it reads."""

    model: Any
    evaluated: Any  # the model that is scored and saved: the weight average when train.ema is on
    optimizer: Any
    loss_fn: Any
    step: StepTools
    rng: np.random.Generator
    channels_last: bool
    tensors: tuple[Any, Any, Any, Any]  # x_train, y_train, x_val, y_val on the device


@dataclass(frozen=True)
class FitState:
    """A fit after `epoch` epochs (len(history))."""

    history: tuple[EpochStats, ...]
    sampled: tuple[int, ...]  # the classes the first epoch drew
    tensors: dict[str, Any] = field(repr=False)  # state dicts and random streams

    @property
    def epoch(self) -> int:
        """Epochs completed."""
        return len(self.history)

    def to_dict(self) -> dict[str, Any]:
        """The state as plain data (what a checkpoint file holds)."""
        return {"history": [asdict(e) for e in self.history], "sampled": list(self.sampled), **self.tensors}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FitState:
        """The inverse of `to_dict`."""
        rest = {k: v for k, v in data.items() if k not in ("history", "sampled")}
        history = tuple(EpochStats(**e) for e in data["history"])
        return cls(history, tuple(int(c) for c in data["sampled"]), rest)


def capture_state(loop: Loop, history: list[EpochStats], sampled: list[int]) -> FitState:
    """The fit's state now (copies: training may go on and change the originals)."""
    import torch

    step = loop.step
    tensors: dict[str, Any] = {
        "model": _cloned(loop.model.state_dict()),
        "optimizer": _cloned(loop.optimizer.state_dict()),
        "scheduler": step.scheduler.state_dict() if step.scheduler is not None else None,
        "ema": _cloned(step.ema.module.state_dict()) if step.ema is not None else None,
        "ema_updates": step.ema.updates if step.ema is not None else 0,
        "sampler_rng": loop.rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return FitState(tuple(history), tuple(sampled), tensors)


def restore_state(loop: Loop, state: FitState) -> None:
    """Put a captured state back into a freshly set-up fit of the same spec."""
    import torch

    t = state.tensors
    loop.model.load_state_dict(t["model"])
    loop.optimizer.load_state_dict(t["optimizer"])
    if loop.step.scheduler is not None:
        loop.step.scheduler.load_state_dict(t["scheduler"])
    if loop.step.ema is not None:
        loop.step.ema.module.load_state_dict(t["ema"])
        loop.step.ema.updates = int(t["ema_updates"])
    loop.rng.bit_generator.state = t["sampler_rng"]
    torch.set_rng_state(t["torch_rng"])
    if t["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(t["cuda_rng"])


def _cloned(state: Any) -> Any:
    """A deep copy of a (nested) state dict's tensors, on the CPU."""
    import torch

    if isinstance(state, torch.Tensor):
        return state.detach().to("cpu", copy=True)
    if isinstance(state, dict):
        return {k: _cloned(v) for k, v in state.items()}
    if isinstance(state, list | tuple):
        return type(state)(_cloned(v) for v in state)
    return state
