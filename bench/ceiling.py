"""The machine's compute ceiling, per precision: what it can prove, never a guess.

*Measured*: the best GFLOP/s over several matmul shapes (square, and the tall-skinny shapes a
convolution lowers to) and thread counts; the ceiling is the best of them. *Theoretical*: cores x
clock x FLOPs per cycle from the CPU's flags (vector width, FMA, AVX512-BF16, AMX), where
/proc/cpuinfo gives them, with two FMA units a core assumed (Xeon Scalable Gold/Platinum, AMD
Zen); shown beside the measured figure, never used as the denominator. If a model's own
throughput beats every GEMM tried, the ceiling is raised to it (and the report says so), so no
fraction of the ceiling is ever above 100%.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from common import time_variants

# (M, K, N): square GEMMs, then a 3x3 convolution's im2col at the suite's layer sizes.
SHAPES = ((1024, 1024, 1024), (2048, 2048, 2048), (4096, 4096, 4096),
          (32768, 576, 64), (8192, 1152, 128), (4096, 2304, 256))  # fmt: skip
QUICK_SHAPES = ((512, 512, 512), (4096, 288, 32))
# Where bf16 is emulated (no AVX512-BF16/AMX) a big bf16 GEMM takes a minute and measures the
# same emulated rate as a small one.
EMULATED_SHAPES = ((512, 512, 512), (4096, 288, 32))


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_mhz() -> float | None:
    """The highest clock the OS reports (max frequency where sysfs has it, else cpuinfo's)."""
    try:
        return int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()) / 1e3
    except (OSError, ValueError):
        pass
    try:
        return max(float(line.split(":")[1]) for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("cpu MHz"))  # fmt: skip
    except (OSError, ValueError):
        return None


def theoretical_gflop_s(cores: int, flags: set[str], mhz: float | None) -> dict[str, float | None]:
    """Per precision: cores x GHz x FLOPs a cycle (2 FMA units, 2 FLOPs an FMA lane)."""
    if mhz is None:
        return {"fp32": None, "bf16": None}
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    fp32 = 2 * 2 * lanes  # FLOPs per cycle per core
    bf16 = 1024 if "amx_bf16" in flags else 2 * fp32 if "avx512_bf16" in flags else None
    ghz = mhz / 1e3
    return {"fp32": cores * ghz * fp32, "bf16": cores * ghz * bf16 if bf16 else None}


def _gemm(m: int, k: int, n: int, dtype: torch.dtype, device: str) -> tuple[Callable[[int], None], int]:
    a, b = torch.randn(m, k, device=device).to(dtype), torch.randn(k, n, device=device).to(dtype)
    out = torch.empty(m, n, device=device, dtype=dtype)

    def run(calls: int) -> None:
        for _ in range(calls):
            torch.matmul(a, b, out=out)

    return run, 2 * m * k * n


def measured_gflop_s(precision: str, device: str, *, quick: bool, emulated: bool, seconds: float,
                     repeats: int, sync: Callable[[], None]) -> tuple[float, dict]:  # fmt: skip
    """The best GFLOP/s of every shape and thread count tried, and each one's figure."""
    dtype = torch.float32 if precision == "fp32" else torch.bfloat16
    shapes = QUICK_SHAPES if quick else EMULATED_SHAPES if emulated and precision == "bf16" else SHAPES
    threads = sorted({torch.get_num_threads(), os.cpu_count() or 1}) if device == "cpu" else [torch.get_num_threads()]
    results: dict[str, float] = {}
    before = torch.get_num_threads()
    try:
        for count in threads:
            torch.set_num_threads(count)
            for m, k, n in shapes:
                run, flops = _gemm(m, k, n, dtype, device)
                run(1)  # warm-up: oneDNN / cuBLAS pick their kernels on the first call
                sync()
                started = time.perf_counter()
                run(1)
                sync()
                calls = max(1, round(seconds / max(time.perf_counter() - started, 1e-6)))
                timed, _ = time_variants({"gemm": lambda run=run, calls=calls: run(calls)}, repeats, before=sync)
                results[f"{m}x{k}x{n}@{count}t"] = round(flops * calls / statistics.median(timed["gemm"]) / 1e9, 1)
    finally:
        torch.set_num_threads(before)
    return max(results.values()), results
