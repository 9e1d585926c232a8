import math

import pytest

from intdim.bounds import compression_bound_term, relative_generalization_gap


def test_relative_gap_formula():
    # (0.95 - 0.80) / (1 - 0.80) = 0.75
    assert relative_generalization_gap(0.95, 0.80) == pytest.approx(0.75)
    assert relative_generalization_gap(0.8, 0.8) == 0.0
    assert relative_generalization_gap(0.7, 0.8) == pytest.approx(-0.5)
    assert math.isnan(relative_generalization_gap(1.0, 1.0))


def test_relative_gap_rejects_non_accuracies():
    with pytest.raises(ValueError, match="acc_eval"):
        relative_generalization_gap(0.5, 80.0)


def test_compression_term():
    assert compression_bound_term(200, 800) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        compression_bound_term(0, 10)
