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
