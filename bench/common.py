"""What every benchmark shares: interleaved timing, the machine's description, the JSON report.

Every figure in `reports/bench.json` is the median of several repeats in which the timed
variants take turns, so that load from other processes (or the CPU's clock drifting) falls on
all of them alike. Each script merges its flat numeric keys and its `details.<name>` section
into the report by read, update, atomic write, so the scripts can run in any order.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
REPORT = REPO / "reports" / "bench.json"


def time_variants(
    variants: Mapping[str, Callable[[], Any]],
    repeats: int,
    *,
    alternate: bool = False,
    before: Callable[[], None] | None = None,
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Seconds per repeat for each variant (interleaved), and each variant's last output.

    `alternate` reverses the order every other repeat (A B, B A, ...), so a drift within a repeat
    does not always favour the variant that runs first. `before` runs untimed before each call
    (e.g. `torch.cuda.synchronize`).
    """
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    outputs: dict[str, Any] = {}
    names = list(variants)
    for i in range(repeats):
        for name in reversed(names) if alternate and i % 2 else names:
            if before is not None:
                before()
            start = time.perf_counter()
            outputs[name] = variants[name]()
            if before is not None:
                before()
            seconds[name].append(time.perf_counter() - start)
    return seconds, outputs


def median_ratio(numerator: list[float], denominator: list[float]) -> float:
    """The median of the per-repeat ratios: each pair ran back to back, under the same load."""
    return statistics.median(a / b for a, b in zip(numerator, denominator, strict=True))


def rounded(seconds: Mapping[str, list[float]], digits: int = 3) -> dict[str, list[float]]:
    """Per-repeat seconds, rounded for the report's details."""
    return {k: [round(s, digits) for s in v] for k, v in seconds.items()}


def cpu_model() -> str:
    """The CPU's model name, as lscpu shows it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(command: str) -> dict[str, Any]:
    """When and where a benchmark ran: date, command, cores, CPU, load, Python."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu_model(),
        # A busy machine makes every figure slower and noisier: the load says whether to trust them.
        "loadavg_at_start": load,
        "python": platform.python_version(),
        "cpu_flags": cpu_isa(),
        "commit": _commit(),
    }


def cpu_isa() -> list[str]:
    """The CPU flags that decide its speed here: vector width, FMA, native bf16."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return sorted(have & {"avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})
    except OSError:
        pass
    return []


def _commit() -> str:
    import subprocess

    try:
        done = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        return done.stdout.strip() + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def command_line(script: str, argv: list[str] | None) -> str:
    """The command that produced a report section, for its details."""
    return " ".join([script, *(argv if argv is not None else sys.argv[1:])])


def add_out_argument(parser: Any, quick: bool = True) -> None:
    """Every benchmark's --out: the JSON report its figures merge into."""
    none = "; none with --quick" if quick else ""
    parser.add_argument("--out", type=Path, default=None, help=f"JSON report to merge into (default {REPORT}{none})")


def merge_report(path: Path, keys: Mapping[str, float], name: str, details: Mapping[str, Any]) -> None:
    """Merge flat numeric `keys` and `details.<name>` into the JSON report (read, update, atomic write)."""
    from harness.core.locks import atomic_write_bytes

    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update(keys)
    data.setdefault("details", {})[name] = details
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def met(value: float, target: float, at_most: bool) -> int:
    """1 if `value` meets `target` (at most or at least it), else 0."""
    return int(value <= target if at_most else value >= target)
