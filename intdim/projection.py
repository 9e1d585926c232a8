"""Random linear projections P: R^d -> R^D, the `P` in theta = theta0 + P(theta_d).

Every projection here has unit-norm columns (Li et al. 2018 normalise so; a column is the direction
one coordinate of theta_d moves the model in) and singular values at least as close to 1 as a dense
Gaussian P's of the same shape (unit norms alone do not make a good P: see Fastfood below). All
expose the same block-row interface, which `intdim.subspace` uses to materialise theta block by
block without ever holding P:

    prep = proj.prepare(x)                     # O(d) work shared by all blocks
    w    = proj.forward_rows(prep, b0, b1)     # rows of P x for blocks b0..b1, shape (b1-b0, block)
    t    = proj.transpose_rows(g, b0, b1)      # per-block P_b^T g_b, in `prep` space, (b1-b0, K)
    gx   = proj.finish(t.sum(0))               # P^T g from the summed block terms

with the identity <t_b, prep> = <g_b, (P x)_b>, which gives SAID's per-layer scale gradients
without recomputing P x. `proj(x)` is the plain differentiable P x (a flat vector of length D).

All random state comes from a `torch.Generator` on the CPU seeded from the config, never the
global RNG, so the same seed rebuilds the same P on any machine and device.

Fastfood (Le et al. 2013), as used here, stacks blocks of LL rows, LL = 2^ceil(log2 d) but at
least MIN_BLOCK (or D rounded up to a power of two, when D is smaller than that):

    (P x)_block i = s * H Pi_i G H B pad(x),     s = 1 / (||G|| sqrt(D)) = 1 / sqrt(LL D)

H is the unnormalised Hadamard matrix (H^T H = LL I), B and G are +-1 diagonals, Pi_i a
permutation. B and G are drawn once and shared by the blocks; each block draws its own Pi_i.

Why G is +-1 and not Gaussian (Le et al.'s G), and why this is safe to share: what the d90 search
depends on is the geometry of P's columns, P^T P. Block i's Gram matrix is
s^2 LL (H B)^T G Pi_i^T Pi_i G (H B) = s^2 LL (H B)^T G^2 (H B). With |G| = 1 that is
s^2 LL^2 I: every block is an exactly orthogonal matrix, so P has orthonormal columns (up to the
truncated last block when LL does not divide D) whatever the sharing and the order of G and Pi_i.
With Gaussian G the same sum is n_blocks (H B)^T G^2 (H B): P's singular values are |G_l|,
half-normal (0.04 .. 2.6 at D = 199,210, d = 750), a direction with singular value 0.04 moves the
model 25x slower than the average one, and Li et al.'s MNIST d90 doubled (1500 instead of 750).
Even independent Gaussian G_i per block leave off-diagonal terms of variance 2/D, twice a dense
Gaussian P's, so their spread is sqrt(2) x a dense P's; only |G| = 1 is inside it. What Gaussian G
buys in Le et al. is rows distributed like a Gaussian matrix's (kernel approximation); here the
columns matter, and H (G o (permuted +-1 vector)) already has Gaussian-like entries, because G's
random signs make that vector uniformly random. tests/intdim/test_projection.py checks both
properties on the materialised P against a dense Gaussian P of the same shape. Do not trade this
for speed (docs/architecture.md).

Why MIN_BLOCK: with blocks of LL = 2^ceil(log2 d) a small d gives a tiny H, and H of a short +-1
vector is far from Gaussian (d = 1: LL = 1 makes P x a constant vector, the same direction for
every seed). Entries of H over >= 1024 random signs are Gaussian to within a kurtosis of 0.002;
a transform of 1024 costs log2(1024) = 10 butterfly stages per element against log2(LL) for
smaller blocks, and small d is cheap anyway.

Sharing B makes H B x one O(LL log LL) transform for all blocks, which halves the transforms over
D. H Pi_i G = H (Pi_i G Pi_i^T) Pi_i, so block i is Le et al.'s H G_i Pi_i H B with G_i a
permutation of the shared signs. Applying G before Pi turns the per-element work into one gather
from a vector of LL floats (cache-resident). State: Pi and its inverse, 2 bytes each per model
parameter while LL <= 2^15 (d <= 32768) and D >= 2^24, 4 bytes each otherwise; plus 2 LL floats.

`CONSTRUCTION` names the random construction of each projection; a task file records it, and a
theta_d tuned in one construction is refused by another (`intdim.task_file`). Change it whenever
the same seed would build a different P.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from intdim.buffers import SCRATCH, ReusableBuffer
from intdim.errors import UserError
from intdim.hadamard import chunk_elems, fwht_
from intdim.kernels import cpu as cpu_kernels
from intdim.registry import Registry

PROJECTIONS: Registry[type[Projection]] = Registry("projection")

# Below this many parameters Fastfood keeps int32 indices (speed); above, int16 where they fit.
SMALL_MODEL = 1 << 24

# Above this many bytes a dense P is refused: it is a reference for small models only.
DENSE_MAX_BYTES = 1 << 30


def _generator(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(int(seed))


class Projection(nn.Module):
    """Base class; subclasses fill `block`, `n_blocks` and the four block-row methods."""

    CONSTRUCTION = ""  # "<kind>/<version>": which P a seed builds (see the module docstring)

    def __init__(self, D: int, d: int, seed: int) -> None:
        super().__init__()
        if d < 1:
            raise UserError(f"subspace dimension d must be >= 1, got {d}")
        if d > D:
            raise UserError(f"subspace dimension d={d} exceeds the number of parameters D={D}")
        self.D, self.d, self.seed = int(D), int(d), int(seed)
        self.block = 1
        self.n_blocks = 0
        self._out = ReusableBuffer()  # P x for forward(); reused once the caller released it

    # -- block-row interface -------------------------------------------------------------------
    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_rows(
        self,
        prep: torch.Tensor,
        b0: int,
        b1: int,
        out: torch.Tensor | None = None,
        add: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Rows of P x (+ `add`) for blocks b0..b1 as (b1-b0, block); into flat `out` if given.

        `add` (float32, (b1-b0) * block elements) may alias `out`.
        """
        raise NotImplementedError

    def transpose_rows(
        self, g: torch.Tensor, b0: int, b1: int, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Per-block P_b^T g_b as (b1-b0, K); written into flat `out` if given."""
        raise NotImplementedError

    def finish(self, acc: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def transpose_reduce(
        self,
        g: torch.Tensor,
        b0: int,
        b1: int,
        acc: torch.Tensor,
        weight: torch.Tensor | None = None,
        prep: torch.Tensor | None = None,
        dots: torch.Tensor | None = None,
    ) -> None:
        """acc += sum_b weight[b] P_b^T g_b (weight None: 1); dots[b] = <P_b^T g_b, prep> if given.

        What the backward needs from a chunk of rows; kernels may do it without materialising
        the per-block terms.
        """
        rows = b1 - b0
        t = SCRATCH.take(rows * self.prep_size(), torch.float32, g.device)
        t2 = self.transpose_rows(g, b0, b1, out=t)
        # The sum over blocks as a matrix-vector product: one pass, half the time of .sum(0).
        w = _ones(rows, g.device) if weight is None else weight.float()
        acc.addmv_(t2.t(), w)
        if dots is not None:
            torch.mv(t2, prep, out=dots)
        SCRATCH.give(t)

    def prep_size(self) -> int:
        raise NotImplementedError

    def forward_rows_at(self, prep: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
        """Like forward_rows for an arbitrary list of block indices (k,) -> (k, block)."""
        return torch.cat([self.forward_rows(prep, b, b + 1) for b in blocks.tolist()])

    def transpose_rows_at(self, g: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
        """Like transpose_rows for an arbitrary list of block indices: g (k, block) -> (k, K)."""
        return torch.cat(
            [self.transpose_rows(g[i : i + 1], b, b + 1) for i, b in enumerate(blocks.tolist())]
        )

    # -- conveniences --------------------------------------------------------------------------
    def rows_per_chunk(self) -> int:
        """How many blocks to process at once: ~2 MB of float32 on CPU (cache), more on GPU."""
        return max(1, chunk_elems(self._device()) // self.block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """P x as a flat float32 vector of length D, differentiable in x."""
        return _ProjectFn.apply(x, self)

    def state_bytes(self) -> int:
        """Bytes of frozen random state this projection holds."""
        return sum(b.numel() * b.element_size() for b in self.buffers())

    def _apply(self, fn, recurse=True):  # noqa: D401 - nn.Module hook
        # Move with .to(device) but never change dtype: `.half()` on a wrapped model must not
        # silently change P (the permutation indices must not become floats either).
        dtypes = {name: b.dtype for name, b in self.named_buffers()}
        super()._apply(fn, recurse)
        for name, b in list(self.named_buffers()):
            if b.dtype != dtypes[name]:
                self._buffers[name] = b.to(dtypes[name])
        return self

    def materialize(self) -> torch.Tensor:
        """P as a dense (D, d) float64 matrix, column by column (tests and small models only)."""
        cols = []
        for j in range(self.d):
            e = torch.zeros(self.d, dtype=torch.float32, device=self._device())
            e[j] = 1.0
            cols.append(self(e).double())
        return torch.stack(cols, dim=1)

    def _device(self) -> torch.device:
        for b in self.buffers():
            return b.device
        return torch.device("cpu")


_ONES: dict[tuple[int, torch.device], torch.Tensor] = {}


def _ones(n: int, device: torch.device) -> torch.Tensor:
    t = _ONES.get((n, device))
    if t is None:
        t = _ONES[(n, device)] = torch.ones(n, dtype=torch.float32, device=device)
    return t


class _ProjectFn(torch.autograd.Function):
    """x -> P x through the block-row interface (used by `Projection.forward`)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, proj: Projection) -> torch.Tensor:  # type: ignore[override]
        ctx.proj = proj
        prep = proj.prepare(x.detach().float())
        out = proj._out.get(proj.n_blocks * proj.block, torch.float32, x.device)
        step = proj.rows_per_chunk()
        for b0 in range(0, proj.n_blocks, step):
            b1 = min(b0 + step, proj.n_blocks)
            proj.forward_rows(prep, b0, b1, out=out[b0 * proj.block : b1 * proj.block])
        return out[: proj.D]

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        proj: Projection = ctx.proj
        g = g.contiguous().float()
        blk, full = proj.block, proj.D // proj.block
        rows = g[: full * blk].view(full, blk)
        acc = torch.zeros(proj.prep_size(), dtype=torch.float32, device=g.device)
        step = proj.rows_per_chunk()
        for b0 in range(0, full, step):
            b1 = min(b0 + step, full)
            proj.transpose_reduce(rows[b0:b1], b0, b1, acc)
        if full < proj.n_blocks:  # the truncated last block, zero-padded
            last = torch.zeros(1, blk, dtype=torch.float32, device=g.device)
            last[0, : proj.D - full * blk] = g[full * blk :]
            proj.transpose_reduce(last, full, full + 1, acc)
        return proj.finish(acc), None


def _triton_kernels():
    """intdim.kernels.triton_fastfood, imported on first use: it imports triton, which only
    CUDA tensors need (tests substitute a copy whose kernels run in Triton's interpreter)."""
    from intdim.kernels import triton_fastfood

    return triton_fastfood


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(n)))


@PROJECTIONS.register("fastfood")
class FastfoodProjection(Projection):
    # 2: +-1 G and blocks of at least MIN_BLOCK (orthonormal columns); 1 had Gaussian G and blocks
    # of 2^ceil(log2 d), whose singular values spread 0.04 .. 2.6 (the module docstring).
    CONSTRUCTION = "fastfood/2"
    MIN_BLOCK = 1024

    def __init__(self, D: int, d: int, seed: int) -> None:
        super().__init__(D, d, seed)
        LL = max(_pow2_at_least(d), min(self.MIN_BLOCK, _pow2_at_least(self.D)))
        self.block = LL
        self.n_blocks = -(-self.D // LL)
        gen = _generator(seed)
        sign = torch.randint(0, 2, (LL,), generator=gen, dtype=torch.int64) * 2 - 1
        gsign = torch.randint(0, 2, (LL,), generator=gen, dtype=torch.int64) * 2 - 1
        # ||G|| = sqrt(LL): unit columns when LL divides D (the truncated last block otherwise).
        self.scale = 1.0 / math.sqrt(LL * self.D)
        self.register_buffer("B", sign.float(), persistent=False)
        self.register_buffer("G", gsign.float(), persistent=False)
        # int16 indices halve the state of big models; small models keep int32, which index_select
        # takes as is (int16 costs a conversion pass per use, and their state is small anyway).
        small = self.D < SMALL_MODEL
        index_dtype = torch.int16 if LL <= (1 << 15) and not small else torch.int32
        perm = torch.empty(self.n_blocks, LL, dtype=index_dtype)
        inv = torch.empty(self.n_blocks, LL, dtype=index_dtype)
        step = max(1, (1 << 20) // LL)
        cols = torch.arange(LL, dtype=torch.int64)
        for b0 in range(0, self.n_blocks, step):
            b1 = min(b0 + step, self.n_blocks)
            # Independent uniform keys, argsorted per row: a uniformly random permutation per
            # block. Drawing rows in order keeps the result independent of this chunking.
            p = torch.rand(b1 - b0, LL, generator=gen).argsort(dim=1)
            perm[b0:b1] = p.to(index_dtype)
            inv[b0:b1] = torch.empty_like(p).scatter_(1, p, cols.expand_as(p)).to(index_dtype)
        self.register_buffer("perm", perm, persistent=False)
        self.register_buffer("inv", inv, persistent=False)
        self._offsets: dict[tuple[int, torch.device], torch.Tensor] = {}
        self._gather: dict[tuple[int, int, torch.device], torch.Tensor] = {}

    def prep_size(self) -> int:
        return self.block

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """y' = G H B pad(x): the part shared by all blocks."""
        x = x.float().contiguous()
        if cpu_kernels.usable(x, self.G):
            return cpu_kernels.diag_fwht_diag(x, self.B, self.block, self.G, self.block)
        padded = torch.zeros(self.block, dtype=torch.float32, device=x.device)
        torch.mul(x, self.B[: self.d], out=padded[: self.d])
        return fwht_(padded).mul_(self.G)

    # -- Triton on CUDA (intdim.kernels.triton_fastfood): one fused kernel per call ------------
    def _use_triton(self, device: torch.device) -> bool:
        """Fused kernels for tensors on `device`? CUDA, Triton importable, not INTDIM_TRITON=0,
        and the kernels passed their self-check on that GPU."""
        if device.type != "cuda":
            return False
        kernels = _triton_kernels()
        return (
            kernels.available()
            and kernels.supports(self.block)
            and kernels.self_check(device, self.block)
        )

    def forward_rows(self, prep, b0, b1, out=None, add=None):
        if self._use_triton(prep.device):
            return _triton_kernels().forward_rows(prep, self.perm[b0:b1], self.scale, out, add)
        rows = b1 - b0
        if out is None:
            out = torch.empty(rows * self.block, dtype=torch.float32, device=prep.device)
        if cpu_kernels.usable(prep, out, add):
            # Gather, transform, scale and add in one visit per row (intdim/kernels).
            cpu_kernels.forward_rows(prep, self.perm[b0:b1], self.scale, out, add)
            return out.view(rows, self.block)
        # Pi_i y' for each block: a gather from LL floats (cache-resident), then H (+ add).
        z = SCRATCH.take(rows * self.block, torch.float32, prep.device)
        torch.index_select(prep, 0, self.perm[b0:b1].int().view(-1), out=z)
        res = out.view(rows, self.block)
        fwht_(z.view(rows, self.block), out=res, scale=self.scale, add=add)
        SCRATCH.give(z)
        return res

    def _row_offsets(self, rows: int, device: torch.device) -> torch.Tensor:
        key = (rows, device)
        off = self._offsets.get(key)
        if off is None:
            off = self._offsets[key] = (
                torch.arange(rows, dtype=torch.int32, device=device) * self.block
            ).unsqueeze(1)
        return off

    def _gather_index(self, b0: int, b1: int, device: torch.device) -> torch.Tensor:
        """inv of blocks b0..b1 as flat indices into their (b1-b0) * LL rows, int32.

        Small models keep it per chunk (it is rebuilt by every backward otherwise: a pass over D);
        big models build it each time, into a scratch buffer (the cache would double their state).
        """
        key = (b0, b1, device)
        idx = self._gather.get(key)
        if idx is not None:
            return idx
        rows = b1 - b0
        off = self._row_offsets(rows, device)
        if self.D >= SMALL_MODEL:
            idx = SCRATCH.take(rows * self.block, torch.int32, device)
            torch.add(self.inv[b0:b1].int(), off, out=idx.view(rows, self.block))
            return idx
        idx = self._gather[key] = (self.inv[b0:b1].int() + off).view(-1)
        return idx

    def transpose_rows(self, g, b0, b1, out=None):
        """Pi_i^T H (s g_i) for each block i: the per-block terms of P^T g before G H B."""
        g = g.float().contiguous()
        if self._use_triton(g.device):
            return _triton_kernels().transpose_rows(g, self.perm[b0:b1], self.scale, out)
        rows = b1 - b0
        if cpu_kernels.usable(g, out):
            if out is None:
                out = torch.empty(rows * self.block, dtype=torch.float32, device=g.device)
            cpu_kernels.transpose_rows(g, self.inv[b0:b1], self.scale, out=out)
            return out.view(rows, self.block)
        v = SCRATCH.take(rows * self.block, torch.float32, g.device)
        fwht_(g, out=v.view(rows, self.block), scale=self.scale)
        idx = self._gather_index(b0, b1, v.device)
        out = torch.index_select(v, 0, idx, out=out)
        if self.D >= SMALL_MODEL:
            SCRATCH.give(idx)
        SCRATCH.give(v)
        return out.view(rows, self.block)

    def transpose_reduce(self, g, b0, b1, acc, weight=None, prep=None, dots=None):
        g = g.float().contiguous()
        w = None if weight is None else weight.float().contiguous()
        if self._use_triton(g.device):
            # One pass, no per-block terms in memory, deterministic (see the kernels' module).
            kernels = _triton_kernels()
            kernels.transpose_reduce(g, self.perm[b0:b1], self.scale, acc, w, prep, dots)
            return
        if cpu_kernels.usable(g, acc, w, prep, dots):
            # No per-block terms in memory: each row is transformed, gathered and summed in L1.
            cpu_kernels.transpose_rows(
                g, self.inv[b0:b1], self.scale, acc=acc, weight=w, prep=prep, dots=dots
            )
            return
        super().transpose_reduce(g, b0, b1, acc, w, prep, dots)

    def finish(self, acc: torch.Tensor) -> torch.Tensor:
        if cpu_kernels.usable(acc, self.G):
            return cpu_kernels.diag_fwht_diag(acc, self.G, self.block, self.B, self.d)
        return fwht_(acc * self.G)[: self.d] * self.B[: self.d]

    def forward_rows_at(self, prep, blocks):
        z = torch.index_select(prep, 0, self.perm[blocks].int().view(-1))
        z = z.view(-1, self.block)
        return fwht_(z, out=z, scale=self.scale)

    def transpose_rows_at(self, g, blocks):
        v = fwht_(g.float().contiguous(), scale=self.scale)
        idx = self.inv[blocks].int() + self._row_offsets(len(blocks), v.device)
        return torch.index_select(v.view(-1), 0, idx.view(-1)).view(len(blocks), self.block)

    def _apply(self, fn, recurse=True):
        self._offsets = {}
        self._gather = {}
        return super()._apply(fn, recurse)


class _RowMatrixProjection(Projection):
    """Shared block-row logic for projections stored as explicit rows (dense and sparse)."""

    ROWS = 4096

    def _init_blocks(self) -> None:
        self.block = min(self.ROWS, self.D)
        self.n_blocks = -(-self.D // self.block)

    def prep_size(self) -> int:
        return self.d

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x.float()

    def finish(self, acc: torch.Tensor) -> torch.Tensor:
        return acc


@PROJECTIONS.register("dense")
class DenseProjection(_RowMatrixProjection):
    """Li et al.'s dense Gaussian projection with unit-norm columns. O(D d) memory."""

    CONSTRUCTION = "dense/1"

    def __init__(self, D: int, d: int, seed: int) -> None:
        super().__init__(D, d, seed)
        if D * d * 4 > DENSE_MAX_BYTES:
            raise UserError(
                f"a dense projection of {D} x {d} needs {D * d * 4 / 2**30:.1f} GiB; "
                "use projection=fastfood (or sparse) for a model this size"
            )
        self._init_blocks()
        m = torch.randn(self.n_blocks * self.block, d, generator=_generator(seed))
        m[D:] = 0
        m /= m[:D].norm(dim=0, keepdim=True)
        self.register_buffer("P", m, persistent=False)

    def forward_rows(self, prep, b0, b1, out=None, add=None):
        rows = self.P[b0 * self.block : b1 * self.block]
        res = (rows @ prep).view(b1 - b0, self.block)
        if add is not None:
            res += add.view_as(res)
        if out is not None:
            out.view_as(res).copy_(res)
            return out.view_as(res)
        return res

    def transpose_rows(self, g, b0, b1, out=None):
        rows = self.P[b0 * self.block : b1 * self.block].view(b1 - b0, self.block, self.d)
        res = torch.einsum("nbd,nb->nd", rows, g.float())
        if out is not None:
            out.view_as(res).copy_(res)
            return out.view_as(res)
        return res

    def transpose_reduce(self, g, b0, b1, acc, weight=None, prep=None, dots=None):
        # Straight from the rows of P: acc += P^T (weight * g) is one matrix-vector product over
        # the chunk (the per-block terms of the generic path cost an einsum 10x slower), and
        # <P_b^T g_b, prep> = <g_b, (P prep)_b>.
        rows = self.P[b0 * self.block : b1 * self.block]
        g = g.float().reshape(b1 - b0, self.block)
        scaled = g if weight is None else g * weight.float()[:, None]
        acc.addmv_(rows.t(), scaled.reshape(-1))
        if dots is not None:
            dots.copy_((g * (rows @ prep.float()).view_as(g)).sum(1))


@PROJECTIONS.register("sparse")
class SparseProjection(_RowMatrixProjection):
    """Li et al.'s sparse projection: each column has ~sqrt(D) entries of +-1, then unit norm.

    Stored row-sorted (CSR-like): 16 bytes per nonzero, d sqrt(D) nonzeros.
    """

    CONSTRUCTION = "sparse/1"

    def __init__(self, D: int, d: int, seed: int) -> None:
        super().__init__(D, d, seed)
        self._init_blocks()
        gen = _generator(seed)
        per_col = max(1, round(math.sqrt(D)))
        rows = torch.randint(0, D, (d, per_col), generator=gen)
        signs = torch.randint(0, 2, (d, per_col), generator=gen).float() * 2 - 1
        cols = torch.arange(d).unsqueeze(1).expand(d, per_col)
        # Merge duplicate (row, col) draws so each column's norm is computed on what is stored.
        key = rows.reshape(-1) * d + cols.reshape(-1)
        key, inverse = torch.unique(key, return_inverse=True)
        vals = torch.zeros(key.numel()).index_add_(0, inverse, signs.reshape(-1))
        keep = vals != 0
        key, vals = key[keep], vals[keep]
        r, c = key // d, key % d
        norms = torch.zeros(d).index_add_(0, c, vals * vals).sqrt()
        vals = vals / norms[c]
        # torch.unique sorts keys, so entries are already ordered by row.
        self.register_buffer("row", r, persistent=False)
        self.register_buffer("col", c, persistent=False)
        self.register_buffer("val", vals, persistent=False)
        bounds = torch.arange(0, self.n_blocks + 1) * self.block
        self.register_buffer("start", torch.searchsorted(r, bounds), persistent=False)

    def _entries(self, b0: int, b1: int) -> slice:
        return slice(int(self.start[b0]), int(self.start[b1]))

    def forward_rows(self, prep, b0, b1, out=None, add=None):
        e = self._entries(b0, b1)
        if out is None:
            out = torch.empty((b1 - b0) * self.block, dtype=torch.float32, device=prep.device)
        if add is None:
            out.zero_()
        elif add.data_ptr() != out.data_ptr():
            out.copy_(add.reshape(-1))
        out.index_add_(0, self.row[e] - b0 * self.block, self.val[e] * prep[self.col[e]])
        return out.view(b1 - b0, self.block)

    def transpose_rows(self, g, b0, b1, out=None):
        e = self._entries(b0, b1)
        local = self.row[e] - b0 * self.block
        if out is None:
            out = torch.empty((b1 - b0) * self.d, dtype=torch.float32, device=g.device)
        flat = g.reshape(-1).float()
        out.zero_().index_add_(
            0, (local // self.block) * self.d + self.col[e], self.val[e] * flat[local]
        )
        return out.view(b1 - b0, self.d)


def build_projection(kind: str, D: int, d: int, seed: int) -> Projection:
    return PROJECTIONS.get(kind)(D, d, seed)
