"""DID and SAID: train any nn.Module through exactly d numbers.

    sub = wrap(model, SubspaceConfig(d=200, method="said", seed=0))
    opt = torch.optim.AdamW(sub.parameters(), lr=...)   # sub.parameters() is theta_d alone

theta_D = theta0_D + P(theta_d) (DID), or per layer i:
theta_i = theta0_i + lambda_i P(theta_{d-m})_i (SAID, Aghajanyan et al. eq. 3), where the
trainable vector is theta_d = [theta_{d-m}, lambda - 1].

Design notes (why it is built this way):
- The model is run with `torch.func.functional_call`, so its parameters are never deleted or
  re-set; its own weights are theta0 and are never written (except the classification head, see
  below). Their storage is moved once into one flat buffer (same Parameter objects, same values),
  so that theta0 + lambda * P x is one operation per chunk rather than one per tensor. The
  wrapper does not register the model as a submodule: `state_dict()` and `parameters()` hold
  only the trainable numbers; `.to()`, `.train()`, `.eval()` are forwarded.
- theta is materialised block by block by one autograd Function (`_MaterializeFn`): each chunk of
  P rows is computed, added to theta0 and written into one flat buffer that the parameter views
  share; the backward builds P^T g chunk by chunk. P is never stored, no D-sized intermediate but
  theta and its gradient exists, and SAID's lambda gradients come from per-block dot products
  (<P_b^T g_b, prep> = <g_b, (P x)_b>) instead of a second projection.
- SAID lambdas are stored as offsets from 1 (lambda = 1 + theta_d[d-m:]). All of theta_d starts at
  0, so the wrapped model equals the original, and the gradient of theta_{d-m} is P^T g at once
  (a lambda of 0 would make the start a stationary point: both gradients would vanish).
- "Layer" for SAID: a parameter belongs to the layer named by its path up to the first numeric
  component (`roberta.encoder.layer.3`, `0` in an nn.Sequential); a parameter with no numeric
  component belongs to its owning module's path cut to two components (`roberta.embeddings`,
  `classifier.dense`, `bert.pooler`, `classifier`). `lambda_per="tensor"` gives each tensor its own.
- The classification head is part of theta_D by default (the paper). Its theta0 is random, so
  `wrap` re-draws it from the config seed on the CPU: a tuned task is then exactly theta_d + seed +
  the base (body) weights, and reloads onto a fresh copy of the model with identical outputs.
  `head="direct"` trains the head's own weights instead, reported as `extra_trainable`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from intdim.buffers import SCRATCH, ReusableBuffer
from intdim.errors import UserError
from intdim.projection import PROJECTIONS, Projection, build_projection

METHODS = ("did", "said")
LAMBDA_PER = ("layer", "tensor")
HEAD_MODES = ("projected", "direct")


@dataclass
class SubspaceConfig:
    d: int = 1000
    method: str = "said"  # did | said
    projection: str = "fastfood"  # fastfood | dense | sparse
    seed: int = 0
    lambda_per: str = "layer"  # layer | tensor (SAID only)
    head: str = "projected"  # projected (inside theta_D, the paper) | direct (trained as is)
    head_prefixes: list[str] = field(default_factory=list)  # default: HF base_model rule

    def __post_init__(self) -> None:
        if not isinstance(self.d, int) or isinstance(self.d, bool) or self.d < 1:
            raise UserError(f"subspace d must be an integer >= 1, got {self.d!r}")
        if self.method not in METHODS:
            raise UserError(f"unknown subspace method {self.method!r}; choose one of: did, said")
        if self.projection not in PROJECTIONS:
            raise UserError(
                f"unknown projection {self.projection!r}; choose one of: "
                + ", ".join(PROJECTIONS.names())
            )
        if self.lambda_per not in LAMBDA_PER:
            raise UserError(f"unknown lambda_per {self.lambda_per!r}; choose layer or tensor")
        if self.head not in HEAD_MODES:
            raise UserError(f"unknown head mode {self.head!r}; choose projected or direct")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise UserError(f"subspace seed must be an integer >= 0, got {self.seed!r}")
        self.head_prefixes = list(self.head_prefixes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_NUMERIC = re.compile(r"^\d+$")


def layer_of(name: str) -> str:
    """The SAID layer a parameter belongs to (see the module docstring for the rule)."""
    parts = name.split(".")
    for i, p in enumerate(parts[:-1]):
        if _NUMERIC.match(p):
            return ".".join(parts[: i + 1])
    owner = parts[:-1] or parts
    return ".".join(owner[:2])


def _head_names(model: nn.Module, names: list[str], prefixes: list[str]) -> set[str]:
    if prefixes:
        return {n for n in names if any(n == p or n.startswith(p + ".") for p in prefixes)}
    base = getattr(model, "base_model", None)
    if isinstance(base, nn.Module) and base is not model:
        body = {id(p) for p in base.parameters()}
        return {n for n, p in model.named_parameters() if id(p) not in body}
    return set()


@dataclass
class _Piece:
    param: int  # index into the projected parameters
    param_off: int  # offset inside that parameter (flattened)
    chunk_off: int  # offset inside the chunk's rows (flattened)
    length: int
    group: int


@dataclass
class _Chunk:
    b0: int
    b1: int
    start: int  # flat offset of the chunk's first row
    pieces: list[_Piece]
    group_rows: list[int]  # SAID: group of each block row; m (a dummy slot) for mixed rows
    mixed: list[int]  # SAID: rows whose positions belong to more than one group


class _Plan:
    """Where every chunk of P's rows lands in the model's parameters."""

    def __init__(self, params: list[nn.Parameter], groups: list[int], m: int, proj: Projection):
        self.params = params
        self.groups = groups
        self.m = m
        self.proj = proj
        self.sizes = [p.numel() for p in params]
        # Each parameter's shape and contiguous strides (torch's own, from a meta tensor).
        self._layouts = [(p.shape, torch.empty(p.shape, device="meta").stride()) for p in params]
        self.offsets = [0]
        for s in self.sizes:
            self.offsets.append(self.offsets[-1] + s)
        self.D = self.offsets[-1]
        blk, step = proj.block, proj.rows_per_chunk()
        # theta's buffer covers whole blocks, so P's rows are written straight into it; the
        # parameters view its first D entries.
        self.padded = proj.n_blocks * blk
        self.chunks: list[_Chunk] = []
        p = 0
        for b0 in range(0, proj.n_blocks, step):
            b1 = min(b0 + step, proj.n_blocks)
            start, stop = b0 * blk, min(b1 * blk, self.D)
            pieces = []
            pos = start
            while pos < stop:
                while self.offsets[p + 1] <= pos:
                    p += 1
                n = min(stop, self.offsets[p + 1]) - pos
                pieces.append(_Piece(p, pos - self.offsets[p], pos - start, n, groups[p]))
                pos += n
            # Group of each block row; a row shared by pieces of two groups is "mixed". Pieces are
            # in flat order, so a row can only be shared at a piece's first row.
            rows = [-1] * (b1 - b0)
            mixed = set()
            for q in pieces:
                r0, r1 = q.chunk_off // blk, (q.chunk_off + q.length - 1) // blk
                if rows[r0] not in (-1, q.group):
                    mixed.add(r0)
                rows[r0 : r1 + 1] = [q.group] * (r1 - r0 + 1)
            rows = [m if (r in mixed or g < 0) else g for r, g in enumerate(rows)]
            mixed = sorted(mixed)
            self.chunks.append(_Chunk(b0, b1, start, pieces, rows, mixed))
        self._row_groups: dict[tuple[int, torch.device], Any] = {}
        self.buffer = ReusableBuffer()  # theta's storage, reused once the last step released it
        self._flat0: torch.Tensor | None = None
        self.flat_theta0()

    def flat_theta0(self) -> torch.Tensor:
        """theta0 as one flat tensor (`padded` long, zeros past D) that the parameters view.

        The base model's parameters are moved once into one buffer (the same Parameter objects
        and values; only their storage changes, as with FSDP's flat parameters), so theta0 + P x
        is one operation per chunk instead of one per tensor: with ~200 tensors the per-tensor
        launches cost more than the arithmetic on a GPU. Whatever moves them apart again (.to(),
        a user's `p.data = ...`) is noticed here and they are moved back.
        """
        flat = self._flat0
        if flat is not None:
            base, size = flat.data_ptr(), flat.element_size()
            if all(
                p.data_ptr() == base + a * size and p.dtype == flat.dtype
                for p, a in zip(self.params, self.offsets, strict=False)
            ):
                return flat
        p0 = self.params[0]
        flat = torch.zeros(self.padded, dtype=p0.dtype, device=p0.device)
        for p, a, n in zip(self.params, self.offsets, self.sizes, strict=False):
            view = flat[a : a + n].view(p.shape)
            view.copy_(p.detach())
            p.data = view
        self._flat0 = flat
        return flat

    @property
    def dtype(self) -> torch.dtype:  # read live: .to(dtype) on the wrapper changes it
        return self.params[0].dtype

    def _rows(self, i: int, device: torch.device) -> torch.Tensor:
        key = (i, device)
        t = self._row_groups.get(key)
        if t is None:
            t = self._row_groups[key] = torch.tensor(self.chunks[i].group_rows, device=device)
        return t

    def _mixed(
        self, i: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Chunk i's mixed rows as block indices and as rows of the chunk, and the group of every
        position in them."""
        key = (-1 - i, device)
        cached = self._row_groups.get(key)
        if cached is None:
            c, blk = self.chunks[i], self.proj.block
            groups = torch.full((len(c.mixed), blk), self.m, dtype=torch.int64)
            for k, r in enumerate(c.mixed):
                lo, hi = r * blk, (r + 1) * blk
                for q in c.pieces:
                    a, b = max(q.chunk_off, lo), min(q.chunk_off + q.length, hi)
                    if a < b:
                        groups[k, a - lo : b - lo] = q.group
            local = torch.tensor(c.mixed, dtype=torch.int64)
            cached = self._row_groups[key] = (
                (local + c.b0).to(device),
                local.to(device),
                groups.to(device),
            )
        return cached

    # -- forward ---------------------------------------------------------------------------------
    def compute(self, x: torch.Tensor, lam: torch.Tensor | None, out: torch.Tensor) -> None:
        """out (flat, `padded` long) <- theta0 + lambda * P x in its first D entries."""
        proj = self.proj
        prep = proj.prepare(x)
        blk = proj.block
        theta0 = self.flat_theta0()
        lam_ext = None if lam is None else self._lam_ext(lam)
        for i, c in enumerate(self.chunks):
            n = (c.b1 - c.b0) * blk
            flat_rows, flat_t0 = out[c.start : c.start + n], theta0[c.start : c.start + n]
            rows, t0 = flat_rows.view(-1, blk), flat_t0.view(-1, blk)
            if out.dtype == torch.float32:
                if lam_ext is None:
                    # DID: P's rows go straight into theta with theta0 added on the way (fused).
                    proj.forward_rows(prep, c.b0, c.b1, out=flat_rows, add=flat_t0)
                    continue
                w = proj.forward_rows(prep, c.b0, c.b1, out=flat_rows).view(-1, blk)
            else:  # theta0 + lambda * w rounded once to the parameters' dtype
                w = SCRATCH.take(n, torch.float32, x.device)
                proj.forward_rows(prep, c.b0, c.b1, out=w)
                w = w.view(-1, blk)
            if lam_ext is None:
                torch.add(t0, w, out=rows)
            else:
                # One lambda per block row (mixed rows get 0 here and are redone below from the
                # rows of P x kept aside, before `rows`, which may be w itself, is overwritten).
                mixed = None
                if c.mixed:
                    _, local, pos_groups = self._mixed(i, x.device)
                    mixed = (local, w[local], pos_groups)
                torch.addcmul(t0, w, lam_ext[self._rows(i, x.device)].unsqueeze(1), out=rows)
                if mixed is not None:
                    local, wm, pos_groups = mixed
                    rows[local] = torch.addcmul(t0[local], wm, lam_ext[pos_groups]).to(rows.dtype)
            if w.data_ptr() != rows.data_ptr():
                SCRATCH.give(w.view(-1))

    @staticmethod
    def _lam_ext(lam: torch.Tensor) -> torch.Tensor:
        """lambda in float32 with a last slot of 0 (the group of rows handled separately)."""
        return torch.cat([lam.float(), lam.new_zeros(1, dtype=torch.float32)])

    def views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        # One as_strided per tensor: a third of the cost of slice + view, which matters at ~200
        # tensors per step when the step is bound by the CPU (RoBERTa-base on a GPU).
        base = flat.storage_offset()  # as_strided's offset counts from the storage's start
        return [
            flat.as_strided(shape, stride, base + a)
            for a, (shape, stride) in zip(self.offsets, self._layouts, strict=False)
        ]

    # -- backward --------------------------------------------------------------------------------
    def _assemble(self, c: _Chunk, grads, own: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The chunk's gradient rows, and the scratch buffer holding them (to give back), if any."""
        blk = self.proj.block
        rows = c.b1 - c.b0
        if not own and len(c.pieces) == 1:
            q = c.pieces[0]
            g = grads[q.param]
            if (
                g is not None
                and q.length == rows * blk
                and g.dtype == torch.float32
                and g.is_contiguous()
            ):
                return g.view(-1)[q.param_off : q.param_off + q.length].view(rows, blk), None
        buf = SCRATCH.take(rows * blk, torch.float32, self.params[0].device)
        parts = []
        for q in c.pieces:
            g = grads[q.param]
            if g is None:  # a parameter the loss does not depend on
                g = torch.zeros(q.length, dtype=torch.float32, device=buf.device)
                parts.append(g)
            elif q.length == self.sizes[q.param]:  # the whole tensor: no slice (one op less)
                parts.append(g.reshape(-1))
            else:
                parts.append(g.reshape(-1)[q.param_off : q.param_off + q.length])
        # Pieces tile the chunk in order; only what they leave (the tail past D) is zeroed.
        end = c.pieces[-1].chunk_off + c.pieces[-1].length
        torch.cat(parts, out=buf[:end])
        buf[end:].zero_()
        return buf.view(rows, blk), buf

    def backward(self, x, lam, grads) -> tuple[torch.Tensor, torch.Tensor | None]:
        proj = self.proj
        dev = x.device
        acc = torch.zeros(proj.prep_size(), dtype=torch.float32, device=dev)
        if lam is None:
            for c in self.chunks:
                g, buf = self._assemble(c, grads, own=False)
                proj.transpose_reduce(g, c.b0, c.b1, acc)
                if buf is not None:
                    SCRATCH.give(buf)
            return proj.finish(acc), None
        prep = proj.prepare(x)
        glam = torch.zeros(self.m + 1, dtype=torch.float32, device=dev)
        lam_ext = self._lam_ext(lam)
        for i, c in enumerate(self.chunks):
            g, buf = self._assemble(c, grads, own=bool(c.mixed))
            if c.mixed:
                # Rows shared by two layers: lambda varies inside the block, so H cannot be
                # applied before the scaling. Take them out of the per-block path and do them
                # together: gradient rows weighted per position, and lambda's gradient from the
                # recomputed rows of P x (only these few blocks are recomputed).
                blocks, local, pos_groups = self._mixed(i, dev)
                gm = g[local].clone()
                g[local] = 0
                w = proj.forward_rows_at(prep, blocks)
                glam.index_add_(0, pos_groups.view(-1), (gm * w).view(-1))
                acc += proj.transpose_rows_at(gm * lam_ext[pos_groups], blocks).sum(0)
            rows = self._rows(i, dev)
            dots = torch.empty(c.b1 - c.b0, dtype=torch.float32, device=dev)
            proj.transpose_reduce(g, c.b0, c.b1, acc, weight=lam_ext[rows], prep=prep, dots=dots)
            if buf is not None:
                SCRATCH.give(buf)
            glam.index_add_(0, rows, dots)
        return proj.finish(acc), glam[: self.m]


def _full_precision(device: torch.device):
    """theta is built in float32 even inside a user's autocast region: autocast would run the
    Hadamard matmuls in bf16/fp16 and round P(theta_d) to 8 bits of mantissa."""
    return torch.autocast(device_type=device.type, enabled=False)


class _MaterializeFn(torch.autograd.Function):
    """(theta_{d-m}, lambda) -> one tensor per projected parameter: theta0 + lambda * P x."""

    @staticmethod
    def forward(ctx, x, lam, plan: _Plan):  # type: ignore[override]
        said = lam.numel() > 0
        ctx.plan = plan
        ctx.said = said
        ctx.save_for_backward(x, lam)
        flat = plan.buffer.get(plan.padded, plan.dtype, x.device)
        with _full_precision(x.device):
            plan.compute(x.detach().float(), lam.detach() if said else None, flat)
        return tuple(plan.views(flat))

    @staticmethod
    def backward(ctx, *grads):  # type: ignore[override]
        x, lam = ctx.saved_tensors
        with _full_precision(x.device):
            gx, glam = ctx.plan.backward(x.detach(), lam.detach() if ctx.said else None, grads)
        if not ctx.needs_input_grad[1]:
            glam = None
        return gx.to(x.dtype), glam, None


class SubspaceModel(nn.Module):
    """A model trained through theta_d. Build it with `wrap`."""

    def __init__(self, model: nn.Module, config: SubspaceConfig) -> None:
        super().__init__()
        if not isinstance(config, SubspaceConfig):
            raise TypeError("config must be a SubspaceConfig")
        object.__setattr__(self, "_base", model)  # not a submodule: see the module docstring
        self.config = config
        named = list(model.named_parameters())  # tied parameters appear once
        if not named:
            raise UserError("the model has no parameters to reparameterise")
        all_names = [n for n, _ in named]
        head = _head_names(model, all_names, config.head_prefixes)
        if config.head_prefixes and not head:
            raise UserError(f"head_prefixes {config.head_prefixes} match no parameter of the model")
        _seed_head(model, head, config.seed)
        direct = head if config.head == "direct" else set()
        if config.head == "direct" and not direct:
            raise UserError(
                "head='direct' but no classification head was found; pass head_prefixes"
            )
        projected = [(n, p) for n, p in named if n not in direct]
        if not projected:
            raise UserError("every parameter is in the head; nothing is left to project")
        dtypes = {p.dtype for _, p in projected}
        if len(dtypes) > 1:
            raise UserError(
                f"the model mixes parameter dtypes {sorted(map(str, dtypes))}; cast it to one dtype"
            )
        self.param_names = [n for n, _ in projected]
        self.head_names = sorted(head)
        self.body_names = [n for n in all_names if n not in head]
        if config.method == "said":
            keys = (
                self.param_names
                if config.lambda_per == "tensor"
                else [layer_of(n) for n in self.param_names]
            )
            order = list(dict.fromkeys(keys))
            self.layers = order
            groups = [order.index(k) for k in keys]
        else:
            self.layers = []
            groups = [0] * len(projected)
        self.m = len(self.layers)
        self.D = sum(p.numel() for _, p in projected)
        if config.d > self.D:
            raise UserError(
                f"subspace dimension d={config.d} exceeds the number of parameters D={self.D}"
            )
        if config.d <= self.m:
            raise UserError(
                f"SAID needs d > m: d={config.d} leaves no projected coordinates after the "
                f"m={self.m} per-layer lambdas; raise d or use lambda_per=layer / method=did"
            )
        self.projection = build_projection(
            config.projection, self.D, config.d - self.m, config.seed
        )
        device = projected[0][1].device
        self.projection.to(device)
        self.theta_d = nn.Parameter(torch.zeros(config.d, device=device))
        self.head_params = nn.ParameterList(
            [nn.Parameter(p.detach().clone()) for n, p in named if n in direct]
        )
        self._direct_names = [n for n, _ in named if n in direct]
        self._plan = _Plan([p for _, p in projected], groups, self.m, self.projection)
        self._cache: tuple[Any, dict[str, torch.Tensor]] | None = None

    # -- nn.Module plumbing ----------------------------------------------------------------------
    @property
    def base(self) -> nn.Module:
        return self._base

    def _apply(self, fn, recurse=True):
        self._base._apply(fn)
        self._cache = None
        super()._apply(fn, recurse)
        # Chunk sizes depend on the device (cache blocking on CPU, few launches on GPU).
        plan = self._plan
        self._plan = _Plan(plan.params, plan.groups, plan.m, self.projection)
        return self

    def train(self, mode: bool = True):
        self._base.train(mode)
        return super().train(mode)

    @property
    def extra_trainable(self) -> int:
        """Numbers trained outside theta_d (the head, when head='direct')."""
        return sum(p.numel() for p in self.head_params)

    def describe(self) -> str:
        c = self.config
        s = f"{c.method.upper()} d={c.d} (projected {c.d - self.m}"
        s += f", {self.m} lambdas)" if self.m else ")"
        s += f" over D={self.D:,} with {c.projection}, seed {c.seed}"
        if self.extra_trainable:
            s += f"; head trained directly: +{self.extra_trainable:,}"
        return s

    # -- theta -----------------------------------------------------------------------------------
    def _split(self) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.config.d - self.m
        x = self.theta_d[:n]
        lam = 1.0 + self.theta_d[n:]  # empty for DID
        return x, lam

    @torch.compiler.disable
    def parameters_for_forward(self) -> dict[str, torch.Tensor]:
        """The tensors functional_call runs the model with: theta for every projected parameter."""
        tracking = torch.is_grad_enabled() and self.theta_d.requires_grad
        if tracking:
            x, lam = self._split()
            thetas = _MaterializeFn.apply(x, lam, self._plan)
            params = dict(zip(self.param_names, thetas, strict=True))
        else:
            # Evaluation: theta only changes when theta_d does, so it is built once per value of
            # theta_d. The key is theta_d's values (d numbers), not its version counter: fused
            # optimizers (AdamW(fused=True)) update parameters without bumping the version.
            theta_d = self.theta_d.detach()
            cached = self._cache[0] if self._cache is not None else None
            fresh = (
                cached is not None
                and cached.device == theta_d.device
                and cached.dtype == theta_d.dtype
                and torch.equal(cached, theta_d)
            )
            if not fresh:
                self._cache = None  # free the old buffer before allocating the new one
                with torch.no_grad(), _full_precision(self.theta_d.device):
                    x, lam = self._split()
                    flat = torch.empty(self._plan.padded, dtype=self._plan.dtype, device=x.device)
                    self._plan.compute(x.float(), lam if self.m else None, flat)
                views = dict(zip(self.param_names, self._plan.views(flat), strict=True))
                self._cache = (theta_d.clone(), views)
            params = dict(self._cache[1])
        for n, p in zip(self._direct_names, self.head_params, strict=True):
            params[n] = p
        return params

    def forward(self, *args, **kwargs):
        return functional_call(self._base, self.parameters_for_forward(), args, kwargs)

    def merged_state_dict(self) -> dict[str, torch.Tensor]:
        """theta itself (detached), e.g. to save a merged model with save_pretrained."""
        with torch.no_grad():
            return {n: t.detach().clone() for n, t in self.parameters_for_forward().items()}

    # -- tasks -----------------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """A hash of the body weights (all but the seeded head): what theta_d is relative to."""
        return _weights_hash(self._base, self.body_names)

    def save_task(self, path) -> None:
        from intdim.task_file import save_task

        save_task(self, path)


def _weights_hash(model: nn.Module, names: list[str]) -> str:
    h = hashlib.blake2b(digest_size=16)
    params = dict(model.named_parameters())
    for name in names:
        t = params[name].detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}:{tuple(params[name].shape)}:{t.dtype};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def body_fingerprint(model: nn.Module, head_prefixes: list[str] | None = None) -> str:
    """A hash of `model`'s body weights (every parameter but the classification head's, found as
    `wrap` finds it): equal for two models exactly when a task tuned on one loads on the other,
    whatever their heads were initialised to. The probe keys its records by it."""
    names = [n for n, _ in model.named_parameters()]
    head = _head_names(model, names, list(head_prefixes or []))
    return _weights_hash(model, [n for n in names if n not in head])


def _seed_head(model: nn.Module, head: set[str], seed: int) -> None:
    """Re-draw the head's initial weights from `seed` on the CPU (device-independent)."""
    if not head:
        return
    std = float(getattr(getattr(model, "config", None), "initializer_range", 0.02) or 0.02)
    gen = torch.Generator(device="cpu").manual_seed(int(seed) + 7919)  # apart from P's stream
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name not in head:
                continue
            if p.dim() >= 2:
                value = torch.randn(p.shape, generator=gen, dtype=torch.float32) * std
            elif name.endswith("bias"):
                value = torch.zeros(p.shape)
            else:  # 1-D scale (a norm's weight)
                value = torch.ones(p.shape)
            p.copy_(value.to(p.dtype))


def wrap(model: nn.Module, config: SubspaceConfig) -> SubspaceModel:
    """Reparameterise `model` so that exactly `config.d` numbers are trained."""
    return SubspaceModel(model, config)
