"""`harness sweep`: search-space validation, pruning, nested MLflow runs, resume, best/retrain, workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.core.errors import SpecError
from harness.suite.load import load_suite
from tests.conftest import tiny_suite_text

# Two good trials, then one with a learning rate that blows the loss up: the median pruner
# (no warm-up) stops it after its first epoch. TPE draws the rest.
STUDY = """
studies:
  tiny:
    experiment: plain
    objective: val_loss
    sampler: {name: tpe, seed: 0, n_startup_trials: 2}
    pruner: {name: median, n_startup_trials: 2, n_warmup_steps: 0}
    trials: 3
    base: {train: {epochs: 3}}
    enqueue:
      - {train.lr: 0.001, model.dropout: 0.0}
      - {train.lr: 0.002, model.dropout: 0.1}
      - {train.lr: 50.0, model.dropout: 0.0}
    space:
      train.lr: {type: float, low: 1.0e-4, high: 100.0, log: true}
      model.dropout: {type: float, low: 0.0, high: 0.5}
"""


@pytest.fixture
def sweep_suite(tmp_path: Path, tiny_data: Path) -> Path:
    path = tmp_path / "experiments.yaml"
    path.write_text(tiny_suite_text(tiny_data) + textwrap.dedent(STUDY))
    return path


def _client(suite: Path):
    from mlflow import MlflowClient

    return MlflowClient(f"sqlite:///{suite.parent / 'mlflow.db'}")


def _runs(suite: Path, kind: str) -> list:
    client = _client(suite)
    exp = client.get_experiment_by_name("tiny")
    return client.search_runs([exp.experiment_id], filter_string=f"tags.`harness.kind` = '{kind}'", max_results=1000)


def _study(suite: Path):
    import optuna

    from harness.sweep.storage import open_storage

    return optuna.load_study(study_name="tiny.tiny", storage=open_storage(str(suite.parent / "optuna.journal")))


# ----------------------------------------------------------------------------- validation


def _suite_with(tmp_path: Path, tiny_data: Path, study_yaml: str) -> Path:
    path = tmp_path / "experiments.yaml"
    path.write_text(tiny_suite_text(tiny_data) + textwrap.dedent(study_yaml))
    return path


GOOD_SPACE = "    space: {train.lr: {type: float, low: 0.0001, high: 0.01, log: true}}\n"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("    experiment: plane\n" + GOOD_SPACE, r"studies\.s\.experiment: no experiment 'plane'; did you mean 'plain'"),
        ("    experiment: plain\n    space: {model.num_blok: {type: int, low: 1, high: 3}}\n",
         r"studies\.s\.space\.model\.num_blok: unknown model field"),
        ("    experiment: residual\n    space: {model.num_blok: {type: int, low: 1, high: 3}}\n",
         r"did you mean 'num_blocks'"),
        ("    experiment: plain\n    space: {data.image_size: {type: int, low: 16, high: 48}}\n",
         r"studies\.s\.space\.data\.image_size: keys are section\.field with section one of sampler, model, train"),
        ("    experiment: plain\n    space: {train.lr: {type: float, low: 0.1, high: 0.01}}\n",
         r"studies\.s\.space\.train\.lr: low \(0\.1\) must be below high \(0\.01\)"),
        ("    experiment: plain\n    space: {train.lr: {type: float, low: 0.0, high: 0.01, log: true}}\n",
         r"studies\.s\.space\.train\.lr: log scale needs low > 0"),
        ("    experiment: plain\n    space: {train.batch_size: {type: categorical}}\n",
         r"studies\.s\.space\.train\.batch_size: categorical needs a non-empty 'choices' list"),
        ("    experiment: plain\n    space: {train.lr: {type: floot, low: 0.1, high: 1}}\n",
         r"studies\.s\.space\.train\.lr\.type: Input should be 'int', 'float' or 'categorical'"),
        ("    experiment: plain\n    space: {model.dropout: {type: float, low: 0.0, high: 1.5}}\n",
         r"studies\.s\.space\.model\.dropout: the value 1\.5 gives an invalid spec"),
        ("    experiment: plain\n    space: {train.epochs: {type: int, low: 0, high: 3}}\n",
         r"studies\.s\.space\.train\.epochs: the value 0 gives an invalid spec: .*greater than or equal to 1"),
        ("    experiment: plain\n    objective: val_acc\n" + GOOD_SPACE, r"studies\.s\.objective: Input should be"),
        ("    experiment: plain\n    pruner: {name: medain}\n" + GOOD_SPACE, r"studies\.s\.pruner\.name: Input should be"),
        ("    experiment: plain\n    trails: 3\n" + GOOD_SPACE, r"studies\.s\.trails: unknown key; did you mean 'trials'"),
        ("    experiment: plain\n    space: {}\n", r"studies\.s\.space: Value error|the search space is empty"),
        ("    experiment: plain\n    base: {data: {image_size: 16}}\n" + GOOD_SPACE,
         r"studies\.s\.base\.data: only sampler, model, train, augment can change per study"),
        ("    experiment: plain\n    enqueue: [{train.momentum: 0.9}]\n" + GOOD_SPACE,
         r"studies\.s\.enqueue\[0\]\.train\.momentum: not in the study's space"),
    ],
)
def test_search_space_errors_name_the_file_and_key(tmp_path: Path, tiny_data: Path, body: str, message: str) -> None:
    path = _suite_with(tmp_path, tiny_data, "studies:\n  s:\n" + body)
    with pytest.raises(SpecError, match=message) as info:
        load_suite(path)
    assert str(info.value).startswith(str(path))
    assert "\n" not in str(info.value)


def test_unknown_study_is_a_one_line_error(sweep_suite: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", "--study", "tinny", "--config", str(sweep_suite)]) == 2
    err = capsys.readouterr().err
    assert "no study 'tinny'; did you mean 'tiny'" in err
    assert "Traceback" not in err
    assert not (sweep_suite.parent / "mlflow.db").exists()  # nothing was touched


# ----------------------------------------------------------------------------- a real sweep


def test_sweep_prunes_logs_nested_runs_and_retrains_the_best(
    sweep_suite: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sweep", "--study", "tiny", "--config", str(sweep_suite)]) == 0
    out = capsys.readouterr().out
    assert "3 trials: 2 complete, 1 pruned" in out

    study = _study(sweep_suite)
    states = {t.number: t.state.name for t in study.trials}
    assert states == {0: "COMPLETE", 1: "COMPLETE", 2: "PRUNED"}
    assert len(study.trials[2].intermediate_values) == 1  # stopped after its first epoch

    (parent,) = _runs(sweep_suite, "sweep")
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["n_trials_complete"] == 2
    assert parent.data.metrics["n_trials_pruned"] == 1
    best = min((t for t in study.trials if t.state.name == "COMPLETE"), key=lambda t: t.value)
    assert parent.data.metrics["best_value"] == pytest.approx(best.value)
    assert parent.data.params["best.train.lr"] == str(best.params["train.lr"])

    trials = _runs(sweep_suite, "trial")
    assert len(trials) == 3
    by_number = {int(r.data.tags["harness.trial_number"]): r for r in trials}
    for number, run in by_number.items():
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.status == "FINISHED"
        assert run.data.tags["harness.trial_state"] == states[number]
        assert study.trials[number].user_attrs["mlflow_run_id"] == run.info.run_id
        assert run.data.params["train.lr"] == str(study.trials[number].params["train.lr"])
    assert by_number[2].data.metrics["epochs_run"] == 1
    assert by_number[0].data.metrics["objective"] == pytest.approx(study.trials[0].value)

    client = _client(sweep_suite)
    listed = {a.path for a in client.list_artifacts(parent.info.run_id, "optuna")}
    assert {"optuna/trials.json", "optuna/best_trial.json", "optuna/importances.json",
            "optuna/optimization_history.html", "optuna/intermediate_values.html"} <= listed
    rows = json.loads(Path(client.download_artifacts(parent.info.run_id, "optuna/trials.json")).read_text())
    assert [r["state"] for r in rows] == ["COMPLETE", "COMPLETE", "PRUNED"]
    assert not _runs(sweep_suite, "train")  # trials never pose as experiment runs

    # The report reads the real sweep (not only the fixtures' fake ones).
    assert main(["report", "--config", str(sweep_suite)]) == 0
    html = (sweep_suite.parent / "reports" / "index.html").read_text()
    assert "<h3>Study tiny</h3>" in html
    assert parent.info.run_id in html

    # --best reads the storage; --retrain-best trains that spec as a normal run, identically.
    assert main(["sweep", "--study", "tiny", "--config", str(sweep_suite), "--best"]) == 0
    assert f"best: trial {best.number}, value {best.value:.4f}" in capsys.readouterr().out
    assert main(["sweep", "--study", "tiny", "--config", str(sweep_suite), "--retrain-best"]) == 0
    (retrained,) = _runs(sweep_suite, "train")
    assert retrained.data.tags["harness.experiment"] == "tiny-best"
    assert retrained.data.tags["harness.from_trial"] == str(best.number)
    trial_run = by_number[best.number]
    for metric in ("final_val_accuracy", "final_val_macro_f1", "val_loss"):  # bit-identical on CPU
        assert retrained.data.metrics[metric] == trial_run.data.metrics[metric]

    # The budget is met: a rerun adds no trial, only a fresh summary.
    assert main(["sweep", "--study", "tiny", "--config", str(sweep_suite)]) == 0
    assert len(_study(sweep_suite).trials) == 3
    assert len(_runs(sweep_suite, "trial")) == 3


def _sweep_cmd(suite: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "harness", "sweep", "--study", "tiny", "--config", str(suite), *extra]


def _wait_for(proc: subprocess.Popen, needle: str, timeout: float = 240) -> str:
    """Read the process's stderr until `needle` appears; returns what was read."""
    seen = []
    deadline = time.monotonic() + timeout
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if needle in line:
            return "".join(seen)
    raise AssertionError(f"never saw {needle!r}:\n{''.join(seen)}")


@pytest.mark.parametrize(
    ("sig", "point"),
    [(signal.SIGKILL, "mid-epoch"), (signal.SIGTERM, "mid-epoch"), (signal.SIGKILL, "between trials")],
    ids=["SIGKILL-mid-epoch", "SIGTERM-mid-epoch", "SIGKILL-between-trials"],
)
def test_interrupted_sweep_resumes_without_repeating_finished_trials(
    sweep_suite: Path, sig: signal.Signals, point: str
) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(_sweep_cmd(sweep_suite), stderr=subprocess.PIPE, text=True, env=env, cwd=sweep_suite.parent)
    _wait_for(proc, "trial 0 COMPLETE")
    if point == "mid-epoch":
        _wait_for(proc, "epoch   1/3")  # trial 1 is training
    proc.send_signal(sig)
    proc.wait(timeout=60)
    assert proc.returncode == (-9 if sig == signal.SIGKILL else 130)
    study = _study(sweep_suite)
    assert study.trials[0].state.name == "COMPLETE"
    if point == "mid-epoch":  # SIGKILL leaves the trial RUNNING for the next invocation to reap
        assert study.trials[1].state.name == ("RUNNING" if sig == signal.SIGKILL else "FAIL")

    rerun = subprocess.run(_sweep_cmd(sweep_suite), capture_output=True, text=True, env=env, cwd=sweep_suite.parent)
    assert rerun.returncode == 0, rerun.stderr
    assert "trial 0:" not in rerun.stderr  # trial 0 was not run again
    study = _study(sweep_suite)
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 3
    assert all(t.state.name in ("COMPLETE", "PRUNED", "FAIL") for t in study.trials)
    for failed in (t for t in study.trials if t.state.name == "FAIL"):  # re-run with the same params
        retry = next(t for t in finished if t.system_attrs.get("failed_trial") == failed.number)
        assert retry.params == failed.params
    if point == "mid-epoch":
        assert study.trials[1].state.name == "FAIL"

    runs_by_trial: dict[int, list] = {}
    for run in _runs(sweep_suite, "trial"):
        runs_by_trial.setdefault(int(run.data.tags["harness.trial_number"]), []).append(run)
    for t in finished:  # exactly one FINISHED run per finished trial
        assert [r.info.status for r in runs_by_trial[t.number]] == ["FINISHED"]
    for t in study.trials:
        if t.state.name == "FAIL" and t.number in runs_by_trial:
            assert [r.info.status for r in runs_by_trial[t.number]] == [
                "FAILED" if sig == signal.SIGKILL else "KILLED"
            ]
            assert runs_by_trial[t.number][0].data.tags["harness.trial_state"] == "FAIL"
    every = [r for rs in runs_by_trial.values() for r in rs] + _runs(sweep_suite, "sweep")
    assert all(r.info.status != "RUNNING" for r in every)


@pytest.mark.parametrize(("workers", "trials"), [(2, 4), (4, 4)])
def test_local_workers_share_the_budget_and_lose_no_trial(sweep_suite: Path, workers: int, trials: int) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(_sweep_cmd(sweep_suite, "--trials", str(trials), "--workers", str(workers)),
                          capture_output=True, text=True, env=env, cwd=sweep_suite.parent, timeout=600)
    assert done.returncode == 0, done.stderr
    assert all(f"[w{i}]" in done.stderr for i in range(workers))
    study = _study(sweep_suite)
    assert len(study.trials) == trials  # the file lock keeps workers from overshooting --trials
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials)
    assert len({t.user_attrs["harness.pid"] for t in study.trials}) >= 2  # the work was shared
    runs = _runs(sweep_suite, "trial")
    numbers = sorted(int(r.data.tags["harness.trial_number"]) for r in runs)
    assert numbers == list(range(trials))  # each trial exactly once in MLflow
    assert sorted(r.info.run_id for r in runs) == sorted(t.user_attrs["mlflow_run_id"] for t in study.trials)
    assert all(r.info.status == "FINISHED" for r in runs)
    assert "database is locked" not in done.stderr


def test_timeout_and_a_changed_space_is_refused(sweep_suite: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A timeout that expires while the data loads: the study is created, no trial starts.
    assert main(["sweep", "--study", "tiny", "--config", str(sweep_suite), "--timeout", "0.01"]) == 0
    assert "timeout reached: no new trials" in capsys.readouterr().err
    assert _study(sweep_suite).trials == [] or all(t.state.name == "WAITING" for t in _study(sweep_suite).trials)
    (parent,) = _runs(sweep_suite, "sweep")
    assert parent.info.status == "FINISHED"

    # The same study name with another space would mix incomparable trials: refused.
    text = sweep_suite.read_text().replace("high: 0.5}", "high: 0.4}")
    sweep_suite.write_text(text)
    assert main(["sweep", "--study", "tiny", "--config", str(sweep_suite)]) == 2
    err = capsys.readouterr().err
    assert "study 'tiny.tiny' in the Optuna storage was made with another search space" in err
    assert "Traceback" not in err

    for bad, message in ((["--trials", "0"], "--trials must be at least 1"),
                         (["--workers", "0"], "--workers must be at least 1"),
                         (["--storage", "postgresql://nobody@127.0.0.1:1/none"], "cannot open Optuna storage")):
        assert main(["sweep", "--study", "tiny", "--config", str(sweep_suite), *bad]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


RESUMABLE = """
studies:
  tiny:
    experiment: plain
    objective: val_loss
    trials: 1
    base: {train: {epochs: 4, checkpoint_every: 1}}
    enqueue:
      - {train.lr: 0.002}
    space:
      train.lr: {type: float, low: 1.0e-4, high: 0.01, log: true}
"""


@pytest.mark.slow
def test_a_trial_retried_after_a_crash_continues_from_its_checkpoint(tmp_path: Path, tiny_data: Path) -> None:
    suite = _suite_with(tmp_path, tiny_data, RESUMABLE)
    marker = tmp_path / "paused"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    pause = {"HARNESS_TEST_PAUSE_AT": "checkpointed#2", "HARNESS_TEST_PAUSE_FILE": str(marker)}
    proc = subprocess.Popen(_sweep_cmd(suite), stderr=subprocess.DEVNULL, env={**env, **pause}, cwd=tmp_path)
    deadline = time.monotonic() + 240
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "the trial never saved its second checkpoint"
    proc.kill()  # the machine is lost after epoch 2's checkpoint
    proc.wait(timeout=60)

    rerun = subprocess.run(_sweep_cmd(suite), capture_output=True, text=True, env=env, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    study = _study(suite)
    failed, retry = study.trials[0], study.trials[1]
    assert failed.state.name == "FAIL" and retry.state.name == "COMPLETE"
    assert retry.system_attrs.get("failed_trial") == 0 and retry.params == failed.params
    runs = {int(r.data.tags["harness.trial_number"]): r for r in _runs(suite, "trial")}
    assert runs[0].info.status == "FAILED" and runs[1].info.status == "FINISHED"
    assert runs[1].data.tags["harness.resumed_from"].startswith(f"run {runs[0].info.run_id} after epoch 2")
    assert "resuming after epoch 2" in rerun.stderr
    steps = sorted(m.step for m in _client(suite).get_metric_history(runs[1].info.run_id, "val_loss"))
    assert steps == [3, 4]  # epochs 1-2 came from the checkpoint, not trained again
    assert runs[1].data.metrics["epochs_run"] == 4
