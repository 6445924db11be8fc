"""Resume from the last checkpoint: a run killed with SIGKILL and started again continues in the
same MLflow run and ends bit for bit where an uninterrupted run ends; damaged checkpoints, another
spec's checkpoint and a full disk are caught and said."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest

from harness.cli.main import main
from tests.conftest import tiny_suite_text
from tests.test_faults import _start, _wait_for

# Every piece of state a fit carries between epochs: BN statistics, SGD momentum, a one-cycle
# schedule's position, the weight average, augmentation and mixup random streams.
EXTRA = """
  long:
    description: every kind of state a resume must restore
    model: {name: resnet, depths: [1, 1], widths: [8, 16], stem_width: 8}
    augment: {crop: [0.8, 1.0], flip: true, rotate: 10, erasing: 0.5, mixup: 0.2}
    train: {epochs: 5, checkpoint_every: 1, optimizer: sgd, lr: 0.05, schedule: onecycle, ema: 0.9,
            label_smoothing: 0.1}
"""
EPOCH_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_balanced_accuracy")


def _project(folder: Path, tiny_data: Path, empty_store: Path | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "experiments.yaml").write_text(tiny_suite_text(tiny_data, EXTRA))
    if empty_store is not None:
        shutil.copy(empty_store, folder / "mlflow.db")
    return folder / "experiments.yaml"


def _args(suite: Path) -> list[str]:
    return ["run", "long", "--config", str(suite), "--tracking-uri", f"sqlite:///{suite.parent / 'mlflow.db'}"]


def _runs(suite: Path) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{suite.parent / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny")
    return client.search_runs([experiment.experiment_id]) if experiment else []


def _record(suite: Path, run_id: str) -> tuple[dict[str, list[float]], dict]:
    """A run's per-epoch metrics (the last value logged at each step) and its final weights."""
    import torch
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{suite.parent / 'mlflow.db'}")
    curves = {}
    for key in EPOCH_METRICS:
        by_step = {m.step: m.value for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.timestamp)}
        curves[key] = [by_step[step] for step in sorted(by_step)]
    weights = client.download_artifacts(run_id, "model/weights.pt", str(suite.parent / run_id))
    return curves, torch.load(weights, weights_only=True)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path) -> tuple[dict, dict]:
    suite = _project(tmp_path_factory.mktemp("straight"), tiny_data)
    assert main(_args(suite)) == 0
    (run,) = _runs(suite)
    return _record(suite, run.info.run_id)


@pytest.mark.slow
def test_kill_9_after_a_checkpoint_resumes_the_same_run_bit_for_bit(
    tmp_path: Path, tiny_data: Path, uninterrupted: tuple[dict, dict]
) -> None:
    import torch

    suite = _project(tmp_path / "killed", tiny_data)
    log = tmp_path / "first.log"
    proc, marker = _start(_args(suite), log, pause_at="checkpointed#2")  # epoch 2 saved, 3 not begun
    _wait_for(marker, proc, log)
    proc.kill()
    proc.wait(timeout=60)
    (killed,) = _runs(suite)
    assert killed.info.status == "RUNNING"  # SIGKILL: nothing could end it
    local = sorted(p.name for p in (suite.parent / ".cache/harness/checkpoints" / killed.info.run_id).iterdir())
    assert local == ["epoch-00001.json", "epoch-00001.pt", "epoch-00002.json", "epoch-00002.pt"]

    assert main(_args(suite)) == 0
    (run,) = _runs(suite)  # the same run, continued: no second run
    assert run.info.run_id == killed.info.run_id and run.info.status == "FINISHED"
    assert run.data.tags["harness.resumed_from"].startswith(f"run {run.info.run_id} after epoch 2")
    assert "harness.failure" not in run.data.tags
    curves, weights = _record(suite, run.info.run_id)
    expected_curves, expected_weights = uninterrupted
    assert curves == expected_curves  # every epoch's loss and accuracy, exactly
    assert weights.keys() == expected_weights.keys()
    assert all(torch.equal(weights[k], expected_weights[k]) for k in weights)
    assert run.data.metrics["epochs_run"] == 5
    # Finished: its local checkpoints are gone; the store keeps the latest one.
    assert not (suite.parent / ".cache/harness/checkpoints" / run.info.run_id).exists()
    from mlflow import MlflowClient

    stored = MlflowClient(f"sqlite:///{suite.parent / 'mlflow.db'}").list_artifacts(run.info.run_id, "checkpoint")
    assert sorted(Path(a.path).name for a in stored) == ["state.json", "state.pt"]
    info = json.loads(Path(MlflowClient(f"sqlite:///{suite.parent / 'mlflow.db'}").download_artifacts(
        run.info.run_id, "checkpoint/state.json", str(tmp_path))).read_text())  # fmt: skip
    assert info["epoch"] == 4 and info["run_id"] == run.info.run_id


def _killed_after(tmp_path: Path, tiny_data: Path, checkpoints: int) -> tuple[Path, str]:
    suite = _project(tmp_path / "killed", tiny_data)
    log = tmp_path / "first.log"
    proc, marker = _start(_args(suite), log, pause_at=f"checkpointed#{checkpoints}")
    _wait_for(marker, proc, log)
    proc.kill()
    proc.wait(timeout=60)
    (killed,) = _runs(suite)
    return suite, killed.info.run_id


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "flipped byte", "description deleted"])
def test_a_damaged_latest_checkpoint_falls_back_to_the_one_before(
    tmp_path: Path, tiny_data: Path, uninterrupted: tuple[dict, dict], damage: str, capsys: pytest.CaptureFixture
) -> None:
    import torch

    suite, run_id = _killed_after(tmp_path, tiny_data, 3)
    folder = suite.parent / ".cache/harness/checkpoints" / run_id
    latest = folder / "epoch-00003.pt"
    data = latest.read_bytes()
    if damage == "truncated":
        latest.write_bytes(data[: len(data) // 2])
    elif damage == "flipped byte":
        latest.write_bytes(data[:-200] + bytes([data[-200] ^ 0xFF]) + data[-199:])
    else:
        latest.with_suffix(".json").unlink()
    assert main(_args(suite)) == 0
    out = "".join(capsys.readouterr())
    if damage != "description deleted":  # without its description the file is simply not a candidate
        assert f"checkpoint {latest}: damaged or truncated" in out
    assert "resuming after epoch 2 from" in out
    (run,) = _runs(suite)
    assert run.info.run_id == run_id and run.info.status == "FINISHED"
    curves, weights = _record(suite, run_id)
    assert curves == uninterrupted[0]
    assert all(torch.equal(weights[k], uninterrupted[1][k]) for k in weights)


@pytest.mark.slow
def test_a_lost_machine_resumes_from_the_stores_checkpoint(
    tmp_path: Path, tiny_data: Path, uninterrupted: tuple[dict, dict], capsys: pytest.CaptureFixture
) -> None:
    suite, run_id = _killed_after(tmp_path, tiny_data, 2)
    shutil.rmtree(suite.parent / ".cache/harness/checkpoints")  # another machine: no local files
    assert main(_args(suite)) == 0
    assert f"resuming after epoch 2 from runs:/{run_id}/checkpoint" in "".join(capsys.readouterr())
    (run,) = _runs(suite)
    assert run.info.run_id == run_id and _record(suite, run_id)[0] == uninterrupted[0]


@pytest.mark.slow
def test_a_checkpoint_of_another_spec_is_refused(tmp_path: Path, tiny_data: Path, capsys: pytest.CaptureFixture) -> None:
    suite, run_id = _killed_after(tmp_path, tiny_data, 2)
    for info in (suite.parent / ".cache/harness/checkpoints" / run_id).glob("*.json"):
        described = json.loads(info.read_text())
        info.write_text(json.dumps({**described, "key": "0123456789abcdef"}))
    _drop_store_checkpoint(suite, run_id)
    assert main(_args(suite)) == 0
    out = "".join(capsys.readouterr())
    assert "written for another spec (run key 0123456789abcdef" in out and "refused" in out
    statuses = sorted(r.info.status for r in _runs(suite))
    assert statuses == ["FAILED", "FINISHED"]  # no usable checkpoint: a clean start in a new run


def _drop_store_checkpoint(suite: Path, run_id: str) -> None:
    for folder in (suite.parent / "mlartifacts").rglob("checkpoint"):
        if run_id in str(folder):
            shutil.rmtree(folder)


@pytest.mark.slow
def test_a_full_disk_while_checkpointing_fails_the_run_and_keeps_the_last_checkpoint(
    tmp_path: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import harness.runs.checkpoint as checkpoint

    suite = _project(tmp_path / "full", tiny_data)
    real = checkpoint.atomic_write_bytes
    calls = {"n": 0}

    def filling(path: Path, data: bytes) -> None:
        calls["n"] += 1
        if calls["n"] == 3:  # the third checkpoint finds the disk full
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(checkpoint, "atomic_write_bytes", filling)
    assert main(_args(suite)) == 2
    err = capsys.readouterr().err
    assert "cannot save the checkpoint of epoch 3: No space left on device" in err and "Traceback" not in err
    (run,) = _runs(suite)
    assert run.info.status == "FAILED" and "No space left on device" in run.data.tags["harness.failure"]
    folder = suite.parent / ".cache/harness/checkpoints" / run.info.run_id
    assert sorted(p.name for p in folder.iterdir()) == [
        "epoch-00001.json", "epoch-00001.pt", "epoch-00002.json", "epoch-00002.pt",
    ]  # fmt: skip
    monkeypatch.setattr(checkpoint, "atomic_write_bytes", real)
    assert main(_args(suite)) == 0  # space again: it resumes after epoch 2
    assert "resuming after epoch 2" in "".join(capsys.readouterr())
    (again,) = _runs(suite)
    assert again.info.run_id == run.info.run_id and again.info.status == "FINISHED"


def test_the_checkpoint_interval_is_not_in_the_spec_hash(tiny_data: Path, tmp_path: Path) -> None:
    from harness.suite.load import load_suite

    suite = load_suite(_project(tmp_path, tiny_data))
    spec = suite.experiments["long"]
    other = spec.model_copy(update={"train": spec.train.model_copy(update={"checkpoint_every": 3})})
    assert spec.spec_hash() == other.spec_hash()
    assert "train.checkpoint_every" not in spec.flat_params()
    auto = spec.train.model_copy(update={"checkpoint_every": None})
    assert [auto.model_copy(update={"epochs": n}).checkpoint_interval() for n in (2, 15, 40, 80)] == [1, 1, 4, 8]
    assert spec.train.model_copy(update={"checkpoint_every": 0}).checkpoint_interval() == 0
    assert spec.train.checkpoint_min_seconds() == 0.0 and auto.checkpoint_min_seconds() == 60.0


@pytest.mark.parametrize(("min_seconds", "saves"), [(60.0, 0), (0.0, 4)])
def test_the_automatic_interval_waits_a_minute_between_checkpoints(
    tmp_path: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch, min_seconds: float, saves: int
) -> None:
    """checkpoint_every: null checkpoints every epochs // 10 epochs, but never within a minute
    of the last one: a seconds-long run writes none (it costs it nothing); with the wait at zero
    the same run checkpoints after every epoch but the last."""
    import harness.runs.checkpoint as checkpoint
    import harness.spec.schema as schema

    monkeypatch.setattr(schema, "AUTO_CHECKPOINT_MIN_S", min_seconds)
    epochs: list[int] = []
    real = checkpoint.Checkpointer.save
    monkeypatch.setattr(checkpoint.Checkpointer, "save", lambda self, state: (epochs.append(state.epoch), real(self, state)))
    tmp_path.mkdir(exist_ok=True)
    suite = tmp_path / "experiments.yaml"
    suite.write_text(tiny_suite_text(tiny_data, EXTRA.replace("checkpoint_every: 1, ", "")))
    assert main(_args(suite)) == 0
    assert epochs == list(range(1, saves + 1))


def test_cuda_out_of_memory_names_the_batch_size(
    tmp_path: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The error a too-large batch gives on a GPU (raised here on the CPU: same path)."""
    import torch

    import harness.train.loop as loop

    def out_of_memory(*args: object, **kwargs: object) -> None:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(loop, "train_one_epoch", out_of_memory)
    suite = _project(tmp_path, tiny_data)
    assert main(_args(suite)) == 2
    err = capsys.readouterr().err
    assert "CUDA out of memory at train.batch_size 32 (eval_batch_size 512): lower them" in err
    assert "Traceback" not in err
    (run,) = _runs(suite)
    assert run.info.status == "FAILED" and "train.batch_size 32" in run.data.tags["harness.failure"]
