"""The benchmarks' helpers (fast) and each benchmark's --quick mode end to end (slow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))

import common  # noqa: E402
import summary  # noqa: E402


def test_time_variants_alternates_the_order_and_keeps_outputs() -> None:
    order: list[str] = []
    variants = {name: (lambda name=name: order.append(name) or name) for name in ("a", "b")}
    seconds, outputs = common.time_variants(variants, 3, alternate=True)
    assert order == ["a", "b", "b", "a", "a", "b"]
    assert outputs == {"a": "a", "b": "b"}
    assert all(len(v) == 3 and min(v) >= 0 for v in seconds.values())


def test_median_ratio_pairs_the_repeats() -> None:
    # Pairwise ratios 2, 2, 100: the median ignores the one disturbed repeat.
    assert common.median_ratio([2.0, 4.0, 100.0], [1.0, 2.0, 1.0]) == 2.0


def test_merge_report_keeps_other_benchmarks(tmp_path: Path) -> None:
    path = tmp_path / "bench.json"
    common.merge_report(path, {"a_ratio": 1.5}, "a", {"date": "x"})
    common.merge_report(path, {"b_s": 0.2}, "b", {"date": "y"})
    data = json.loads(path.read_text())
    assert data["a_ratio"] == 1.5 and data["b_s"] == 0.2
    assert set(data["details"]) == {"a", "b"}


def test_summary_judges_each_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"train_overhead": 0.09, "startup_help_s": 0.4, "details": {}}))
    assert summary.main(["--report", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    overhead = next(line for line in lines if "bare PyTorch loop" in line)
    startup = next(line for line in lines if "--help" in line)
    tracking = next(line for line in lines if "tracking work in a run ten times the suite's" in line)
    assert "9.0%" in overhead and " NO " in overhead
    assert " yes " in startup
    assert "not measured" in tracking


def run_quick(script: str, out: Path, *extra: str) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick", "--out", str(out), *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
@pytest.mark.bench
def test_quick_benchmarks_write_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    run_quick("startup.py", out)
    run_quick("preprocess.py", out)
    run_quick("training.py", out)
    data = json.loads(out.read_text())
    for key in (
        "startup_help_s", "preprocess_affectnet_ratio", "train_overhead", "train_pipeline_suite_speedup", "train_pipeline_large_speedup",
        "gemm_fp32_gflop_s", "efficiency_residual_cnn", "tracking_overhead", "preprocess_affectnet_parallel_ceiling",
    ):  # fmt: skip
        assert isinstance(data[key], int | float), key
    assert data["startup_heavy_imports"] == 0
    # The harness and the bare loop train the same weights from the same start.
    assert data["details"]["overhead"]["max_param_diff_after_warmup"] < 1e-4
    table = subprocess.run(
        [sys.executable, str(BENCH / "summary.py"), "--report", str(out)], capture_output=True, text=True, check=True
    ).stdout
    assert "harness overhead vs a bare PyTorch loop" in table


@pytest.mark.slow
@pytest.mark.bench
def test_quick_end_to_end_splits_every_experiment(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    run_quick("e2e.py", out)
    phases = json.loads(out.read_text())["details"]["e2e_smoke"]["phases_s"]
    from harness.suite.load import load_suite

    names = set(load_suite(ROOT / "experiments.yaml").experiments)
    assert {k.split(".", 1)[1] for k in phases if k.startswith("experiment.")} == names
    assert {"data_generation", "preprocessing", "report"} <= set(phases)
