"""Masking statistics and the loss positions of the objectives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from intdim.errors import UserError
from pretrain.config import ObjectiveConfig
from pretrain.objectives import OBJECTIVES, build_objective
from pretrain.objectives.base import Vocab

VOCAB = Vocab(size=1000, pad=1, mask=999, special_ids=[0, 1, 2, 3, 999])


def _blocks(n, length=512, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(4, 999, size=length) for _ in range(n)]


def test_mlm_masks_fifteen_percent_with_80_10_10():
    obj = build_objective(ObjectiveConfig(name="mlm"), VOCAB, seed=0)
    blocks = _blocks(200)
    batch = obj.make_batch(blocks, [(0, i) for i in range(len(blocks))])
    original = np.stack(blocks).reshape(-1)
    inputs = batch.input_ids.numpy().reshape(-1)
    chosen = batch.positions.numpy()
    n = original.size
    assert abs(len(chosen) / n - 0.15) < 0.005
    assert np.array_equal(batch.targets.numpy(), original[chosen])
    at = inputs[chosen]
    masked = (at == VOCAB.mask).mean()
    kept = (at == original[chosen]).mean()
    replaced = 1 - masked - kept
    assert abs(masked - 0.8) < 0.015 and abs(kept - 0.1) < 0.01 and abs(replaced - 0.1) < 0.01
    # Outside the chosen positions nothing changes, and random tokens are never special.
    others = np.ones(n, dtype=bool)
    others[chosen] = False
    assert np.array_equal(inputs[others], original[others])
    assert not np.isin(at[(at != VOCAB.mask)], [0, 1, 2, 3]).any()


def test_masking_depends_only_on_seed_epoch_and_block():
    obj = build_objective(ObjectiveConfig(name="mlm"), VOCAB, seed=5)
    blocks = _blocks(4, length=100)
    keys = [(0, 10), (0, 11), (1, 10), (0, 12)]
    together = obj.make_batch(blocks, keys)
    alone = obj.make_batch(blocks[1:2], keys[1:2])
    assert torch.equal(together.input_ids[1], alone.input_ids[0])
    same_block_next_epoch = obj.make_batch(blocks[:1], [(1, 10)])
    assert not torch.equal(together.input_ids[0], same_block_next_epoch.input_ids[0])


def test_short_blocks_are_padded_with_an_attention_mask():
    obj = build_objective(ObjectiveConfig(name="mlm"), VOCAB, seed=0)
    batch = obj.make_batch([np.arange(4, 54), np.arange(4, 34)], [(0, 0), (0, 1)])
    assert batch.input_ids.shape == (2, 50) and batch.n_tokens == 80
    assert batch.attention_mask[1].sum() == 30 and (batch.input_ids[1, 30:] == VOCAB.pad).all()
    assert (batch.positions % 50 < torch.tensor([50, 30])[batch.positions // 50]).all()
    full = obj.make_batch([np.arange(4, 54)] * 2, [(0, 0), (0, 1)])
    assert full.attention_mask is None


def test_span_masking_chooses_contiguous_spans_with_the_same_budget():
    obj = build_objective(ObjectiveConfig(name="span"), VOCAB, seed=0)
    blocks = _blocks(100)
    batch = obj.make_batch(blocks, [(0, i) for i in range(len(blocks))])
    chosen = np.zeros(100 * 512, dtype=bool)
    chosen[batch.positions.numpy()] = True
    assert abs(chosen.mean() - 0.15) < 0.01
    runs = np.diff(np.flatnonzero(np.diff(np.concatenate([[0], chosen.astype(int), [0]]))))[::2]
    assert runs.mean() > 2.5  # token-level masking would give runs of ~1.18


def test_unknown_objective_lists_the_registered_ones():
    assert {"mlm", "span"} <= set(OBJECTIVES.names())
    with pytest.raises(UserError, match="choose one of: .*mlm"):
        build_objective(ObjectiveConfig(name="nope"), VOCAB, seed=0)
