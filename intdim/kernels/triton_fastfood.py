"""Fused Triton kernels for Fastfood's block rows (CUDA; Triton's interpreter runs them on CPU).

`intdim.projection.FastfoodProjection` materialises P x and P^T g block row by block row. Its
pure-torch path makes every step its own pass over memory (gather, Hadamard digits, add of theta0;
transform, gather, reduction); on a GPU those passes are the cost (each is ~500 MB per training
step for RoBERTa-base). Here one program does a row's whole chain in registers:

    forward_rows:     out[i] = scale * H prep[perm[i]]  (+ add[i])
    transpose_rows:   out[i] = (scale * H g[i])[inv[i]]           (t_i = Pi_i^T s H g_i)
    transpose_reduce: acc += sum_i w_i t_i, dots[i] = <t_i, prep>   (t never written out)

H is the unnormalised Sylvester Hadamard matrix in `intdim.hadamard.hadamard_matrix`'s ordering,
and everything is float32. The torch path stays the reference; FastfoodProjection calls these only
for CUDA tensors when `available()` (unless INTDIM_TRITON=0) and once `self_check` has passed on
that GPU; tests run them under TRITON_INTERPRET=1 on CPU tensors.

How H is applied inside a program: as dense products. H_{AB} = H_A kron H_B, so a row of
LL = A * B viewed as a row-major A x B matrix X becomes H_A X H_B: two tl.dot calls (A, B >= 16,
so LL >= 256; RoBERTa-base with d = 1000 has LL = 1024 = 32 x 32). Shorter rows are stacked R at
a time and multiplied by I kron H_LL (one 16 x 16, or LL x LL, matrix). Why dots and not a
log2(LL)-stage butterfly: tl.dot behaves the same in every Triton release and in the interpreter
and keeps the tile's layout, whereas each butterfly stage on a register tile needs reshape /
permute / split / join shuffles, a layout conversion through shared memory per stage on a GPU.
The price is flops, A + B multiply-adds per element (64 for LL = 1024: ~16 GFLOP per pass over
125M floats, a fraction of a millisecond on an H100, about its memory time), and they must be
exact float32: input_precision="ieee", since TF32 would round the input to 10 mantissa bits.
INTDIM_TRITON_DOT=split instead moves them to tensor cores without losing precision: the data is
split exactly into three parts of at most 9 significant bits, which TF32 represents exactly (see
_times_h). Which is faster is measured on the GPU (benchmarks/bench_fastfood.py --sweep). The
+-1 entries are the parity of popcount(i & j), computed in registers once per program.

Each program takes a contiguous run of rows rather than one row, so the H factors (and the
reduction's partial sum) are built once per run.

Transposing needs a permutation of a register tile, which Triton cannot gather from portably.
t_i[k] = v[inv[k]] is the same as t_i[perm[j]] = v[j], so transpose_rows scatters v with `perm`
straight into `out`, and the reduction scatters into its program's own scratch row in global
memory (L1/L2 resident), waits at a barrier, and reads t_i back coalesced. The reduction is
deterministic: every program sums its rows in a fixed order in registers and writes its partial
sums, and one torch sum over the (programs x LL) partials finishes it. tl.atomic_add into one
LL-vector would save that small last pass, but it makes float32 results vary from run to run and
makes thousands of programs contend for the same LL addresses.
"""

from __future__ import annotations

import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # no Triton (CPU-only installs): FastfoodProjection keeps its torch path
    triton = None
    tl = None

# Largest block length with a kernel: the (A, B) tiles of a row and its two H factors must fit a
# program's registers (LL = 8192 is 64 x 128). Longer blocks (d > 8192) use the torch path.
MAX_BLOCK = 1 << 13
# Below this LL a row cannot be an A x B tile with A, B >= 16 (tl.dot's minimum): rows are stacked.
_STACK_BELOW = 256
# At most this many programs per launch; each loops over a contiguous run of rows. Enough to fill
# an H100 (132 SMs) many times over, few enough that the reduction's partials stay small.
PROGRAMS = 2048


def available() -> bool:
    """Triton importable and not turned off with INTDIM_TRITON=0 (read at every call).

    On by default: benchmarks/gpu_checks.py passed on an H100 (every kernel against the CPU and
    the CUDA torch paths) and the kernels beat the torch path there (BENCHMARKS.md). Each GPU
    still runs `self_check` before its first use."""
    return triton is not None and os.environ.get("INTDIM_TRITON", "1") != "0"


_CHECKED: dict[tuple, bool] = {}


def self_check(device: torch.device, LL: int) -> bool:
    """Whether the kernels give the right answer for blocks of LL on `device`, checked once per
    (device, LL, dot mode) on a small problem against a float64 reference.

    A GPU or Triton release where they fail to compile or compute wrongly gets one warning and
    the torch path, never a crash in the middle of a run or a wrong theta.
    """
    key = (str(device), LL, _split())
    ok = _CHECKED.get(key)
    if ok is None:
        ok = _CHECKED[key] = _run_self_check(device, LL)
    return ok


def _run_self_check(device: torch.device, LL: int) -> bool:
    import warnings

    gen = torch.Generator().manual_seed(0)
    rows = 3
    perm = torch.stack([torch.randperm(LL, generator=gen) for _ in range(rows)]).int()
    prep = torch.randn(LL, generator=gen)
    g = torch.randn(rows, LL, generator=gen)
    weight = torch.randn(rows, generator=gen)
    from intdim.hadamard import fwht  # the torch path: the reference (float64, on the CPU)

    want_fwd = fwht(prep.double()[perm.long()]) * 0.5  # rows of scale * H Pi prep
    t = fwht(g.double()) * 0.5  # t_i = Pi_i^-1 (scale * H g_i): scatter with perm
    want_t = torch.zeros(rows, LL, dtype=torch.float64).scatter_(1, perm.long(), t)
    want_acc = (weight.double()[:, None] * want_t).sum(0)
    want_dots = (want_t @ prep.double()).float()
    try:
        out = forward_rows(prep.to(device), perm.to(device), 0.5).double().cpu()
        acc = torch.zeros(LL, device=device)
        dots = torch.empty(rows, device=device)
        transpose_reduce(
            g.to(device), perm.to(device), 0.5, acc, weight.to(device), prep.to(device), dots
        )
        acc, dots = acc.double().cpu(), dots.cpu()
    except Exception as e:  # noqa: BLE001 - any failure means: use the torch path
        problem = f"failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    else:
        errs = [
            _rel_err(out, want_fwd),
            _rel_err(acc, want_acc),
            _rel_err(dots.double(), want_dots.double()),
        ]
        if max(errs) < 1e-5:
            return True
        problem = f"computed wrong results (relative errors {max(errs):.1e})"
    warnings.warn(
        f"intdim: the Triton Fastfood kernels {problem} on {device} for blocks of {LL}; using "
        "the torch path (set INTDIM_TRITON=0 to skip the kernels and this check)",
        RuntimeWarning,
        stacklevel=3,
    )
    return False


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def supports(block: int) -> bool:
    return 1 <= block <= MAX_BLOCK and block & (block - 1) == 0


def _geometry(LL: int) -> tuple[int, int, int, int]:
    """(R, A, B, C): rows per tile; a row as an A x B matrix (C = 0), or R stacked rows as a
    (R * LL / C) x C matrix times I kron H_LL (A = B = 0)."""
    if LL >= _STACK_BELOW:
        k = LL.bit_length() - 1
        return 1, 1 << (k // 2), 1 << (k - k // 2), 0
    # R * LL >= 256 and R >= 16 keep both dot dimensions >= 16.
    return max(16, _STACK_BELOW // LL), 0, 0, max(16, LL)


def _launch(n_rows: int, R: int) -> tuple[int, int]:
    """(rows per program, a multiple of R; number of programs)."""
    tiles = -(-n_rows // R)
    per_prog = -(-tiles // PROGRAMS) * R
    return per_prog, -(-n_rows // per_prog)


def _split() -> bool:
    """INTDIM_TRITON_DOT=split: the Hadamard products as three exact TF32 tensor-core dots on a
    split of the data (see _times_h); the default, "ieee", is one float32 dot on FMA units. Both
    give float32 accuracy; which is faster on a GPU is for bench_fastfood.py --sweep to say."""
    mode = os.environ.get("INTDIM_TRITON_DOT", "ieee")
    if mode not in ("ieee", "split"):
        raise ValueError(f"INTDIM_TRITON_DOT must be 'ieee' or 'split', got {mode!r}")
    return mode == "split"


# Warps per program; None picks by LL. benchmarks/bench_fastfood.py --sweep sets it to compare.
NUM_WARPS: int | None = None


def _warps(LL: int) -> int:
    if NUM_WARPS is not None:
        return NUM_WARPS
    return 4 if LL <= 1024 else 8


if triton is not None:

    @triton.jit
    def _signs(N: tl.constexpr, LL: tl.constexpr):
        """The N x N matrix I_{N/LL} kron H_LL: (-1)^popcount(i & j) inside LL-blocks, else 0."""
        i = tl.arange(0, N)[:, None]
        j = tl.arange(0, N)[None, :]
        v = i & j & (LL - 1)
        # Fold the (<= 16) bits onto bit 0: it ends up as their parity.
        v = v ^ (v >> 8)
        v = v ^ (v >> 4)
        v = v ^ (v >> 2)
        v = v ^ (v >> 1)
        h = 1.0 - 2.0 * (v & 1).to(tl.float32)
        return tl.where(i // LL == j // LL, h, 0.0)

    @triton.jit
    def _add(a, b):
        # tl.reduce(x, axis, _add) is what tl.sum compiles to. Spelt out because tl.sum and
        # tl.zeros are themselves @triton.jit functions, which Triton's interpreter can only run
        # when triton was imported with TRITON_INTERPRET=1; the kernels here use builtins only,
        # so the tests can interpret them without switching the whole process to the interpreter.
        return a + b

    @triton.jit
    def _factors(LL: tl.constexpr, A: tl.constexpr, B: tl.constexpr, C: tl.constexpr):
        if C == 0:
            ha = _signs(A, A)
            hb = _signs(B, B)
        else:
            ha = _signs(C, LL)  # unused by _hadamard
            hb = ha
        return ha, hb

    @triton.jit
    def _times_h(x, h, LEFT: tl.constexpr, SPLIT: tl.constexpr):
        """h @ x (LEFT) or x @ h, float32 in and out, h a 0 / +-1 matrix.

        Default: one IEEE float32 dot (FMA units). SPLIT: x = hi + mid + lo exactly, each part
        with at most 8 (lo: 9) significant bits (rounding through bfloat16; the differences are
        exact in float32), and three TF32 tensor-core dots, smallest part first, accumulated in
        float32. TF32 keeps 11 significant bits, so it rounds neither the parts nor h: every
        product is exact and only the float32 accumulation rounds, as in the IEEE dot. (Not
        bfloat16 operands: Triton's interpreter computes bfloat16 dots wrongly, and the tests
        run there.)
        """
        if SPLIT:
            hi = x.to(tl.bfloat16).to(tl.float32)
            r = x - hi
            mid = r.to(tl.bfloat16).to(tl.float32)
            lo = r - mid
            if LEFT:
                y = tl.dot(h, lo, input_precision="tf32")
                y = tl.dot(h, mid, y, input_precision="tf32")
                y = tl.dot(h, hi, y, input_precision="tf32")
            else:
                y = tl.dot(lo, h, input_precision="tf32")
                y = tl.dot(mid, h, y, input_precision="tf32")
                y = tl.dot(hi, h, y, input_precision="tf32")
        else:
            if LEFT:
                y = tl.dot(h, x, input_precision="ieee")
            else:
                y = tl.dot(x, h, input_precision="ieee")
        return y

    @triton.jit
    def _hadamard(
        x,
        ha,
        hb,
        R: tl.constexpr,
        LL: tl.constexpr,
        A: tl.constexpr,
        B: tl.constexpr,
        C: tl.constexpr,
        SPLIT: tl.constexpr,
    ):
        """H_LL applied to every row of the (R, LL) tile x; ha, hb from _factors."""
        if C == 0:
            y = tl.reshape(x, (A, B))
            y = _times_h(y, ha, True, SPLIT)
            y = _times_h(y, hb, False, SPLIT)
        else:
            y = tl.reshape(x, (R * LL // C, C))
            y = _times_h(y, hb, False, SPLIT)
        return tl.reshape(y, (R, LL))

    @triton.jit
    def _forward_kernel(
        prep_ptr,
        perm_ptr,
        add_ptr,
        out_ptr,
        n_rows,
        per_prog,
        scale,
        LL: tl.constexpr,
        R: tl.constexpr,
        A: tl.constexpr,
        B: tl.constexpr,
        C: tl.constexpr,
        SPLIT: tl.constexpr,
        HAS_ADD: tl.constexpr,
    ):
        ha, hb = _factors(LL, A, B, C)
        start = tl.program_id(0) * per_prog
        stop = tl.minimum(start + per_prog, n_rows)
        rr = tl.arange(0, R)[:, None]
        cols = tl.arange(0, LL)[None, :]
        for r0 in range(start, stop, R):
            rows = r0 + rr
            mask = (rows < stop) & (cols < LL)
            off = rows.to(tl.int64) * LL + cols
            p = tl.load(perm_ptr + off, mask=mask, other=0).to(tl.int32)
            z = tl.load(prep_ptr + p)  # the gather: prep is LL floats, cache-resident
            y = _hadamard(z, ha, hb, R, LL, A, B, C, SPLIT) * scale
            if HAS_ADD:
                # `add` may alias `out`: each element is read before its own store, and rows
                # belong to one program, so no other element's store can come first.
                y += tl.load(add_ptr + off, mask=mask, other=0.0)
            tl.store(out_ptr + off, y, mask=mask)

    @triton.jit
    def _transpose_kernel(
        g_ptr,
        perm_ptr,
        out_ptr,
        n_rows,
        per_prog,
        scale,
        LL: tl.constexpr,
        R: tl.constexpr,
        A: tl.constexpr,
        B: tl.constexpr,
        C: tl.constexpr,
        SPLIT: tl.constexpr,
    ):
        ha, hb = _factors(LL, A, B, C)
        start = tl.program_id(0) * per_prog
        stop = tl.minimum(start + per_prog, n_rows)
        rr = tl.arange(0, R)[:, None]
        cols = tl.arange(0, LL)[None, :]
        for r0 in range(start, stop, R):
            rows = r0 + rr
            mask = (rows < stop) & (cols < LL)
            base = rows.to(tl.int64) * LL
            g = tl.load(g_ptr + base + cols, mask=mask, other=0.0)
            v = _hadamard(g, ha, hb, R, LL, A, B, C, SPLIT) * scale
            p = tl.load(perm_ptr + base + cols, mask=mask, other=0).to(tl.int32)
            tl.store(out_ptr + base + p, v, mask=mask)  # out[i, perm[i, j]] = v[i, j]

    @triton.jit
    def _reduce_kernel(
        g_ptr,
        perm_ptr,
        w_ptr,
        prep_ptr,
        work_ptr,
        dots_ptr,
        n_rows,
        per_prog,
        scale,
        LL: tl.constexpr,
        R: tl.constexpr,
        A: tl.constexpr,
        B: tl.constexpr,
        C: tl.constexpr,
        SPLIT: tl.constexpr,
        HAS_W: tl.constexpr,
        HAS_DOT: tl.constexpr,
    ):
        ha, hb = _factors(LL, A, B, C)
        pid = tl.program_id(0)
        start = pid * per_prog
        stop = tl.minimum(start + per_prog, n_rows)
        ri = tl.arange(0, R)
        rr = ri[:, None]
        cols = tl.arange(0, LL)[None, :]
        # This program's (R, LL) slice of `work`: the transposed rows pass through it, and it
        # receives the program's partial sums at the end.
        mine = work_ptr + pid.to(tl.int64) * (R * LL) + rr * LL
        acc = tl.full((R, LL), 0.0, tl.float32)
        if HAS_DOT:
            pr = tl.load(prep_ptr + cols)
        for r0 in range(start, stop, R):
            rows = r0 + rr
            mask = (rows < stop) & (cols < LL)
            base = rows.to(tl.int64) * LL
            g = tl.load(g_ptr + base + cols, mask=mask, other=0.0)
            v = _hadamard(g, ha, hb, R, LL, A, B, C, SPLIT) * scale
            p = tl.load(perm_ptr + base + cols, mask=mask, other=0).to(tl.int32)
            tl.store(mine + p, v, mask=mask)
            tl.debug_barrier()  # every thread's scatter lands before anyone reads t back
            t = tl.load(mine + cols, mask=mask, other=0.0)
            tl.debug_barrier()  # and is read before the next row's scatter overwrites it
            if HAS_W:
                w = tl.load(w_ptr + rows, mask=rows < stop, other=0.0)
                acc += w * t
            else:
                acc += t
            if HAS_DOT:
                rows1 = r0 + ri
                tl.store(dots_ptr + rows1, tl.reduce(t * pr, 1, _add), mask=rows1 < stop)
        tl.store(mine + cols, acc)


def _check_rows(perm: torch.Tensor) -> tuple[int, int]:
    if perm.dim() != 2 or perm.dtype not in (torch.int16, torch.int32) or not perm.is_contiguous():
        raise ValueError(f"perm must be a contiguous 2-D int16/int32 tensor, got {perm.dtype}")
    rows, LL = perm.shape
    if not supports(LL):
        raise ValueError(f"block length {LL} has no Triton kernel (powers of two <= {MAX_BLOCK})")
    return rows, LL


def _flat(t: torch.Tensor, n: int, name: str) -> torch.Tensor:
    if t.dtype != torch.float32 or not t.is_contiguous() or t.numel() != n:
        raise ValueError(f"{name} must be contiguous float32 with {n} elements")
    return t


def forward_rows(
    prep: torch.Tensor,
    perm: torch.Tensor,
    scale: float,
    out: torch.Tensor | None = None,
    add: torch.Tensor | None = None,
) -> torch.Tensor:
    """out[i] = scale * H prep[perm[i]] (+ add[i]) as (rows, LL); perm is (rows, LL).

    `out` (flat, contiguous float32) is written in place; `add` may alias it.
    """
    rows, LL = _check_rows(perm)
    prep = _flat(prep, LL, "prep")
    if out is None:
        out = torch.empty(rows * LL, dtype=torch.float32, device=prep.device)
    _flat(out, rows * LL, "out")
    if add is not None:
        add = _flat(add.reshape(-1), rows * LL, "add")
    if rows:
        R, A, B, C = _geometry(LL)
        per_prog, grid = _launch(rows, R)
        _forward_kernel[(grid,)](
            prep,
            perm,
            out if add is None else add,
            out,
            rows,
            per_prog,
            float(scale),
            LL=LL,
            R=R,
            A=A,
            B=B,
            C=C,
            SPLIT=_split(),
            HAS_ADD=add is not None,
            num_warps=_warps(LL),
        )
    return out.view(rows, LL)


def transpose_rows(
    g: torch.Tensor, perm: torch.Tensor, scale: float, out: torch.Tensor | None = None
) -> torch.Tensor:
    """out[i, k] = (scale * H g[i])[inv[i, k]], inv the inverse of perm's row i, as (rows, LL)."""
    rows, LL = _check_rows(perm)
    g = _flat(g.reshape(-1), rows * LL, "g")
    if out is None:
        out = torch.empty(rows * LL, dtype=torch.float32, device=g.device)
    _flat(out, rows * LL, "out")
    if rows:
        R, A, B, C = _geometry(LL)
        per_prog, grid = _launch(rows, R)
        _transpose_kernel[(grid,)](
            g,
            perm,
            out,
            rows,
            per_prog,
            float(scale),
            LL=LL,
            R=R,
            A=A,
            B=B,
            C=C,
            SPLIT=_split(),
            num_warps=_warps(LL),
        )
    return out.view(rows, LL)


def transpose_reduce(
    g: torch.Tensor,
    perm: torch.Tensor,
    scale: float,
    acc: torch.Tensor,
    weight: torch.Tensor | None = None,
    prep: torch.Tensor | None = None,
    dots: torch.Tensor | None = None,
) -> None:
    """acc += sum_i weight[i] t_i (weight None: 1) for t = transpose_rows(g, perm, scale), and
    dots[i] = <t_i, prep> if `dots` is given (then `prep` must be). t is never stored.

    Deterministic: no atomics (see the module docstring).
    """
    rows, LL = _check_rows(perm)
    g = _flat(g.reshape(-1), rows * LL, "g")
    _flat(acc, LL, "acc")
    if weight is not None:
        weight = _flat(weight.reshape(-1), rows, "weight")
    if dots is not None:
        if prep is None:
            raise ValueError("dots needs prep")
        _flat(prep, LL, "prep")
        _flat(dots, rows, "dots")
    if not rows:
        return
    R, A, B, C = _geometry(LL)
    per_prog, grid = _launch(rows, R)
    work = torch.empty(grid * R * LL, dtype=torch.float32, device=g.device)
    _reduce_kernel[(grid,)](
        g,
        perm,
        g if weight is None else weight,
        g if dots is None else prep,
        work,
        g if dots is None else dots,
        rows,
        per_prog,
        float(scale),
        LL=LL,
        R=R,
        A=A,
        B=B,
        C=C,
        SPLIT=_split(),
        HAS_W=weight is not None,
        HAS_DOT=dots is not None,
        num_warps=_warps(LL),
    )
    acc += work.view(-1, LL).sum(0)
