"""The study's claims tested as paired comparisons of experiments, and how the report rules on them.

A claim (harness.spec.claims.ClaimSpec, written under `claims:` in the suite file) names two
experiments (A, the one the claim is about, and B, its baseline), the metric the claim is about
and what the study says: A is `better`, or A is `no_better`. `compare` turns both experiments' runs (one per seed) into a paired bootstrap
interval over the same validation images and McNemar's exact test; `verdict` applies the rule
that the report states on the page (RULES): the interval decides the direction, and McNemar's
test must confirm it. The two can disagree: balanced accuracy averages per class, so its
interval leaves out how the validation images fall into classes, which McNemar's counts do not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from harness.analysis.stats import McNemar, PairedDifference, mcnemar_exact, paired_bootstrap
from harness.spec.claims import ClaimSpec
from harness.tracking.fetch import Predictions
from harness.tracking.read import RunRecord

if TYPE_CHECKING:
    import numpy as np

Verdict = Literal["reproduced", "not reproduced", "inconclusive", "missing"]
SIGNIFICANCE = 0.05

METRIC_NAMES: dict[str, str] = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy",
}

RULES: dict[str, str] = {
    "better": (
        "“A beats B” is reproduced when the whole 95% interval of A − B lies above zero and "
        "McNemar's test agrees (p < 0.05, with more images only A gets right); not reproduced "
        "when the interval lies below zero and McNemar's test agrees the other way; "
        "inconclusive otherwise."
    ),
    "no_better": (
        "“A is no better than B” is not reproduced when the whole 95% interval of A − B lies "
        "above zero and McNemar's test agrees (p < 0.05, more images only A gets right), and "
        "reproduced otherwise; the interval's upper end says how much better A could still be."
    ),
}


@dataclass(frozen=True)
class ComparisonResult:
    """A comparison's outcome: the paired difference and test, or why it could not be made."""

    comparison: ClaimSpec
    verdict: Verdict
    difference: PairedDifference | None = None
    mcnemar: tuple[McNemar, ...] = ()  # one per seed-matched pair of runs
    missing: str | None = None

    @property
    def p_value(self) -> float | None:
        """The largest McNemar p over the seed pairs: the most conservative one."""
        return max((test.p_value for test in self.mcnemar), default=None)


def compare(
    comparison: ClaimSpec, seed_runs: Mapping[str, Sequence[RunRecord]]
) -> ComparisonResult:
    """Paired bootstrap and McNemar for one comparison, or a 'missing' result saying why."""
    import numpy as np

    problem = _missing(comparison, seed_runs)
    if problem:
        return ComparisonResult(comparison, "missing", missing=problem)
    runs_a, runs_b = seed_runs[comparison.a], seed_runs[comparison.b]
    y_true = _predictions(runs_a[0]).y_true
    correct_a = np.stack([_predictions(run).correct for run in runs_a])
    correct_b = np.stack([_predictions(run).correct for run in runs_b])
    difference = paired_bootstrap(y_true, correct_a, correct_b)
    tests = tuple(
        mcnemar_exact(_predictions(a).correct, _predictions(b).correct)
        for a, b in _seed_pairs(runs_a, runs_b)
    )
    return ComparisonResult(comparison, verdict(comparison, difference, tests), difference, tests)


def verdict(
    comparison: ClaimSpec, difference: PairedDifference, tests: Sequence[McNemar] = ()
) -> Verdict:
    """Apply RULES[comparison.expect]: the interval of A − B on the claim's metric, confirmed by
    McNemar's test (every seed pair significant in the same direction; no tests, no confirmation).
    """
    interval = getattr(difference, comparison.metric)
    a_better = interval.low > 0 and _confirmed(tests, a_better=True)
    b_better = interval.high < 0 and _confirmed(tests, a_better=False)
    if comparison.expect == "no_better":
        return "not reproduced" if a_better else "reproduced"
    if a_better:
        return "reproduced"
    if b_better:
        return "not reproduced"
    return "inconclusive"


def _confirmed(tests: Sequence[McNemar], *, a_better: bool) -> bool:
    return bool(tests) and all(
        test.p_value < SIGNIFICANCE and (test.b > test.c if a_better else test.c > test.b)
        for test in tests
    )


def _missing(comparison: ClaimSpec, seed_runs: Mapping[str, Sequence[RunRecord]]) -> str | None:
    absent = [name for name in (comparison.a, comparison.b) if not seed_runs.get(name)]
    if absent:
        return f"no finished run of {' or '.join(absent)}"
    runs = [*seed_runs[comparison.a], *seed_runs[comparison.b]]
    without = sorted({run.experiment for run in runs if _predictions(run) is None})
    if without:
        return f"no eval/predictions.csv for {', '.join(without)}"
    first = _predictions(runs[0]).y_true
    if any(not _same_images(first, _predictions(run).y_true) for run in runs[1:]):
        return "the runs were validated on different images (labels differ), so they cannot be paired"
    return None


def _predictions(run: RunRecord) -> Predictions | None:
    return run.artifacts.predictions if run.artifacts else None


def _same_images(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool((a == b).all())


def _seed_pairs(
    runs_a: Sequence[RunRecord], runs_b: Sequence[RunRecord]
) -> list[tuple[RunRecord, RunRecord]]:
    """Runs of A and B with the same seed; without any shared seed, pair them in seed order."""
    by_seed = {run.seed: run for run in runs_b}
    matched = [(run, by_seed[run.seed]) for run in runs_a if run.seed in by_seed]
    return matched or list(zip(runs_a, runs_b, strict=False))
