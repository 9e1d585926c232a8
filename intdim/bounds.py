"""Generalisation helpers from Aghajanyan et al. (2020), sections 5.3 and 5.4.

relative_generalization_gap: section 5.3 plots (acc_train - acc_eval) / (1 - acc_eval) against d90
(Figures 4-5). It is the train-eval gap as a fraction of the eval error still left; it is undefined
at acc_eval = 1 (no error left), where we return nan.

compression_bound_term: Theorem 1 (eq. 4): for a model tuned in d intrinsic parameters on m
samples, L_0(f) <= L_hat_0(f) + O(sqrt(d / m)), an extension of Arora et al. (2018)'s
compression bound; the bound is independent of the parameter count D. The O() hides constants, so
this returns the rate sqrt(d / m) itself, useful to compare tasks and checkpoints, not as a number
that bounds the error.
"""

from __future__ import annotations

import math


def relative_generalization_gap(acc_train: float, acc_eval: float) -> float:
    """(acc_train - acc_eval) / (1 - acc_eval); nan when acc_eval == 1."""
    for name, v in (("acc_train", acc_train), ("acc_eval", acc_eval)):
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{name} must be an accuracy in [0, 1], got {v}")
    if acc_eval == 1.0:
        return math.nan
    return (acc_train - acc_eval) / (1.0 - acc_eval)


def compression_bound_term(d: int, m: int) -> float:
    """sqrt(d / m): the rate of Theorem 1's generalisation term for d parameters, m samples."""
    if d < 1 or m < 1:
        raise ValueError(f"d and m must be >= 1, got d={d}, m={m}")
    return math.sqrt(d / m)
