"""RoBERTa's masked LM, as fairseq's MaskTokensDataset: int(0.15 * len + U[0,1)) positions chosen
uniformly without replacement (<s> and </s> included, as in fairseq), 80% <mask>, 10% a random
token, 10% unchanged; the loss is taken at every chosen position."""

from __future__ import annotations

import numpy as np

from pretrain.objectives.base import OBJECTIVES, Objective


@OBJECTIVES.register("mlm")
class MaskedLM(Objective):
    def corrupt(self, tokens: np.ndarray, rng: np.random.Generator):
        sz = len(tokens)
        n = int(self.cfg.mask_prob * sz + rng.random())  # probabilistic rounding, as fairseq
        chosen = np.zeros(sz, dtype=bool)
        chosen[rng.choice(sz, n, replace=False)] = True
        return self.replace(tokens, chosen, rng), chosen
