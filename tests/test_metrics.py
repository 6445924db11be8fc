"""Metrics against cases computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from harness.train.metrics import evaluate

LABELS = ("a", "b", "c")


def test_hand_computed_case() -> None:
    # true:  a a a a b b c c
    # pred:  a a a b b c c a
    y_true = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 0, 0, 1, 1, 2, 2, 0])
    ev = evaluate(y_true, y_pred, LABELS)
    assert ev.accuracy == pytest.approx(5 / 8)
    # recalls: a 3/4, b 1/2, c 1/2
    assert ev.balanced_accuracy == pytest.approx((3 / 4 + 1 / 2 + 1 / 2) / 3)
    # precisions: a 3/4, b 1/2, c 1/2 -> F1 a 0.75, b 0.5, c 0.5
    assert ev.macro_f1 == pytest.approx((0.75 + 0.5 + 0.5) / 3)
    assert ev.confusion.tolist() == [[3, 1, 0], [0, 1, 1], [1, 0, 1]]
    assert ev.confusion_normalized[0].tolist() == pytest.approx([0.75, 0.25, 0.0])
    assert ev.per_class_recall() == pytest.approx({"a": 0.75, "b": 0.5, "c": 0.5})
    assert ev.report["b"]["precision"] == pytest.approx(0.5)
    data = ev.confusion_dict()
    assert data["labels"] == ["a", "b", "c"] and data["counts"][2] == [1, 0, 1]


def test_absent_class_keeps_a_zero_row_and_is_not_averaged() -> None:
    y_true = np.array([0, 0, 1, 1])
    y_pred = np.array([0, 2, 1, 1])
    ev = evaluate(y_true, y_pred, LABELS)
    assert ev.confusion[2].tolist() == [0, 0, 0]
    assert ev.confusion_normalized[2].tolist() == [0.0, 0.0, 0.0]
    assert ev.balanced_accuracy == pytest.approx((0.5 + 1.0) / 2)
    # F1 over present classes a (p=1, r=.5 -> 2/3) and b (1.0)
    assert ev.macro_f1 == pytest.approx((2 / 3 + 1.0) / 2)
