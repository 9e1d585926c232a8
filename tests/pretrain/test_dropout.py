"""Hidden dropout with bit keep-masks (pretrain/dropout.py), on the CPU path: the draw's law, the
forward and backward it gives, where the trainer swaps it in, and that compiling keeps it."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pretrain.dropout import (
    LEVELS,
    BitmaskDropout,
    dropout_keep_bits,
    pack_bits,
    threshold_for,
    unpack_bits,
    use_bitmask_dropout,
)
from pretrain.train import main
from tests.pretrain.conftest import tiny_config, tiny_roberta_mlm, train_losses


def test_threshold_rounds_p_to_sixteen_bits():
    assert threshold_for(0.1) == 6554 and threshold_for(0.0) == 0
    assert abs(threshold_for(0.1) / LEVELS - 0.1) < 1 / LEVELS
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="dropout probability"):
            threshold_for(bad)


def test_pack_and_unpack_put_element_i_in_bit_i_mod_8_of_byte_i_div_8():
    keep = torch.rand(13, 8) > 0.5
    bits = pack_bits(keep)
    assert bits.dtype == torch.uint8 and bits.shape == (13,)
    for i in range(13 * 8):
        assert (int(bits[i // 8]) >> (i % 8)) & 1 == int(keep.reshape(-1)[i])
    torch.testing.assert_close(unpack_bits(bits, 100), keep.reshape(-1)[:100].to(torch.uint8))


def test_keep_bits_are_independent_draws_with_the_rounded_probability():
    n, p = 400_000, 0.1
    torch.manual_seed(0)
    like = torch.empty(n)
    bits = dropout_keep_bits(like, threshold_for(p))
    assert bits.shape == (n // 8,)
    keep = unpack_bits(bits, n).double()
    q = 1 - threshold_for(p) / LEVELS
    sigma = math.sqrt(q * (1 - q) / n)
    assert abs(keep.mean() - q) < 5 * sigma
    for j in range(8):  # every bit position carries the same law
        assert abs(keep.view(-1, 8)[:, j].mean() - q) < 5 * sigma * math.sqrt(8)
    # Neighbours are independent: P(both kept) = q^2.
    both = (keep[:-1] * keep[1:]).mean()
    assert abs(both - q * q) < 5 * math.sqrt(q * q * (1 - q * q) / n)
    # The generator's state decides the draw: reseeded, the same; advanced, another.
    torch.manual_seed(0)
    again = dropout_keep_bits(like, threshold_for(p))
    assert torch.equal(bits, again)
    assert not torch.equal(bits, dropout_keep_bits(like, threshold_for(p)))


def test_forward_and_backward_are_dropouts_with_an_unbiased_scale():
    torch.manual_seed(0)
    x = torch.randn(64, 257, dtype=torch.float64, requires_grad=True)  # 257: bytes straddle rows
    drop = BitmaskDropout(0.1).train()
    y = drop(x)
    kept = y != 0
    scale = LEVELS / (LEVELS - threshold_for(0.1))
    torch.testing.assert_close(y[kept], x[kept] * scale)
    assert 0.85 < kept.double().mean() < 0.95
    g = torch.randn_like(y)
    y.backward(g)
    torch.testing.assert_close(x.grad, g * kept * scale)
    # Unbiased: averaged over many draws, y = x (each draw keeps with the rounded probability).
    ones = torch.ones(1000, 1000)
    assert abs(drop(ones).mean().item() - 1.0) < 5 * math.sqrt(0.1 / 0.9 / ones.numel())


def test_eval_and_p_zero_are_the_identity():
    x = torch.randn(4, 8)
    assert BitmaskDropout(0.3).eval()(x) is x
    assert BitmaskDropout(0.0).train()(x) is x
    drop = BitmaskDropout(0.3).train()
    drop.p = 0.0  # p is read at every forward, as nn.Dropout's (the MFU bench sets it)
    assert drop(x) is x


def _tiny_roberta(dropout=0.1, attention_dropout=0.2):
    return tiny_roberta_mlm(dropout, attention_dropout, layers=3, max_len=40)


def test_swap_takes_the_hidden_dropouts_and_leaves_attention_and_weights_alone():
    model = _tiny_roberta()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert use_bitmask_dropout(model) == 1 + 2 * 3  # embeddings, then 2 per layer
    for layer in model.roberta.encoder.layer:
        assert type(layer.attention.self.dropout) is nn.Dropout  # p goes to SDPA
        assert layer.attention.self.dropout.p == 0.2
        assert isinstance(layer.attention.output.dropout, BitmaskDropout)
        assert isinstance(layer.output.dropout, BitmaskDropout)
    assert isinstance(model.roberta.embeddings.dropout, BitmaskDropout)
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], v) for k, v in before.items())
    ids = torch.randint(3, 60, (2, 40))
    model.eval()
    plain = _tiny_roberta().eval()
    torch.testing.assert_close(model(ids).logits, plain(ids).logits)  # eval: the same model


def test_compiled_model_draws_the_same_masks_and_gradients_as_eager():
    """Through torch.compile's tracing (fake tensors, autograd's partition of the graph), the op
    runs as it is: with the same seed, the same loss and gradients as eager. (No attention
    dropout: traced, SDPA draws its own mask another way than eager.)"""
    model = _tiny_roberta(dropout=0.3, attention_dropout=0.0).train()
    use_bitmask_dropout(model)
    ids = torch.randint(3, 60, (2, 40))

    def loss_and_grads(fn):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(5)
        loss = fn(ids).logits.float().square().mean()
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    torch._dynamo.reset()
    eager = loss_and_grads(model)
    compiled = loss_and_grads(torch.compile(model, backend="aot_eager", fullgraph=True))
    torch._dynamo.reset()
    torch.testing.assert_close(compiled[0], eager[0])
    for a, b in zip(compiled[1], eager[1], strict=True):  # up to float summation order
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item())
    torch.manual_seed(6)  # another seed, another mask
    other = model(ids).logits.float().square().mean()
    assert not torch.equal(other.detach(), eager[0])


def test_trainer_with_bitmask_dropout_is_reproducible_and_saves_plain_checkpoints(
    tmp_path, corpus, cache_dir
):
    from transformers import AutoModelForMaskedLM

    common = dict(max_updates=4, save_interval_updates=4, save_initial_checkpoint=False,
                  log_interval=1)  # fmt: skip
    runs = {}
    for name, bitmask in (("a", True), ("b", True), ("torch", False)):
        main(tiny_config(tmp_path / name, corpus, cache_dir, dropout_bitmask=bitmask, **common))
        runs[name] = train_losses(tmp_path / name)
    assert runs["a"] == runs["b"] and len(runs["a"]) == 4
    assert runs["a"] != runs["torch"]  # other draws than torch's dropout
    assert all(abs(a - b) < 0.5 for a, b in zip(runs["a"], runs["torch"], strict=True))
    model = AutoModelForMaskedLM.from_pretrained(tmp_path / "a/checkpoints/checkpoint_4")
    assert not any(isinstance(m, BitmaskDropout) for m in model.modules())


def test_compiled_backward_keeps_the_bits_not_the_unpacked_mask():
    """The forward saves each layer's N / 8 bytes of bits for the backward, which unpacks them
    again, rather than writing out an N-byte mask (what torch's dropout saves)."""
    from functorch.compile import make_boxed_func, min_cut_rematerialization_partition
    from torch._dynamo.backends.common import aot_autograd

    saved = []

    def forward_compiler(gm, example_inputs):
        (outputs,) = next(n for n in gm.graph.nodes if n.op == "output").args
        saved.extend(o.meta["val"] for o in outputs if "val" in getattr(o, "meta", {}))
        return make_boxed_func(gm.forward)

    backend = aot_autograd(fw_compiler=forward_compiler,
                           bw_compiler=lambda gm, _: make_boxed_func(gm.forward),
                           partition_fn=min_cut_rematerialization_partition)  # fmt: skip
    model = _tiny_roberta(dropout=0.1, attention_dropout=0.0).train()
    use_bitmask_dropout(model)
    ids = torch.randint(3, 60, (2, 40))
    torch._dynamo.reset()
    torch.compile(model, backend=backend)(ids).logits.sum().backward()
    torch._dynamo.reset()
    masks = [t for t in saved if isinstance(t, torch.Tensor) and t.dtype == torch.uint8]
    numel = 2 * 40 * 32  # one hidden state
    assert sorted(t.numel() for t in masks if t.numel() > 8) == [numel // 8] * 7
