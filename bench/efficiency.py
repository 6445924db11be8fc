"""2. Hardware efficiency: model FLOPs per training image x images/s against the machine's ceiling.

FLOPs per image come from the package's own counter (harness.train.flops.count_flops), the one
every run logs its `train_tflop` with. The ceiling is bench/ceiling.py's: the best of several GEMM
shapes and thread counts, per precision, with the theoretical figure beside it. Every model is
measured in fp32 and in bf16, so the table shows which precision is faster here and that
`precision: auto` picks it.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import training_setup as setup
from ceiling import cpu_flags, cpu_mhz, measured_gflop_s, theoretical_gflop_s
from common import met, rounded, time_variants

from harness.data.dataset import Dataset
from harness.data.samplers import natural
from harness.suite.load import Suite
from harness.train.device import resolve_precision, to_tensor
from harness.train.flops import count_flops
from harness.train.loop import train_one_epoch
from harness.train.scoring import predict

PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class Ceiling:
    """Per precision: the measured ceiling (GFLOP/s), what set it, and the theoretical figure."""

    measured: dict[str, float]
    source: dict[str, str]
    theoretical: dict[str, float | None]
    details: dict


def machine_ceiling(sizes: setup.Sizes, device: str) -> Ceiling:
    emulated = resolve_precision("auto", device) != "bf16"
    measured, shapes = {}, {}
    for precision in PRECISIONS:
        measured[precision], shapes[precision] = measured_gflop_s(
            precision, device, quick=sizes.gemm_n < 1024, emulated=emulated, seconds=sizes.gemm_seconds,
            repeats=sizes.gemm_repeats, sync=lambda: setup.synchronize(device),
        )  # fmt: skip
    flags, mhz = cpu_flags(), cpu_mhz()
    theory = theoretical_gflop_s(torch.get_num_threads(), flags, mhz) if device == "cpu" else {p: None for p in PRECISIONS}
    details = {"gemm_gflop_s": shapes, "bf16_emulated": emulated, "mhz": mhz,
               "isa": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "fma"})}  # fmt: skip
    return Ceiling(measured, {p: "best GEMM" for p in PRECISIONS}, theory, details)


def _timed_runs(suite: Suite, data: Dataset, sizes: setup.Sizes, device: str, batch_size: int | None
                ) -> tuple[dict[str, Callable[[], int]], dict[str, dict[str, float]]]:  # fmt: skip
    """A training run per model and precision, an evaluation run per model at `auto`, and each
    model's counted FLOPs per image."""
    auto = resolve_precision("auto", device)
    x, y = to_tensor(data.x_train, device), torch.from_numpy(data.y_train).to(device)
    x_val, y_val = to_tensor(data.x_val, device)[: sizes.eval_images], torch.from_numpy(data.y_val).to(device)[: sizes.eval_images]
    loss_fn, rng = torch.nn.CrossEntropyLoss(), np.random.default_rng(0)
    runs: dict[str, Callable[[], int]] = {}
    flops: dict[str, dict[str, float]] = {}
    for model_name, experiment in setup.EFFICIENCY_EXPERIMENTS.items():
        base = suite.experiments[experiment]
        if batch_size is not None:
            base = setup.with_settings(suite, base, train={"batch_size": batch_size})
        for precision in PRECISIONS:
            spec = setup.with_settings(suite, base, train={"precision": precision, "channels_last": precision == "bf16"})
            model, channels_last = setup.prepared_model(spec, data, device)
            optimizer = setup.fresh_optimizer(model, spec)
            counted = count_flops(model, spec.data.channels, spec.data.image_size)
            flops[model_name] = {"train": counted.train, "eval": counted.evaluate}
            # A GPU step takes milliseconds: ten times the batches keeps the timer's share small.
            batches = sizes.train_batches[precision] * (10 if device.startswith("cuda") else 1)
            indices = natural(data.y_train, spec.train.batch_size * batches, 0, rng)

            def train_run(model=model, optimizer=optimizer, spec=spec, indices=indices, cl=channels_last) -> int:
                train_one_epoch(model, optimizer, loss_fn, x, y, indices, spec, device, cl)
                return len(indices)

            runs[f"train_{model_name}_{precision}"] = train_run
            if precision == auto:

                def eval_run(model=model, spec=spec, cl=channels_last) -> int:
                    predict(model, x_val, y_val, spec, device, channels_last=cl)
                    return len(x_val)

                runs[f"eval_{model_name}_{precision}"] = eval_run
    return runs, flops


def _rates(seconds: dict[str, list[float]], images: dict[str, int], flops: dict[str, dict[str, float]]) -> dict[str, tuple[float, float]]:
    """Per run: images/s and achieved GFLOP/s (median repeat)."""
    rates = {}
    for run_name, secs in seconds.items():
        kind, rest = run_name.split("_", 1)
        model_name = rest.rsplit("_", 1)[0]
        img_s = images[run_name] / statistics.median(secs)
        rates[run_name] = (img_s, flops[model_name][kind] * img_s / 1e9)
    return rates


def _raise_ceiling(ceiling: Ceiling, rates: dict[str, tuple[float, float]]) -> Ceiling:
    """A model faster than every GEMM tried proves a higher ceiling: take it, and say so."""
    measured, source = dict(ceiling.measured), dict(ceiling.source)
    for run_name, (_, gflop_s) in rates.items():
        precision = run_name.rsplit("_", 1)[1]
        if gflop_s > measured[precision]:
            measured[precision], source[precision] = gflop_s, f"{run_name} (faster than every GEMM tried)"
    return Ceiling(measured, source, ceiling.theoretical, ceiling.details)


def _keys(ceiling: Ceiling, rates: dict[str, tuple[float, float]], flops: dict[str, dict[str, float]], auto: str) -> dict[str, float]:
    keys: dict[str, float] = {}
    for precision in PRECISIONS:
        keys[f"gemm_{precision}_gflop_s"] = round(max(ceiling.details["gemm_gflop_s"][precision].values()), 1)
        keys[f"ceiling_{precision}_gflop_s"] = round(ceiling.measured[precision], 1)
        if ceiling.theoretical[precision] is not None:
            keys[f"theoretical_{precision}_gflop_s"] = round(ceiling.theoretical[precision], 1)
    for run_name, (img_s, gflop_s) in rates.items():
        precision = run_name.rsplit("_", 1)[1]
        keys[f"{run_name}_img_s"] = round(img_s, 1)
        keys[f"{run_name}_gflop_s"] = round(gflop_s, 1)
        keys[f"{run_name}_peak_fraction"] = round(gflop_s / ceiling.measured[precision], 3)
    for model_name, counted in flops.items():
        keys[f"flops_train_{model_name}_mflop_per_img"] = round(counted["train"] / 1e6, 1)
        keys[f"flops_eval_{model_name}_mflop_per_img"] = round(counted["eval"] / 1e6, 1)
    fraction = keys[f"train_residual_cnn_{auto}_peak_fraction"]
    keys |= {"efficiency_residual_cnn": fraction, "efficiency_residual_cnn_target": setup.TARGETS["efficiency"],
             "efficiency_residual_cnn_met": met(fraction, setup.TARGETS["efficiency"], at_most=False),
             "efficiency_eval_residual_cnn": keys[f"eval_residual_cnn_{auto}_peak_fraction"]}  # fmt: skip
    faster = {m: "bf16" if rates[f"train_{m}_bf16"][0] > rates[f"train_{m}_fp32"][0] else "fp32" for m in flops}
    keys["auto_precision_is_fastest"] = int(all(f == auto for f in faster.values()))
    return keys


def _print(ceiling: Ceiling, rates: dict[str, tuple[float, float]], auto: str) -> None:
    for precision in PRECISIONS:
        theory = ceiling.theoretical[precision]
        print(f"2  ceiling {precision}: {ceiling.measured[precision]:.1f} GFLOP/s ({ceiling.source[precision]})"
              + (f"; theoretical {theory:.0f}" if theory else ""))  # fmt: skip
    for run_name, (img_s, gflop_s) in rates.items():
        share = gflop_s / ceiling.measured[run_name.rsplit("_", 1)[1]]
        print(f"   {run_name:<24} {img_s:>8.0f} img/s {gflop_s:>7.1f} GFLOP/s {share:>6.1%} of its ceiling")
    print(f"   precision auto = {auto} on this machine")


def measure_efficiency(suite: Suite, data: Dataset, sizes: setup.Sizes, device: str, batch_size: int | None) -> tuple[dict, dict]:
    """2: every model's training (both precisions) and inference throughput against the ceiling."""
    ceiling = machine_ceiling(sizes, device)
    runs, flops = _timed_runs(suite, data, sizes, device, batch_size)
    for run in runs.values():  # warm-up
        run()
    seconds, images = time_variants(runs, sizes.train_repeats, before=lambda: setup.synchronize(device))
    rates = _rates(seconds, images, flops)
    ceiling = _raise_ceiling(ceiling, rates)
    auto = resolve_precision("auto", device)
    _print(ceiling, rates, auto)
    details = {"auto_precision": auto, "batch_size": batch_size or "the suite's", "train_batches_per_repeat": sizes.train_batches,
               "ceiling": {"measured": ceiling.measured, "source": ceiling.source, "theoretical": ceiling.theoretical,
                           **ceiling.details},
               "flops_per_image": {m: {k: round(v / 1e6, 2) for k, v in f.items()} for m, f in flops.items()},
               "seconds": rounded(seconds)}  # fmt: skip
    return _keys(ceiling, rates, flops, auto), details
