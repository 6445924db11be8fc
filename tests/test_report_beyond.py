"""The report's "Beyond the study" section on fake ablation ladders with known predictions."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow_fixtures import log_fake_run

from harness.analysis.claims import compare
from harness.analysis.stats import bootstrap_scores, bracket_text, mean_interval, pp_text
from harness.report.beyond import NO_LADDER, beyond_section, chain, ladder, missing_rungs
from harness.report.page import SECTIONS, build_report
from harness.spec.claims import ClaimSpec
from harness.suite.load import load_suite
from harness.tracking.read import Results, load_results

FER = "fer-beyond"  # a FER2013 ladder with rung 2 not trained yet
# The reference lines beyond.yaml draws on the ladder chart of FER2013 runs.
REFERENCES = load_suite(Path(__file__).resolve().parents[1] / "beyond.yaml").references
MAIN = "fer-study"  # the main suite's two-rung ladder, on synthetic data
PLAIN = "plain"  # no ladder at all
T0 = 1_700_000_000_000
# (rung, experiment, ingredient it adds, typical recall, training seeds)
FER_LADDER = (
    (0, "study_best", "the study's best model", 0.35, (0, 1)),
    (1, "bn_resnet", "a BN-ResNet at 48 px", 0.37, (0,)),
    (3, "modern_cpu", "flip TTA at evaluation", 0.8, (0,)),
)
MAIN_LADDER = (
    (0, "cnn_residual_balanced", "the study's best model", 0.3, (0,)),
    (1, "modern", "the whole modern recipe", 0.7, (0,)),
)


@dataclass(frozen=True)
class Store:
    root: Path
    uri: str


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    root = tmp_path_factory.mktemp("beyond-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    clock = T0
    for experiment, dataset, rungs in ((FER, "fer2013", FER_LADDER), (MAIN, "synthetic", MAIN_LADDER)):
        for rung, name, ingredient, quality, seeds in rungs:
            for train_seed in seeds:
                clock += 1_000
                log_fake_run(
                    uri, experiment, name, n_classes=7, quality=quality, train_seed=train_seed,
                    seed=100 * rung + train_seed, comparisons=("beyond",), paper_acc=None,
                    paper_iteration="", start_time_ms=clock, final_metrics={"train_tflop": 10.0 * (rung + 1)},
                    tags={
                        "harness.ladder_rung": str(rung), "harness.description": ingredient,
                        "harness.dataset": dataset,
                    },
                )  # fmt: skip
        log_fake_run(uri, experiment, "cnn_baseline", n_classes=7, seed=7, start_time_ms=clock + 1)
    log_fake_run(
        uri, FER, "modern_long", n_classes=7, quality=0.8, seed=8, comparisons=("beyond",),
        paper_acc=None, start_time_ms=clock + 2,
        tags={"harness.description": "the recipe for 60 epochs", "harness.dataset": "fer2013"},
    )  # fmt: skip
    log_fake_run(uri, PLAIN, "cnn_baseline", n_classes=7, seed=9, start_time_ms=clock + 3)
    return Store(root, uri)


@pytest.fixture(scope="module")
def fer(store: Store) -> Results:
    return load_results(store.uri, FER)


@pytest.fixture(scope="module")
def fer_body(fer: Results) -> str:
    return beyond_section(fer, references=REFERENCES).body


def _figures(html: str) -> list[dict]:
    """The plotly figure specs (data + layout) embedded in some HTML, parsed from their calls."""
    decoder = json.JSONDecoder()
    specs = []
    for match in re.finditer(r"Plotly\.newPlot\(\s*\"[^\"]+\",\s*", html):
        data, end = decoder.raw_decode(html, match.end())
        start = re.compile(r",\s*").match(html, end)
        assert start is not None
        layout, _ = decoder.raw_decode(html, start.end())
        specs.append({"data": data, "layout": layout})
    return specs


def _step_item(body: str, title: str) -> str:
    """The <li> of the step whose title starts it, e.g. 'rung 3 vs rung 0 (overall)'."""
    match = re.search(r"<li class=\"(\w+)\"><strong>" + re.escape(title) + r":.*?</li>", body)
    assert match is not None, f"no step {title!r} on the page"
    return match.group(0)


def test_rungs_are_ordered_and_the_missing_rung_is_found(fer: Results) -> None:
    rungs = ladder(fer)
    assert [(rung.number, rung.experiment) for rung in rungs] == [
        (number, name) for number, name, *_ in FER_LADDER
    ]
    assert [len(rung.seeds) for rung in rungs] == [2, 1, 1]
    assert missing_rungs(chain(rungs)) == [2]


def test_ladder_chart_shows_every_rung_in_order_with_its_interval(fer: Results, fer_body: str) -> None:
    chart = _figures(fer_body)[0]
    accuracy, balanced = chart["data"]
    ticks = accuracy["x"]
    assert [tick.split("<br>")[0] for tick in ticks] == [
        "0. study_best", "1. bn_resnet", "2. missing: no run", "3. modern_cpu",
    ]  # fmt: skip
    assert ticks[3].split("<br>")[1:] == ["+ flip TTA at", "evaluation"]  # wrapped to fit
    assert accuracy["y"][2] is None and balanced["y"][2] is None
    # Rung 0 has two seeds: the mean and a Student-t interval over them.
    seeds = fer.seed_runs["study_best"]
    over_seeds = mean_interval([run.metric("final_val_accuracy") for run in seeds])
    assert accuracy["y"][0] == pytest.approx(over_seeds.mean, abs=1e-4)
    assert accuracy["error_y"]["array"][0] == pytest.approx(
        over_seeds.interval.high - over_seeds.mean, abs=1e-4
    )
    # Rung 3 has one seed: the bootstrap interval over the validation images.
    predictions = fer.seed_runs["modern_cpu"][0].artifacts.predictions
    images, balanced_images = bootstrap_scores(predictions.y_true, predictions.correct)
    assert accuracy["y"][3] == pytest.approx(images.estimate, abs=1e-4)
    assert accuracy["error_y"]["arrayminus"][3] == pytest.approx(images.estimate - images.low, abs=1e-4)
    assert balanced["error_y"]["array"][3] == pytest.approx(
        balanced_images.high - balanced_images.estimate, abs=1e-4
    )


def test_a_clearly_better_rung_has_a_difference_interval_above_zero(fer: Results, fer_body: str) -> None:
    expected = compare(
        ClaimSpec(key="x", title="x", a="modern_cpu", b="study_best", claim="-", metric="accuracy", expect="better"),
        fer.seed_runs,
    )
    interval = expected.difference.accuracy
    assert interval.low > 0.2  # recall 0.8 vs 0.35 on the same 350 images
    item = _step_item(fer_body, "rung 3 vs rung 0 (overall)")
    assert item.startswith('<li class="ok">')
    assert f"{pp_text(interval.estimate)} points of accuracy {bracket_text(interval)}" in item
    assert "The interval excludes zero: this step gains accuracy" in item
    assert "McNemar p &lt; 0.001" in item
    assert "1 vs 2 seed(s)" in item  # modern_cpu has one seed, study_best two


def test_each_step_shows_its_compute_beside_its_gain(fer_body: str) -> None:
    header = fer_body.index("Train TFLOP (new / previous)")
    overall = fer_body.index("modern_cpu − study_best", header)
    assert "<td>40 / 10</td>" in fer_body[overall:fer_body.index("</tr>", overall)]
    first = fer_body.index("bn_resnet − study_best", header)
    assert "<td>20 / 10</td>" in fer_body[first:fer_body.index("</tr>", first)]


def test_a_missing_rung_is_named_in_the_steps_and_the_warnings(fer: Results, fer_body: str) -> None:
    section = beyond_section(fer, references=REFERENCES)
    assert "ablation ladder: rung 2 has no finished run" in section.warnings
    assert not any("not compared" in warning for warning in section.warnings)
    assert "Rung(s) with no finished run: rung 2." in fer_body
    for title in ("rung 2 vs rung 1", "rung 3 vs rung 2"):
        assert "Not measured: no finished run of rung 2." in _step_item(fer_body, title)
    # The step that exists is measured and its ingredient named.
    assert "adds a BN-ResNet at 48 px" in _step_item(fer_body, "rung 1 vs rung 0")


def test_reference_lines_only_for_fer2013(store: Store, fer_body: str) -> None:
    shapes = _figures(fer_body)[0]["layout"]["shapes"]
    assert sorted((shape["y0"], shape["y1"]) for shape in shapes) == [
        (0.65, 0.65), (0.67, 0.67), (0.72, 0.74),
    ]  # fmt: skip
    assert {shape["name"]: shape["y0"] for shape in shapes} == {
        "human agreement ≈65%": 0.65,
        "the modern_cpu target: 67% on this validation split within 300 TFLOP of training": 0.67,
        "published single models (test-split-selected checkpoints)": 0.72,
    }
    assert all(shape["showlegend"] for shape in shapes)
    low, high = _figures(fer_body)[0]["layout"]["yaxis"]["range"]
    assert low < 0.65 and high > 0.74  # every reference is on the chart
    synthetic = beyond_section(load_results(store.uri, MAIN), references=REFERENCES).body
    assert "shapes" not in _figures(synthetic)[0]["layout"]
    assert "test-split-selected" not in synthetic
    assert "No reference lines: the suite file gives none for runs on fer2013" in synthetic


def test_top_rung_beside_rung_0_class_by_class(fer_body: str) -> None:
    figures = _figures(fer_body)
    recall = next(f for f in figures if f["layout"]["title"]["text"].startswith("Per-class recall"))
    assert [trace["name"] for trace in recall["data"]] == [
        "0. study_best (2 seed(s))", "3. modern_cpu (1 seed(s))",
    ]  # fmt: skip
    assert all(trace["type"] == "bar" and trace["error_y"]["array"] for trace in recall["data"])
    heatmaps = [f for f in figures if f["data"][0]["type"] == "heatmap"]
    titles = [f["layout"]["title"]["text"] for f in heatmaps]
    assert len(titles) == 2
    assert titles[0].startswith("0. study_best") and "2 seeds summed)" in titles[0]
    assert titles[1].startswith("3. modern_cpu")
    # Summed over both seeds: every validation image of both runs is counted once.
    counts = heatmaps[0]["data"][0]["customdata"]
    assert sum(map(sum, counts)) == 2 * 7 * 50


def test_runs_tagged_beyond_off_the_ladder_are_listed(fer_body: str) -> None:
    assert "off the ladder" in fer_body
    assert "modern_long" in fer_body and "the recipe for 60 epochs" in fer_body
    assert "cnn_baseline" not in fer_body


def test_no_ladder_says_how_to_make_one_without_extra_warnings(store: Store) -> None:
    section = beyond_section(load_results(store.uri, PLAIN))
    assert section.warnings == ()
    assert "harness run modern" in NO_LADDER and "make beyond" in NO_LADDER
    assert "`harness run modern`" in section.body and "`make beyond FER2013=PATH`" in section.body
    assert "Plotly.newPlot" not in section.body


def test_section_is_on_the_page_and_in_the_contents(store: Store, tmp_path: Path) -> None:
    summary = build_report(store.uri, MAIN, tmp_path / "index.html")
    page = summary.out_path.read_text(encoding="utf-8")
    anchors = [anchor for anchor, _ in SECTIONS]
    assert anchors.index("beyond") == anchors.index("sweeps") + 1
    assert '<li><a href="#beyond">Beyond the study: a modern recipe</a></li>' in page
    start = page.index('<section id="beyond">')
    section = page[start : page.index("</section>", start)]
    assert "<h2>Beyond the study: a modern recipe</h2>" in section
    assert "rung 1 vs rung 0" in section and "modern − cnn_residual_balanced" in section
    assert not any("ladder" in warning for warning in summary.warnings)
