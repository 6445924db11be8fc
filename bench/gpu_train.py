"""The GPU check's measurement: one study iteration and `modern_gpu` for a fixed number of steps
on CUDA, through the harness's own training path (harness.train.loop.fit), with the data on the
device (the uint8 tensors moved once; augmentation runs there). Writes images/s, achieved
TFLOP/s against the card's bf16 dense peak, peak GPU memory and the GPU utilisation sampled
while it trains (nvidia-ml-py) to OUT/gpu.json. Needs no MLflow (the lent machine has none);
bench/gpu_check.sh runs it.

    python bench/gpu_train.py --out $OUT/gpu.json [--steps 200]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.data.dataset import Dataset  # noqa: E402
from harness.models.build import build_model  # noqa: E402
from harness.suite.load import load_suite  # noqa: E402
from harness.train.flops import count_flops  # noqa: E402
from harness.train.loop import fit  # noqa: E402

# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from the vendors' data sheets.
BF16_PEAK_TFLOP_S = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "A10": 125.0, "L40S": 362.0}


def card_peak(name: str) -> float | None:
    return next((peak for key, peak in BF16_PEAK_TFLOP_S.items() if key in name), None)


def fake_faces(n: int, size: int, channels: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, size, size, channels), dtype=np.uint8), rng.integers(0, classes, n).astype(np.int64)


class Utilisation:
    """GPU utilisation and memory sampled every 0.2 s in a thread (nvidia-ml-py)."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:  # noqa: BLE001 - no NVML: no samples
            return
        while not self._stop.wait(0.2):
            rates, memory = pynvml.nvmlDeviceGetUtilizationRates(handle), pynvml.nvmlDeviceGetMemoryInfo(handle)
            self.samples.append((float(rates.gpu), memory.used / 2**20))

    def __enter__(self) -> Utilisation:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


def measure(suite_file: str, experiment: str, steps: int) -> dict:
    spec = load_suite(REPO / suite_file).experiments[experiment]
    batch = spec.train.batch_size
    images = batch * steps
    train = spec.train.model_copy(update={"epochs": 2, "device": "cuda", "budget_tflop": None, "eval_every": 2,
                                          "checkpoint_every": 0})  # fmt: skip
    spec = spec.model_copy(update={"train": train, "sampler": spec.sampler.model_copy(update={"per_epoch": images // 2})})
    size, channels = spec.data.image_size, spec.data.channels
    x, y = fake_faces(images // 2, size, channels, 7)
    xv, yv = fake_faces(2048, size, channels, 7)
    data = Dataset("gpu-check", REPO, tuple(f"c{i}" for i in range(7)), x, y, xv, yv, "gpu-check")
    model = build_model(spec, data)
    flops = count_flops(model, channels, size, spec.train.tta)
    torch.cuda.reset_peak_memory_stats()
    with Utilisation() as util:
        started = time.perf_counter()
        result = fit(model, data, spec, device="cuda")
        wall = time.perf_counter() - started
    img_s = result.history[-1].images / result.history[-1].train_seconds  # the second epoch: warmed up
    achieved = flops.train * img_s / 1e12
    name = torch.cuda.get_device_name(0)
    peak = card_peak(name)
    busy = [u for u, _ in util.samples]
    return {"experiment": experiment, "batch_size": batch, "steps": steps, "wall_s": round(wall, 1),
            "images_per_s": round(img_s, 1), "gflop_per_train_image": round(flops.train / 1e9, 3),
            "achieved_tflop_s": round(achieved, 2), "bf16_dense_peak_tflop_s": peak,
            "fraction_of_peak": round(achieved / peak, 4) if peak else None,
            "max_memory_allocated_mib": round(torch.cuda.max_memory_allocated() / 2**20),
            "gpu_utilisation_median_pct": float(np.median(busy)) if busy else None,
            "gpu_memory_used_max_mib": max((m for _, m in util.samples), default=None),
            "final_train_loss": result.history[-1].train_loss}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_train.py: no CUDA device here", file=sys.stderr)
        return 2
    report = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "cuda": torch.version.cuda,
              "runs": [measure("experiments.yaml", "cnn_residual_balanced", args.steps),
                       measure("beyond.yaml", "modern_gpu", args.steps)]}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
