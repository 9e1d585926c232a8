"""The trainer's CPU attention (pretrain/attention.py) and MaskedLM's row gather compute what
transformers' SDPA attention and index_select compute."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F

from pretrain import attention
from pretrain.attention import DropoutAttention
from pretrain.model import MaskedLM
from tests.pretrain.conftest import tiny_roberta_mlm

B, H, L, D = 3, 4, 24, 8


@pytest.fixture
def small_slices(monkeypatch):
    # 5 (batch x head) rows per slice: 12 rows give slices of 5, 5, 2.
    monkeypatch.setattr(attention, "_SLICE_ELEMENTS", 5 * L * L)


def _qkv(dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    # (B, H, L, D) views of (B, L, H, D) tensors, as transformers passes them.
    return [
        torch.randn(B, L, H, D, generator=g, dtype=dtype).transpose(1, 2).requires_grad_()
        for _ in range(3)
    ]


def _padding():
    pad = torch.ones(B, L, dtype=torch.bool)
    pad[1, 17:] = False
    pad[2, 5:] = False
    return pad


def _bias(pad, dtype=torch.float64):
    return torch.zeros(B, 1, L, dtype=dtype).masked_fill_(~pad[:, None, :], float("-inf"))


def test_matches_sdpa_with_key_padding(small_slices):
    q, k, v = _qkv()
    pad = _padding()
    # keep probability 1 - 1e-12: every probability is kept, so this is attention without dropout
    out = DropoutAttention.apply(q, k, v, _bias(pad), 1e-12, D**-0.5)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=pad[:, None, None, :])
    ref = ref.transpose(1, 2)
    assert out.shape == (B, L, H, D)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, (q, k, v), g), torch.autograd.grad(ref, (q, k, v), g),
                    strict=True):  # fmt: skip
        torch.testing.assert_close(a, b)


def test_gradients_with_dropout_are_exact(monkeypatch):
    monkeypatch.setattr(attention, "_SLICE_ELEMENTS", 3 * 6 * 6)  # 4 rows: slices of 3 and 1
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 6, 2, 3, generator=g, dtype=torch.float64).transpose(1, 2)
               .requires_grad_() for _ in range(3))  # fmt: skip
    bias = torch.zeros(2, 1, 6, dtype=torch.float64)
    bias[1, 0, 4:] = float("-inf")

    def f(q, k, v):
        torch.manual_seed(3)  # the same dropout mask at every evaluation
        return DropoutAttention.apply(q, k, v, bias, 0.3, 0.7)

    assert torch.autograd.gradcheck(f, (q, k, v))


def test_dropout_keeps_nine_in_ten_scaled_and_follows_the_seed(small_slices):
    n = 64
    # Uniform attention over n keys and v = identity: out[i, j] = keep_ij / (n * (1 - p)).
    z = torch.zeros(2, 2, n, n)
    eye = torch.eye(n).expand(2, 2, n, n)
    torch.manual_seed(0)
    out = DropoutAttention.apply(z, z, eye, None, 0.1, 1.0) * n * 0.9
    keep = out > 0.5
    torch.testing.assert_close(out[keep], torch.ones(int(keep.sum())))
    assert (out[~keep] == 0).all()
    assert abs(keep.float().mean().item() - 0.9) < 0.02
    torch.manual_seed(0)
    assert torch.equal(DropoutAttention.apply(z, z, eye, None, 0.1, 1.0) * n * 0.9, out)


def _tiny_roberta(attention_dropout: float):
    return tiny_roberta_mlm(0.0, attention_dropout, max_len=L)


@pytest.mark.parametrize("threads", [1, 2])
def test_masked_lm_matches_the_plain_model_on_a_padded_batch(tmp_path, small_slices, threads):
    """Training mode, attention dropout on (so the CPU path runs) but negligible: MaskedLM's
    logits at the scored positions and its gradients equal transformers' own model's."""
    hf = _tiny_roberta(attention_dropout=1e-12)
    plain = copy.deepcopy(hf)
    ours = MaskedLM(hf)
    assert hf.config._attn_implementation == attention.ATTENTION
    pad = _padding()
    ids = torch.randint(4, 60, (B, L), generator=torch.Generator().manual_seed(1))
    ids[~pad] = 1
    positions = torch.tensor([0, 3, 16, L + 2, L + 16, 2 * L + 4])  # distinct, sorted
    ours.train(), plain.train()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)  # 1: the sliced path; 2: SDPA with the compact mask
    try:
        logits = ours(ids, pad.long(), positions)
    finally:
        torch.set_num_threads(before)
    ref = plain(input_ids=ids, attention_mask=pad.long()).logits.reshape(B * L, -1)[positions]
    torch.testing.assert_close(logits, ref, rtol=1e-4, atol=1e-5)
    logits.square().sum().backward()
    ref.square().sum().backward()
    for (name, a), b in zip(hf.named_parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5, msg=name)
    # The switch of attention implementation is not part of the saved model.
    hf.save_pretrained(tmp_path)
    assert attention.ATTENTION not in (tmp_path / "config.json").read_text()
    assert "attn_implementation" not in json.loads((tmp_path / "config.json").read_text())


# -- padded_attention=segments: FlashAttention-2 varlen segments, emulated on the CPU ------------
def _emulated_flash_varlen(q, k, v, cu_q, cu_k, max_q, max_k, dropout_p, is_causal,
                           return_debug_mask, *, scale=None, **kwargs):  # fmt: skip
    """What aten._flash_attention_forward computes on packed (T, heads, d) inputs with segment
    boundaries cu_q (= cu_k): softmax attention within each segment, nothing across. Empty
    segments are allowed. float32 maths; differentiable through autograd."""
    assert torch.equal(cu_q, cu_k) and cu_q.dtype == torch.int32 and not is_causal
    assert dropout_p == 0.0
    edges = cu_q.tolist()
    assert edges[0] == 0 and edges[-1] == q.shape[0] and edges == sorted(edges)
    segment = torch.repeat_interleave(torch.arange(len(edges) - 1), torch.tensor(edges).diff())
    allowed = segment[:, None] == segment[None, :]
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = torch.einsum("thd,shd->hts", q, k) * scale
    probs = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
    return (torch.einsum("hts,shd->thd", probs, v), None, None, None, None)


@pytest.fixture
def emulated_segments(monkeypatch):
    monkeypatch.setattr(attention, "_SEGMENT_DEVICES", ("cpu",))
    monkeypatch.setattr(attention, "_SEGMENT_DTYPES", (torch.float32,))
    monkeypatch.setattr(torch.ops.aten, "_flash_attention_forward", _emulated_flash_varlen)


def test_segment_edges_split_every_row_into_its_tokens_and_its_padding():
    keep = torch.zeros(3, 8, dtype=torch.bool)
    for row, n in enumerate((5, 8, 3)):
        keep[row, :n] = True
    edges = attention.segment_edges(keep)
    assert edges.dtype == torch.int32
    assert edges.tolist() == [0, 5, 8, 16, 16, 19, 24]  # the full row's padding is empty


def test_segments_give_the_masks_outputs_at_real_tokens_and_its_gradients(emulated_segments):
    """MaskedLM with padded_attention=segments against the padding mask, training mode (no
    dropout), on a batch with a full row: the same logits at the scored positions, the same
    gradients for every parameter."""
    hf = _tiny_roberta(attention_dropout=0.0)
    by_mask = MaskedLM(copy.deepcopy(hf)).train()
    by_segments = MaskedLM(hf, padded_attention="segments").train()
    assert hf.config._attn_implementation == attention.ATTENTION_SEGMENTS
    pad = _padding()  # row 0 full, rows 1 and 2 padded
    ids = torch.randint(4, 60, (B, L), generator=torch.Generator().manual_seed(1))
    ids[~pad] = 1
    positions = torch.tensor([0, 3, 16, L + 2, L + 16, 2 * L + 4])  # real tokens only
    calls = []
    real = attention.segment_edges
    with pytest.MonkeyPatch.context() as m:
        m.setattr(attention, "segment_edges", lambda keep: calls.append(keep) or real(keep))
        a = by_segments(ids, pad.long(), positions)
    assert len(calls) == 2  # one per layer: the segment path ran
    b = by_mask(ids, pad.long(), positions)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    a.square().sum().backward()
    b.square().sum().backward()
    for (name, p), q in zip(by_segments.named_parameters(), by_mask.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_segments_defer_to_the_mask_path_off_the_gpu():
    hf = _tiny_roberta(attention_dropout=0.0)
    plain = MaskedLM(copy.deepcopy(hf)).train()
    ours = MaskedLM(hf, padded_attention="segments").train()
    pad = _padding()
    ids = torch.randint(4, 60, (B, L), generator=torch.Generator().manual_seed(2))
    positions = torch.arange(0, B * L, 5)
    torch.testing.assert_close(ours(ids, pad.long(), positions), plain(ids, pad.long(), positions))


def test_objectives_pad_on_the_right_as_segments_need():
    from pretrain.config import ObjectiveConfig
    from pretrain.objectives import build_objective
    from pretrain.objectives.base import Vocab

    vocab = Vocab(size=60, pad=1, mask=59, special_ids=[0, 1, 2, 3, 59])
    rng = torch.Generator().manual_seed(0)
    blocks = [torch.randint(4, 59, (n,), generator=rng).numpy() for n in (24, 9, 17, 24, 3)]
    for name in ("mlm", "span"):
        obj = build_objective(ObjectiveConfig(name=name), vocab, seed=0)
        for static in (False, True):
            kw = dict(length=32, n_scored=5 * obj.max_scored(32)) if static else {}
            batch = obj.make_batch(blocks, [(0, i) for i in range(5)], **kw)
            keep = batch.attention_mask.bool()
            assert (keep[:, 1:] <= keep[:, :-1]).all()  # each row: ones, then zeros
            assert keep.sum(-1).tolist() == [24, 9, 17, 24, 3]


def test_unknown_padded_attention_is_refused():
    from intdim.errors import UserError
    from pretrain.config import PretrainConfig

    with pytest.raises(UserError, match="unknown padded_attention 'flash'"):
        PretrainConfig(padded_attention="flash")
    with pytest.raises(UserError, match="unknown padded_attention"):
        MaskedLM(_tiny_roberta(0.0), padded_attention="flash")


def test_segments_refuse_a_batch_that_is_not_right_padded(emulated_segments):
    hf = _tiny_roberta(attention_dropout=0.0)
    model = MaskedLM(hf, padded_attention="segments").train()
    left = _padding().flip(-1)  # padding first: segments would take it for tokens
    ids = torch.randint(4, 60, (B, L), generator=torch.Generator().manual_seed(3))
    with pytest.raises(RuntimeError, match="needs right-padded batches"):
        model(ids, left.long(), torch.arange(0, B * L, 5))
