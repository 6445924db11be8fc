"""Pair two finished training runs on the validation images both scored: `harness compare`.

The report pairs the experiments its sections name. This pairs any two training runs, in one
store or in two (a variant trained in a copy of the project against the baseline), with the
report's statistics: a paired bootstrap interval of B − A over the same images and McNemar's
exact test on the images only one of the two gets right. It only reads: nothing is logged.

Two runs pair when their validation images are the same images in the same order, which the
harness guarantees for runs on one dataset and split settings, whatever the input size (the
split and the duplicates are decided before resizing). The check is on the true labels of
`eval/predictions.csv`, as in the report: runs whose labels differ are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.analysis.stats import mcnemar_exact, p_text, paired_bootstrap, pp_text
from harness.core.errors import HarnessError, TrackingError
from harness.tracking.fetch import load_predictions

if TYPE_CHECKING:
    from harness.analysis.stats import McNemar, PairedDifference
    from harness.tracking.fetch import Predictions
    from harness.tracking.write import Tracker


@dataclass(frozen=True)
class Side:
    """One of the two runs, with its own scores on the paired images."""

    run_id: str
    experiment: str
    tracking_uri: str
    accuracy: float
    balanced_accuracy: float


@dataclass(frozen=True)
class PairedRuns:
    """B against A: B − A in accuracy and balanced accuracy, and McNemar's test."""

    a: Side
    b: Side
    difference: PairedDifference  # B − A, bootstrap over the images
    mcnemar: McNemar  # b: images only B gets right; c: images only A gets right

    @property
    def n_images(self) -> int:
        return self.difference.n_images


def compare_runs(tracker_a: Tracker, ref_a: str, tracker_b: Tracker, ref_b: str) -> PairedRuns:
    """Find both runs (a run id, or an experiment's newest FINISHED training run) and pair them."""
    side_a, pred_a = _read_side(tracker_a, ref_a)
    side_b, pred_b = _read_side(tracker_b, ref_b)
    run_a, run_b = side_a.run_id, side_b.run_id
    if run_a == run_b and tracker_a.tracking_uri == tracker_b.tracking_uri:
        raise HarnessError(f"A and B are the same run ({run_a}): nothing to compare")
    if pred_a.y_true.shape != pred_b.y_true.shape or not (pred_a.y_true == pred_b.y_true).all():
        raise HarnessError(
            f"runs {run_a} ({len(pred_a.y_true)} images) and {run_b} ({len(pred_b.y_true)} images) were "
            "validated on different images (their true labels differ), so they cannot be paired"
        )
    y = pred_a.y_true
    return PairedRuns(
        a=side_a,
        b=side_b,
        difference=paired_bootstrap(y, pred_b.correct, pred_a.correct),
        mcnemar=mcnemar_exact(pred_b.correct, pred_a.correct),
    )


def _read_side(tracker: Tracker, ref: str) -> tuple[Side, Predictions]:
    """The run, its logged scores (computed from the same predictions) and its predictions."""

    run = tracker.find_training_run(ref)
    run_id = run.info.run_id
    predictions, problem = load_predictions(tracker.tracking_uri, run_id)
    if predictions is None:
        raise TrackingError(f"{tracker.tracking_uri}: run {run_id} has no readable eval/predictions.csv ({problem})")
    metrics = run.data.metrics
    side = Side(
        run_id,
        run.data.tags.get("harness.experiment", "?"),
        tracker.tracking_uri,
        metrics.get("final_val_accuracy", float("nan")),
        metrics.get("final_val_balanced_accuracy", float("nan")),
    )
    return side, predictions


def describe(paired: PairedRuns) -> list[str]:
    """The comparison as lines of text: each run, then B − A with its interval and McNemar's test
    (its p written as the report writes it)."""
    d, test = paired.difference, paired.mcnemar
    width = max(len(paired.a.experiment), len(paired.b.experiment))
    lines = [
        f"{label}  {side.experiment:<{width}}  accuracy {100 * side.accuracy:5.1f}%  balanced "
        f"{100 * side.balanced_accuracy:5.1f}%  run {side.run_id}"
        + (f"  ({side.tracking_uri})" if paired.a.tracking_uri != paired.b.tracking_uri else "")
        for label, side in (("A", paired.a), ("B", paired.b))
    ]
    lines.append(
        f"B − A over {paired.n_images:,} paired validation images (bootstrap 95% interval): "
        f"accuracy {_points(d.accuracy.estimate)} [{_points(d.accuracy.low)}, {_points(d.accuracy.high)}], "
        f"balanced accuracy {_points(d.balanced_accuracy.estimate)} "
        f"[{_points(d.balanced_accuracy.low)}, {_points(d.balanced_accuracy.high)}] points"
    )
    lines.append(
        f"McNemar's exact test: {test.b} images only B gets right, {test.c} only A, {p_text(test.p_value)}"
    )
    return lines


def _points(value: float) -> str:
    return pp_text(value).replace("-", "−")

