"""The HTML report: its sections, offline embedding, which runs it picks, and pages for gaps."""

from __future__ import annotations

import base64
import io
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow_fixtures import EXAMPLES_PER_ROW, IMAGE_SIZE, ensure_experiment, log_fake_run

from harness.core.errors import TrackingError
from harness.report.imbalance import sampler_groups
from harness.report.page import SECTIONS, ReportSummary, build_report
from harness.suite.load import load_suite
from harness.tracking.read import load_results

EXPERIMENT = "fer-study"
T0 = 1_700_000_000_000  # explicit start times (ms) so "most recent" never depends on timing
SHOWN = ("cnn_baseline", "cnn_baseline_balanced", "resnext")


@dataclass(frozen=True)
class Store:
    root: Path
    uri: str
    run_ids: dict[str, str]  # name -> id of the run the report should show
    stale_id: str  # an older FINISHED cnn_baseline
    newer_failed_id: str  # a newer FAILED cnn_baseline


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    # One sqlite store per module: creating its schema is the slowest step of these tests.
    root = tmp_path_factory.mktemp("report-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    stale = log_fake_run(uri, EXPERIMENT, "cnn_baseline", seed=10, start_time_ms=T0)
    run_ids = {
        "cnn_baseline": log_fake_run(
            uri, EXPERIMENT, "cnn_baseline", comparisons=("imbalance", "architecture"),
            seed=1, start_time_ms=T0 + 1_000,
        ),
        "cnn_baseline_balanced": log_fake_run(
            uri, EXPERIMENT, "cnn_baseline_balanced", sampler="balanced", paper_acc=0.31,
            paper_iteration="2", seed=2, start_time_ms=T0 + 2_000,
        ),
        "resnext": log_fake_run(
            uri, EXPERIMENT, "resnext", model="resnext", comparisons=("architecture",),
            paper_acc=None, paper_iteration="6", seed=3, start_time_ms=T0 + 3_000,
        ),
    }  # fmt: skip
    log_fake_run(uri, EXPERIMENT, "cnn_crashed", status="FAILED", seed=4, start_time_ms=T0 + 4_000)
    newer_failed = log_fake_run(
        uri, EXPERIMENT, "cnn_baseline", status="FAILED", seed=5, start_time_ms=T0 + 5_000
    )
    return Store(root, uri, run_ids, stale, newer_failed)


@pytest.fixture(scope="module")
def report(store: Store) -> tuple[str, ReportSummary]:
    claims = load_suite(Path(__file__).resolve().parents[1] / "experiments.yaml").claims
    summary = build_report(store.uri, EXPERIMENT, store.root / "out" / "report.html", claims=claims)
    return summary.out_path.read_text(encoding="utf-8"), summary


def _section(page: str, anchor: str) -> str:
    start = page.index(f'id="{anchor}"')
    return page[start : page.index("</section>", start)]


def _without_plotlyjs(page: str) -> str:
    from plotly.offline import get_plotlyjs

    bundle = get_plotlyjs()
    return page.replace(bundle, "") if bundle in page else page


def test_page_has_every_section_every_run_and_only_the_untestable_claims_missing(
    report: tuple[str, ReportSummary],
) -> None:
    page, summary = report
    assert summary.out_path.is_file()
    assert summary.n_runs == 3
    # The store has no cnn_residual* runs: two of the study's claims cannot be tested, and the
    # page says so; the ResNeXt-vs-plain claim can.
    assert summary.warnings == [
        "claim 'Residual vs plain CNN' not tested: no finished run of cnn_residual",
        "claim 'Balanced vs imbalanced sampling (residual CNN)' not tested: "
        "no finished run of cnn_residual_balanced or cnn_residual",
    ]
    assert "Not tested: no finished run of cnn_residual." in _section(page, "claims")
    for anchor, heading in SECTIONS:
        assert f'id="{anchor}"' in page
        assert f'href="#{anchor}"' in page, f"contents lacks a link to {heading}"
    for name in SHOWN:
        assert name in _section(page, "summary")
        assert name in _section(page, "learning-curves")


def test_plotly_js_is_inlined_once_and_nothing_is_fetched(
    report: tuple[str, ReportSummary],
) -> None:
    from plotly.offline import get_plotlyjs

    page, _ = report
    assert page.count(get_plotlyjs()[:300]) == 1
    assert not re.search(r"<script[^>]*\bsrc\s*=", page, flags=re.IGNORECASE)
    # plotly.js itself mentions CDN URLs (map tiles) and base64 images may spell "cdn" by
    # chance; everything else on the page must be free of URLs.
    rest = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", _without_plotlyjs(page))
    assert len(rest) < len(page) - 1_000_000
    assert "cdn" not in rest.lower()
    assert not re.search(r"(href|src)\s*=\s*[\"']?https?:", rest, flags=re.IGNORECASE)
    assert len(page) < 10_000_000


def test_confusion_matrices_are_heatmaps_with_class_names(
    report: tuple[str, ReportSummary],
) -> None:
    page, _ = report
    section = _section(page, "confusion")
    assert section.count('"type":"heatmap"') == 3
    for name in SHOWN:
        assert f"{name}: confusion matrix (validation, row-normalised)" in section
    assert '"contempt"' in section and "predicted class" in section and "true class" in section


def test_example_images_are_embedded_as_png_data_uris(report: tuple[str, ReportSummary]) -> None:
    from PIL import Image

    page, _ = report
    sources = re.findall(r"<img[^>]*\bsrc=\"([^\"]+)\"", page)
    assert sources, "no example image on the page"
    assert all(source.startswith("data:image/png;base64,") for source in sources)
    image = Image.open(io.BytesIO(base64.b64decode(sources[0].split(",", 1)[1])))
    assert image.size == (EXAMPLES_PER_ROW * IMAGE_SIZE, 11 * IMAGE_SIZE)
    assert "<span>non_face</span>" in _section(page, "examples")


def test_failed_runs_are_left_out(report: tuple[str, ReportSummary], store: Store) -> None:
    page, _ = report
    table = _section(page, "summary")
    assert table.count("<tr") == 1 + len(SHOWN)  # header row + one row per shown run
    assert "cnn_crashed" not in page
    assert store.newer_failed_id not in page
    assert "FAILED: 2" in page and "FINISHED: 4" in page


def test_most_recent_finished_run_of_a_name_wins(
    store: Store, report: tuple[str, ReportSummary]
) -> None:
    suite = load_results(store.uri, EXPERIMENT, artifacts=False)
    assert {run.experiment: run.run_id for run in suite.runs} == store.run_ids
    assert suite.n_superseded == 1
    assert suite.status_counts == {"FINISHED": 4, "FAILED": 2}
    page, _ = report
    assert store.run_ids["cnn_baseline"] in page
    assert store.stale_id not in page


def test_history_has_one_row_per_epoch(store: Store) -> None:
    suite = load_results(store.uri, EXPERIMENT, artifacts=False)
    history = suite.runs[0].history
    assert list(history["epoch"]) == [1, 2, 3]
    assert history["val_accuracy"].iloc[-1] == pytest.approx(
        suite.runs[0].metric("final_val_accuracy")
    )
    assert suite.runs[0].artifacts is None


def test_sampler_pair_is_found_with_natural_first(
    store: Store, report: tuple[str, ReportSummary]
) -> None:
    suite = load_results(store.uri, EXPERIMENT, artifacts=False)
    groups = sampler_groups(suite.runs)
    assert [[run.experiment for run in group] for group in groups] == [
        ["cnn_baseline", "cnn_baseline_balanced"]
    ]
    section = _section(report[0], "imbalance")
    assert "Per-class recall on the validation split" in section
    assert "drawn per epoch: cnn_baseline_balanced" in section
    assert "resnext" not in section


def test_architecture_section_shows_only_tagged_runs(report: tuple[str, ReportSummary]) -> None:
    section = _section(report[0], "architecture")
    assert "cnn_baseline" in section and "resnext" in section
    assert "cnn_baseline_balanced" not in section


def test_missing_experiment_still_writes_a_page(store: Store, tmp_path: Path) -> None:
    summary = build_report(store.uri, "no-such-experiment", tmp_path / "report.html")
    page = summary.out_path.read_text(encoding="utf-8")
    assert summary.n_runs == 0
    assert any("'no-such-experiment' does not exist" in warning for warning in summary.warnings)
    assert "&#x27;no-such-experiment&#x27; does not exist" in page
    for anchor, _ in SECTIONS:
        assert f'id="{anchor}"' in page


def test_experiment_without_finished_runs_says_so(store: Store, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    ensure_experiment(MlflowClient(tracking_uri=store.uri), store.uri, "empty")
    summary = build_report(store.uri, "empty", tmp_path / "report.html")
    assert summary.warnings[0] == "no finished runs for experiment 'empty'"
    assert "No finished training runs to summarise." in summary.out_path.read_text(encoding="utf-8")


def test_missing_store_file_is_reported_not_created(tmp_path: Path) -> None:
    database = tmp_path / "absent.db"
    summary = build_report(f"sqlite:///{database}", EXPERIMENT, tmp_path / "report.html")
    assert not database.exists()
    assert "does not exist" in summary.warnings[0]
    assert "does not exist" in summary.out_path.read_text(encoding="utf-8")


def test_run_without_eval_artifacts_is_named_on_the_page(store: Store, tmp_path: Path) -> None:
    log_fake_run(
        store.uri, "partial", "no_eval", seed=6,
        omit_artifacts=(
            "eval/confusion_matrix.json", "eval/classification_report.json", "data/examples.png",
        ),
    )  # fmt: skip
    summary = build_report(store.uri, "partial", tmp_path / "report.html")
    page = summary.out_path.read_text(encoding="utf-8")
    expected = "run no_eval has no confusion matrix (eval/confusion_matrix.json: not logged)"
    assert expected in summary.warnings
    assert expected in page
    assert "No run has a data/examples.png to show." in page
    assert summary.n_runs == 1


def test_text_from_mlflow_is_escaped_and_writes_are_atomic(store: Store, tmp_path: Path) -> None:
    hostile = "<script>alert(1)</script>"
    log_fake_run(store.uri, "hostile", hostile, seed=7)
    out = tmp_path / "report.html"
    out.write_text("an older report")
    build_report(store.uri, "hostile", out)
    page = out.read_text(encoding="utf-8")
    assert hostile not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert list(tmp_path.iterdir()) == [out], "the temporary file was left behind"


def test_corrupt_store_raises_a_tracking_error(tmp_path: Path) -> None:
    database = tmp_path / "corrupt.db"
    database.write_text("not a database")
    with pytest.raises(TrackingError, match="corrupt.db"):
        build_report(f"sqlite:///{database}", EXPERIMENT, tmp_path / "report.html")
    assert not (tmp_path / "report.html").exists()


def test_an_epoch_logged_twice_keeps_the_later_value() -> None:
    """A resumed run logs its last epoch again: the history and a re-scored run's copied curve
    (both through epoch_values) keep the value logged later, whatever order the store returns."""
    from types import SimpleNamespace

    from harness.tracking.read import epoch_values

    points = [(2, 3000, 0.55), (1, 1000, 0.40), (2, 2000, 0.50)]  # not in (step, time) order

    class Client:
        def get_metric_history(self, run_id: str, key: str) -> list[SimpleNamespace]:
            assert run_id == "r1"
            rows = points if key == "val_accuracy" else []
            return [SimpleNamespace(step=s, timestamp=t, value=v) for s, t, v in rows]

    values = epoch_values(Client(), "r1")
    assert values["val_accuracy"] == {1: 0.40, 2: 0.55}
    assert values["train_loss"] == {}
