"""The verdict rules for the study's claims, and when a comparison cannot be made."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.analysis.claims import compare, verdict
from harness.analysis.stats import Interval, McNemar, PairedDifference
from harness.spec.claims import ClaimSpec
from harness.suite.load import load_suite
from harness.tracking.fetch import Predictions, RunArtifacts
from harness.tracking.read import RunRecord

BETTER = ClaimSpec(key="x", title="A vs B", a="a", b="b", claim="A beats B", metric="accuracy", expect="better")
NO_BETTER = ClaimSpec(
    key="y", title="A vs B", a="a", b="b", claim="A is no better than B", metric="accuracy", expect="no_better"
)
STUDY_CLAIMS = load_suite(Path(__file__).resolve().parents[1] / "experiments.yaml").claims



def _difference(low: float, high: float) -> PairedDifference:
    interval = Interval((low + high) / 2, low, high)
    return PairedDifference(100, (1, 1), interval, Interval(0.0, -1.0, 1.0))


A_SIGNIFICANT = (McNemar(30, 10, 0.002),)
B_SIGNIFICANT = (McNemar(10, 30, 0.002),)
NOT_SIGNIFICANT = (McNemar(22, 18, 0.64),)


@pytest.mark.parametrize(
    ("low", "high", "tests", "better", "no_better"),
    [
        (0.01, 0.05, A_SIGNIFICANT, "reproduced", "not reproduced"),
        (0.01, 0.05, NOT_SIGNIFICANT, "inconclusive", "reproduced"),  # McNemar does not confirm
        (0.01, 0.05, (), "inconclusive", "reproduced"),  # no paired test: no confirmation
        (0.01, 0.05, (*A_SIGNIFICANT, *NOT_SIGNIFICANT), "inconclusive", "reproduced"),
        (-0.02, 0.05, A_SIGNIFICANT, "inconclusive", "reproduced"),
        (-0.05, -0.01, B_SIGNIFICANT, "not reproduced", "reproduced"),
        (-0.05, -0.01, NOT_SIGNIFICANT, "inconclusive", "reproduced"),
    ],
)
def test_verdict_rules(
    low: float, high: float, tests: tuple[McNemar, ...], better: str, no_better: str
) -> None:
    assert verdict(BETTER, _difference(low, high), tests) == better
    assert verdict(NO_BETTER, _difference(low, high), tests) == no_better


def test_balanced_sampling_is_judged_on_balanced_accuracy() -> None:
    (sampling,) = [c for c in STUDY_CLAIMS if c.key == "balanced-vs-imbalanced"]
    assert sampling.metric == "balanced_accuracy"
    difference = PairedDifference(100, (1, 1), Interval(-0.1, -0.2, -0.05), Interval(0.1, 0.05, 0.2))
    assert verdict(sampling, difference, A_SIGNIFICANT) == "reproduced"
    assert [c.key for c in STUDY_CLAIMS if c.study_claim] == [
        "residual-vs-plain", "balanced-vs-imbalanced", "resnext-vs-plain",
    ]  # fmt: skip


def _run(name: str, y_true: list[int], y_pred: list[int] | None, seed: int = 0) -> RunRecord:
    import pandas as pd

    predictions = None if y_pred is None else Predictions(np.array(y_true), np.array(y_pred))
    return RunRecord(
        run_id=f"{name}-{seed}", experiment=name, tags={"harness.seed": str(seed)}, params={},
        metrics={}, history=pd.DataFrame(), start_time=None, end_time=None,  # type: ignore[arg-type]
        artifacts=RunArtifacts(predictions=predictions),
    )  # fmt: skip


def test_a_comparison_says_why_it_cannot_be_made() -> None:
    y = [0, 0, 1, 1]
    assert compare(BETTER, {"a": (_run("a", y, y),)}).missing == "no finished run of b"
    no_predictions = compare(BETTER, {"a": (_run("a", y, y),), "b": (_run("b", y, None),)})
    assert no_predictions.verdict == "missing" and "eval/predictions.csv for b" in str(no_predictions.missing)
    other_images = compare(BETTER, {"a": (_run("a", y, y),), "b": (_run("b", [1, 1, 0, 0], y),)})
    assert "different images" in str(other_images.missing)


def test_seeds_are_paired_by_seed_for_mcnemar() -> None:
    y = [0] * 10 + [1] * 10
    right, wrong = list(y), [1 - label for label in y]
    runs_a = (_run("a", y, right, seed=0), _run("a", y, wrong, seed=1))
    runs_b = (_run("b", y, right, seed=1), _run("b", y, wrong, seed=0))
    result = compare(BETTER, {"a": runs_a, "b": runs_b})
    # seed 0: A right, B wrong everywhere; seed 1: A wrong, B right everywhere.
    assert [(test.b, test.c) for test in result.mcnemar] == [(20, 0), (0, 20)]
    assert result.difference is not None and result.difference.accuracy.estimate == 0.0
    assert result.verdict == "inconclusive"
