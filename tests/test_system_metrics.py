"""System metrics on every run: MLflow's monitor samples CPU and memory while a run trains, the
values land as `system/*` metrics of that run, and the report draws them for the longest runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli.main import main
from tests.conftest import tiny_suite_text

FAST = {"MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "0.2", "MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING": "1"}
LONGER = """
  plain_long:
    description: long enough for a few samples
    extends: plain
    train: {epochs: 6}
"""


def _run(tmp_path: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> tuple[str, object]:
    from mlflow import MlflowClient

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    suite = tmp_path / "experiments.yaml"
    suite.write_text(tiny_suite_text(tiny_data, LONGER))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["run", "plain_long", "--config", str(suite), "--tracking-uri", uri]) == 0
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    return uri, run


@pytest.mark.slow
def test_a_run_logs_cpu_and_memory_and_the_report_draws_them(
    tmp_path: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.report.system import system_section
    from harness.tracking.read import load_results, system_history

    uri, run = _run(tmp_path, tiny_data, monkeypatch, FAST)
    metrics = run.data.metrics
    assert 0 <= metrics["system/cpu_utilization_percentage"] <= 100 * 64
    assert metrics["system/system_memory_usage_megabytes"] > 0
    frame = system_history(uri, run.info.run_id)
    assert len(frame) >= 2 and frame["minutes"].iloc[0] == 0 and frame["minutes"].is_monotonic_increasing
    section = system_section(load_results(uri, "tiny"))
    assert "CPU %" in section.body and "memory (MB)" in section.body and "plain_long (seed 0" in section.body
    assert "GPU %" not in section.body  # no GPU here: no GPU panel


@pytest.mark.slow
def test_system_metrics_can_be_turned_off(tmp_path: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.report.system import NONE, system_section
    from harness.tracking.read import load_results

    uri, run = _run(tmp_path, tiny_data, monkeypatch, {**FAST, "HARNESS_SYSTEM_METRICS": "0"})
    assert not any(key.startswith("system/") for key in run.data.metrics)
    assert NONE in system_section(load_results(uri, "tiny")).body
