"""Dropout keep-masks as bits, eight elements per Philox call (CUDA; Triton's interpreter runs it
on CPU tensors for the tests).

Why: inductor compiles dropout into its fused LayerNorm + residual kernels, drawing every element's
number with `tl.rand`, a full Philox4x32-10 (ten rounds of 32-bit multiplies) per element of which
three of its four 32-bit words are thrown away. On an H200 those kernels ran at ~1.6 TB/s against
~2.3 TB/s for the LayerNorm backward that reads a saved mask instead (BENCHMARKS.md, session 6):
the integer work, not memory, set their pace. Here one Philox call gives 128 bits, cut into eight
16-bit numbers, each compared with a threshold: eight keep bits, one byte, per call, 32 times less
integer work per element, and a mask of N / 8 bytes that the forward reads and the backward reads
again (instead of a byte per element written and read back).

Element i is bit (i % 8) of byte i // 8; bit 2m is the low half of Philox word m, bit 2m + 1 its
high half. Byte b is Philox4x32-10 (Salmon et al. 2011, as Random123 and Triton's `tl.randint4x`)
of the counter (b, 0, 0, 0) under the 64-bit key `seed`. An element is kept when its 16-bit number
is >= `threshold`, so with probability (65536 - threshold) / 65536.
"""

from __future__ import annotations

import os

import numpy as np
import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: pretrain.dropout draws the bits with torch instead
    triton = None
    tl = None

BLOCK = 1024  # bytes (8192 elements) per program

# Philox4x32's multipliers and Weyl key increments (Random123; triton.language.random).
ROUND_A, ROUND_B = 0xD2511F53, 0xCD9E8D57
KEY_A, KEY_B = 0x9E3779B9, 0xBB67AE85
ROUNDS = 10


def available() -> bool:
    """Triton importable and not turned off with INTDIM_TRITON=0 (read at every call)."""
    return triton is not None and os.environ.get("INTDIM_TRITON", "1") != "0"


def keep_bits(seed: torch.Tensor, nbytes: int, threshold: int) -> torch.Tensor:
    """`nbytes` bytes of keep bits drawn under `seed` (a one-element int64 tensor on the device,
    so drawing it never waits for the GPU)."""
    out = torch.empty(nbytes, dtype=torch.uint8, device=seed.device)
    _keep_bits_kernel[(triton.cdiv(nbytes, BLOCK),)](seed, out, nbytes, threshold, BLOCK=BLOCK)
    return out


def philox4x32_10(counters: np.ndarray, key: tuple[int, int]) -> np.ndarray:
    """NumPy reference: (n, 4) uint32 counters -> (n, 4) uint32 words under a (lo, hi) key."""
    m32, s32 = np.uint64(0xFFFFFFFF), np.uint64(32)
    c = [counters[:, j].astype(np.uint64) for j in range(4)]
    k0, k1 = np.uint64(key[0]), np.uint64(key[1])
    for _ in range(ROUNDS):
        pa, pb = np.uint64(ROUND_A) * c[0], np.uint64(ROUND_B) * c[2]  # < 2^64: exact
        c = [(pb >> s32) ^ c[1] ^ k0, pb & m32, (pa >> s32) ^ c[3] ^ k1, pa & m32]
        k0, k1 = (k0 + np.uint64(KEY_A)) & m32, (k1 + np.uint64(KEY_B)) & m32
    return np.stack(c, axis=1).astype(np.uint32)


def reference_keep_bits(seed: int, nbytes: int, threshold: int) -> np.ndarray:
    """What `keep_bits` must return, computed in NumPy (tests; the GPU check in the benchmark)."""
    counters = np.zeros((nbytes, 4), dtype=np.uint32)
    counters[:, 0] = np.arange(nbytes, dtype=np.uint32)
    words = philox4x32_10(counters, (seed & 0xFFFFFFFF, seed >> 32))
    halves = np.stack([words & 0xFFFF, words >> 16], axis=2).reshape(nbytes, 8)  # bits 2m, 2m+1
    keep = (halves >= threshold).astype(np.uint32)
    return (keep << np.arange(8, dtype=np.uint32)).sum(axis=1).astype(np.uint8)


if triton is not None:
    # Builtins only (no tl.randint4x, tl.zeros, ...): Triton's interpreter runs @triton.jit helper
    # functions only when triton was imported with TRITON_INTERPRET=1, and the tests interpret
    # this kernel without switching the whole process to the interpreter.

    _RA, _RB = tl.constexpr(ROUND_A), tl.constexpr(ROUND_B)
    _KA, _KB = tl.constexpr(KEY_A), tl.constexpr(KEY_B)
    _ROUNDS = tl.constexpr(ROUNDS)

    @triton.jit
    def _philox(c0, c1, c2, c3, k0, k1):
        for _ in tl.static_range(_ROUNDS):
            _c0, _c2 = c0, c2
            c0 = tl.umulhi(_RB, _c2) ^ c1 ^ k0
            c2 = tl.umulhi(_RA, _c0) ^ c3 ^ k1
            c1 = _RB * _c2
            c3 = _RA * _c0
            k0 = k0 + _KA
            k1 = k1 + _KB
        return c0, c1, c2, c3

    @triton.jit
    def _two_bits(word, threshold, shift: tl.constexpr):
        lo = ((word & 0xFFFF) >= threshold).to(tl.uint32)
        hi = ((word >> 16) >= threshold).to(tl.uint32)
        return (lo << shift) | (hi << (shift + 1))

    @triton.jit(do_not_specialize=["threshold"])  # a 1 would become a constexpr
    def _keep_bits_kernel(seed_ptr, out_ptr, nbytes, threshold, BLOCK: tl.constexpr):
        b = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        seed = tl.load(seed_ptr)
        k0 = (seed & 0xFFFFFFFF).to(tl.uint32)
        k1 = ((seed >> 32) & 0xFFFFFFFF).to(tl.uint32)
        c0 = b.to(tl.uint32)
        zero = c0 ^ c0
        w0, w1, w2, w3 = _philox(c0, zero, zero, zero, k0, k1)
        t = threshold.to(tl.uint32)
        byte = _two_bits(w0, t, 0) | _two_bits(w1, t, 2) | _two_bits(w2, t, 4) | _two_bits(w3, t, 6)
        tl.store(out_ptr + b, byte.to(tl.uint8), mask=b < nbytes)
