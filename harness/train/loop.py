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
from harness.train.device import (
    autocast,
    batch_input,
    memory_errors_named,
    to_tensor,
    use_channels_last,
)
from harness.train.history import EpochStats
from harness.train.metrics import Evaluation, evaluate
from harness.train.optim import OPTIMIZERS
from harness.train.schedules import ModelEma, StepTools, lr_scheduler
from harness.train.scoring import predict
from harness.train.state import FitState, Loop, capture_state, restore_state

if TYPE_CHECKING:
    import torch

    from harness.data.dataset import Dataset
    from harness.spec.schema import ExperimentSpec


@dataclass(frozen=True)
class FitResult:
    """A trained model with its history and its final validation predictions."""

    model: Any
    history: list[EpochStats]
    evaluation: Evaluation
    y_pred: np.ndarray
    sampled_per_epoch: list[int]  # class counts the sampler drew in the first epoch
    evaluations: int = 1  # validation passes made (train.eval_every; the final epoch always)

    @property
    def train_seconds(self) -> float:
        """Time spent in training steps (evaluation excluded)."""
        return sum(e.train_seconds for e in self.history)

    @property
    def images_seen(self) -> int:
        """Training images over the whole fit."""
        return sum(e.images for e in self.history)

    @property
    def images_per_second(self) -> float:
        """Training throughput over the whole fit."""
        return self.images_seen / max(self.train_seconds, 1e-9)


# Sees each epoch's stats; returning True stops training after that epoch (e.g. Optuna pruning).
EpochCallback = Callable[[EpochStats], bool | None]
# Sees the training state after every `state_every`-th epoch (a checkpoint to save).
StateCallback = Callable[[FitState], None]
# Asked before the state is captured: False skips this one (e.g. the last was moments ago).
StateDue = Callable[[], bool]


def fit(
    model: torch.nn.Module,
    data: Dataset,
    spec: ExperimentSpec,
    *,
    device: str = "cpu",
    on_epoch: EpochCallback | None = None,
    start: FitState | None = None,
    on_state: StateCallback | None = None,
    state_every: int = 0,
    state_due: StateDue | None = None,
) -> FitResult:
    """Train `model` on `data` as `spec` says.

    `on_epoch` sees each epoch's stats; it may raise, or return True to stop after that epoch
    (the result then holds the epochs run and, scored now if that epoch was not, their model's
    evaluation). `start` resumes from a state `on_state` was given (every `state_every` epochs),
    bit for bit: the same weights and epochs as a fit never stopped. `state_due`, where given,
    may skip one of those states (capturing it costs a copy of the model and optimizer).
    """
    loop = setup(model, data, spec, device)
    history, sampled = ([*start.history], [*start.sampled]) if start else ([], [])
    if start is not None:
        restore_state(loop, start)
    last: tuple[Evaluation, np.ndarray] | None = None
    evaluations = 0
    epochs = spec.train.epochs
    for epoch in range(len(history) + 1, epochs + 1):
        score = epoch == epochs or epoch % spec.train.eval_every == 0
        with memory_errors_named(spec):
            stats, drawn, scored = run_epoch(loop, data, spec, device, epoch, score)
        sampled = sampled or drawn
        evaluations += scored is not None
        last = scored or last
        history.append(stats)
        stop = on_epoch is not None and on_epoch(stats)
        # The final epoch is not checkpointed: the run logs its weights next.
        if on_state is not None and _state_wanted(state_every, state_due, epoch, epochs, stop):
            on_state(capture_state(loop, history, sampled))
        if stop:
            break
    if last is None or not history[-1].evaluated:  # stopped early on an unscored epoch, or resumed at the end
        last = score_model(loop, data, spec, device)[:2]
        evaluations += 1
    evaluation, y_pred = last
    return FitResult(loop.evaluated, history, evaluation, y_pred, sampled, evaluations)


def _state_wanted(every: int, due: StateDue | None, epoch: int, epochs: int, stop: bool) -> bool:
    """Whether this epoch's state is captured (every `every`-th, never the final or a stopping one)."""
    if not every or epoch % every or epoch >= epochs or stop:
        return False
    return due is None or due()


def setup(model: torch.nn.Module, data: Dataset, spec: ExperimentSpec, device: str) -> Loop:
    """The seeded optimizer, loss, schedule, weight average and sampler stream of a fit."""
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
    steps = train.epochs * steps_per_epoch(spec, data.y_train)
    step = StepTools(
        scheduler=lr_scheduler(optimizer, train, steps),
        ema=ModelEma(model, train.ema) if train.ema > 0 else None,
    )
    evaluated = step.ema.module if step.ema is not None else model
    return Loop(model, evaluated, optimizer, loss_fn, step, rng, channels_last, (x_train, y_train, x_val, y_val))


def run_epoch(
    loop: Loop, data: Dataset, spec: ExperimentSpec, device: str, epoch: int, score: bool
) -> tuple[EpochStats, list[int], tuple[Evaluation, np.ndarray] | None]:
    """One epoch's training pass and, when `score`, its evaluation; also the classes it drew."""
    indices = SAMPLERS.get(spec.sampler.name)(data.y_train, spec.sampler.per_epoch, spec.sampler.cap, loop.rng)
    drawn = data.class_counts(data.y_train[indices])
    x_train, y_train = loop.tensors[:2]
    started = time.perf_counter()
    train_loss, train_acc = train_one_epoch(
        loop.model, loop.optimizer, loop.loss_fn, x_train, y_train, indices, spec, device, loop.channels_last, loop.step
    )
    seconds = time.perf_counter() - started
    scored = score_model(loop, data, spec, device) if score else None
    val = (scored[0].accuracy, scored[0].balanced_accuracy, scored[0].macro_f1) if scored else (None,) * 3
    val_loss = scored[2] if scored else None
    stats = EpochStats(epoch, train_loss, train_acc, val_loss, *val, seconds, len(indices))
    return stats, drawn, (scored[0], scored[1]) if scored else None


def score_model(loop: Loop, data: Dataset, spec: ExperimentSpec, device: str) -> tuple[Evaluation, np.ndarray, float]:
    """The evaluated model's scores on the validation split, its predictions and its loss."""
    x_val, y_val = loop.tensors[2:]
    val_loss, y_pred = predict(loop.evaluated, x_val, y_val, spec, device, channels_last=loop.channels_last)
    return evaluate(data.y_val, y_pred, data.class_names), y_pred, val_loss


def images_per_epoch(spec: ExperimentSpec, labels: np.ndarray) -> int:
    """Images one epoch draws: both samplers draw the same number every epoch."""
    return len(SAMPLERS.get(spec.sampler.name)(labels, spec.sampler.per_epoch, spec.sampler.cap, np.random.default_rng(0)))


def steps_per_epoch(spec: ExperimentSpec, labels: np.ndarray) -> int:
    """Optimizer steps in one epoch."""
    return -(-images_per_epoch(spec, labels) // spec.train.batch_size)


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
