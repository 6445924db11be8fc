"""The CLI end to end on tiny data: run, skip-if-finished, report, errors, signals, determinism."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


def _uri(folder: Path) -> str:
    return f"sqlite:///{folder / 'mlflow.db'}"


def _runs(uri: str, experiment: str = "tiny") -> list:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id]) if exp else []


def test_the_installed_harness_command_runs() -> None:
    """The console script pyproject declares is the one `harness` users type (not `python -m`)."""
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "harness"]
    assert script.value == "harness.cli.main:main" and callable(script.load())
    installed = Path(sys.executable).with_name("harness")
    out = subprocess.run([str(installed), "--help"], capture_output=True, text=True, check=True)
    assert "run" in out.stdout


def test_help_is_instant_and_lists_commands() -> None:
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "harness", "--help"], capture_output=True, text=True, check=True
    )
    assert time.perf_counter() - started < 3.0  # generous: the target (< 1 s) is measured by bench/
    for command in ("run", "list", "data", "report"):
        assert command in out.stdout
    modules = subprocess.run(
        [sys.executable, "-c", "import sys, harness.cli; print(sorted(sys.modules))"],
        capture_output=True, text=True, check=True,
    ).stdout
    for heavy in ("'torch'", "'mlflow'", "'sklearn'", "'plotly'"):
        assert heavy not in modules


def test_mlflow_telemetry_is_off_unless_the_user_turns_it_on(
    tiny_suite: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    monkeypatch.delenv("MLFLOW_DISABLE_TELEMETRY", raising=False)
    assert main(["list", "--config", str(tiny_suite)]) == 0
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "false")  # the user's own choice stands
    assert main(["list", "--config", str(tiny_suite)]) == 0
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "false"


def test_list_shows_the_suite(tiny_suite: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--config", str(tiny_suite)]) == 0
    out = capsys.readouterr().out
    assert "plain_balanced" in out and "residual_cnn" in out


@pytest.mark.slow
def test_run_track_skip_force_and_report(tiny_suite: Path, capsys: pytest.CaptureFixture[str]) -> None:
    uri = _uri(tiny_suite.parent)
    assert main(["run", "--config", str(tiny_suite), "--tracking-uri", uri]) == 0
    runs = _runs(uri)
    assert sorted(r.info.run_name for r in runs) == ["plain", "plain_balanced", "residual"]
    assert all(r.info.status == "FINISHED" for r in runs)
    run = next(r for r in runs if r.info.run_name == "plain")
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    for tag in ("harness.spec_hash", "harness.run_key", "harness.git_commit", "harness.dataset_digest"):
        assert tags[tag]
    assert tags["harness.paper_iteration"] == "1" and tags["harness.comparisons"] == "imbalance,architecture"
    assert params["model.name"] == "cnn" and params["train.epochs"] == "2"
    assert 0.0 <= metrics["final_val_accuracy"] <= 1.0 and metrics["n_parameters"] > 0
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    history = client.get_metric_history(run.info.run_id, "val_accuracy")
    assert [m.step for m in history] == [1, 2]
    artifacts = {a.path for folder in ("", "eval", "data", "model") for a in client.list_artifacts(run.info.run_id, folder or None)}
    for expected in ("spec.yaml", "eval/confusion_matrix.json", "eval/confusion_matrix.html",
                     "eval/classification_report.json", "eval/predictions.csv",
                     "data/class_counts.json", "data/examples.png", "model/weights.pt"):
        assert expected in artifacts
    local = client.download_artifacts(run.info.run_id, "eval/confusion_matrix.json", str(tiny_suite.parent))
    confusion = json.loads(Path(local).read_text())
    assert len(confusion["labels"]) == 11 and sum(map(sum, confusion["counts"])) == 11 * 4
    full = client.get_run(run.info.run_id)
    assert full.inputs.dataset_inputs and full.inputs.dataset_inputs[0].dataset.digest == tags["harness.dataset_digest"]

    # Identical specs on identical data are skipped; --force trains again.
    capsys.readouterr()
    assert main(["run", "plain", "--config", str(tiny_suite), "--tracking-uri", uri]) == 0
    assert "skipped" in capsys.readouterr().out
    assert len(_runs(uri)) == 3
    assert main(["run", "plain", "--config", str(tiny_suite), "--tracking-uri", uri, "--force"]) == 0
    assert len(_runs(uri)) == 4
    # A changed setting is a new spec: it trains.
    assert main(["run", "plain", "--config", str(tiny_suite), "--tracking-uri", uri, "--epochs", "1"]) == 0
    assert len(_runs(uri)) == 5

    out = tiny_suite.parent / "reports" / "index.html"
    assert main(["report", "--config", str(tiny_suite), "--tracking-uri", uri]) == 0
    html = out.read_text()
    assert "plain_balanced" in html and "residual" in html
    assert 'id="data-quality"' in html and "near_train_val" in html
    assert "<script src" not in html


@pytest.mark.slow
def test_same_seed_same_metrics(tiny_suite: Path, tmp_path: Path) -> None:
    from harness.data.dataset import load_dataset
    from harness.models.build import build_model
    from harness.suite.load import load_suite
    from harness.train.loop import fit

    suite = load_suite(tiny_suite)
    spec = suite.experiments["residual"]
    data = load_dataset(spec.data, suite.root, tmp_path / "cache")
    first = fit(build_model(spec, data), data, spec)
    second = fit(build_model(spec, data), data, spec)
    # Bit for bit: every metric, every prediction and every weight.
    assert [e.metrics() for e in first.history] == [e.metrics() for e in second.history]
    assert (first.y_pred == second.y_pred).all()
    import torch

    a, b = first.model.state_dict(), second.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    other = suite.experiments["residual"].model_copy(update={"train": spec.train.model_copy(update={"seed": 1})})
    third = fit(build_model(other, data), data, other)
    assert [e.metrics() for e in third.history] != [e.metrics() for e in first.history]


def test_errors_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiments: {a: {description: x, model: {name: cnnn}}}\n")
    assert main(["list", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean 'cnn'" in err and str(bad) in err
    assert "Traceback" not in err
    assert main(["run", "nope", "--config", str(ROOT / "experiments.yaml")]) == 2
    assert "no experiment 'nope'" in capsys.readouterr().err


def test_unreachable_tracking_server_fails_fast(tiny_suite: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env_before = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    try:
        started = time.perf_counter()
        code = main(["run", "--config", str(tiny_suite), "--tracking-uri", "http://127.0.0.1:9"])
    finally:
        if env_before is None:
            os.environ.pop("MLFLOW_HTTP_REQUEST_MAX_RETRIES", None)
        else:
            os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = env_before
    assert code == 2 and time.perf_counter() - started < 60
    assert "tracking store unavailable" in capsys.readouterr().err


def _slow_run_after_epoch_1(tiny_suite: Path) -> tuple[subprocess.Popen, str]:
    """`harness run plain` at 40 epochs (long enough to be caught mid-training), once epoch 1 is done."""
    slow = tiny_suite.parent / "slow.yaml"
    slow.write_text(tiny_suite.read_text().replace("epochs: 2,", "epochs: 40,"))
    uri = _uri(tiny_suite.parent)
    cmd = [sys.executable, "-m", "harness", "run", "plain", "--config", str(slow), "--tracking-uri", uri]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        if "epoch   1/" in line:
            break
    return proc, uri


@pytest.mark.slow
def test_sigterm_marks_the_run_killed_and_a_rerun_finishes(tiny_suite: Path, tiny_data: Path) -> None:
    proc, uri = _slow_run_after_epoch_1(tiny_suite)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err
    (run,) = _runs(uri)
    assert run.info.status == "KILLED"


@pytest.mark.slow
def test_sigkilled_run_is_reaped_by_the_next_invocation(tiny_suite: Path) -> None:
    proc, uri = _slow_run_after_epoch_1(tiny_suite)
    proc.kill()
    proc.wait(timeout=30)
    (run,) = _runs(uri)
    assert run.info.status == "RUNNING"
    assert main(["run", "plain", "--config", str(tiny_suite), "--tracking-uri", uri]) == 0
    statuses = sorted((r.info.status, r.data.params["train.epochs"]) for r in _runs(uri))
    assert statuses == [("FAILED", "40"), ("FINISHED", "2")]


@pytest.mark.slow
def test_seeds_train_one_tracked_run_each_and_the_report_pools_them(
    tiny_suite: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = _uri(tiny_suite.parent)
    args = ["--config", str(tiny_suite), "--tracking-uri", uri, "--epochs", "1"]
    assert main(["run", "plain", "residual", "--seeds", "2", *args]) == 0
    runs = _runs(uri)
    assert sorted((r.info.run_name, r.data.tags["harness.seed"]) for r in runs) == [
        ("plain", "0"), ("plain", "1"), ("residual", "0"), ("residual", "1"),
    ]  # fmt: skip
    assert len({r.data.tags["harness.run_key"] for r in runs}) == 4
    assert {r.data.params["train.seed"] for r in runs} == {"0", "1"}
    plain = [r for r in runs if r.info.run_name == "plain"]
    assert plain[0].data.metrics["final_val_accuracy"] != plain[1].data.metrics["final_val_accuracy"] or (
        plain[0].data.metrics["final_train_accuracy"] != plain[1].data.metrics["final_train_accuracy"]
    )
    # Seed 0 without --seeds is the same run: skipped, not retrained.
    capsys.readouterr()
    assert main(["run", "plain", *args]) == 0
    assert "skipped" in capsys.readouterr().out and len(_runs(uri)) == 4
    assert main(["run", "--seeds", "0", *args]) == 2
    assert main(["report", "--config", str(tiny_suite), "--tracking-uri", uri]) == 0
    page = (tiny_suite.parent / "reports" / "index.html").read_text()
    assert "2 (0, 1)" in page  # seeds column of the summary
    assert "McNemar" in page
