"""pretrain/model.py: the RoBERTa built for pretraining."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from pretrain.config import ModelConfig
from pretrain.model import build_config, build_model


class _Tokenizer(SimpleNamespace):
    def __len__(self) -> int:
        return 300


def test_layer_norm_eps_is_fairseqs_1e5_not_transformers_1e12():
    tok = _Tokenizer(pad_token_id=1, bos_token_id=0, eos_token_id=2)
    cfg = ModelConfig(preset="roberta_tiny")
    assert build_config(cfg, tok, 64).layer_norm_eps == 1e-5
    norms = [m for m in build_model(cfg, tok, 64, seed=0).modules()
             if isinstance(m, torch.nn.LayerNorm)]  # fmt: skip
    assert norms and all(m.eps == 1e-5 for m in norms)
