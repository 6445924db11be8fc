"""Specs that differ only in how a model is scored re-score a finished run's weights, not retrain.

The ablation ladder's TTA rung is its rung before plus test-time augmentation: training it again
would give the same weights, so `harness run` scores the logged ones (runner.rescore_and_log).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli.main import main
from harness.suite.load import load_suite
from tests.conftest import tiny_suite_text

EXTRA = """
  plain_flip:
    description: the plain CNN scored with flip TTA
    extends: plain
    train: {tta: flip, eval_batch_size: 16}
"""


def _suite(tmp_path: Path, tiny_data: Path) -> Path:
    path = tmp_path / "experiments.yaml"
    path.write_text(tiny_suite_text(tiny_data, EXTRA))
    return path


def _runs(uri: str) -> dict[str, list]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("tiny")
    by_name: dict[str, list] = {}
    for run in client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"]):
        by_name.setdefault(run.info.run_name, []).append(run)
    return by_name


def _text(uri: str, run_id: str, path: str, folder: Path) -> str:
    from mlflow import MlflowClient

    return Path(MlflowClient(tracking_uri=uri).download_artifacts(run_id, path, str(folder))).read_text()


def test_weights_hash_ignores_only_the_evaluation_settings(tmp_path: Path, tiny_data: Path) -> None:
    suite = load_suite(_suite(tmp_path, tiny_data))
    plain, flip = suite.experiments["plain"], suite.experiments["plain_flip"]
    assert plain.spec_hash() != flip.spec_hash()  # a different run: it is scored differently
    assert plain.weights_hash() == flip.weights_hash()  # ... of the same weights
    for section, change in (("train", {"lr": 0.002}), ("train", {"seed": 1}), ("augment", {"flip": True})):
        other = plain.model_copy(update={section: getattr(plain, section).model_copy(update=change)})
        assert other.weights_hash() != plain.weights_hash(), change


@pytest.mark.slow
def test_an_eval_only_variant_rescores_the_weights_exactly_as_training_would(
    tmp_path: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlflow import MlflowClient

    suite = _suite(tmp_path, tiny_data)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["--config", str(suite), "--tracking-uri", uri]
    assert main(["run", "plain", *args]) == 0

    import harness.runs.training

    def no_training(*_a: object, **_k: object) -> None:
        raise AssertionError("a re-scored run must not train")

    with monkeypatch.context() as patch:
        patch.setattr(harness.runs.training, "fit", no_training)
        capsys.readouterr()
        assert main(["run", "plain_flip", *args]) == 0
    captured = capsys.readouterr()
    assert "re-scoring the weights of finished run" in captured.err and "rescored" in captured.out

    # The same spec trained from scratch (--force): the same weights, hence the same scores.
    assert main(["run", "plain_flip", "--force", *args]) == 0
    runs = _runs(uri)
    source, (rescored, retrained) = runs["plain"][0], runs["plain_flip"]
    assert rescored.data.tags["harness.weights_from"] == source.info.run_id
    assert "harness.weights_from" not in retrained.data.tags
    assert rescored.data.tags["harness.weights_key"] == source.data.tags["harness.weights_key"]
    assert rescored.data.tags["harness.run_key"] == retrained.data.tags["harness.run_key"]
    assert rescored.data.tags["harness.run_key"] != source.data.tags["harness.run_key"]
    assert rescored.data.params["train.tta"] == "flip"
    for name in ("final_val_accuracy", "final_val_balanced_accuracy", "final_val_macro_f1"):
        assert rescored.data.metrics[name] == retrained.data.metrics[name], name
    assert _text(uri, rescored.info.run_id, "eval/predictions.csv", tmp_path / "a") == _text(
        uri, retrained.info.run_id, "eval/predictions.csv", tmp_path / "b"
    )
    client = MlflowClient(tracking_uri=uri)

    def curve(run: object, key: str) -> list[tuple[int, float]]:
        return sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))

    # The validation loss (of the mean softmax over an image and its mirror) to the last digit,
    # and not the source's: the flip was applied, to the same weights.
    assert curve(rescored, "val_loss") == curve(retrained, "val_loss")[-1:]
    assert curve(rescored, "val_loss")[0][1] != curve(source, "val_loss")[-1][1]
    # Training figures are the source's; the validation curve has the last epoch only.
    for name in ("final_train_accuracy", "n_parameters", "train_seconds", "train_images_per_second"):
        assert rescored.data.metrics[name] == source.data.metrics[name], name
    assert rescored.data.metrics["rescore_seconds"] > 0
    assert curve(rescored, "train_accuracy") == curve(source, "train_accuracy")
    assert curve(rescored, "val_accuracy") == [(2, rescored.data.metrics["final_val_accuracy"])]
    # Its weights are logged too, so `harness eval` can score this run like any other.
    artifacts = {a.path for a in client.list_artifacts(rescored.info.run_id, "model")}
    assert "model/weights.pt" in artifacts

    # The report reads it as any other run (its curve is the source's, with one validation point).
    assert main(["report", *args]) == 0
    assert "plain_flip" in (tmp_path / "reports" / "index.html").read_text()

    # The rescored run is finished with its own run key: running it again skips.
    capsys.readouterr()
    assert main(["run", "plain_flip", *args]) == 0
    assert "skipped" in capsys.readouterr().out
    assert len(_runs(uri)["plain_flip"]) == 2


@pytest.mark.slow
def test_unreadable_source_weights_mean_training_not_failure(
    tmp_path: Path, tiny_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlflow import MlflowClient

    suite = _suite(tmp_path, tiny_data)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["--config", str(suite), "--tracking-uri", uri]
    assert main(["run", "plain", *args]) == 0
    source = _runs(uri)["plain"][0]
    weights = Path(MlflowClient(tracking_uri=uri).download_artifacts(source.info.run_id, "model/weights.pt", str(tmp_path)))
    stored = Path(source.info.artifact_uri.removeprefix("file://")) / "model" / "weights.pt"
    assert stored.exists() and weights.exists()
    stored.write_bytes(b"not a state dict")
    capsys.readouterr()
    assert main(["run", "plain_flip", *args]) == 0
    err = capsys.readouterr().err
    assert "cannot re-score finished run" in err and "training instead" in err
    (run,) = _runs(uri)["plain_flip"]
    assert run.info.status == "FINISHED" and "harness.weights_from" not in run.data.tags
