"""The GPU-throughput options keep the maths: no attention mask for unpadded batches (what lets
SDPA pick FlashAttention on a GPU), static shapes (filler rows padded to a fixed count), the loss
inside the compiled module, and the trainer with all of them under torch.compile."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from intdim.errors import UserError
from pretrain.config import ObjectiveConfig, PretrainConfig
from pretrain.model import IGNORE_INDEX, MaskedLM, summed_cross_entropy
from pretrain.objectives import build_objective
from pretrain.objectives.base import Vocab
from pretrain.train import main
from tests.pretrain.conftest import tiny_config, tiny_roberta_mlm, train_losses

VOCAB = Vocab(size=60, pad=1, mask=59, special_ids=[0, 1, 2, 3, 59])
L = 40


def _tiny(dropout: float = 0.0) -> MaskedLM:
    assert VOCAB.size == 60  # tiny_roberta_mlm's
    return MaskedLM(tiny_roberta_mlm(dropout, dropout, max_len=L)).train()


def _blocks(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [np.concatenate([[0], rng.integers(4, 59, size=n - 1)]) for n in lengths]


def _keys(n, start=0):
    return [(0, start + i) for i in range(n)]


def _loss_and_grads(model, batch, seed=0, in_model=False):
    obj = build_objective(ObjectiveConfig(), VOCAB, seed=0)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # the same dropout draws for both paths
    loss = obj.loss(model, batch, in_model=in_model)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def _assert_same(a, b, rtol=1e-5, atol=1e-6):
    (la, ga), (lb, gb) = a, b
    torch.testing.assert_close(la, lb, rtol=rtol, atol=atol)
    for name in ga:
        torch.testing.assert_close(ga[name], gb[name], rtol=rtol, atol=atol, msg=name)


# -- attention_mask=None for unpadded batches -----------------------------------------------------
@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_no_mask_equals_an_all_ones_mask(dropout):
    """Full blocks: the objective gives attention_mask=None; that must be the same computation as
    an all-ones mask (values and gradients). With dropout 0.1 on one thread the trainer's CPU
    attention runs with and without its padding bias and draws the same dropout mask."""
    model = _tiny(dropout)
    obj = build_objective(ObjectiveConfig(), VOCAB, seed=0)
    batch = obj.make_batch(_blocks([L] * 3), _keys(3))
    assert batch.attention_mask is None
    ones = type(batch)(**{**batch.__dict__, "attention_mask": torch.ones(3, L, dtype=torch.long)})
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _assert_same(_loss_and_grads(model, batch), _loss_and_grads(model, ones))
    finally:
        torch.set_num_threads(before)


def test_sdpa_gets_no_mask_only_for_an_unpadded_batch(monkeypatch):
    """What decides FlashAttention on a GPU: SDPA must see attn_mask=None for full blocks (an
    all-ones mask would still be passed as a mask, see pretrain/attention.py's mask hook) and a
    key-padding mask as soon as one block is short."""
    seen = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, attn_mask=None, **kwargs):
        seen.append(attn_mask)
        return sdpa(*args, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    model = _tiny(0.0)  # no dropout: transformers' SDPA path, as on a GPU
    obj = build_objective(ObjectiveConfig(), VOCAB, seed=0)
    full = obj.make_batch(_blocks([L] * 2), _keys(2))
    obj.loss(model, full)
    assert len(seen) == 2 and all(m is None for m in seen)
    seen.clear()
    padded = obj.make_batch(_blocks([L, L - 7]), _keys(2))
    obj.loss(model, padded)
    assert len(seen) == 2 and all(m is not None for m in seen)
    assert seen[0].shape == (2, 1, 1, L) and not seen[0][1, 0, 0, L - 7 :].any()
    assert seen[0][0].all() and seen[0][1, 0, 0, : L - 7].all()


def test_a_padded_batch_scores_like_its_blocks_alone():
    """The mask is applied: a short block's logits in a padded batch (also padded further, to a
    static length) equal its logits when it is run alone, unpadded and unmasked."""
    model = _tiny(0.0).eval()
    obj = build_objective(ObjectiveConfig(), VOCAB, seed=0)
    blocks = _blocks([L - 3, L - 11])
    with torch.no_grad():
        for length in (None, L):
            batch = obj.make_batch(blocks, _keys(2), length=length)
            assert batch.attention_mask is not None
            width = batch.input_ids.shape[1]
            logits = model(batch.input_ids, batch.attention_mask, batch.positions)
            for r in range(2):
                alone = obj.make_batch(blocks[r : r + 1], _keys(1, start=r))
                assert alone.attention_mask is None
                ref = model(alone.input_ids, None, alone.positions)
                rows = (batch.positions // width) == r
                torch.testing.assert_close(logits[rows], ref, rtol=1e-5, atol=1e-5)


# -- static shapes --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mlm", "span"])
def test_max_scored_bounds_every_block_and_is_reached(name):
    obj = build_objective(ObjectiveConfig(name=name), VOCAB, seed=3)
    rng = np.random.default_rng(0)
    lengths = rng.integers(8, 513, size=300).tolist() + [512] * 300
    counts = [obj.make_batch(_blocks([n], seed=i), [(0, i)]).n_scored
              for i, n in enumerate(lengths)]  # fmt: skip
    assert max(counts) <= obj.max_scored(512) == 77
    assert max(counts[300:]) == 77  # tight: a smaller cap would fail on real batches


def test_static_batch_pads_length_and_positions_with_unscored_rows():
    obj = build_objective(ObjectiveConfig(), VOCAB, seed=0)
    blocks, keys = _blocks([L - 5, L - 2, L - 9]), _keys(3)
    plain = obj.make_batch(blocks, keys)
    cap = 3 * obj.max_scored(L + 6)
    static = obj.make_batch(blocks, keys, length=L + 6, n_scored=cap)
    n = plain.n_scored
    assert n == len(plain.positions) and static.n_scored == n < cap
    assert static.input_ids.shape == (3, L + 6) and len(static.positions) == len(static.targets)
    assert len(static.positions) == cap
    width = L + 6
    # The scored rows are the same positions (re-indexed to the wider rows) and targets.
    rows, cols = plain.positions // (L - 2), plain.positions % (L - 2)
    assert torch.equal(static.positions[:n], rows * width + cols)
    assert torch.equal(static.targets[:n], plain.targets)
    assert torch.equal(static.input_ids[:, : L - 2], plain.input_ids)
    assert (static.input_ids[:, L - 2 :] == VOCAB.pad).all()
    # Filler rows: distinct from each other and from the scored rows, ignored by the loss.
    assert len(set(static.positions.tolist())) == cap
    assert (static.targets[n:] == IGNORE_INDEX).all() and (static.targets[:n] >= 0).all()
    assert static.attention_mask.sum(1).tolist() == [L - 5, L - 2, L - 9]
    with pytest.raises(ValueError, match="max_scored"):
        obj.make_batch(blocks, keys, n_scored=n - 1)


def test_static_shapes_and_loss_in_model_keep_the_loss_and_gradients():
    model = _tiny(0.1)
    obj = build_objective(ObjectiveConfig(), VOCAB, seed=0)
    blocks, keys = _blocks([L - 4, L - 1, L - 6]), _keys(3)
    plain = obj.make_batch(blocks, keys)
    # Same row length (the longest block), so the dropout draws are the same too.
    static = obj.make_batch(blocks, keys, length=L - 1, n_scored=3 * obj.max_scored(L - 1))
    assert len(static.positions) > plain.n_scored
    ref = _loss_and_grads(model, plain)
    _assert_same(_loss_and_grads(model, static), ref)
    # The loss computed inside the module is the same function: bit for bit.
    inside = _loss_and_grads(model, plain, in_model=True)
    assert torch.equal(inside[0], ref[0])
    assert all(torch.equal(inside[1][k], ref[1][k]) for k in ref[1])
    # And the filler rows matter if they were scored: the test can tell.
    wrong = type(static)(**{**static.__dict__, "targets": static.targets.clamp(min=0)})
    assert not torch.allclose(_loss_and_grads(model, wrong)[0], ref[0])


def test_summed_cross_entropy_ignores_filler_rows_exactly():
    logits = torch.randn(5, 7)
    targets = torch.tensor([3, 0, IGNORE_INDEX, 6, IGNORE_INDEX])
    keep = targets != IGNORE_INDEX
    want = torch.nn.functional.cross_entropy(logits[keep], targets[keep], reduction="sum")
    torch.testing.assert_close(summed_cross_entropy(logits, targets), want)


def _counting_backend():
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    return graphs, backend


def test_static_shapes_compile_one_graph_where_plain_batches_recompile():
    """torch.compile with dynamic=False: batches of varying block lengths and scored counts make
    one graph when padded to static shapes, and one per shape otherwise."""
    obj = build_objective(ObjectiveConfig(), VOCAB, seed=0)
    lengths = [[L, L - 3], [L - 1, L - 8], [L - 2, L], [L - 6, L - 6]]
    for static, want in ((True, 1), (False, None)):
        torch._dynamo.reset()
        graphs, backend = _counting_backend()
        model = _tiny(0.1)
        compiled = torch.compile(model, backend=backend, fullgraph=True, dynamic=False)
        counts = set()
        for i, ls in enumerate(lengths):
            kw = dict(length=L, n_scored=2 * obj.max_scored(L)) if static else {}
            batch = obj.make_batch(_blocks(ls, seed=i), _keys(2, start=2 * i), **kw)
            counts.add(len(batch.positions))
            obj.loss(compiled, batch, in_model=True).backward()
        if static:
            assert len(graphs) == want and counts == {2 * obj.max_scored(L)}
        else:
            assert len(counts) > 1 and len(graphs) > 1
    torch._dynamo.reset()


# -- config and trainer ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kw, message",
    [(dict(compile_mode="fast"), "unknown compile_mode"),
     (dict(compile_loss=True), "compile_loss only act with compile=true"),
     (dict(compile_tune_kernels=True), "compile_tune_kernels only act with compile=true"),
     (dict(compile_mode="max-autotune", compile_fullgraph=True),
      "compile_mode, compile_fullgraph only act")],
)  # fmt: skip
def test_compile_options_are_checked_at_start_up(kw, message):
    with pytest.raises(UserError, match=message):
        PretrainConfig(**kw)
    PretrainConfig(compile=True, **{k: v for k, v in kw.items() if k != "compile_mode"})


def test_trainer_with_static_shapes_and_compiled_loss_matches_the_plain_trainer(
    tmp_path, corpus, cache_dir, monkeypatch
):
    """The trainer's compile path with every option (fullgraph, loss inside, static shapes) on
    the dynamo front end (a counting eager backend stands in for inductor, which a CPU test cannot
    afford): the same per-update losses as the plain eager trainer (dropout off: padding the
    length changes dropout's draws), and one graph for all updates' batches (two if some batch
    happens to have no padding at all)."""
    common = dict(max_updates=6, save_interval_updates=6, save_initial_checkpoint=False,
                  **{"model.dropout": 0.0, "model.attention_dropout": 0.0,
                     "optim.update_freq": 2})  # fmt: skip
    plain = tmp_path / "plain"
    main(tiny_config(plain, corpus, cache_dir, **common))
    torch._dynamo.reset()
    graphs, backend = _counting_backend()
    real = torch.compile
    calls = []

    def compile_with_backend(model, **kwargs):
        calls.append(kwargs)
        return real(model, backend=backend, **{k: v for k, v in kwargs.items() if k != "mode"})

    monkeypatch.setattr(torch, "compile", compile_with_backend)
    import torch._inductor.config as inductor_config

    fast = tmp_path / "fast"
    # inductor's own patch() restores the setting after; monkeypatch would delete it from
    # inductor's config module on undo (torch 2.13), breaking every later compile in the process.
    with inductor_config.patch(coordinate_descent_tuning=False):
        main(tiny_config(fast, corpus, cache_dir, compile=True, compile_fullgraph=True,
                         compile_loss=True, static_shapes=True, compile_tune_kernels=True,
                         **common))  # fmt: skip
        assert inductor_config.coordinate_descent_tuning  # for inductor, when it compiles
    torch._dynamo.reset()
    assert calls == [dict(mode=None, fullgraph=True, dynamic=False)]
    assert not inductor_config.coordinate_descent_tuning
    a, b = train_losses(plain), train_losses(fast)
    assert sorted(a) == sorted(b) == list(range(1, 7))
    assert all(abs(a[u] - b[u]) < 1e-5 * max(1.0, abs(a[u])) for u in a), (a, b)
    assert 1 <= len(graphs) <= 2


def test_padded_vocabulary_adds_rows_that_are_never_inputs_or_targets(
    tmp_path, corpus, cache_dir, monkeypatch
):
    """model.pad_vocab_to_multiple_of rounds the embedding and LM-head rows up; the tokenizer,
    the objective's draws and the model-FLOP count keep the tokenizer's size, and the checkpoint
    loads with transformers as it is."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from pretrain import objectives
    from pretrain.flops import FlopCount

    seen = []
    real = objectives.base.Objective.make_batch

    def spy(self, *args, **kwargs):
        batch = real(self, *args, **kwargs)
        seen.append((int(batch.input_ids.max()), int(batch.targets.max()), self.vocab.size))
        return batch

    monkeypatch.setattr(objectives.base.Objective, "make_batch", spy)
    counts = []
    real_of = FlopCount.of
    monkeypatch.setattr(FlopCount, "of", lambda m, vocab=None: counts.append(
        real_of(m, vocab)) or counts[-1])  # fmt: skip
    run = tmp_path / "padded"
    main(
        tiny_config(
            run,
            corpus,
            cache_dir,
            max_updates=4,
            save_interval_updates=4,
            save_initial_checkpoint=False,
            **{"model.pad_vocab_to_multiple_of": 64},
        )
    )
    ckpt = run / "checkpoints/checkpoint_4"
    tok = AutoTokenizer.from_pretrained(ckpt)
    model = AutoModelForMaskedLM.from_pretrained(ckpt)
    rows = model.config.vocab_size
    assert rows % 64 == 0 and len(tok) < rows < len(tok) + 64
    assert model.get_input_embeddings().weight.shape[0] == rows
    assert model.lm_head.decoder.weight.shape[0] == rows == model.lm_head.bias.shape[0]
    assert seen and all(i < len(tok) and t < len(tok) and v == len(tok) for i, t, v in seen)
    assert counts[0].head == model.lm_head.dense.weight.numel() + len(tok) * 64  # hidden 64
    logits = model(**tok("a few words", return_tensors="pt")).logits
    assert logits.shape[-1] == rows and torch.isfinite(logits).all()
    with pytest.raises(UserError, match="pad_vocab_to_multiple_of must be >= 1"):
        tiny_config(tmp_path / "bad", corpus, cache_dir, **{"model.pad_vocab_to_multiple_of": 0})
