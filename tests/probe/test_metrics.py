"""Shared metric math: the numbers every task, the threshold and the baseline rely on."""

from __future__ import annotations

import pytest

from intdim.errors import UserError
from probe.metrics import accuracy, compute, f1, majority_baseline, majority_label


def test_accuracy_and_f1_by_hand():
    preds, labels = [1, 1, 0, 0, 1], [1, 0, 0, 1, 1]
    assert accuracy(preds, labels) == pytest.approx(3 / 5)
    # class 1: tp = 2, fp = 1, fn = 1 -> F1 = 4 / 6
    assert f1(preds, labels) == pytest.approx(2 / 3)
    assert f1([0, 0], [1, 0]) == 0.0  # no true positives: 0, not a division error
    assert list(compute(["accuracy", "f1"], preds, labels)) == ["accuracy", "f1"]


def test_length_mismatch_and_empty_inputs():
    with pytest.raises(ValueError, match="2 predictions for 3 labels"):
        accuracy([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="zero examples"):
        f1([], [])


def test_majority_baseline():
    assert majority_label([2, 0, 2, 1]) == 2
    assert majority_label([1, 0, 0, 1]) == 0  # a tie goes to the smaller label
    assert majority_baseline([1, 1, 0], [0, 1, 1, 1]) == pytest.approx(0.75)
    with pytest.raises(UserError, match="train split is empty"):
        majority_label([])


def test_unknown_metric_lists_the_valid_ones():
    with pytest.raises(UserError, match="unknown metric 'mcc'; choose one of: accuracy, f1"):
        compute(["mcc"], [0], [0])
