"""Shared fixtures: tiny Hugging Face models built from config (nothing is downloaded)."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
)

TINY = dict(
    vocab_size=100,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    max_position_embeddings=40,
)


def tiny_roberta(num_labels: int = 2, seed: int = 0) -> RobertaForSequenceClassification:
    torch.manual_seed(seed)
    return RobertaForSequenceClassification(RobertaConfig(num_labels=num_labels, **TINY)).eval()


def tiny_bert(num_labels: int = 2, seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    return BertForSequenceClassification(BertConfig(num_labels=num_labels, **TINY)).eval()


@pytest.fixture
def batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 100, (4, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[0, 8:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1, 1, 0])}
