"""The CI twin of `make reproduce`: the real suite file, every experiment, at the `smoke` profile."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_every_experiment_runs_and_reports(tmp_path: Path) -> None:
    config = tmp_path / "experiments.yaml"
    shutil.copy(ROOT / "experiments.yaml", config)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["data", "synth", "--config", str(config), "--profile", "smoke"]) == 0
    assert main(["run", "--config", str(config), "--profile", "smoke", "--tracking-uri", uri]) == 0
    assert main(["report", "--config", str(config), "--tracking-uri", uri, "--profile", "smoke"]) == 0

    from mlflow import MlflowClient

    from harness.suite.load import load_suite

    names = set(load_suite(config).experiments)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("fer-study")
    runs = client.search_runs([experiment.experiment_id])
    assert {r.info.run_name for r in runs} == names and len(runs) == len(names) >= 12
    for run in runs:
        assert run.info.status == "FINISHED"
        assert "eval/confusion_matrix.json" in {a.path for a in client.list_artifacts(run.info.run_id, "eval")}
    html = (tmp_path / "reports" / "index.html").read_text()
    assert "<script src" not in html
    for name in names:
        assert name in html
    _assert_claims_are_ruled_on(html)


def _assert_claims_are_ruled_on(html: str) -> None:
    """Each of the study's three claims: a difference, its interval, McNemar's p, a verdict."""
    import re

    from harness.suite.load import load_suite

    start = html.index('id="claims"')
    claims = html[start : html.index("</section>", start)]
    sentence = (
        r"Here {a} − {b} = [+-]\d+\.\d points of {metric} \[[+-]\d+\.\d, [+-]\d+\.\d\] "
        r"\(95% paired bootstrap over [\d,]+ validation images, 1 vs 1 seed\(s\)\), "
        r"McNemar p (=|&lt;) [01]\.\d+: (reproduced|not reproduced|inconclusive)\."
    )
    suite_claims = load_suite(Path(__file__).resolve().parents[1] / "experiments.yaml").claims
    study_claims = [c for c in suite_claims if c.study_claim]
    assert len(study_claims) == 3
    for claim in study_claims:
        metric = "accuracy" if claim.metric == "accuracy" else "balanced accuracy"
        pattern = sentence.format(a=claim.a, b=claim.b, metric=metric)
        assert re.search(pattern, claims), f"no ruling on: {claim.claim}"
    assert "Not tested" not in claims
    paper = html[html.index('id="paper"') :]
    assert "Paper order: cnn_residual_balanced &gt; cnn_residual &gt;" in paper
