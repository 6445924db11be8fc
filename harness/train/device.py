"""Where and how a spec computes: device, precision, memory layout, and the batch's input.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.core.errors import HarnessError, first_line

if TYPE_CHECKING:
    import torch

    from harness.spec.schema import ExperimentSpec


def resolve_device(name: str) -> str:
    """'auto' picks CUDA when available, else the CPU."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise HarnessError("train.device is 'cuda' but no CUDA device is available")
    return name


def resolve_precision(name: str, device: str) -> str:
    """'auto' → 'bf16' where it is computed natively (CUDA with bf16, AVX512-BF16/AMX CPUs), else 'fp32'."""
    if name != "auto":
        return name
    import torch

    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if _cpu_has_native_bf16() else "fp32"


@functools.cache
def _cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags for flag in ("avx512_bf16", "amx_bf16"))


@contextmanager
def memory_errors_named(spec: ExperimentSpec) -> Iterator[None]:
    """A CUDA out-of-memory error becomes one line naming the batch sizes to lower."""
    import torch

    try:
        yield
    except torch.cuda.OutOfMemoryError as exc:
        train = spec.train
        raise HarnessError(
            f"experiment {spec.name}: CUDA out of memory at train.batch_size {train.batch_size} "
            f"(eval_batch_size {train.eval_batch_size}): lower them, or choose a smaller model "
            f"({first_line(exc)[:160]})"
        ) from None


def use_channels_last(spec: ExperimentSpec, device: str) -> bool:
    """'auto' → NHWC exactly when bf16 autocast is on (where its kernels are the fast ones)."""
    if spec.train.channels_last == "auto":
        return resolve_precision(spec.train.precision, device) == "bf16"
    return bool(spec.train.channels_last)


def to_tensor(x: np.ndarray, device: str) -> torch.Tensor:
    """(N, H, W, C) uint8 array → (N, C, H, W) uint8 tensor on the device."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(device)


def batch_input(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """uint8 batch → float in [0, 1]; the model's first layer normalises or whitens it."""
    import torch

    out = x.float().div_(255.0)
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


def autocast(spec: ExperimentSpec, device: str) -> Any:
    import torch

    return torch.autocast(
        device_type="cuda" if device.startswith("cuda") else "cpu",
        dtype=torch.bfloat16,
        enabled=resolve_precision(spec.train.precision, device) == "bf16",
    )


# The CPU features that decide which precision and kernels are fast, as /proc/cpuinfo names them.
CPU_FEATURES = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def machine(device: str) -> dict[str, str]:
    """What a run ran on: the CPU's model, cores and relevant flags, and the GPU where one is used.

    A time means nothing without it: the same run is 4-7x faster on one CPU than another."""
    import os
    import platform

    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        info = ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    out = {
        "cpu": model or platform.processor() or platform.machine(),
        "cpu_cores": str(os.cpu_count() or 0),
        "cpu_flags": " ".join(f for f in CPU_FEATURES if f in flags),
    }
    if device.startswith("cuda"):
        import torch

        out["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return out
