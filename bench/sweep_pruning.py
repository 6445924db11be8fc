"""Pruning benchmark: the same 20-trial sweep with and without its pruner, in one run.

Both sweeps run `harness sweep` on the suite's `residual` study (same space, same sampler seed,
same data) in a temporary project; only the pruner differs (the study's own vs `none`). Reported:
training epochs run by each, the fraction the pruner saved (target >= 50%), and the best
objective each reached. "Within run-to-run noise" is judged against the binomial standard error
of a balanced accuracy on this validation set: sqrt(mean_c p(1-p)/n_c) / sqrt(C) with the
best value as p — the spread two equally good models show on the same images (target: the gap
is at most 2 SE).

Both sweeps train `--epochs` epochs per trial (default 10, the study's own). The study's base is
the balanced residual CNN, whose epochs are `cap` images of each class (the searched
`sampler.cap`), so `per_epoch` plays no part; everything else is the study as written in
experiments.yaml.

    .venv/bin/python bench/sweep_pruning.py              # 2 x 20 trials, writes reports/bench.json
    .venv/bin/python bench/sweep_pruning.py --quick      # 2 x 4 trials of 3 epochs, prints only
    .venv/bin/python bench/sweep_pruning.py --pruners median,hyperband   # also Hyperband
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
REPORT = REPO / "reports" / "bench.json"
STUDY = "residual"


# The study's own pruner is measured by default; `--pruners median,hyperband` adds others.
PRUNERS = {
    "median": {"name": "median", "n_startup_trials": 2, "n_warmup_steps": 2},
    "hyperband": {"name": "hyperband", "min_resource": 1, "reduction_factor": 3},
}


def make_project(folder: Path, *, epochs: int, pruners: Sequence[str]) -> list[str]:
    """A copy of experiments.yaml whose studies are the residual study under each pruner and none."""
    doc = yaml.safe_load((REPO / "experiments.yaml").read_text())
    data = doc["defaults"]["data"]
    data["path"] = str((REPO / data["path"]).resolve())  # share the generated dataset
    study = doc["studies"][STUDY]
    base = study.setdefault("base", {})
    base.setdefault("train", {})["epochs"] = epochs
    doc["studies"] = {name: {**study, "pruner": PRUNERS[name]} for name in pruners}
    doc["studies"]["unpruned"] = {**study, "pruner": {"name": "none"}}
    (folder / "experiments.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return list(doc["studies"])


def run_sweep(folder: Path, study: str, trials: int) -> float:
    """`harness sweep` in `folder`; returns its wall time in seconds."""
    harness = Path(sys.executable).with_name("harness")
    log = folder / f"{study}.log"
    started = time.perf_counter()
    with open(log, "w") as fh:
        done = subprocess.run(
            [str(harness), "sweep", "--study", study, "--trials", str(trials), "--config", str(folder / "experiments.yaml")],
            cwd=folder, stdout=fh, stderr=subprocess.STDOUT, check=False,
        )
    if done.returncode != 0:
        sys.exit(f"harness sweep --study {study} failed:\n{log.read_text()[-3000:]}")
    return time.perf_counter() - started


def summarize(folder: Path, study: str, epochs: int) -> dict[str, float]:
    """Epochs run, trial states and the best value of one study in the project's journal."""
    import optuna

    from harness.sweep.storage import open_storage

    s = optuna.load_study(study_name=f"fer-study.{study}", storage=open_storage(str(folder / "optuna.journal")))
    finished = [t for t in s.trials if t.state.name in ("COMPLETE", "PRUNED")]
    complete = [t.value for t in finished if t.state.name == "COMPLETE"]
    return {
        "trials": len(finished),
        "pruned": sum(t.state.name == "PRUNED" for t in finished),
        "epochs_run": sum(len(t.intermediate_values) for t in finished),
        "epochs_without_pruning": len(finished) * epochs,
        "best_value": max(complete) if complete else float("nan"),
    }


def balanced_accuracy_se(p: float, per_class: int, classes: int) -> float:
    """Binomial standard error of a balanced accuracy with `per_class` images in each class."""
    return math.sqrt(p * (1 - p) / per_class) / math.sqrt(classes)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 x 4 trials of 3 epochs, prints only")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--pruners", default="median", help=f"comma list of {', '.join(PRUNERS)}")
    parser.add_argument("--out", type=Path, default=None, help=f"JSON report to merge into (default {REPORT})")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.epochs = 4, 3
    subprocess.run([str(Path(sys.executable).with_name("harness")), "data", "synth"], cwd=REPO, check=True,
                   stderr=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        folder = Path(tmp)
        pruners = [p for p in args.pruners.split(",") if p]
        unknown = [p for p in pruners if p not in PRUNERS]
        if unknown:
            parser.error(f"unknown pruner {unknown[0]}; choose from {', '.join(PRUNERS)}")
        studies = make_project(folder, epochs=args.epochs, pruners=pruners)
        seconds = {s: run_sweep(folder, s, args.trials) for s in studies}
        results = {s: summarize(folder, s, args.epochs) for s in studies}
    doc = yaml.safe_load((REPO / "experiments.yaml").read_text())
    per_class = doc["defaults"]["data"]["synth_val_per_class"]
    full = results["unpruned"]
    se = balanced_accuracy_se(full["best_value"], per_class, 11)
    keys: dict[str, float] = {"sweep_pruning.best_value_unpruned": full["best_value"],
                              "sweep_pruning.seconds_unpruned": round(seconds["unpruned"], 1),
                              "sweep_pruning.noise_se": round(se, 4)}
    print(f"{'sweep':<10} {'trials':>6} {'pruned':>6} {'epochs':>7} {'best':>7} {'seconds':>8}")
    for name, r in results.items():
        print(f"{name:<10} {r['trials']:>6} {r['pruned']:>6} {r['epochs_run']:>7} {r['best_value']:>7.4f} {seconds[name]:>8.0f}")
    for name in pruners:
        r = results[name]
        saved = 1 - r["epochs_run"] / full["epochs_run"]
        gap = full["best_value"] - r["best_value"]
        keys.update({
            f"sweep_pruning.{name}.epochs_saved_fraction": round(saved, 4),
            f"sweep_pruning.{name}.best_value": r["best_value"],
            f"sweep_pruning.{name}.best_gap_in_se": round(gap / se, 3),
            f"sweep_pruning.{name}.seconds": round(seconds[name], 1),
        })
        print(f"{name}: epochs saved {saved:.1%} (target >= 50%); best-value gap {gap:+.4f} = "
              f"{gap / se:+.2f} SE (SE {se:.4f}; target gap <= 2 SE)")
    out = args.out or (None if args.quick else REPORT)
    if out is not None:
        from harness.core.locks import atomic_write_bytes

        data = json.loads(out.read_text()) if out.exists() else {}
        data.update(keys)
        data.setdefault("details", {})["sweep_pruning"] = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "study": STUDY, "trials": args.trials, "epochs": args.epochs, "pruners": pruners,
            "results": results, "cpu_count": os.cpu_count(),
        }
        atomic_write_bytes(out, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
