"""harness.stats against hand-computed values and simulated data with a known truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.analysis.stats import mcnemar_exact, mean_interval, paired_bootstrap, wilson_interval


def test_mean_interval_matches_the_t_formula() -> None:
    summary = mean_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    assert summary.n == 5 and summary.mean == pytest.approx(3.0)
    assert summary.sd == pytest.approx(math.sqrt(2.5))
    # t(0.975, 4) = 2.776445: half-width 2.776445 * sqrt(2.5) / sqrt(5)
    half = 2.776445 * math.sqrt(2.5) / math.sqrt(5)
    assert summary.interval is not None
    assert summary.interval.low == pytest.approx(3.0 - half, abs=1e-5)
    assert summary.interval.high == pytest.approx(3.0 + half, abs=1e-5)


def test_one_seed_has_no_spread() -> None:
    summary = mean_interval([0.3])
    assert (summary.mean, summary.sd, summary.interval) == (0.3, None, None)
    with pytest.raises(ValueError):
        mean_interval([])


def test_wilson_interval_known_values() -> None:
    interval = wilson_interval(8, 10)  # textbook: [0.4902, 0.9433]
    assert interval.estimate == pytest.approx(0.8)
    assert interval.low == pytest.approx(0.4902, abs=1e-4)
    assert interval.high == pytest.approx(0.9433, abs=1e-4)
    edge = wilson_interval(0, 20)
    assert edge.low == 0.0 and 0.1 < edge.high < 0.2  # 0.1611
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_mcnemar_is_the_exact_binomial_on_discordant_pairs() -> None:
    # 10 images only A gets right, 2 only B, 30 both, 8 neither.
    a = np.array([1] * 10 + [0] * 2 + [1] * 30 + [0] * 8, dtype=bool)
    b = np.array([0] * 10 + [1] * 2 + [1] * 30 + [0] * 8, dtype=bool)
    result = mcnemar_exact(a, b)
    assert (result.b, result.c) == (10, 2)
    # two-sided: 2 * P(X <= 2), X ~ Binomial(12, 1/2) = 2 * (1 + 12 + 66) / 4096
    assert result.p_value == pytest.approx(2 * 79 / 4096)
    assert mcnemar_exact(b, a).p_value == pytest.approx(result.p_value)
    assert mcnemar_exact(a, a).p_value == 1.0


def test_identical_models_differ_by_exactly_zero() -> None:
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(4), 50)
    correct = rng.random(y.size) < 0.5
    diff = paired_bootstrap(y, correct, correct, resamples=200)
    assert diff.accuracy.estimate == 0.0
    assert (diff.accuracy.low, diff.accuracy.high) == (0.0, 0.0)
    assert not diff.balanced_accuracy.excludes_zero()


def test_bootstrap_finds_a_real_difference_and_its_size() -> None:
    rng = np.random.default_rng(2)
    y = np.repeat(np.arange(5), 400)
    a = rng.random(y.size) < 0.6
    b = rng.random(y.size) < 0.5
    diff = paired_bootstrap(y, a, b)
    assert diff.accuracy.low > 0
    assert diff.accuracy.low < 0.1 < diff.accuracy.high
    assert diff.accuracy.estimate == pytest.approx(a.mean() - b.mean())


def test_balanced_accuracy_weights_classes_equally() -> None:
    # A is perfect on the big class and useless on the small one; B the other way round.
    y = np.array([0] * 90 + [1] * 10)
    a = y == 0
    b = y == 1
    diff = paired_bootstrap(y, a, b, resamples=200)
    assert diff.accuracy.estimate == pytest.approx(0.8)
    assert diff.balanced_accuracy.estimate == pytest.approx(0.0)


def test_bootstrap_interval_covers_the_truth_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(3)
    y = np.repeat(np.arange(2), 100)
    covered = 0
    trials = 120
    for trial in range(trials):
        a = rng.random(y.size) < 0.55
        b = rng.random(y.size) < 0.45
        interval = paired_bootstrap(y, a, b, resamples=400, seed=trial).accuracy
        covered += interval.low <= 0.10 <= interval.high
    assert 0.85 <= covered / trials <= 0.99


def test_seeds_average_per_image() -> None:
    y = np.repeat(np.arange(2), 3)
    a = np.array([[1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0]])
    b = np.zeros(6)
    diff = paired_bootstrap(y, a, b, resamples=50)
    assert diff.n_seeds == (2, 1)
    assert diff.accuracy.estimate == pytest.approx(5 / 12)
    with pytest.raises(ValueError):
        paired_bootstrap(y, a[:, :5], b)


def test_single_model_intervals_cover_its_scores() -> None:
    from harness.analysis.stats import bootstrap_scores

    rng = np.random.default_rng(4)
    y = np.repeat(np.arange(3), [300, 100, 50])
    correct = rng.random(y.size) < np.where(y == 0, 0.8, 0.4)
    accuracy, balanced = bootstrap_scores(y, correct)
    assert accuracy.estimate == pytest.approx(correct.mean())
    assert balanced.estimate == pytest.approx(np.mean([correct[y == c].mean() for c in range(3)]))
    assert accuracy.low < accuracy.estimate < accuracy.high < accuracy.low + 0.12
    assert balanced.estimate < accuracy.estimate  # the big class is the easy one


def test_differences_and_p_values_are_written_one_way() -> None:
    """The report and `harness compare` share these: signed points, no "-0.0", p to 3 decimals."""
    from harness.analysis.stats import Interval, bracket_text, p_text, pp_text

    assert pp_text(0.0123) == "+1.2"
    assert pp_text(-0.0004) == "+0.0"  # rounds to zero: never "-0.0"
    assert bracket_text(Interval(0.01, -0.011, 0.034)) == "[-1.1, +3.4]"
    assert p_text(0.04512) == "p = 0.045"
    assert p_text(0.0009) == "p < 0.001"
    assert p_text(None) == "p n/a"
