"""What the training benchmarks share: the suite, the sizes of each measurement, the model as `fit` prepares it.
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from common import (
    REPO,
)

from harness.data.dataset import Dataset, resolve_path
from harness.models.build import build_model
from harness.spec.schema import ExperimentSpec
from harness.suite.load import Suite, load_suite
from harness.suite.validate import derive_spec
from harness.train.optim import OPTIMIZERS

SUITE = REPO / "experiments.yaml"


SECTIONS = ("overhead", "pipeline", "efficiency", "tracking")


# The suite's experiments whose models item 2 measures (item 1 uses the first, the cheapest:
# a fixed per-step cost shows most on the model with the least work per step).
EFFICIENCY_EXPERIMENTS = {"cnn": "cnn_baseline", "residual_cnn": "cnn_residual", "resnext": "resnext"}


TRACKED_EXPERIMENT = "cnn_baseline"


TARGETS = {"overhead": 0.05, "pipeline": 3.0, "efficiency": 0.40, "tracking": 0.02}


# AffectNet's own images are mostly several hundred pixels wide (as in bench/preprocess.py).
LARGE_PX = (400, 700)


@dataclass(frozen=True)
class Sizes:
    """How much work each measurement does; `QUICK` is for smoke tests, not for figures."""

    overhead_images: int  # images per timed epoch in 1a
    overhead_repeats: int
    pipeline_images: int  # images per timed epoch in 1b
    pipeline_repeats: int
    large_scale: float  # synth scale of the 400-700 px input of 1b
    train_batches: dict[str, int]  # timed batches per repeat in 2, by precision
    train_repeats: int
    eval_images: int
    gemm_n: int
    gemm_calls: int  # at most this many matmuls per timed repeat
    gemm_seconds: float  # ... and about this long
    gemm_repeats: int
    tracking_epochs: int | None  # None: the experiment's own epochs and per_epoch
    tracking_per_epoch: int | None
    tracking_repeats: int
    tracking_long_per_epoch: int  # the run ten times the suite's length: the same epochs, this many images each
    tracking_long_repeats: int


FULL = Sizes(
    overhead_images=1280, overhead_repeats=7,
    pipeline_images=1024, pipeline_repeats=5, large_scale=0.003,
    # bf16 is emulated on CPUs without AVX512-BF16/AMX (5-15x slower): one batch there.
    train_batches={"fp32": 4, "bf16": 1}, train_repeats=3, eval_images=1024,
    gemm_n=2048, gemm_calls=50, gemm_seconds=0.5, gemm_repeats=5,
    tracking_epochs=None, tracking_per_epoch=None, tracking_repeats=5,
    tracking_long_per_epoch=8000, tracking_long_repeats=3,
)  # fmt: skip


QUICK = Sizes(
    overhead_images=128, overhead_repeats=3,
    pipeline_images=128, pipeline_repeats=2, large_scale=0.0005,
    train_batches={"fp32": 1, "bf16": 1}, train_repeats=2, eval_images=256,
    gemm_n=512, gemm_calls=8, gemm_seconds=0.1, gemm_repeats=3,
    tracking_epochs=2, tracking_per_epoch=128, tracking_repeats=2,
    tracking_long_per_epoch=256, tracking_long_repeats=1,
)  # fmt: skip


# Quick mode trains small models on a tiny generated dataset, so it runs in about a minute.
QUICK_SCALE = 0.002


QUICK_MODELS = {
    "cnn": {"widths": [8, 16, 32, 32], "dense": 64},
    "resnext": {"depths": [1, 1], "widths": [8, 16], "stem_width": 8, "cardinality": 2, "base_width": 8},
}


QUICK_BATCH = 32


def synchronize(device: str) -> None:
    """Wait for queued device work, so a timer reads finished work (a no-op on the CPU)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def with_settings(suite: Suite, spec: ExperimentSpec, **sections: dict[str, Any]) -> ExperimentSpec:
    """`spec` with some settings replaced, validated like any experiment."""
    return derive_spec(suite.path, spec, spec.name, [sections])


def fresh_optimizer(model: torch.nn.Module, spec: ExperimentSpec) -> torch.optim.Optimizer:
    """The optimizer `fit` builds for `spec`."""
    train = spec.train
    return OPTIMIZERS.get(train.optimizer)(model.parameters(), train.lr, train.weight_decay)


def prepared_model(spec: ExperimentSpec, data: Dataset, device: str) -> tuple[torch.nn.Module, bool]:
    """The harness's model for `spec` on `device`, in the memory format `fit` would use."""
    from harness.train.device import use_channels_last

    channels_last = use_channels_last(spec, device)
    model = build_model(spec, data).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, channels_last


def spread(values: list[float]) -> float:
    """(max - min) / median: how far identical runs drift apart."""
    return (max(values) - min(values)) / statistics.median(values)


def load_inputs(quick: bool, tmp: Path) -> tuple[Suite, Path, Path]:
    """The suite (quick: small models on a tiny dataset generated in `tmp`), its data folder and cache."""
    from harness.data.synthetic import ensure_synthetic

    if quick:
        root = tmp / "synthetic-affectnet"
        overrides = {"data": {"path": str(root), "synth_scale": QUICK_SCALE, "synth_val_per_class": 8}}
        suite = load_suite(SUITE, overrides=overrides)
        small = {
            name: with_settings(
                suite, spec, model={"name": spec.model.name, **QUICK_MODELS.get(spec.model.name, QUICK_MODELS["cnn"])},
                train={"batch_size": QUICK_BATCH, "eval_batch_size": 2 * QUICK_BATCH},
            )
            for name, spec in suite.experiments.items()
        }
        suite = dataclasses.replace(suite, experiments=small)
        cache_dir = tmp / "cache"
    else:
        suite = load_suite(SUITE)
        root = resolve_path(suite.experiments[TRACKED_EXPERIMENT].data, REPO)
        cache_dir = REPO / ".cache" / "harness"
    data_spec = suite.experiments[TRACKED_EXPERIMENT].data
    ensure_synthetic(
        root, seed=data_spec.synth_seed, scale=data_spec.synth_scale,
        val_per_class=data_spec.synth_val_per_class, progress=False,
    )  # fmt: skip
    return suite, root, cache_dir
