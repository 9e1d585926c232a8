"""Self-attention for training on CPU, registered with transformers as ATTENTION.

Why: with attention dropout (RoBERTa's 0.1) PyTorch's CPU scaled_dot_product_attention cannot use
its fused (flash) kernel and falls back to the math path, which materialises the whole
(batch, heads, L, L) score tensor several times over (scores, softmax, a float dropout mask, the
dropped probabilities, and the same again in backward) and so runs from main memory. With the
usual padding mask, transformers also expands the (batch, L) padding mask to (batch, 1, L, L)
and SDPA turns that into a float mask with extra passes (where / isneginf / all) in every layer.

Here the same computation runs one slice of (batch x head) rows, about 4 MB of scores, at a time, so
each slice stays in cache from the score product to the output, the dropout mask is kept as bool,
and padding is a (1, 1, L) additive bias fused into the score product. The maths is unchanged:
softmax(q k^T * scale + key-padding bias), dropout with keep probability 1 - p on the
probabilities scaled by 1 / (1 - p), times v; padded keys get -inf, padded queries attend to the
real keys, as with transformers' bidirectional mask. The dropout mask is drawn with `bernoulli_`
from torch's default generator, so it is a function of the seed set before the forward (the
trainer's exact-resume guarantee holds). Outside CPU training with dropout (evaluation, GPU,
torch.compile, causal or arbitrary masks) it defers to transformers' SDPA path.
"""

from __future__ import annotations

import torch

ATTENTION = "intdim_cpu_attention"
# The same, with a padded batch's attention on a GPU as FlashAttention-2 varlen segments
# (padded_attention=segments; `segment_attention`).
ATTENTION_SEGMENTS = "intdim_segment_attention"
# Where FlashAttention-2's varlen kernel runs (the tests widen these around an emulation of it).
_SEGMENT_DEVICES = ("cuda",)
_SEGMENT_DTYPES = (torch.bfloat16, torch.float16)
# Scores per slice: 4 MB of fp32 (4 heads of 512 x 512), which stays in L2/L3 from the score
# product to the output; measured on the 2-core CPU at 512 tokens, one 32 MB slice was no faster
# than SDPA, 4 MB slices ~10% faster for the whole forward + backward.
_SLICE_ELEMENTS = 1 << 20
# The slices cost ~16 ops per slice and layer where SDPA's math path has a handful. With more than
# one intra-op thread on a CPU shared with other processes every op waits at an OpenMP barrier for
# a descheduled thread: interleaved with HF's Trainer at 2 threads on the loaded 2-core machine
# this path made the trainer 0.78x HF where SDPA gave 1.07x; at 1 thread it gave 1.9-2.1x where
# SDPA gave 1.76x. So it only runs single-threaded; with more threads the SDPA path runs (still
# with the compact key-padding mask). Set False to use it with any number of threads.
_SINGLE_THREAD_ONLY = True


def key_padding_mask(*args, attention_mask: torch.Tensor | None = None, mask_function=None,
                     **kwargs):  # fmt: skip
    """transformers' mask hook: keep the (B, L) padding mask as a broadcastable (B, 1, 1, L) bool
    instead of expanding it to (B, 1, L, L). Anything but a plain bidirectional mask (a causal
    mask, say) is built by transformers' SDPA mask function as usual."""
    from transformers.masking_utils import bidirectional_mask_function, sdpa_mask

    if (
        mask_function is not bidirectional_mask_function
        or kwargs.get("q_offset")
        or kwargs.get("kv_offset")
    ):
        return sdpa_mask(*args, attention_mask=attention_mask, mask_function=mask_function,
                         **kwargs)  # fmt: skip
    if attention_mask is None:
        return None
    return attention_mask[:, None, None, :]


def attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None,
              is_causal=None, **kwargs):  # fmt: skip
    """transformers' attention hook: query/key/value (B, H, L, D) -> ((B, L, H, D), None)."""
    key_padding = attention_mask is None or (
        attention_mask.dtype == torch.bool and attention_mask.shape[-2] == 1
    )
    if (
        dropout == 0.0
        or query.device.type != "cpu"
        or not key_padding
        or getattr(module, "is_causal", False)
        or is_causal
        or query.shape[-2] != key.shape[-2]
        or torch.compiler.is_compiling()
        or (_SINGLE_THREAD_ONLY and torch.get_num_threads() > 1)
    ):
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, is_causal=is_causal, **kwargs)  # fmt: skip
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    bias = None
    if attention_mask is not None:  # (B, 1, 1, L) bool, True = attend -> additive (B, 1, L)
        bias = torch.zeros(attention_mask.shape[0], 1, attention_mask.shape[-1],
                           dtype=query.dtype)  # fmt: skip
        bias.masked_fill_(~attention_mask[:, 0], float("-inf"))
    return DropoutAttention.apply(query, key, value, bias, float(dropout), float(scale)), None


def segment_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None,
                      is_causal=None, **kwargs):  # fmt: skip
    """A right-padded batch's attention without a mask and without copies (CUDA, bf16/fp16).

    With a padding mask SDPA cannot use its fastest kernels (FlashAttention, cuDNN): it takes the
    memory-efficient one, which ran a padded batch's attention ~30% slower than cuDNN's on an
    H200 (BENCHMARKS.md, session 6). Here every row of the batch becomes two segments of
    FlashAttention-2's variable-length kernel, its real tokens and its padding, over the
    (B x L, heads, d) buffer the q/k/v projections wrote (HF's (B, heads, L, d) tensors are
    transposed views of it). Real tokens attend to their row's real tokens only, as with the mask;
    padding attends to padding, where the mask let it attend to the real tokens: outputs that
    nothing scored reads, and that no real token sees (keys at padded positions are in no real
    segment). A full row's padding segment is empty, so the segment count is 2B + 1 for every
    batch (one compiled graph with static_shapes). Needs masks that are a prefix of each row (the
    objectives pad on the right, tests/pretrain/test_attention.py checks it); anything else, and
    every other device or dtype, goes to `attention`."""
    if (
        attention_mask is None
        or query.device.type not in _SEGMENT_DEVICES
        or query.dtype not in _SEGMENT_DTYPES
        or attention_mask.dtype != torch.bool
        or attention_mask.shape[-2] != 1
        or getattr(module, "is_causal", False)
        or is_causal
        or query.shape[-2] != key.shape[-2]
    ):
        return attention(module, query, key, value, attention_mask, dropout=dropout,
                         scaling=scaling, is_causal=is_causal, **kwargs)  # fmt: skip
    B, H, L, D = query.shape
    flat = [t.transpose(1, 2).reshape(B * L, H, D) for t in (query, key, value)]  # views
    keep = attention_mask[:, 0, 0, :]
    # Checked on the device, so nothing waits for it: a failure stops the run at its next sync.
    torch._assert_async((keep[:, 1:] <= keep[:, :-1]).all(), _NOT_RIGHT_PADDED)
    edges = segment_edges(keep)
    out = torch.ops.aten._flash_attention_forward(
        *flat, edges, edges, L, L, float(dropout), False, False, scale=scaling
    )[0]
    return out.view(B, L, H, D), None


_NOT_RIGHT_PADDED = (
    "padded_attention=segments needs right-padded batches (each row's real tokens first); "
    "use padded_attention=mask"
)


def segment_edges(keep: torch.Tensor) -> torch.Tensor:
    """(B, L) prefix masks -> the 2B + 1 int32 segment boundaries 0, n_0, L, L + n_1, 2L, ...,
    B x L, where n_b is row b's count of real tokens (computed on the device: no host sync)."""
    B, L = keep.shape
    starts = torch.arange(B, device=keep.device, dtype=torch.int32) * L
    real_ends = starts + keep.sum(-1, dtype=torch.int32)
    end = torch.full((1,), B * L, device=keep.device, dtype=torch.int32)
    return torch.cat([torch.stack([starts, real_ends], dim=1).reshape(-1), end])


def _slices(rows: int, length: int):
    step = max(1, min(rows, _SLICE_ELEMENTS // (length * length)))
    return [slice(r, min(r + step, rows)) for r in range(0, rows, step)]


class DropoutAttention(torch.autograd.Function):
    """softmax(q k^T * scale + bias) with dropout p, times v, a slice of (batch x head) rows at
    a time (see the module doc). Inputs (B, H, L, D); bias (B, 1, L) or None; out (B, L, H, D)."""

    @staticmethod
    def forward(ctx, q, k, v, bias, p, scale):
        B, H, L, D = q.shape
        qf, kf, vf = (t.reshape(B * H, L, t.shape[-1]) for t in (q, k, v))
        if bias is not None:
            bias = bias.unsqueeze(1).expand(B, H, 1, L).reshape(B * H, 1, L)
        out = q.new_empty(B * H, L, v.shape[-1])
        keep_scale = 1.0 / (1.0 - p)
        probs, keeps = [], []
        for r in _slices(B * H, L):
            if bias is None:
                s = torch.bmm(qf[r], kf[r].transpose(1, 2)).mul_(scale)
            else:
                s = torch.baddbmm(bias[r], qf[r], kf[r].transpose(1, 2), alpha=scale)
            prob = torch.softmax(s, dim=-1)
            keep = torch.empty_like(prob, dtype=torch.bool).bernoulli_(1.0 - p)
            torch.bmm(prob.mul(keep).mul_(keep_scale), vf[r], out=out[r])
            probs.append(prob)
            keeps.append(keep)
        ctx.save_for_backward(qf, kf, vf, *probs, *keeps)
        ctx.p, ctx.scale, ctx.shape = p, scale, (B, H, L)
        return out.view(B, H, L, -1).transpose(1, 2).contiguous()

    @staticmethod
    def backward(ctx, dout):
        qf, kf, vf, *saved = ctx.saved_tensors
        n = len(saved) // 2
        probs, keeps = saved[:n], saved[n:]
        B, H, L = ctx.shape
        keep_scale = 1.0 / (1.0 - ctx.p)
        g = dout.transpose(1, 2).reshape(B * H, L, -1)
        dq, dk, dv = torch.empty_like(qf), torch.empty_like(kf), torch.empty_like(vf)
        for r, prob, keep in zip(_slices(B * H, L), probs, keeps, strict=True):
            dropped = prob.mul(keep).mul_(keep_scale)
            torch.bmm(dropped.transpose(1, 2), g[r], out=dv[r])
            dprob = torch.bmm(g[r], vf[r].transpose(1, 2)).mul_(keep).mul_(keep_scale)
            ds = torch._softmax_backward_data(dprob, prob, -1, prob.dtype).mul_(ctx.scale)
            torch.bmm(ds, kf[r], out=dq[r])
            torch.bmm(ds.transpose(1, 2), qf[r], out=dk[r])
        return (dq.view(B, H, L, -1), dk.view(B, H, L, -1), dv.view(B, H, L, -1), None, None,
                None)  # fmt: skip


def register(segments: bool = False) -> str:
    """Register the hooks with transformers (idempotent); returns the implementation name:
    ATTENTION, or ATTENTION_SEGMENTS (padded batches as varlen segments on a GPU)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(ATTENTION, attention)
    AttentionMaskInterface.register(ATTENTION, key_padding_mask)
    AttentionInterface.register(ATTENTION_SEGMENTS, segment_attention)
    AttentionMaskInterface.register(ATTENTION_SEGMENTS, key_padding_mask)
    return ATTENTION_SEGMENTS if segments else ATTENTION
