"""Fast Walsh-Hadamard transform over the last dimension.

`fwht(x)` multiplies every row of `x` (last dimension n = 2^k, n <= 2^22 and more) by the
*unnormalised* Sylvester Hadamard matrix H_n (entries +-1, H_n @ H_n = n I). H_n is symmetric and
linear, so the backward of the transform is the same transform: the autograd Function says exactly
that and saves nothing.

Why matmuls and not a butterfly: H_{a*b} = H_a kron H_b, so H_n applied to a row is a sequence of
small dense products, one per radix-16 digit of the index. Dense 16x16 products run as BLAS (or
tensor-core) matmuls, whereas a radix-2 butterfly in eager torch makes log2(n) passes over memory.
Rows are processed in chunks of about 2 MB so every pass of a chunk stays in cache. On the 2-core
development machine this takes 0.15 s for 125M floats (about 5x a memory copy); a butterfly took
~10 s. See BENCHMARKS.md.

float32 on the CPU goes to a compiled butterfly instead (intdim/kernels/fastfood_cpu.c, built on
first use, ~6x faster than the matmuls for 1024-long rows) when a C compiler is there; the matmul
form below is the reference and the fallback, and what float64, bfloat16 and CUDA use.

Precision: float32 and float64 are transformed in their own precision; lower-precision inputs
(bfloat16, float16) are accumulated in float32 and rounded once at the end. On CUDA the matmuls are
forced to IEEE float32 (no TF32): TF32 would round the input to 10 mantissa bits.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from intdim.buffers import SCRATCH
from intdim.kernels import cpu as cpu_kernels

MAX_LOG2 = 26  # 2^22 is what d <= 4M needs; a little headroom costs nothing.
# Digit size per device: 16x16 factors are the fewest flops that still run as efficient matmuls on
# CPU; on GPU flops are cheap and every factor is a pass over memory, so 64x64 factors (2 passes for
# n = 4096 instead of 3) win.
_RADIX_BITS = {"cpu": 4, "cuda": 6}
# Rows are transformed in chunks of this many elements. On CPU ~2 MB of float32, so each pass over
# a chunk stays in L2/L3; on GPU cache blocking buys nothing and every chunk costs kernel launches.
_CHUNK_ELEMS = {"cpu": 1 << 19, "cuda": 1 << 26}


def chunk_elems(device: torch.device) -> int:
    return _CHUNK_ELEMS.get(device.type, _CHUNK_ELEMS["cpu"])


# Up to this many elements (and n >= 4) a call is a couple of small products: n = a * b as a matrix
# X (a x b) per row, H_a X H_b. More flops than the digit loop, but two dispatches: for one row of
# 1024 (Fastfood's G H B x) 6 us instead of 39 us, which the per-call work above dominated.
SMALL_ELEMS = 1 << 14

_H_CACHE: dict[tuple[int, torch.dtype, torch.device], torch.Tensor] = {}


def hadamard_matrix(n: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """The dense Sylvester Hadamard matrix H_n (for tests and small factors)."""
    _check_length(n)
    h = torch.ones(1, 1, dtype=dtype, device=device)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h


def _factor(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    key = (n, dtype, device)
    h = _H_CACHE.get(key)
    if h is None:
        h = _H_CACHE[key] = hadamard_matrix(n, dtype, device)
    return h


def _check_length(n: int) -> None:
    if n < 1 or n & (n - 1) or n > (1 << MAX_LOG2):
        raise ValueError(f"Hadamard length must be a power of two <= 2^{MAX_LOG2}, got {n}")


def _radices(n: int, bits: int = 4) -> list[int]:
    """log2(n) as digits of 4 bits, any remainder first: 4096 -> [16, 16, 16], 1024 -> [4, 16, 16].

    The order matters on CPU: the innermost digit runs as one tall matmul, the others as batched
    16x16 products over `after` columns, which are slow when `after` is small (measured: 1024 as
    [16, 16, 4] took 7x longer than [4, 16, 16]). So the small remainder goes outermost.
    """
    k = n.bit_length() - 1
    parts = [bits] * (k // bits)
    if k % bits:
        parts.insert(0, k % bits)
    return [1 << p for p in parts]


@contextlib.contextmanager
def _ieee_fp32(device: torch.device) -> Iterator[None]:
    if device.type != "cuda":
        yield
        return
    matmul = torch.backends.cuda.matmul
    old = matmul.allow_tf32
    matmul.allow_tf32 = False
    try:
        with torch.autocast("cuda", enabled=False):
            yield
    finally:
        matmul.allow_tf32 = old


def _transform_rows(
    x: torch.Tensor,
    radices: list[int],
    out: torch.Tensor,
    scale: float,
    add: torch.Tensor | None = None,
) -> None:
    """out = scale * x @ H_n (+ add) for a 2-D chunk x of shape (rows, n); float32/64.

    `out` may alias `x`; `add` (same shape) may alias `out`. Intermediate digits go to two work
    buffers from SCRATCH (fresh ones would page-fault on CPU, see intdim.buffers).
    """
    rows, n = x.shape
    last = len(radices) - 1
    work = [SCRATCH.take(x.numel(), x.dtype, x.device) for _ in range(min(last, 2))]
    y = x
    after = n
    for i, r in enumerate(radices):
        after //= r
        h = _factor(r, y.dtype, y.device)
        if i == 0 and scale != 1.0:
            h = h * scale  # fold the scale into a 16x16 factor: no extra pass over the data
        if i < last:
            # (rows * before, r, after): multiply the middle axis by H_r (symmetric).
            dst = work[i % 2].view(-1, r, after)
            y = torch.matmul(h, y.reshape(-1, r, after), out=dst)
            continue
        # The last digit (after == 1) is one tall matmul straight into `out`, plus `add` if any.
        # Only a single-digit transform can read `x` here, and then `out` may alias it.
        y2 = y.reshape(-1, r)
        if last == 0 and out.data_ptr() == x.data_ptr():
            res = torch.mm(y2, h) if add is None else torch.addmm(add.reshape(-1, r), y2, h)
            out.view(-1, r).copy_(res)
        elif add is None:
            torch.mm(y2, h, out=out.view(-1, r))
        else:
            torch.addmm(add.reshape(-1, r), y2, h, out=out.view(-1, r))
    SCRATCH.give(*work)


def fwht_(
    x: torch.Tensor,
    out: torch.Tensor | None = None,
    scale: float = 1.0,
    add: torch.Tensor | None = None,
) -> torch.Tensor:
    """The transform without autograd, times `scale`, plus `add` if given (shaped like `x`).

    `out` may alias `x` (and `add`). Adding inside the last matmul saves a pass over the data.
    """
    n = x.shape[-1]
    _check_length(n)
    if _native(x, out, add):
        if out is None:
            out = torch.empty_like(x, memory_format=torch.contiguous_format)
        plus = None if add is None else add.reshape(-1, n)
        cpu_kernels.fwht_rows(x.reshape(-1, n), out.view(-1, n), scale, plus)
        return out
    compute = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    rows2d = x.reshape(-1, n)
    add2d = None if add is None else add.reshape(-1, n)
    if n < 4 or (rows2d.numel() <= SMALL_ELEMS and x.device.type == "cpu"):
        y = _small(rows2d, scale, add2d, compute)
        if out is None:
            return y.to(x.dtype).view(x.shape)
        out.view(-1, n).copy_(y)
        return out
    if out is None:
        out = torch.empty_like(x)
    out2d = out.view(-1, n)
    radices = _radices(n, _RADIX_BITS.get(x.device.type, 4))
    step = max(1, chunk_elems(x.device) // n)
    with _ieee_fp32(x.device):
        for i in range(0, rows2d.shape[0], step):
            chunk = rows2d[i : i + step]
            plus = None if add2d is None else add2d[i : i + step]
            if chunk.dtype != compute:
                chunk = chunk.to(compute)
            if plus is not None and plus.dtype != compute:
                plus = plus.to(compute)
            if out2d.dtype == compute:
                _transform_rows(chunk, radices, out2d[i : i + step], scale, plus)
            else:
                tmp = torch.empty_like(chunk)
                _transform_rows(chunk, radices, tmp, scale, plus)
                out2d[i : i + step].copy_(tmp)
    return out


def _native(x: torch.Tensor, out: torch.Tensor | None, add: torch.Tensor | None) -> bool:
    """float32 on the CPU runs as the compiled butterfly (intdim.kernels.cpu) when it is there."""
    for t in (x, out, add):
        if t is not None and (t.dtype != torch.float32 or t.device.type != "cpu"):
            return False
    return cpu_kernels.usable(x, out, add)


def _small(x: torch.Tensor, scale: float, add: torch.Tensor | None, compute) -> torch.Tensor:
    """scale * x @ H_n (+ add) for a small 2-D x, as H_a X H_b per row (n = a * b), new tensor."""
    rows, n = x.shape
    k = n.bit_length() - 1
    a, b = 1 << (k // 2), 1 << (k - k // 2)
    y = torch.matmul(_factor(a, compute, x.device), x.to(compute).view(rows, a, b))
    y = torch.matmul(y, _factor(b, compute, x.device)).view(rows, n)
    if add is not None:
        return torch.add(add.to(compute), y, alpha=scale)
    return y if scale == 1.0 else y.mul_(scale)


class _FWHT(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return fwht_(x.contiguous())

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        # H is symmetric: d(xH)/dx applied to grad is grad @ H^T = grad @ H. No 1/sqrt(n).
        return fwht_(grad.contiguous())


def fwht(x: torch.Tensor) -> torch.Tensor:
    """Unnormalised Walsh-Hadamard transform over the last dimension, differentiable."""
    if not x.is_floating_point():
        raise TypeError(f"fwht needs a floating-point tensor, got {x.dtype}")
    return _FWHT.apply(x)
