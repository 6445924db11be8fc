"""Optimizer registry: builders import torch lazily so spec validation stays light."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from harness.core.registry import Registry

OptimizerBuilder = Callable[[Iterable[Any], float, float], Any]
OPTIMIZERS: Registry[OptimizerBuilder] = Registry("optimizer", plugins="fer_harness.optimizers")


@OPTIMIZERS.register("adam")
def adam(params: Iterable[Any], lr: float, weight_decay: float) -> Any:
    """Adam, the study's optimizer (L2 penalty through `weight_decay`, as Keras applies it)."""
    import torch

    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


@OPTIMIZERS.register("adamw")
def adamw(params: Iterable[Any], lr: float, weight_decay: float) -> Any:
    """AdamW: decoupled weight decay."""
    import torch

    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


@OPTIMIZERS.register("sgd")
def sgd(params: Iterable[Any], lr: float, weight_decay: float) -> Any:
    """SGD with Nesterov momentum 0.9, the usual choice for ResNets."""
    import torch

    return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
