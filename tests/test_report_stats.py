"""The report's statistical sections on a fake study with repeated seeds and Optuna sweeps."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from mlflow_fixtures import ensure_experiment, log_fake_run, log_fake_sweep

from harness.analysis.claims import compare
from harness.cli.main import main
from harness.report.page import ReportSummary, build_report
from harness.suite.load import load_suite
from harness.tracking.read import Results, load_results

EXPERIMENT = "fer-study"
T0 = 1_700_000_000_000
# (experiment, model, sampler, paper iteration, paper accuracy, typical recall, seeds)
STUDY = (
    ("cnn_baseline", "cnn", "natural", "1", 0.25, 0.35, (0, 1)),
    ("cnn_residual", "resnet", "natural", "2", 0.297, 0.58, (0, 1)),
    ("cnn_residual_balanced", "resnet", "balanced", "4", 0.356, 0.30, (0,)),
    ("resnext", "resnext", "natural", "5", 0.25, 0.36, (0, 1)),
)

STUDY_CLAIMS = load_suite(Path(__file__).resolve().parents[1] / "experiments.yaml").claims


@dataclass(frozen=True)
class Store:
    root: Path
    uri: str
    stale_id: str  # an older FINISHED cnn_baseline seed 0: superseded
    eval_id: str  # a newer FINISHED eval run tagged cnn_baseline: not an experiment run
    old_sweep_id: str  # an earlier sweep of study lr-search: superseded by the newer one


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    root = tmp_path_factory.mktemp("stats-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    stale = log_fake_run(uri, EXPERIMENT, "cnn_baseline", seed=99, start_time_ms=T0)
    clock = T0 + 1_000
    for index, (name, model, sampler, iteration, paper, quality, seeds) in enumerate(STUDY):
        for train_seed in seeds:
            clock += 1_000
            log_fake_run(
                uri, EXPERIMENT, name, model=model, sampler=sampler, paper_iteration=iteration,
                paper_acc=paper, quality=quality, train_seed=train_seed, seed=10 * index + train_seed,
                comparisons=("imbalance", "architecture"), start_time_ms=clock,
            )  # fmt: skip
    old_sweep = log_fake_sweep(
        uri, EXPERIMENT, "lr-search", n_complete=2, n_pruned=1, n_failed=0, start_time_ms=clock + 1
    )
    log_fake_sweep(uri, EXPERIMENT, "lr-search", seed=1, start_time_ms=clock + 100)
    log_fake_sweep(
        uri, EXPERIMENT, "width-search", n_complete=1, n_pruned=0, n_failed=0,
        status="RUNNING", importances=False, start_time_ms=clock + 200,
    )  # fmt: skip
    eval_id = _log_eval_run(uri, clock + 300)
    return Store(root, uri, stale, eval_id, old_sweep)


def _log_eval_run(uri: str, start: int) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    run = client.create_run(
        ensure_experiment(client, uri, EXPERIMENT),
        start_time=start,
        run_name="cnn_baseline",
        tags={"harness.kind": "eval", "harness.experiment": "cnn_baseline", "harness.seed": "0"},
    )
    client.log_metric(run.info.run_id, "final_val_accuracy", 0.99)
    client.set_terminated(run.info.run_id)
    return run.info.run_id


@pytest.fixture(scope="module")
def suite(store: Store) -> Results:
    return load_results(store.uri, EXPERIMENT)


@pytest.fixture(scope="module")
def report(store: Store) -> tuple[str, ReportSummary]:
    summary = build_report(store.uri, EXPERIMENT, store.root / "out" / "index.html", claims=STUDY_CLAIMS)
    return summary.out_path.read_text(encoding="utf-8"), summary


def _section(page: str, anchor: str) -> str:
    start = page.index(f'id="{anchor}"')
    return page[start : page.index("</section>", start)]


def _figures(section: str) -> list[dict]:
    """The plotly figure specs embedded in a section (data + layout), parsed from their calls."""
    decoder = json.JSONDecoder()
    specs = []
    for match in re.finditer(r"Plotly\.newPlot\(\s*\"[^\"]+\",\s*", section):
        data, end = decoder.raw_decode(section, match.end())
        start = re.compile(r",\s*").match(section, end)
        assert start is not None
        layout, _ = decoder.raw_decode(section, start.end())
        specs.append({"data": data, "layout": layout})
    return specs


def test_one_run_per_experiment_and_seed_and_only_training_runs(suite: Results, store: Store) -> None:
    assert {name: [run.seed for run in runs] for name, runs in suite.seed_runs.items()} == {
        name: list(seeds) for name, *_, seeds in STUDY
    }
    assert [run.experiment for run in suite.runs] == [name for name, *_ in STUDY]
    assert all(run.seed == 0 for run in suite.runs)
    ids = {run.run_id for runs in suite.seed_runs.values() for run in runs}
    assert store.stale_id not in ids and store.eval_id not in ids
    assert suite.n_superseded == 1
    assert all(run.tags["harness.kind"] == "train" for run in suite.runs)


def test_summary_states_mean_sd_and_interval(report: tuple[str, ReportSummary], suite: Results) -> None:
    from harness.analysis.stats import mean_interval

    section = _section(report[0], "summary")
    values = [run.metric("final_val_accuracy") for run in suite.seed_runs["cnn_baseline"]]
    summary = mean_interval(values)
    assert summary.interval is not None and summary.sd is not None
    expected = (
        f"{100 * summary.mean:.1f} ± {100 * summary.sd:.1f} "
        f"[{100 * summary.interval.low:.1f}, {100 * summary.interval.high:.1f}] %"
    )
    assert expected in section
    # One seed: the interval comes from the validation images and is marked as such.
    row = section[section.index(">cnn_residual_balanced<") :].split("</tr>")[0]
    assert re.search(r"\[\d+\.\d, \d+\.\d\] img %", row)
    assert "validation</strong> split of <strong>synthetic-affectnet" in section


def test_claims_are_ruled_on_with_intervals_and_p_values(
    report: tuple[str, ReportSummary], suite: Results
) -> None:
    results = {result.comparison.key: result for result in (compare(c, suite.seed_runs) for c in STUDY_CLAIMS)}
    assert results["residual-vs-plain"].verdict == "reproduced"
    assert results["balanced-vs-imbalanced"].verdict == "not reproduced"
    assert results["resnext-vs-plain"].verdict == "reproduced"
    assert results["balanced-vs-imbalanced-plain"].verdict == "missing"
    residual = results["residual-vs-plain"]
    assert residual.difference is not None and residual.difference.n_seeds == (2, 2)
    assert len(residual.mcnemar) == 2 and residual.p_value is not None and residual.p_value < 0.05
    # The point estimate is the plain difference of seed-averaged per-image correctness.
    correct = {
        name: np.mean([run.artifacts.predictions.correct for run in suite.seed_runs[name]], axis=0)
        for name in ("cnn_residual", "cnn_baseline")
    }
    assert residual.difference.accuracy.estimate == pytest.approx(
        float((correct["cnn_residual"] - correct["cnn_baseline"]).mean())
    )
    section = _section(report[0], "claims")
    for verdict in ("reproduced", "not reproduced"):
        assert f": {verdict}." in section
    assert re.search(r"points of accuracy \[[+-]\d+\.\d, [+-]\d+\.\d\] .*McNemar p (=|<) 0\.\d+", section)
    assert "points of balanced accuracy" in section
    assert len(_figures(section)) == 1  # the forest plot


def test_paper_table_has_gap_and_both_rankings(report: tuple[str, ReportSummary]) -> None:
    section = _section(report[0], "paper")
    assert section.count("<tr") == 1 + len(STUDY)
    assert "Paper order: cnn_residual_balanced &gt; cnn_residual &gt;" in section
    ours = re.search(r"ours: ([^<]+)</p>", section)
    assert ours and ours.group(1).startswith("cnn_residual &gt;")  # the fake residual is best
    (figure,) = _figures(section)
    assert figure["layout"]["xaxis"]["title"]["text"] and figure["layout"]["yaxis"]["title"]["text"]


def test_overfitting_view_draws_every_run(report: tuple[str, ReportSummary]) -> None:
    section = _section(report[0], "overfitting")
    (figure,) = _figures(section)
    assert len(figure["data"]) == sum(len(seeds) for *_, seeds in STUDY)
    assert figure["layout"]["yaxis"]["title"]["text"] == "training − validation accuracy (pp)"


def test_sweep_section_uses_the_latest_parent_run(
    report: tuple[str, ReportSummary], suite: Results, store: Store
) -> None:
    studies = {sweep.study: sweep for sweep in suite.sweeps}
    assert set(studies) == {"lr-search", "width-search"}
    assert studies["lr-search"].run_id != store.old_sweep_id
    assert len(studies["lr-search"].trials) == 10
    section = _section(report[0], "sweeps")
    lr = section[section.index("Study lr-search") : section.index("Study width-search")]
    assert "6 completed, 3 pruned, 1 failed" in lr
    best = studies["lr-search"].best_trial
    assert best is not None and f"{best['value']:.4f}" in lr
    titles = [figure["layout"]["title"]["text"] for figure in _figures(lr)]
    assert titles == ["Optimisation history of study lr-search", "Parameter importances of study lr-search (Optuna, fANOVA)"]
    width = section[section.index("Study width-search") :]
    assert "(RUNNING)" in width and "No parameter importances" in width
    # Trial runs carry train-like metrics but are not experiments.
    assert "lr-search-trial" not in _section(report[0], "summary")


def test_per_class_recall_has_interval_bars(report: tuple[str, ReportSummary]) -> None:
    section = _section(report[0], "imbalance")
    bars = [trace for figure in _figures(section) for trace in figure["data"] if str(trace.get("name", "")).startswith("recall")]
    assert bars and all(trace.get("error_y", {}).get("arrayminus") for trace in bars)


def test_every_figure_is_titled_with_labelled_axes(report: tuple[str, ReportSummary]) -> None:
    figures = _figures(report[0])
    assert len(figures) >= 10
    for figure in figures:
        layout = figure["layout"]
        assert layout.get("title", {}).get("text"), layout
        if any(trace.get("type") in ("scatter", "bar") for trace in figure["data"]) and "xaxis2" not in layout:
            assert layout["xaxis"]["title"]["text"] and layout["yaxis"]["title"]["text"], layout["title"]


def test_report_command_on_an_empty_store_says_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "experiments.yaml"
    config.write_text(
        "suite: fer-study\nexperiments:\n  a: {description: one experiment}\n", encoding="utf-8"
    )
    uri = f"sqlite:///{tmp_path / 'absent.db'}"
    assert main(["report", "--config", str(config), "--tracking-uri", uri]) == 0
    err = capsys.readouterr().err
    assert "note: tracking store" in err and "does not exist" in err
    page = (tmp_path / "reports" / "index.html").read_text(encoding="utf-8")
    assert "No finished training runs: no claim can be tested." in page
    assert "No sweep in this experiment" in page
