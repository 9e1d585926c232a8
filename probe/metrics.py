"""Classification metrics shared by every task, the trainer and the d90 threshold.

Pure Python on lists of ints so that the task loader, the search and the tests never need torch or
sklearn. The metric registry is the project's one registry pattern: a task YAML names metrics from
it, and an unknown name fails when the task file is loaded.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

from intdim.errors import UserError
from intdim.registry import Registry

MetricFn = Callable[[Sequence[int], Sequence[int]], float]
METRICS: Registry[MetricFn] = Registry("metric")

# Binary tasks (MRPC, QQP) report F1 of class 1 ("equivalent", "duplicate"), as GLUE does.
POSITIVE_LABEL = 1


def _check(preds: Sequence[int], labels: Sequence[int]) -> None:
    if len(preds) != len(labels):
        raise ValueError(f"{len(preds)} predictions for {len(labels)} labels")
    if not labels:
        raise ValueError("cannot compute a metric on zero examples")


@METRICS.register("accuracy")
def accuracy(preds: Sequence[int], labels: Sequence[int]) -> float:
    _check(preds, labels)
    return sum(int(p) == int(y) for p, y in zip(preds, labels, strict=True)) / len(labels)


@METRICS.register("f1")
def f1(preds: Sequence[int], labels: Sequence[int]) -> float:
    """F1 of the positive class; 0.0 when there are no true positives (no 0/0 warnings)."""
    _check(preds, labels)
    pairs = list(zip(preds, labels, strict=True))
    tp = sum(p == POSITIVE_LABEL and y == POSITIVE_LABEL for p, y in pairs)
    fp = sum(p == POSITIVE_LABEL and y != POSITIVE_LABEL for p, y in pairs)
    fn = sum(p != POSITIVE_LABEL and y == POSITIVE_LABEL for p, y in pairs)
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def compute(names: Sequence[str], preds: Sequence[int], labels: Sequence[int]) -> dict[str, float]:
    """All named metrics, in the order given (the first is the task's primary metric)."""
    return {name: METRICS.get(name)(preds, labels) for name in names}


def majority_label(train_labels: Sequence[int]) -> int:
    """The most frequent train label; ties go to the smallest label so the answer is stable."""
    if not train_labels:
        raise UserError("cannot compute a majority class: the train split is empty")
    counts = Counter(train_labels)
    top = max(counts.values())
    return min(label for label, c in counts.items() if c == top)


def majority_baseline(train_labels: Sequence[int], eval_labels: Sequence[int]) -> float:
    """Eval accuracy of always predicting the most frequent train label.

    "Not computable" in the paper means full fine-tuning does not beat this number.
    """
    guess = majority_label(train_labels)
    return accuracy([guess] * len(eval_labels), eval_labels)
