"""End-to-end benchmark: `make reproduce`'s steps in a fresh project folder, timed phase by phase.

The suite file is copied into a temporary folder, so the data, the preprocessing cache, the
MLflow store and the report are all made from scratch there, exactly as in a fresh checkout
after `make setup`. The three commands of `make reproduce` run as subprocesses of the
installed `harness`; the output of `harness run` is read as it streams, and the moment each
"[i/n] NAME" line appears splits its wall time into start-up, preprocessing (the cache build,
up to the "data ..." line) and one phase per experiment. Target: the sum after set-up
<= 15 minutes on 2 cores. Set-up itself (creating .venv, installing torch) depends on the
network and the pip cache, so it is not timed here.

    .venv/bin/python bench/e2e.py            # the whole study (~13 min), writes reports/bench.json
    .venv/bin/python bench/e2e.py --quick    # --profile smoke (about a minute), prints only
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import common
from common import REPO, REPORT, command_line, machine, merge_report, met

TARGET_S = 15 * 60
EXPERIMENT_LINE = re.compile(r"^\[(\d+)/(\d+)\] (\S+):")


def timed(argv: Sequence[str], cwd: Path, log: Path) -> float:
    """Run a command to completion (output to `log`); its wall time in seconds."""
    started = time.perf_counter()
    with open(log, "w") as fh:
        done = subprocess.run(argv, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({done.returncode}):\n{log.read_text()[-3000:]}")
    return time.perf_counter() - started


def timed_run(argv: Sequence[str], cwd: Path, log: Path) -> dict[str, float]:
    """`harness run`, split into phases by the moments its progress lines appear."""
    starts: list[tuple[str, float]] = []  # (experiment, when its "[i/n]" line appeared)
    first_at: float | None = None  # the first output line: imports done, preprocessing begins
    data_at: float | None = None  # the last "data ..." line before the first experiment
    started = time.perf_counter()
    with open(log, "w") as fh:
        # Unbuffered, so that each progress line arrives (and is timed) when it is printed.
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            now = time.perf_counter() - started
            fh.write(f"{now:8.2f} {line}")
            first_at = now if first_at is None else first_at
            if match := EXPERIMENT_LINE.match(line):
                starts.append((match.group(3), now))
            elif line.startswith("  data ") and not starts:
                # `harness run` loads (and caches) every dataset before it opens the store.
                data_at = now
        code = proc.wait()
    total = time.perf_counter() - started
    if code != 0:
        sys.exit(f"{' '.join(argv)} failed ({code}):\n{log.read_text()[-3000:]}")
    if not starts or data_at is None or first_at is None:
        return {"run_total": total}
    phases = {
        "run_startup": first_at,  # the interpreter and the imports, up to the first line
        "preprocessing": data_at - first_at,  # listing, decoding and caching every dataset
        "store_startup": starts[0][1] - data_at,  # connecting to (creating) the MLflow store
    }
    ends = [at for _, at in starts[1:]] + [total]
    for (name, at), end in zip(starts, ends, strict=True):
        phases[f"experiment.{name}"] = end - at
    return phases


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="--profile smoke, prints only")
    parser.add_argument("--profile", default=None, help="a profile of experiments.yaml (quick: smoke)")
    parser.add_argument("--keep", type=Path, default=None, help="run in this folder and keep it")
    common.add_out_argument(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    profile = args.profile or ("smoke" if args.quick else None)
    out = args.out or (None if args.quick else REPORT)
    harness = str(Path(sys.executable).with_name("harness"))
    os.environ.pop("MLFLOW_TRACKING_URI", None)  # the fresh project's own mlflow.db
    details = machine(command_line("bench/e2e.py", argv)) | {"profile": profile, "quick": args.quick}
    with tempfile.TemporaryDirectory(prefix="fer-bench-e2e-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        config = folder / "experiments.yaml"
        shutil.copy(REPO / "experiments.yaml", config)
        common = ["--config", str(config), *(["--profile", profile] if profile else [])]
        print(f"e2e: in {folder} (profile {profile or 'default'})", file=sys.stderr)
        phases = {"data_generation": timed([harness, "data", "synth", *common], folder, folder / "synth.log")}
        phases |= timed_run([harness, "run", *common], folder, folder / "run.log")
        report = [harness, "report", "--config", str(config)]
        phases["report"] = timed(report, folder, folder / "report.log")
    total = sum(phases.values())
    experiments = sum(v for k, v in phases.items() if k.startswith("experiment."))
    keys = {
        "e2e_total_s": round(total, 1),
        "e2e_target_s": TARGET_S,
        "e2e_met": met(total, TARGET_S, at_most=True),
        "e2e_data_generation_s": round(phases["data_generation"], 1),
        "e2e_preprocessing_s": round(phases.get("preprocessing", 0.0), 1),
        "e2e_experiments_s": round(experiments, 1),
        "e2e_report_s": round(phases["report"], 1),
    }
    for name, seconds in phases.items():
        print(f"   {name:<44} {seconds:>7.1f} s")
    print(
        f"5  end to end make reproduce{' --profile ' + profile if profile else ''}: {total:.0f} s after set-up "
        f"(target <= {TARGET_S / 60:.0f} min): data {phases['data_generation']:.0f} s, preprocessing "
        f"{keys['e2e_preprocessing_s']:.0f} s, experiments {experiments:.0f} s, report {phases['report']:.0f} s"
    )
    if out is not None:
        suffix = f"_{profile}" if profile else ""
        details |= {"phases_s": {k: round(v, 2) for k, v in phases.items()}}
        merge_report(out, {k.replace("e2e_", f"e2e{suffix}_", 1): v for k, v in keys.items()}, f"e2e{suffix}", details)
        print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
