"""`harness report --format markdown`: the numbers of a store as a page for docs/results/."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import tiny_suite_text
from mlflow import MlflowClient

from harness.cli.main import main

CLAIMS = """
claims:
  residual-vs-plain:
    title: Residual vs plain
    a: residual
    b: plain
    claim: residual blocks beat the plain CNN
"""


@pytest.mark.slow
def test_markdown_results_name_their_source_and_match_the_store(tmp_path: Path, tiny_data: Path) -> None:
    config = tmp_path / "experiments.yaml"
    config.write_text(tiny_suite_text(tiny_data) + CLAIMS)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["run", "plain", "residual", "--config", str(config), "--tracking-uri", uri]) == 0
    out = tmp_path / "docs" / "results" / "tiny.md"
    assert main(["report", "--config", str(config), "--tracking-uri", uri, "--format", "markdown", "--out", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    for heading in ("# Results: tiny", "## Protocol", "## Scores", "## Claims", "## Compute"):
        assert heading in page
    assert f"| Store | `{uri}` |" in page
    assert "Intel" in page or "cores" in page  # the machine the runs trained on
    assert "--format markdown --out" in page  # the command that regenerates it
    assert "verdicts test that the pipeline measures claims correctly, not the study's claims" in page
    assert "Nothing here reads a test split" in page
    client = MlflowClient(tracking_uri=uri)
    for run in client.search_runs([client.get_experiment_by_name("tiny").experiment_id]):
        name, m = run.data.tags["harness.experiment"], run.data.metrics
        row = next(line for line in page.splitlines() if line.startswith(f"| `{name}` | 1 (0) |"))
        assert f"{100 * m['final_val_accuracy']:.1f}" in row
        assert f"{m['train_tflop']:.3g}" in row
    assert "| Residual vs plain: residual blocks beat the plain CNN |" in page


def test_a_cheap_profiles_runs_are_kept_apart_and_ranked_against_the_full_ones(tmp_path: Path) -> None:
    from mlflow_fixtures import log_fake_run

    from harness.report.page import build_report
    from harness.report.ranking import profile_rankings
    from harness.tracking.read import load_results

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # Full runs: a > b > c; the proxy agrees on a > b but swaps b and c.
    for seed, (name, full, proxy) in enumerate((("a", 0.7, 0.5), ("b", 0.6, 0.4), ("c", 0.5, 0.45))):
        log_fake_run(uri, "s", name, n_classes=7, quality=full, seed=seed, final_metrics={"train_tflop": 300.0})
        log_fake_run(uri, "s", name, n_classes=7, quality=proxy, seed=10 + seed, final_metrics={"train_tflop": 30.0},
                     tags={"harness.profile": "proxy"})  # fmt: skip
    full = load_results(uri, "s", artifacts=False)
    assert {r.tags.get("harness.profile") for rs in full.seed_runs.values() for r in rs} == {None}  # never mixed
    assert full.other_profiles == {"proxy": 3}
    proxy = load_results(uri, "s", artifacts=False, profile="proxy")
    assert all(r.tags["harness.profile"] == "proxy" for rs in proxy.seed_runs.values() for r in rs)
    (ranking,) = profile_rankings(full)
    accuracy = {r.experiment: (r.full, r.other) for r in ranking.rows}
    expected = {name: (full.seed_runs[name][0].metric("final_val_accuracy"), proxy.seed_runs[name][0].metric("final_val_accuracy"))
                for name in "abc"}  # fmt: skip
    assert accuracy == expected
    concordant = sum(1 if (x[0] - y[0]) * (x[1] - y[1]) > 0 else -1 for x, y in [(expected["a"], expected["b"]),
                     (expected["a"], expected["c"]), (expected["b"], expected["c"])])  # fmt: skip
    assert ranking.kendall_tau == pytest.approx(concordant / 3)
    out = tmp_path / "s.md"
    build_report(uri, "s", out, fmt="markdown")
    page = out.read_text()
    assert "## The `proxy` profile's ranking against these runs" in page
    assert "Kendall's tau" in page and "| `a` |" in page
    assert "3 finished run(s) of profile 'proxy' not shown" in page


def test_an_experiment_name_means_its_profiles_runs_only(tmp_path: Path) -> None:
    """`harness register modern_cpu` after a proxy run of it registers the full run, never the
    newer proxy one; with only proxy runs the error names their profile."""
    from mlflow_fixtures import log_fake_run

    from harness.core.errors import TrackingError
    from harness.tracking.write import open_existing

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    full = log_fake_run(uri, "s", "a", n_classes=7, quality=0.7, seed=0)
    proxy = log_fake_run(uri, "s", "a", n_classes=7, quality=0.5, seed=1, tags={"harness.profile": "proxy"})
    log_fake_run(uri, "s", "b", n_classes=7, quality=0.5, seed=1, tags={"harness.profile": "proxy"})
    tracker = open_existing(uri, "s")
    assert tracker.find_training_run("a").info.run_id == full
    assert open_existing(uri, "s", profile="proxy").find_training_run("a").info.run_id == proxy
    with pytest.raises(TrackingError, match=r"experiment 'b' outside any profile.*'proxy'"):
        tracker.find_training_run("b")
