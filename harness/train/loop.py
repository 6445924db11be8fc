"""fit / train_one_epoch: pure training code, no printing, no file I/O.

Images stay uint8 on the device and are converted per batch, so an epoch never copies the
dataset. Per-step host synchronisation is avoided: losses and hit counts accumulate on the
device and are read once per epoch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.data.samplers import SAMPLERS, class_weights
from harness.train.augment import augment_batch, mix_batch
from harness.train.device import autocast, batch_input, to_tensor, use_channels_last
from harness.train.metrics import Evaluation, evaluate
from harness.train.optim import OPTIMIZERS
from harness.train.schedules import ModelEma, lr_scheduler
from harness.train.scoring import predict

if TYPE_CHECKING:
    import torch

    from harness.data.dataset import Dataset
    from harness.spec.schema import ExperimentSpec


@dataclass(frozen=True)
class EpochStats:
    """What one epoch measured; `val_*` come from the validation split."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    val_balanced_accuracy: float
    val_macro_f1: float
    train_seconds: float
    images: int

    def metrics(self) -> dict[str, float]:
        """The per-epoch metrics as MLflow logs them."""
        return {
            "train_loss": self.train_loss,
            "train_accuracy": self.train_accuracy,
            "val_loss": self.val_loss,
            "val_accuracy": self.val_accuracy,
            "val_balanced_accuracy": self.val_balanced_accuracy,
            "val_macro_f1": self.val_macro_f1,
        }


@dataclass(frozen=True)
class FitResult:
    """A trained model with its history and its final validation predictions."""

    model: Any
    history: list[EpochStats]
    evaluation: Evaluation
    y_pred: np.ndarray
    sampled_per_epoch: list[int]  # class counts the sampler drew in the first epoch

    @property
    def train_seconds(self) -> float:
        """Time spent in training steps (evaluation excluded)."""
        return sum(e.train_seconds for e in self.history)

    @property
    def images_per_second(self) -> float:
        """Training throughput over the whole fit."""
        return sum(e.images for e in self.history) / max(self.train_seconds, 1e-9)


# Sees each epoch's stats; returning True stops training after that epoch (e.g. Optuna pruning).
EpochCallback = Callable[[EpochStats], bool | None]


def fit(
    model: torch.nn.Module,
    data: Dataset,
    spec: ExperimentSpec,
    *,
    device: str = "cpu",
    on_epoch: EpochCallback | None = None,
) -> FitResult:
    """Train `model` on `data` as `spec` says.

    `on_epoch` sees each epoch's stats; it may raise, or return True to stop after that epoch
    (the result then holds the epochs run and the last epoch's evaluation).
    """
    import torch

    train = spec.train
    torch.manual_seed(train.seed)
    rng = np.random.default_rng(train.seed)
    model = model.to(device)
    channels_last = use_channels_last(spec, device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = OPTIMIZERS.get(train.optimizer)(model.parameters(), train.lr, train.weight_decay)
    weight = None
    if spec.sampler.class_weighted_loss:
        weight = torch.from_numpy(class_weights(data.y_train, data.num_classes)).to(device)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weight, label_smoothing=train.label_smoothing)
    x_train, y_train = to_tensor(data.x_train, device), torch.from_numpy(data.y_train).to(device)
    x_val, y_val = to_tensor(data.x_val, device), torch.from_numpy(data.y_val).to(device)
    sampler = SAMPLERS.get(spec.sampler.name)
    steps = train.epochs * steps_per_epoch(spec, data.y_train)
    step = StepTools(
        scheduler=lr_scheduler(optimizer, train, steps),
        ema=ModelEma(model, train.ema) if train.ema > 0 else None,
    )
    evaluated = step.ema.module if step.ema is not None else model
    history: list[EpochStats] = []
    sampled: list[int] = []
    for epoch in range(1, train.epochs + 1):
        indices = sampler(data.y_train, spec.sampler.per_epoch, spec.sampler.cap, rng)
        if epoch == 1:
            sampled = data.class_counts(data.y_train[indices])
        started = time.perf_counter()
        train_loss, train_acc = train_one_epoch(
            model, optimizer, loss_fn, x_train, y_train, indices, spec, device, channels_last, step
        )
        seconds = time.perf_counter() - started
        val_loss, y_pred = predict(evaluated, x_val, y_val, spec, device, channels_last=channels_last)
        scores = evaluate(data.y_val, y_pred, data.class_names)
        stats = EpochStats(
            epoch=epoch,
            train_loss=train_loss,
            train_accuracy=train_acc,
            val_loss=val_loss,
            val_accuracy=scores.accuracy,
            val_balanced_accuracy=scores.balanced_accuracy,
            val_macro_f1=scores.macro_f1,
            train_seconds=seconds,
            images=len(indices),
        )
        history.append(stats)
        if on_epoch is not None and on_epoch(stats):
            break
    return FitResult(model=evaluated, history=history, evaluation=scores, y_pred=y_pred, sampled_per_epoch=sampled)


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


def steps_per_epoch(spec: ExperimentSpec, labels: np.ndarray) -> int:
    """Optimizer steps in one epoch: both samplers draw the same number of images every epoch."""
    drawn = SAMPLERS.get(spec.sampler.name)(labels, spec.sampler.per_epoch, spec.sampler.cap, np.random.default_rng(0))
    return -(-len(drawn) // spec.train.batch_size)


def train_one_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    indices: np.ndarray,
    spec: ExperimentSpec,
    device: str,
    channels_last: bool = False,
    step: StepTools | None = None,
) -> tuple[float, float]:
    """One pass over `indices` in mini-batches; returns (mean loss, accuracy) on those images.

    Each batch is augmented (spec.augment: crop/flip/rotation/erasing, then mixup/cutmix) on the
    device; with the default spec there is no augmentation and this is the study's plain loop.
    """
    import torch

    model.train()
    order = torch.from_numpy(np.asarray(indices, dtype=np.int64)).to(device)
    loss_sum = torch.zeros((), device=device)
    hits = torch.zeros((), device=device, dtype=torch.long)
    batch = spec.train.batch_size
    for start in range(0, len(order), batch):
        idx = order[start : start + batch]
        xb, yb = augment_batch(batch_input(x[idx], channels_last), spec.augment), y[idx]
        xb, yb, y_mix, lam = mix_batch(xb, yb, spec.augment)
        with autocast(spec, device):
            logits = model(xb)
            loss = loss_fn(logits.float(), yb)
            if y_mix is not None:
                loss = lam * loss + (1 - lam) * loss_fn(logits.float(), y_mix)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step is not None:
            step.after_step(model)
        loss_sum += loss.detach() * len(idx)
        hits += (logits.detach().argmax(1) == yb).sum()
    n = max(len(order), 1)
    return float(loss_sum) / n, int(hits) / n
