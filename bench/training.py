"""Training benchmarks: the harness against what a user would otherwise run, side by side in one run.

1. Training throughput (one epoch of the same images, the same model, optimizer and batches):
   (a) overhead (bench/overhead.py): `harness.train.loop.train_one_epoch` against a bare PyTorch loop written here over
       the same uint8 tensors, indices and initial weights. Both models are compared after the
       warm-up epoch, so the two sides are known to compute the same thing.
       overhead = median over repeats of (harness seconds / bare seconds) - 1; target <= 5 %.
   (b) per-item pipeline: a torch Dataset that opens, crops and resizes every image with PIL in
       `__getitem__`, a DataLoader with 2 workers, shuffle and batch 128; against the harness's
       epoch on its cached tensors (drawing the epoch's indices + `train_one_epoch`). Loading the
       cache and moving it to the device happen once per run, not per epoch: reported apart.
       speed-up = median of (pipeline seconds / harness seconds); target >= 3x. Two inputs: the
       suite's own synthetic data (128-224 px images) and AffectNet-sized ones (400-700 px).
2. Hardware efficiency: model FLOPs per training image (forward + backward of one batch, counted
   by torch.utils.flop_counter) x training images/s, over the GEMM peak of the same dtype (a
   square matmul loop, measured in the same run), for the suite's cnn_baseline, cnn_residual and
   resnext in fp32 and bf16 (autocast + channels_last); and inference images/s at the suite's
   evaluation batch. Target: >= 40 % of peak for the residual CNN at the precision the harness
   picks on this machine (`precision: auto`).
3. Tracking overhead: one experiment through `harness.runner.train_and_log` with a real MLflow
   sqlite store against `build_model` + `harness.train.fit` with tracking off; the store's time
   is broken down by client call. overhead = median over the tracked runs of (run's wall time -
   the untracked work inside it) / that work, where the untracked work is its build + fit less
   the store calls made inside the fit; target <= 2 %. The side-by-side ratios (wall and process
   CPU time) and the spread of identical untracked runs are printed next to it.

    .venv/bin/python bench/training.py            # the full run (~6 min on 2 quiet cores)
    .venv/bin/python bench/training.py --quick    # tiny sizes, prints only (unless --out)
    .venv/bin/python bench/training.py --device cuda --only efficiency
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import common
import torch
from common import (
    REPO,
    REPORT,
    command_line,
    machine,
    merge_report,
)
from efficiency import measure_efficiency
from overhead import measure_overhead
from pipeline import measure_pipeline
from tracking_cost import measure_tracking
from training_setup import FULL, QUICK, SECTIONS, TRACKED_EXPERIMENT, load_inputs

from harness.data.dataset import load_dataset

# ----------------------------------------------------------------------------- 1a: overhead


# ----------------------------------------------------------------------------- 1b: pipeline


# ----------------------------------------------------------------------------- 2: efficiency


# ----------------------------------------------------------------------------- 3: tracking


# ----------------------------------------------------------------------------- data and main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test (prints only)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument(
        "--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="measure only these parts"
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help="training batch for item 2 (default: the suite's)"
    )
    common.add_out_argument(parser)
    return parser.parse_args(argv)


def _record_missing_gpu(out: Path) -> None:
    """Say in the report that the CUDA path was not measured here (a GPU check's record stays)."""
    import json

    data = json.loads(out.read_text())
    if torch.cuda.is_available() or data.get("gpu_available") == 1:
        return
    statement = ("no GPU was available where these benchmarks ran (torch.cuda.is_available() is False): "
                 "the CUDA path is unmeasured; bench/gpu_check.sh measures it on a GPU machine")  # fmt: skip
    merge_report(out, {"gpu_available": 0}, "gpu", {"statement": statement, **machine("bench/training.py")})


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    out = args.out or (None if args.quick else REPORT)
    where: dict[str, Any] = machine(command_line("bench/training.py", argv))
    where |= {"quick": args.quick, "device": args.device, "torch": torch.__version__, "threads": torch.get_num_threads()}
    # Each part is its own section of the report, with the machine and date it ran on, so
    # measuring one part again (--only) never dates or places the others.
    sections: dict[str, tuple[dict, dict]] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fer-bench-train-") as folder:
        tmp = Path(folder)
        suite, root, cache_dir = load_inputs(args.quick, tmp)
        spec = suite.experiments[TRACKED_EXPERIMENT]
        data = load_dataset(spec.data, REPO, cache_dir)
        print(f"data: {len(data.y_train)} training / {len(data.y_val)} validation images from {data.root}", file=sys.stderr)
        measures: dict[str, Callable[[], tuple[dict, dict]]] = {
            "overhead": lambda: measure_overhead(suite, data, sizes, args.device),
            "pipeline": lambda: measure_pipeline(suite, root, cache_dir, sizes, args.device, tmp),
            "efficiency": lambda: measure_efficiency(suite, data, sizes, args.device, args.batch_size),
            "tracking": lambda: measure_tracking(suite, data, sizes, args.device, tmp),
        }
        for name in SECTIONS:
            if name in args.only:
                section_started = time.perf_counter()
                section_keys, section = measures[name]()
                section["section_s"] = round(time.perf_counter() - section_started, 1)
                print(f"   ({name}: {section['section_s']:.0f} s)", file=sys.stderr)
                sections[name] = (section_keys, section)
    print(f"bench/training.py: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    if out is not None:
        suffix = "" if args.device == "cpu" else f"_{args.device}"
        for name, (section_keys, section) in sections.items():
            merge_report(out, {f"{k}{suffix}": v for k, v in section_keys.items()}, f"{name}{suffix}", where | section)
        _record_missing_gpu(out)
        print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
