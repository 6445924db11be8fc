"""2. Hardware efficiency: model FLOPs per training image x images/s against the machine's ceiling.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from common import (
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
    with_settings,
)

from harness.data.dataset import Dataset
from harness.data.samplers import natural
from harness.spec.schema import ExperimentSpec
from harness.suite.load import Suite
from harness.train.device import resolve_precision, to_tensor
from harness.train.loop import train_one_epoch
from harness.train.scoring import predict


def gemm_peaks(sizes: Sizes, device: str) -> tuple[dict[str, float], dict]:
    """GFLOP/s of a square matmul loop in fp32 and bf16, interleaved."""
    # Where bf16 is emulated (no AVX512-BF16/AMX) one 2048² bf16 GEMM takes about a minute
    # (0.3 GFLOP/s measured here): a 512² one measures the same emulated rate in a second.
    emulated = resolve_precision("auto", device) != "bf16"
    dims = {"fp32": sizes.gemm_n, "bf16": min(sizes.gemm_n, 512) if emulated else sizes.gemm_n}
    mats = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        n = dims[name]
        a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
        mats[name] = (a, b, torch.empty(n, n, device=device, dtype=dtype))

    calls: dict[str, int] = {}
    for name, (a, b, out) in mats.items():
        torch.matmul(a, b, out=out)  # warm-up: oneDNN/cuBLAS pick their kernels on the first call
        synchronize(device)
        started = time.perf_counter()
        torch.matmul(a, b, out=out)
        synchronize(device)
        # Enough calls for ~gemm_seconds a repeat: an emulated bf16 GEMM can be 10x slower.
        one = max(time.perf_counter() - started, 1e-6)
        calls[name] = max(1, min(sizes.gemm_calls, round(sizes.gemm_seconds / one)))

    def loop(name: str) -> Callable[[], None]:
        a, b, out = mats[name]

        def run() -> None:
            for _ in range(calls[name]):
                torch.matmul(a, b, out=out)

        return run

    variants = {name: loop(name) for name in mats}
    seconds, _ = time_variants(variants, sizes.gemm_repeats, before=lambda: synchronize(device))
    peaks = {name: 2 * dims[name] ** 3 * calls[name] / statistics.median(s) / 1e9 for name, s in seconds.items()}
    return peaks, {"n": dims, "bf16_emulated": emulated, "calls": calls, "seconds": rounded(seconds, 4)}


def flops_per_image(model: torch.nn.Module, spec: ExperimentSpec, device: str, *, train: bool) -> float:
    """Model FLOPs (matmuls and convolutions) per image: forward + backward if `train`, else forward."""
    from torch.utils.flop_counter import FlopCounterMode

    model = copy.deepcopy(model)
    batch = spec.train.batch_size
    size, channels = spec.data.image_size, spec.data.channels
    x = torch.rand(batch, channels, size, size, device=device)
    y = torch.randint(0, 2, (batch,), device=device)
    counter = FlopCounterMode(display=False)
    if train:
        model.train()
        with counter:
            torch.nn.functional.cross_entropy(model(x), y).backward()
    else:
        model.eval()
        with counter, torch.inference_mode():
            model(x)
    return counter.get_total_flops() / batch


def measure_efficiency(suite: Suite, data: Dataset, sizes: Sizes, device: str, batch_size: int | None) -> tuple[dict, dict]:
    """2: training and inference throughput as a fraction of the same-dtype GEMM peak."""
    peaks, gemm_details = gemm_peaks(sizes, device)
    auto = resolve_precision("auto", device)
    x, y = to_tensor(data.x_train, device), torch.from_numpy(data.y_train).to(device)
    x_val, y_val = to_tensor(data.x_val, device), torch.from_numpy(data.y_val).to(device)
    x_val, y_val = x_val[: sizes.eval_images], y_val[: sizes.eval_images]
    loss_fn = torch.nn.CrossEntropyLoss()
    rng = np.random.default_rng(0)
    train_runs: dict[str, Callable[[], int]] = {}
    eval_runs: dict[str, Callable[[], int]] = {}
    flops: dict[str, dict[str, float]] = {}
    for model_name, experiment in EFFICIENCY_EXPERIMENTS.items():
        base = suite.experiments[experiment]
        if batch_size is not None:
            base = with_settings(suite, base, train={"batch_size": batch_size})
        for precision in ("fp32", "bf16"):
            spec = with_settings(suite, base, train={"precision": precision, "channels_last": precision == "bf16"})
            model, channels_last = prepared_model(spec, data, device)
            optimizer = fresh_optimizer(model, spec)
            if precision == "fp32":
                flops[model_name] = {
                    "train": flops_per_image(model, spec, device, train=True),
                    "eval": flops_per_image(model, spec, device, train=False),
                }
            # A GPU step takes milliseconds: ten times the batches keeps the timer's share small.
            batches = sizes.train_batches[precision] * (10 if device.startswith("cuda") else 1)
            images = spec.train.batch_size * batches
            indices = natural(data.y_train, images, 0, rng)

            def train_run(model=model, optimizer=optimizer, spec=spec, indices=indices, cl=channels_last) -> int:
                train_one_epoch(model, optimizer, loss_fn, x, y, indices, spec, device, cl)
                return len(indices)

            key = f"{model_name}_{precision}"
            train_runs[key] = train_run
            if precision == auto:

                def eval_run(model=model, spec=spec, cl=channels_last) -> int:
                    predict(model, x_val, y_val, spec, device, channels_last=cl)
                    return len(x_val)

                eval_runs[key] = eval_run
    for run in [*train_runs.values(), *eval_runs.values()]:  # warm-up
        run()
    runs = {**{f"train_{k}": v for k, v in train_runs.items()}, **{f"eval_{k}": v for k, v in eval_runs.items()}}
    seconds, images = time_variants(runs, sizes.train_repeats, before=lambda: synchronize(device))
    keys: dict[str, float] = {
        "gemm_fp32_gflop_s": round(peaks["fp32"], 1),
        "gemm_bf16_gflop_s": round(peaks["bf16"], 1),
    }
    rows = []
    for run_name, secs in seconds.items():
        kind, model_name, precision = run_name.split("_", 1)[0], *run_name.split("_", 1)[1].rsplit("_", 1)
        img_s = images[run_name] / statistics.median(secs)
        gflop_s = flops[model_name][kind] * img_s / 1e9
        fraction = gflop_s / peaks[precision]
        keys[f"{run_name}_img_s"] = round(img_s, 1)
        keys[f"{run_name}_gflop_s"] = round(gflop_s, 1)
        keys[f"{run_name}_peak_fraction"] = round(fraction, 3)
        rows.append((run_name, img_s, gflop_s, fraction))
    for model_name, counted in flops.items():
        keys[f"flops_train_{model_name}_mflop_per_img"] = round(counted["train"] / 1e6, 1)
        keys[f"flops_eval_{model_name}_mflop_per_img"] = round(counted["eval"] / 1e6, 1)
    fraction = keys[f"train_residual_cnn_{auto}_peak_fraction"]
    keys["efficiency_residual_cnn"] = fraction
    keys["efficiency_residual_cnn_target"] = TARGETS["efficiency"]
    keys["efficiency_residual_cnn_met"] = met(fraction, TARGETS["efficiency"], at_most=False)
    keys["efficiency_eval_residual_cnn"] = keys[f"eval_residual_cnn_{auto}_peak_fraction"]
    dims = gemm_details["n"]
    emulated = " (emulated: no native bf16 on this CPU)" if gemm_details["bf16_emulated"] else ""
    print(f"2  GEMM peak: fp32 {peaks['fp32']:.1f} GFLOP/s ({dims['fp32']}²), bf16 {peaks['bf16']:.1f} GFLOP/s ({dims['bf16']}²){emulated}")
    for run_name, img_s, gflop_s, fraction in rows:
        # Against an emulated GEMM, a fraction of "peak" says nothing (convolutions are emulated
        # differently from matmuls): shown, but not as a percentage of a peak.
        share = f"{fraction:>6.1%} of peak" if not (emulated and run_name.endswith("bf16")) else f"{fraction:>6.1f}x the emulated GEMM"
        print(f"   {run_name:<24} {img_s:>8.0f} img/s {gflop_s:>7.1f} GFLOP/s {share}")
    print(f"   residual CNN at `auto` ({auto}): {keys['efficiency_residual_cnn']:.1%} of peak (target >= {TARGETS['efficiency']:.0%})")
    details = {
        "auto_precision": auto,
        "batch_size": batch_size or "the suite's",
        "train_batches_per_repeat": sizes.train_batches,
        "eval_batch_size": suite.experiments["cnn_residual"].train.eval_batch_size,
        "gemm": gemm_details,
        "flops_per_image": {m: {k: round(v / 1e6, 2) for k, v in f.items()} for m, f in flops.items()},
        "seconds": rounded(seconds),
    }
    return keys, details
