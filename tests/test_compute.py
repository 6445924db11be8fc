"""Compute counted by the harness: FLOPs per image, a training budget, evaluation every N epochs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import tiny_suite_text
from mlflow import MlflowClient

from harness.cli.main import main
from harness.core.errors import SpecError
from harness.suite.load import load_suite
from harness.train.flops import ImageFlops, budget_epochs, count_flops


def _conv_net() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.Dropout(0.5), torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 3),
    )  # fmt: skip


def test_counting_has_no_side_effect_on_weights_statistics_or_random_streams() -> None:
    torch.manual_seed(0)
    net = _conv_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rng = torch.get_rng_state()
    flops = count_flops(net, channels=1, size=8)
    assert torch.equal(rng, torch.get_rng_state())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert net.training  # the model's own mode is untouched
    # conv 1->4 3x3 on 8x8: 2*9*4*64 = 4,608 FLOPs; linear 256->3: 1,536. Backward: both layers'
    # weight gradients and the linear layer's input gradient (the image needs none).
    conv, linear = 2 * 9 * 4 * 64, 2 * 256 * 3
    assert flops.evaluate == conv + linear
    assert flops.train == (conv + linear) + (conv + 2 * linear)


def test_evaluation_counts_every_view_of_test_time_augmentation() -> None:
    net = _conv_net()
    plain, flip, crops = (count_flops(net, 1, 8, tta).evaluate for tta in ("none", "flip", "crops"))
    assert flip == 2 * plain and crops == 10 * plain


def test_a_budget_is_the_largest_whole_number_of_epochs_within_it() -> None:
    flops = ImageFlops(train=1e9, evaluate=0.3e9)  # 1 GFLOP an image
    assert budget_epochs(10.0, flops, 1000) == 10  # 1 TFLOP an epoch
    assert budget_epochs(10.9, flops, 1000) == 10
    with pytest.raises(SpecError, match=r"0.5 TFLOP is less than one epoch"):
        budget_epochs(0.5, flops, 1000)


def test_budget_and_eval_every_stay_out_of_the_hash_at_their_defaults(tmp_path: Path, tiny_data: Path) -> None:
    path = tmp_path / "experiments.yaml"
    path.write_text(tiny_suite_text(tiny_data))
    plain = load_suite(path).experiments["plain"]
    path.write_text(tiny_suite_text(tiny_data).replace("channels_last: true}", "channels_last: true, eval_every: 1}"))
    assert load_suite(path).experiments["plain"].spec_hash() == plain.spec_hash()
    path.write_text(tiny_suite_text(tiny_data).replace("channels_last: true}", "channels_last: true, budget_tflop: 1}"))
    assert load_suite(path).experiments["plain"].spec_hash() != plain.spec_hash()


def _run(tmp_path: Path, tiny_data: Path, train: str) -> tuple[MlflowClient, object]:
    path = tmp_path / "experiments.yaml"
    text = tiny_suite_text(tiny_data).replace("epochs: 2, ", "")
    path.write_text(text.replace("channels_last: true}", f"channels_last: true, {train}}}"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["run", "plain", "--config", str(path), "--tracking-uri", uri]) == 0
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    return client, run


@pytest.mark.slow
def test_a_run_logs_its_compute_and_stays_within_its_budget(tmp_path: Path, tiny_data: Path) -> None:
    client, run = _run(tmp_path, tiny_data, "epochs: 50, budget_tflop: 0.002")
    m, params = run.data.metrics, run.data.params
    per_epoch = m["gflop_per_train_image"] * 96 / 1e3  # 96 images an epoch, in TFLOP
    epochs = int(params["budget.epochs"])
    assert epochs == int(0.002 / per_epoch) and 1 <= epochs < 50  # the budget wins over epochs: 50
    assert m["epochs_run"] == epochs and len(client.get_metric_history(run.info.run_id, "train_loss")) == epochs
    assert m["train_tflop"] == pytest.approx(epochs * per_epoch) and m["train_tflop"] <= 0.002
    assert m["train_gflop_per_s"] > 0 and m["eval_tflop"] > 0


@pytest.mark.slow
def test_eval_every_scores_only_those_epochs_and_always_the_last(tmp_path: Path, tiny_data: Path) -> None:
    client, run = _run(tmp_path, tiny_data, "epochs: 5, eval_every: 2")
    steps = [point.step for point in client.get_metric_history(run.info.run_id, "val_accuracy")]
    assert steps == [2, 4, 5]
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 5
    m = run.data.metrics
    per_view = m["eval_tflop"] / 3  # three validation passes of the same images
    assert m["final_val_accuracy"] == client.get_metric_history(run.info.run_id, "val_accuracy")[-1].value
    assert per_view > 0


def test_the_pareto_front_keeps_the_runs_nothing_cheaper_beats() -> None:
    from harness.report.compute import pareto_front

    points = [(10.0, 0.60), (5.0, 0.55), (20.0, 0.58), (30.0, 0.65), (5.0, 0.50), (40.0, 0.64)]
    assert pareto_front(points) == [(5.0, 0.55), (10.0, 0.60), (30.0, 0.65)]


def test_an_older_run_is_counted_after_the_fact_from_its_spec(tmp_path: Path, tiny_data: Path) -> None:
    from datetime import UTC, datetime

    import pandas as pd

    from harness.models.build import build_network
    from harness.report.compute import COUNTED, LOGGED, UNKNOWN, spent_by
    from harness.tracking.fetch import RunArtifacts
    from harness.tracking.read import RunRecord

    path = tmp_path / "experiments.yaml"
    path.write_text(tiny_suite_text(tiny_data))
    spec = load_suite(path).experiments["residual"]
    history = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [1.0, 0.9, 0.8]})
    counts = {"labels": ["a", "b", "c"], "train": [5, 5, 5], "sampled_per_epoch": [30, 30, 36]}
    artifacts = RunArtifacts(class_counts=counts, spec=spec.model_dump(mode="json"))

    def record(metrics: dict[str, float], with_artifacts: RunArtifacts | None) -> RunRecord:
        return RunRecord("r", "residual", {}, {}, metrics, history, datetime.now(UTC), None, with_artifacts)

    expected = count_flops(build_network(spec.model, num_classes=3, data=spec.data), 3, 32).train_tflop(96 * 3)
    counted = spent_by(record({"final_val_accuracy": 0.5}, artifacts))
    assert counted.source == COUNTED and counted.train_tflop == pytest.approx(expected)
    assert spent_by(record({"train_tflop": 1.5}, artifacts)).source == LOGGED
    assert spent_by(record({}, None)).source == UNKNOWN
