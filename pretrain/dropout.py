"""Hidden dropout with its keep-mask drawn as bits (`dropout_bitmask=true`): the same dropout as
torch's, with cheaper random numbers on a GPU.

RoBERTa's hidden dropout (after the embeddings' LayerNorm and before each residual add) zeroes an
element with probability p and scales the rest by 1 / (1 - p). Under torch.compile, inductor draws
those numbers inside its fused LayerNorm + residual kernels with a full Philox call per element;
on a GPU that integer work, not memory, sets the kernels' pace (pretrain/kernels/triton_dropout.py
says how much). `BitmaskDropout` instead takes its mask from `dropout_keep_bits`, an operator that
inductor calls as it is (a custom op): one bit per element, eight per Philox call, from a Triton
kernel on CUDA. The multiply by the unpacked mask then fuses into inductor's kernels, and autograd
keeps the bits (N / 8 bytes) for the backward.

The draw: p is rounded to a multiple of 1/65536 (0.1 -> 6554/65536 = 0.1000061), and the kept
elements are scaled by the exact inverse of the rounded keep probability, so E[y] = x holds
exactly. Seeds come from torch's generator of the device (drawn on the device: nothing waits for
the GPU), so `torch.manual_seed` and the trainer's saved RNG states make runs reproducible and
resumes exact, as with torch's dropout. The numbers differ from torch's: a run with
dropout_bitmask=true is another draw of the same model, not the same draw. On a CPU the bits come
from torch.randint (same rounding, other numbers).

Attention dropout is left alone: it happens inside SDPA's fused kernel. Only the modules are
swapped; no parameter or buffer changes, so checkpoints are transformers' as before and load with
plain nn.Dropout.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from pretrain.kernels import triton_dropout

LEVELS = 1 << 16  # 16-bit numbers: p is rounded to a multiple of 1 / LEVELS
SHIFTS = tuple(range(8))
_SALTS = itertools.count()


def threshold_for(p: float) -> int:
    """The 16-bit threshold below which an element is dropped: round(p x 65536)."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    return round(p * LEVELS)


# The op takes the tensor it draws a mask for, though it reads only its size and device:
# torch.compile merges calls of an op with equal arguments (common subexpressions; it spares only
# aten's own random ops), which would give every layer's dropout of one shape the same mask. The
# tag marks the op random, so the backward keeps its output and never calls it again.
@torch.library.custom_op(
    "intdim_pretrain::dropout_keep_bits",
    mutates_args=(),
    tags=(torch.Tag.nondeterministic_seeded,),
)
def dropout_keep_bits(x: torch.Tensor, threshold: int) -> torch.Tensor:
    """ceil(x.numel() / 8) bytes on x's device; bit i % 8 of byte i // 8 keeps element i, with
    probability (65536 - threshold) / 65536 each, independently."""
    nbytes = -(-x.numel() // 8)
    if x.is_cuda and triton_dropout.available():
        seed = torch.randint(0, 1 << 62, (1,), device=x.device)
        return triton_dropout.keep_bits(seed, nbytes, threshold)
    draws = torch.randint(0, LEVELS, (nbytes, 8), dtype=torch.int32, device=x.device)
    return pack_bits(draws >= threshold)


@dropout_keep_bits.register_fake
def _(x: torch.Tensor, threshold: int) -> torch.Tensor:
    return x.new_empty(-(-x.numel() // 8), dtype=torch.uint8)


def pack_bits(keep: torch.Tensor) -> torch.Tensor:
    """(nbytes, 8) booleans -> nbytes bytes, column j in bit j."""
    weights = torch.tensor([1 << j for j in SHIFTS], dtype=torch.int32, device=keep.device)
    return (keep.to(torch.int32) * weights).sum(-1).to(torch.uint8)


def unpack_bits(bits: torch.Tensor, numel: int, salt: int = 0) -> torch.Tensor:
    """The first `numel` keep bits as 0/1 bytes (element i is bit i % 8 of byte i // 8). Plain
    tensor ops, so inductor fuses them into whatever reads the mask, and the backward recomputes
    them from the bits (N / 8 bytes kept) rather than keep the unpacked mask (N bytes).

    `salt` (any int, one per caller) makes each caller's 0..7 its own graph node. torch.compile
    merges equal aranges into one; one arange used by every layer counts as "used far apart",
    which bans recomputing the unpacking, and the forward then writes the unpacked mask out."""
    shifts = (torch.arange(salt, salt + 8, device=bits.device) - salt).to(torch.uint8)
    return ((bits[:, None] >> shifts) & 1).reshape(-1)[:numel]


class BitmaskDropout(nn.Module):
    """nn.Dropout(p) with the mask from `dropout_keep_bits` (see the module's doc)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        threshold_for(p)  # a bad p fails here, not at the first forward
        self.p = p  # read at every forward, as nn.Dropout's
        self.salt = next(_SALTS)  # see unpack_bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        threshold = threshold_for(self.p)
        if not self.training or threshold == 0:
            return x
        bits = dropout_keep_bits(x, threshold)
        keep = unpack_bits(bits, x.numel(), self.salt).view(x.shape).to(x.dtype)
        return x * keep * (LEVELS / (LEVELS - threshold))

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_bitmask_dropout(hf_model: nn.Module) -> int:
    """Swaps the hidden dropouts of a transformers BERT-family model for BitmaskDropout (the
    attention modules' dropout, which SDPA applies inside its kernel, stays); returns how many."""
    swapped = 0
    for parent in list(hf_model.modules()):
        if _is_attention(parent):
            continue
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                setattr(parent, name, BitmaskDropout(child.p))
                swapped += 1
    return swapped


def _is_attention(module: nn.Module) -> bool:
    # transformers' self-attention modules hold their query/key/value projections and pass their
    # dropout's p to the attention function; that dropout is not a module call.
    return all(hasattr(module, name) for name in ("query", "key", "value"))
