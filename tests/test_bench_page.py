"""bench/RESULTS.md's figures are rendered from reports/bench.json, never typed: the page's
generated block must be exactly what bench/summary.py renders from the committed JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import summary  # noqa: E402


def test_results_page_figures_match_the_json() -> None:
    page, report = ROOT / "bench" / "RESULTS.md", ROOT / "reports" / "bench.json"
    assert report.exists(), "reports/bench.json is the figures' source: run make bench"
    data = json.loads(report.read_text())
    assert summary.render_into(page, data) == page.read_text(), "run: bench/summary.py --markdown bench/RESULTS.md"


def test_no_fraction_of_the_ceiling_is_above_one() -> None:
    data = json.loads((ROOT / "reports" / "bench.json").read_text())
    fractions = {k: v for k, v in data.items() if k.endswith("_peak_fraction") or k.startswith("efficiency_")}
    fractions = {k: v for k, v in fractions.items() if not k.endswith(("_target", "_met"))}
    assert fractions and all(0 < v <= 1 for v in fractions.values()), fractions


def test_the_rendering_names_the_machine_and_the_gpu() -> None:
    data = {"train_overhead": 0.01, "details": {"training": {"date": "2026-12-07T10:00:00+00:00", "commit": "abc1234",
            "cpu": "Some CPU", "nproc": 2, "cpu_flags": ["avx2", "fma"], "loadavg_at_start": [0.5], "command": "bench/training.py"},
            "gpu": {"statement": "no GPU was available"}}}  # fmt: skip
    text = summary.markdown(data)
    assert "| 1a | harness overhead vs a bare PyTorch loop | 1.0% | <= 5.0% | yes |" in text
    assert "| training | 2026-12-07 10:00 | abc1234 | Some CPU | 2 | avx2 fma | 0.5 |" in text
    assert "GPU: no GPU was available" in text
