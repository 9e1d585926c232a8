"""Span masking (SpanBERT, Joshi et al. 2020): the same budget of mask_prob of the tokens, but
chosen as contiguous spans with lengths ~ Geometric(span_geometric_p) clipped to max_span, then
the same 80/10/10 replacement and the same loss. It exists to show the extension point: one file,
one registry line."""

from __future__ import annotations

import numpy as np

from pretrain.objectives.base import OBJECTIVES, Objective


@OBJECTIVES.register("span")
class SpanMasking(Objective):
    def corrupt(self, tokens: np.ndarray, rng: np.random.Generator):
        sz = len(tokens)
        budget = max(1, int(self.cfg.mask_prob * sz + rng.random()))
        chosen = np.zeros(sz, dtype=bool)
        count = 0
        for _ in range(10 * sz):  # bounded: spans may overlap already-chosen tokens
            if count >= budget:
                break
            length = min(int(rng.geometric(self.cfg.span_geometric_p)), self.cfg.max_span)
            length = min(length, budget - count)
            start = int(rng.integers(0, sz - length + 1))
            count += int((~chosen[start : start + length]).sum())
            chosen[start : start + length] = True
        return self.replace(tokens, chosen, rng), chosen
