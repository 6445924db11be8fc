"""1a. Training overhead: `harness.train.loop.train_one_epoch` against a bare PyTorch loop over the same tensors.

Both models start from the same weights and are compared after the warm-up epoch, so the two sides
are known to compute the same thing. overhead = median over repeats of (harness s / bare s) - 1;
target <= 5 %.
"""

from __future__ import annotations

import copy
import statistics

import numpy as np
import torch
from common import (
    median_ratio,
    met,
    rounded,
    time_variants,
)
from training_setup import (
    EFFICIENCY_EXPERIMENTS,
    TARGETS,
    Sizes,
    fresh_optimizer,
    prepared_model,
    synchronize,
)

from harness.data.dataset import Dataset
from harness.data.samplers import natural
from harness.suite.load import Suite
from harness.train.device import resolve_precision, to_tensor
from harness.train.loop import train_one_epoch


def bare_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    indices: np.ndarray,
    batch: int,
    *,
    bf16: bool,
    channels_last: bool,
) -> None:
    """The loop a user would write: no metrics, no bookkeeping, nothing but the steps."""
    model.train()
    order = torch.from_numpy(indices).to(x.device)
    device_type = "cuda" if x.device.type == "cuda" else "cpu"
    for start in range(0, len(order), batch):
        idx = order[start : start + batch]
        xb = x[idx].float().div_(255.0)
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(xb)
        loss = torch.nn.functional.cross_entropy(logits.float(), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def max_param_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    """The largest absolute difference between two models' parameters."""
    with torch.no_grad():
        pairs = zip(a.parameters(), b.parameters(), strict=True)
        return max(float((p - q).abs().max()) for p, q in pairs)


def measure_overhead(suite: Suite, data: Dataset, sizes: Sizes, device: str) -> tuple[dict, dict]:
    """1a: train_one_epoch against the bare loop, the same images, batches and initial weights."""
    spec = suite.experiments[EFFICIENCY_EXPERIMENTS["cnn"]]
    model, channels_last = prepared_model(spec, data, device)
    bf16 = resolve_precision(spec.train.precision, device) == "bf16"
    x, y = to_tensor(data.x_train, device), torch.from_numpy(data.y_train).to(device)
    sides = {name: copy.deepcopy(model) for name in ("harness", "bare")}
    optimizers = {name: fresh_optimizer(m, spec) for name, m in sides.items()}
    loss_fn = torch.nn.CrossEntropyLoss()
    rng = np.random.default_rng(0)
    batch = spec.train.batch_size
    indices = natural(data.y_train, sizes.overhead_images, 0, rng)

    def harness_side() -> None:
        train_one_epoch(sides["harness"], optimizers["harness"], loss_fn, x, y, indices, spec, device, channels_last)

    def bare_side() -> None:
        bare_epoch(sides["bare"], optimizers["bare"], x, y, indices, batch, bf16=bf16, channels_last=channels_last)

    harness_side(), bare_side()  # warm-up, and the check that both sides train alike
    synchronize(device)
    diff = max_param_diff(sides["harness"], sides["bare"])
    seconds, _ = time_variants(
        {"harness": harness_side, "bare": bare_side}, sizes.overhead_repeats,
        alternate=True, before=lambda: synchronize(device),
    )  # fmt: skip
    overhead = median_ratio(seconds["harness"], seconds["bare"]) - 1
    n = len(indices)
    keys = {
        "train_overhead_images": n,
        "train_overhead_harness_img_s": round(n / statistics.median(seconds["harness"]), 1),
        "train_overhead_bare_img_s": round(n / statistics.median(seconds["bare"]), 1),
        "train_overhead": round(overhead, 4),
        "train_overhead_target": TARGETS["overhead"],
        "train_overhead_met": met(overhead, TARGETS["overhead"], at_most=True),
    }
    details = {
        "experiment": spec.name,
        "model": spec.model.name,
        "batch_size": batch,
        "precision": "bf16" if bf16 else "fp32",
        "channels_last": channels_last,
        "max_param_diff_after_warmup": diff,
        "seconds": rounded(seconds),
    }
    print(
        f"1a overhead  {spec.model.name}: harness {keys['train_overhead_harness_img_s']:.0f} img/s, "
        f"bare loop {keys['train_overhead_bare_img_s']:.0f} img/s -> overhead {overhead:+.1%} "
        f"(target <= {TARGETS['overhead']:.0%}); weights after warm-up differ by {diff:.1e}"
    )
    return keys, details
