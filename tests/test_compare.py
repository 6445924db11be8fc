"""`harness compare`: two training runs paired on their validation images, in one store or two."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mlflow_fixtures import log_fake_run

from harness.analysis.stats import mcnemar_exact, paired_bootstrap
from harness.cli.main import main
from tests.conftest import tiny_suite_text

SUITE = "tiny"  # tiny_suite's MLflow experiment


def _uri(folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}"


def _correct(uri: str, run_id: str, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    from mlflow import MlflowClient

    path = MlflowClient(tracking_uri=uri).download_artifacts(run_id, "eval/predictions.csv", str(folder))
    table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.int64)
    return table[:, 1], table[:, 1] == table[:, 2]


def _points(value: float) -> str:
    return f"{100 * value:+.1f}".replace("-", "−")


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path) -> dict[str, object]:
    """Store one holds a baseline and a better variant; store two a probe of the same images."""
    root = tmp_path_factory.mktemp("compare")
    tiny_suite = root / "experiments.yaml"
    tiny_suite.write_text(tiny_suite_text(tiny_data))
    one, two = _uri(root / "one"), _uri(root / "two")
    ids = {
        "baseline": log_fake_run(one, SUITE, "baseline", seed=1, quality=0.40),
        "variant": log_fake_run(one, SUITE, "variant", seed=2, quality=0.55),
        "seven": log_fake_run(one, SUITE, "seven", seed=3, n_classes=7),
        "blind": log_fake_run(one, SUITE, "blind", seed=4, omit_artifacts=("eval/predictions.csv",)),
        "probe": log_fake_run(two, SUITE, "probe", seed=5, quality=0.45),
    }
    return {"one": one, "two": two, "ids": ids, "suite": tiny_suite}


def _compare(stores: dict[str, object], *args: str) -> list[str]:
    return ["compare", *args, "--config", str(stores["suite"]), "--tracking-uri", str(stores["one"])]


def test_compare_prints_the_paired_interval_and_mcnemar(
    stores: dict[str, object], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_compare(stores, "baseline", "variant")) == 0
    out = capsys.readouterr().out
    ids = stores["ids"]
    y, a = _correct(str(stores["one"]), ids["baseline"], tmp_path / "a")
    _, b = _correct(str(stores["one"]), ids["variant"], tmp_path / "b")
    d, test = paired_bootstrap(y, b, a), mcnemar_exact(b, a)
    assert test.b > test.c  # the variant is the better one: B − A is positive
    assert f"A  baseline  accuracy {100 * a.mean():5.1f}%" in out and ids["baseline"] in out
    assert f"B  variant   accuracy {100 * b.mean():5.1f}%" in out and ids["variant"] in out
    interval = f"accuracy {_points(d.accuracy.estimate)} [{_points(d.accuracy.low)}, {_points(d.accuracy.high)}]"
    assert f"over {y.size:,} paired validation images" in out and interval in out
    assert f"{test.b} images only B gets right, {test.c} only A, p " in out
    # The report's form: three decimals, "p < 0.001" below that.
    p_text = f"p = {test.p_value:.3f}" if test.p_value >= 0.001 else "p < 0.001"
    assert out.rstrip().endswith(p_text)
    # Swapping A and B mirrors the difference.
    assert main(_compare(stores, "variant", "baseline")) == 0
    swapped = capsys.readouterr().out
    assert f"accuracy {_points(-d.accuracy.estimate)} [" in swapped
    assert f"{test.c} images only B gets right, {test.b} only A" in swapped


def test_compare_across_two_stores_by_name_or_run_id(
    stores: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    ids = stores["ids"]
    two = ["--tracking-uri-b", str(stores["two"])]
    assert main([*_compare(stores, "baseline", "probe"), *two]) == 0
    by_name = capsys.readouterr().out
    assert main([*_compare(stores, ids["baseline"], ids["probe"]), *two]) == 0
    by_id = capsys.readouterr().out
    assert by_name == by_id
    assert "B  probe" in by_name and f"({stores['two']})" in by_name
    # Without the second store, B is looked for in A's store: not there.
    assert main(_compare(stores, "baseline", "probe")) == 2
    assert "no FINISHED training run of experiment 'probe'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        ("baseline", "seven", "validated on different images"),
        ("baseline", "blind", "has no readable eval/predictions.csv"),
        ("baseline", "baseline", "the same run"),
        ("baseline", "nobody", "no FINISHED training run of experiment 'nobody'"),
    ],
)
def test_compare_refuses_what_cannot_be_paired(
    stores: dict[str, object], capsys: pytest.CaptureFixture[str], a: str, b: str, message: str
) -> None:
    assert main(_compare(stores, a, b)) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_compare_reads_only_and_never_creates_a_store(
    stores: dict[str, object], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere" / "mlflow.db"
    missing.parent.mkdir()
    assert main([*_compare(stores, "baseline", "variant"), "--tracking-uri-b", f"sqlite:///{missing}"]) == 2
    assert "no tracking store there" in capsys.readouterr().err
    assert not missing.exists()
    # A store without the suite's experiment is named as such.
    other = tmp_path / "other"
    log_fake_run(_uri(other), "another-suite", "x", seed=6)
    assert main([*_compare(stores, "baseline", "x"), "--tracking-uri-b", _uri(other)]) == 2
    assert "no experiment 'tiny'" in capsys.readouterr().err
    # Nothing was logged in the store compared from.
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=str(stores["one"]))
    experiment = client.get_experiment_by_name(SUITE)
    assert len(client.search_runs([experiment.experiment_id])) == 4  # the fixture's four runs
