"""`precision=bf16-master`: a bf16 model trained through fp32 master weights.

This is fairseq's `--fp16` training (its FP16Optimizer, which RoBERTa was trained with) in bf16,
and Megatron-LM's `--bf16` default: the model's parameters are bf16, so the whole forward and
backward run in bf16 (the residual stream, LayerNorm's input and output, dropout, GELU), while the
optimizer steps an fp32 copy of every parameter and copies it back, rounded, after each step.

Why it is faster than bf16 autocast: under autocast the parameters are fp32 and LayerNorm is on
autocast's fp32 list, so the residual stream between layers is fp32 and every LayerNorm, dropout
and residual add reads and writes it at 4 bytes an element. On a GPU those memory-bound kernels
are a third of a RoBERTa-base step (BENCHMARKS.md); here they move half the bytes.

What stays fp32: the master weights and the optimizer's state (as autocast), the loss (the
logits are upcast), and the gradient *accumulation*: each micro-batch's bf16 gradients are added
into one fp32 buffer right after its backward, and processes all-reduce that buffer, not bf16
gradients. Summing gradients in bf16 (8 significant bits) over update_freq micro-batches and
processes would lose bits that fp32 keeps; Megatron-LM forces fp32 accumulation for bf16 for the
same reason. So this mode does its own all-reduce, once per update, instead of DDP's (which would
reduce the bf16 `.grad`s). It moves the same bytes as DDP's fp32 reduction under autocast, but
after the backward instead of overlapped with it: for RoBERTa-base about 0.5 GB per update, a few
ms over NVLink against update_freq forward/backward passes of ~60 ms each.

Layout: the bf16 parameters are views into one flat buffer, the master weights and their
gradients views into two flat fp32 buffers, each tensor starting on a 128-element boundary; the
copy back after a step is one kernel, zeroing the gradients one more. The Parameter objects the
model holds stay the same (tied weights stay tied); only their storage moves.
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn

from pretrain import distributed

# Each tensor starts on a multiple of this many elements (256 bytes of bf16): aligned for
# vectorised loads and for cuBLAS, whatever the sizes of the tensors before it.
ALIGN = 128

# Devices on which the two mixed-dtype passes over the whole flat buffers (the fp32 += bf16
# accumulation, the fp32 -> bf16 copy after a step) run as kernels torch.compile generates. Eager
# CUDA runs them with its non-vectorised kernels for dtype-converting elementwise ops (a 124.6M-
# element fp32 -> bf16 copy took 0.85 ms on an H200, ~0.9 TB/s); inductor's are vectorised. The
# CPU keeps eager (the tests widen this to check the compiled path is exact).
COMPILED_FLAT_DEVICES = ("cuda",)
_compiled: dict = {}
_eager_only: set = set()  # passes whose compile failed here: eager gives the same numbers
log = logging.getLogger(__name__)


def _add_into(acc: torch.Tensor, x: torch.Tensor) -> None:
    acc.add_(x)


def _copy_into(dst: torch.Tensor, src: torch.Tensor) -> None:
    dst.copy_(src)


def _flat_pass(fn, dst: torch.Tensor, src: torch.Tensor) -> None:
    """fn(dst, src), compiled once per function where COMPILED_FLAT_DEVICES says. A machine
    where compiling fails (no C compiler for Triton's launcher, say) runs it eagerly: the same
    numbers, slower."""
    if dst.device.type in COMPILED_FLAT_DEVICES and fn not in _eager_only:
        try:
            if fn not in _compiled:
                _compiled[fn] = torch.compile(fn, dynamic=False, fullgraph=True)
            _compiled[fn](dst, src)
            return
        except Exception as e:  # noqa: BLE001  compiling failed before anything was written
            _eager_only.add(fn)
            log.warning("bf16-master: compiling %s failed (%s: %s); it runs eagerly",
                        fn.__name__, type(e).__name__, str(e).splitlines()[0][:200])  # fmt: skip
    fn(dst, src)


class MasterWeights:
    """Turns `module`'s trainable parameters into bf16 views of one buffer and keeps their fp32
    masters (`params`, what the optimizer steps). Per update:

        for each micro-batch: loss.backward(); master.accumulate()
        master.all_reduce(dist)           # a no-op for one process
        master.prepare_step()             # then clip the masters' gradients, if clipping
        optimizer.step(); master.after_step()
    """

    def __init__(self, module: nn.Module, dtype: torch.dtype = torch.bfloat16) -> None:
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]  # ties once
        self.names = [n for n, _ in named]
        self.model_params = [p for _, p in named]
        offsets, total = [], 0
        for p in self.model_params:
            offsets.append(total)
            total += -(-p.numel() // ALIGN) * ALIGN
        dev = self.model_params[0].device if self.model_params else torch.device("cpu")
        self.master_flat = torch.zeros(total, dtype=torch.float32, device=dev)
        self.grad_flat = torch.zeros(total, dtype=torch.float32, device=dev)
        self.model_flat = torch.zeros(total, dtype=dtype, device=dev)
        self._offsets = offsets
        masters = self._views(self.master_flat)
        self._model_views = self._views(self.model_flat)
        self._grads = self._views(self.grad_flat)
        with torch.no_grad():
            for p, master, model in zip(self.model_params, masters, self._model_views, strict=True):
                master.copy_(p.detach())
                model.copy_(master)
                p.data = model
        self.params = [nn.Parameter(m) for m in masters]
        self._got_grad = [False] * len(self.params)
        self._attach_grads()
        self._staging: torch.Tensor | None = None  # see accumulate
        self._staging_views: list[torch.Tensor] = []

    def _views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Each parameter's place in a flat buffer laid out as the others, shaped like it."""
        return [
            flat[off : off + p.numel()].view_as(p)
            for p, off in zip(self.model_params, self._offsets, strict=True)
        ]

    def _attach_grads(self) -> None:
        for m, g in zip(self.params, self._grads, strict=True):
            m.grad = g

    @torch.no_grad()
    def accumulate(self) -> None:
        """Add the model's bf16 gradients (one micro-batch's) into the fp32 buffer; free them.

        A foreach add of bf16 into fp32 is one kernel per tensor (mixed dtypes leave the fused
        multi-tensor path): 202 launches, 1.1 ms per micro-batch for RoBERTa-base on an H200.
        When every parameter has a gradient (the usual case), the gradients are instead copied
        (same dtype: fused) into a bf16 buffer laid out as the fp32 one, and that is added in one
        kernel (a compiled one on a GPU: COMPILED_FLAT_DEVICES); the alignment gaps are zeros in
        both."""
        grads = [p.grad for p in self.model_params]
        if grads and all(g is not None and g.dtype == self.model_flat.dtype for g in grads):
            if self._staging is None:
                self._staging = torch.zeros_like(self.model_flat)
                self._staging_views = self._views(self._staging)
            torch._foreach_copy_(self._staging_views, grads)
            _flat_pass(_add_into, self.grad_flat, self._staging)
            self._got_grad = [True] * len(self.params)
        else:
            dst, src = [], []
            for i, g in enumerate(grads):
                if g is not None:
                    dst.append(self._grads[i])
                    src.append(g)
                    self._got_grad[i] = True
            if dst:
                torch._foreach_add_(dst, src)
        for p in self.model_params:
            p.grad = None

    def all_reduce(self, dist: distributed.DistInfo) -> None:
        """Sum the fp32 gradients over the processes (one collective per update)."""
        if not dist.enabled:
            return
        distributed.all_reduce(dist, self.grad_flat)
        # On the host (gloo, also on GPUs: distributed.backend), so reading it waits for nothing.
        got = torch.tensor(self._got_grad, dtype=torch.float32)
        self._got_grad = [bool(x) for x in distributed.all_reduce(dist, got).tolist()]

    def prepare_step(self) -> None:
        """A parameter that got no gradient this update has none for the optimizer (as an
        ordinary model's `.grad` would be None), so AdamW leaves it as it is."""
        for m, g, got in zip(self.params, self._grads, self._got_grad, strict=True):
            m.grad = g if got else None

    @torch.no_grad()
    def after_step(self) -> None:
        """Round the stepped masters into the model and zero the gradient buffer."""
        moved = [n for n, p, v in zip(self.names, self.model_params, self._model_views, strict=True)
                 if p.data_ptr() != v.data_ptr()]  # fmt: skip
        if moved:  # the copy below would no longer reach them: training would silently stop
            raise RuntimeError(
                f"{len(moved)} parameters ({moved[0]}, ...) no longer live in the bf16 buffer "
                "(moved by .to() or a new .data?); build MasterWeights after moving the model"
            )
        _flat_pass(_copy_into, self.model_flat, self.master_flat)
        self.grad_flat.zero_()
        self._got_grad = [False] * len(self.params)
        self._attach_grads()

    def fp32_model(self, hf_model: nn.Module, prefix: str = "") -> nn.Module:
        """A CPU fp32 copy of `hf_model` holding the master weights: what a checkpoint saves
        (so `from_pretrained` gets fp32 weights, not their bf16 rounding). `prefix` is what the
        names given to __init__ have in front of `hf_model`'s own ("hf." for MaskedLM)."""
        out = copy.deepcopy(hf_model).to("cpu", torch.float32)
        state = {
            n.removeprefix(prefix): m.detach().cpu()
            for n, m in zip(self.names, self.params, strict=True)
        }
        missing = set(state) - set(out.state_dict())
        if missing:
            raise RuntimeError(f"master weights name no parameter of the model: {sorted(missing)}")
        out.load_state_dict(state, strict=False)
        return out
