"""Classification metrics with scikit-learn: accuracy, balanced accuracy, F1, confusion matrices."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Evaluation:
    """Scores of one set of predictions against the truth, over a fixed class list."""

    labels: tuple[str, ...]
    accuracy: float
    balanced_accuracy: float
    macro_f1: float
    confusion: np.ndarray  # counts, rows = true class, columns = predicted class
    report: dict[str, Any]  # sklearn classification_report(output_dict=True), keyed by class name

    @property
    def confusion_normalized(self) -> np.ndarray:
        """Row-normalised confusion matrix (recall on the diagonal); empty rows stay zero."""
        rows = self.confusion.sum(axis=1, keepdims=True)
        return np.divide(self.confusion, rows, out=np.zeros(self.confusion.shape), where=rows > 0)

    def per_class_recall(self) -> dict[str, float]:
        """Recall of every class, by name."""
        return {name: float(self.report[name]["recall"]) for name in self.labels}

    def confusion_dict(self) -> dict[str, Any]:
        """The confusion matrix as JSON-ready data (counts and row-normalised)."""
        return {
            "labels": list(self.labels),
            "counts": self.confusion.astype(int).tolist(),
            "normalized": np.round(self.confusion_normalized, 6).tolist(),
        }


def evaluate(y_true: np.ndarray, y_pred: np.ndarray, labels: tuple[str, ...]) -> Evaluation:
    """Score predictions; balanced accuracy averages recall over the classes present in y_true."""
    from sklearn.metrics import (
        accuracy_score,
        classification_report,
        confusion_matrix,
        f1_score,
    )

    indices = list(range(len(labels)))
    present = sorted(set(np.asarray(y_true).tolist()))
    return Evaluation(
        labels=tuple(labels),
        accuracy=float(accuracy_score(y_true, y_pred)),
        balanced_accuracy=_balanced_accuracy(y_true, y_pred),
        # Macro-F1 over the classes the evaluation set contains, so absent classes do not count as 0.
        macro_f1=float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        confusion=confusion_matrix(y_true, y_pred, labels=indices),
        report=classification_report(
            y_true, y_pred, labels=indices, target_names=list(labels), output_dict=True, zero_division=0
        ),
    )


def _balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """scikit-learn's balanced accuracy, without its warning about predicted-only classes."""
    import warnings

    from sklearn.metrics import balanced_accuracy_score

    if len(y_true) == 0:
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return float(balanced_accuracy_score(y_true, y_pred))


def confusion_csv(confusion: dict[str, Any]) -> str:
    """A confusion dict (labels, counts) as CSV: one row per true class."""
    labels = confusion["labels"]
    lines = ["true\\predicted," + ",".join(labels)]
    lines += [f"{name}," + ",".join(str(c) for c in row) for name, row in zip(labels, confusion["counts"], strict=True)]
    return "\n".join(lines) + "\n"
