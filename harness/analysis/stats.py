"""Statistics the report uses to say whether a difference is real. Pure functions over arrays.

- `mean_interval`: mean, standard deviation and a t-based 95% interval across seeds.
- `wilson_interval`: a binomial proportion's interval (per-class recall from one run's counts).
- `paired_bootstrap`: the difference of two models' accuracy and balanced accuracy on the *same*
  validation images, with a percentile interval from resampling images with replacement (the
  same draw for both models). Several seeds per model enter as each image's share of seeds that
  got it right, so the interval is over images, with the seeds' average as the per-image score.
  Resampling ignores the class labels, as McNemar's test does, so the two agree on what varies.
- `mcnemar_exact`: McNemar's exact test on paired right/wrong outcomes (a two-sided binomial
  test on the discordant pairs).
- `pp_text`, `bracket_text`, `p_text`: how the report and `harness compare` write a difference
  in percentage points, its interval and a p-value, so the two always agree.

numpy and scipy (which scikit-learn already requires) are imported inside the functions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000  # percentile ends move by < 0.1 point between seeds at this count
BOOTSTRAP_SEED = 0  # the page is a report, not a simulation: the same store gives the same page
RESAMPLE_CHUNK = 250


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided interval at `confidence`."""

    estimate: float
    low: float
    high: float
    confidence: float = CONFIDENCE

    def excludes_zero(self) -> bool:
        """Whether the whole interval lies on one side of zero."""
        return self.low > 0 or self.high < 0


@dataclass(frozen=True)
class SeedSummary:
    """A metric over n seeds: mean, sample standard deviation (None for n=1), t interval."""

    n: int
    mean: float
    sd: float | None
    interval: Interval | None  # None for a single seed: no spread to estimate from


@dataclass(frozen=True)
class PairedDifference:
    """Model A minus model B on the same images: accuracy and balanced accuracy, with intervals."""

    n_images: int
    n_seeds: tuple[int, int]
    accuracy: Interval
    balanced_accuracy: Interval


@dataclass(frozen=True)
class McNemar:
    """McNemar's exact test: b = A right & B wrong, c = A wrong & B right; two-sided p."""

    b: int
    c: int
    p_value: float


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> SeedSummary:
    """Mean and standard deviation across seeds, with a Student-t interval for the mean."""
    from scipy import stats

    n = len(values)
    if n == 0:
        raise ValueError("mean_interval needs at least one value")
    mean = math.fsum(values) / n
    if n == 1:
        return SeedSummary(1, mean, None, None)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return SeedSummary(n, mean, sd, Interval(mean, mean - half, mean + half, confidence))


def wilson_interval(successes: int, trials: int, confidence: float = CONFIDENCE) -> Interval:
    """Wilson score interval for a proportion (well-behaved at 0, 1 and small counts)."""
    from scipy import stats

    if trials <= 0:
        raise ValueError("wilson_interval needs at least one trial")
    if not 0 <= successes <= trials:
        raise ValueError(f"successes {successes} outside [0, {trials}]")
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half), confidence)


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemar:
    """McNemar's exact test on two models' right/wrong outcomes for the same images."""
    import numpy as np
    from scipy import stats

    a = np.asarray(correct_a, dtype=bool)
    b_ = np.asarray(correct_b, dtype=bool)
    if a.shape != b_.shape:
        raise ValueError(f"outcome arrays differ in shape: {a.shape} vs {b_.shape}")
    b = int(np.sum(a & ~b_))
    c = int(np.sum(~a & b_))
    if b + c == 0:
        return McNemar(0, 0, 1.0)
    p = float(stats.binomtest(b, b + c, 0.5, alternative="two-sided").pvalue)
    return McNemar(b, c, min(1.0, p))


def paired_bootstrap(
    y_true: np.ndarray,
    correct_a: np.ndarray,
    correct_b: np.ndarray,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = BOOTSTRAP_SEED,
) -> PairedDifference:
    """A − B in accuracy and balanced accuracy, resampling the same images for both models.

    `correct_a` / `correct_b` are (seeds, images) arrays of 0/1 (or 1-D for one seed); an
    image's score is its mean over seeds. Images are resampled with replacement, the same draw
    for both models; balanced accuracy is recomputed per draw from the classes it holds.
    """
    import numpy as np

    y = np.asarray(y_true)
    score_a, n_a = _per_image_score(correct_a, y.size)
    score_b, n_b = _per_image_score(correct_b, y.size)
    accuracy, balanced = _image_bootstrap(y, score_a - score_b, resamples, confidence, seed)
    return PairedDifference(y.size, (n_a, n_b), accuracy, balanced)


def bootstrap_scores(
    y_true: np.ndarray,
    correct: np.ndarray,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[Interval, Interval]:
    """One model's accuracy and balanced accuracy with intervals from resampling images.

    The interval for a single run, where there is no spread across seeds to use.
    """
    import numpy as np

    y = np.asarray(y_true)
    score, _ = _per_image_score(correct, y.size)
    return _image_bootstrap(y, score, resamples, confidence, seed)


def _image_bootstrap(
    y: np.ndarray, score: np.ndarray, resamples: int, confidence: float, seed: int
) -> tuple[Interval, Interval]:
    """(accuracy, balanced accuracy) of per-image scores, resampling images with replacement."""
    import numpy as np

    rng = np.random.default_rng(seed)
    classes, class_index = np.unique(y, return_inverse=True)
    k = classes.size
    accuracy_draws = np.empty(resamples)
    balanced_draws = np.empty(resamples)
    # Chunks of resamples keep memory at ~CHUNK x n values, whatever the validation set's size.
    for start in range(0, resamples, RESAMPLE_CHUNK):
        rows = min(resamples, start + RESAMPLE_CHUNK) - start
        draws = rng.integers(0, y.size, size=(rows, y.size))
        drawn_score = score[draws]
        accuracy_draws[start : start + rows] = drawn_score.mean(axis=1)
        # Per (resample, class) sums and counts in one pass: bin = row * k + class.
        bins = (np.arange(rows)[:, None] * k + class_index[draws]).ravel()
        sums = np.bincount(bins, weights=drawn_score.ravel(), minlength=rows * k).reshape(rows, k)
        counts = np.bincount(bins, minlength=rows * k).reshape(rows, k)
        per_class = np.divide(sums, counts, out=np.full((rows, k), np.nan), where=counts > 0)
        # A class absent from a resample (possible only for tiny classes) is left out of its mean.
        balanced_draws[start : start + rows] = np.nanmean(per_class, axis=1)
    point_accuracy = float(score.mean())
    point_balanced = float(np.mean([score[y == cls].mean() for cls in classes]))
    return (
        _percentile_interval(point_accuracy, accuracy_draws, confidence),
        _percentile_interval(point_balanced, balanced_draws, confidence),
    )


def _per_image_score(correct: np.ndarray, n_images: int) -> tuple[np.ndarray, int]:
    import numpy as np

    array = np.asarray(correct, dtype=float)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != n_images or array.shape[0] == 0:
        raise ValueError(f"expected (seeds, {n_images}) outcomes, got shape {array.shape}")
    return array.mean(axis=0), int(array.shape[0])


def _percentile_interval(estimate: float, draws: np.ndarray, confidence: float) -> Interval:
    import numpy as np

    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return Interval(estimate, float(low), float(high), confidence)


def pp_text(value: float) -> str:
    """Percentage points with a sign; a value that rounds to zero is "+0.0", never "-0.0"."""
    text = f"{100 * value:+.1f}"
    return "+0.0" if text == "-0.0" else text


def bracket_text(interval: Interval) -> str:
    """An interval in signed percentage points: "[-1.2, +3.4]"."""
    return f"[{pp_text(interval.low)}, {pp_text(interval.high)}]"


def p_text(value: float | None) -> str:
    """A p-value to three decimals, "p < 0.001" below that, "p n/a" when there is none."""
    if value is None:
        return "p n/a"
    return "p < 0.001" if value < 0.001 else f"p = {value:.3f}"
