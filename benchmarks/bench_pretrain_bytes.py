"""Bytes that torch.compile's generated kernels move in one RoBERTa-base training step, per
precision: a GPU-free measure of the memory-bound third of the step (BENCHMARKS.md, MFU).

    python benchmarks/bench_pretrain_bytes.py [--batches 4,8] [--project 64] [--top 12]

On a GPU the step is bound by the GPU, and a third of its time is inductor's fused pointwise and
reduction kernels (LayerNorm, dropout, residual adds, GELU, their backwards), which are bound by
memory bandwidth: their time follows the bytes they read and write. This compiles the trainer's
forward + backward (`pretrain.model.MaskedLM`, the loss inside the compiled module, no padding
mask, 15% scored positions) on the CPU and sums, over every kernel inductor generates (not the
matmuls or the attention, which are library calls), the sizes of the buffers it reads and writes
(the scheduler's own count, `get_read_write_buffers_sizes`). Two batch sizes give a fixed part
(per step: casts of the weights and of their gradients) and a part per token; both are projected
to --project blocks, the MFU bench's micro-batch.

Caveats: inductor's CPU and GPU backends fuse almost alike but not identically, so the absolute
numbers are a model of the GPU's, the ratio between precisions the useful part. Attention dropout
is set to 0 here: on a GPU it lives inside the fused attention kernel, on the CPU it would add
(batch, heads, L, L) pointwise kernels that the GPU step does not have. Hidden dropout stays 0.1
(--hidden-dropout 0 sizes what its masks cost).
Precisions: `autocast` (precision=bf16: bf16 autocast over fp32 weights) and `master`
(precision=bf16-master, pretrain/precision.py); `+bits` after either swaps in the bit-mask hidden
dropout (dropout_bitmask=true, pretrain/dropout.py), whose mask is drawn outside inductor's
kernels (a library call here, not counted: on a GPU it writes N / 8 bytes).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import sys
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine  # noqa: E402
from pretrain.config import ModelConfig  # noqa: E402
from pretrain.dropout import use_bitmask_dropout  # noqa: E402
from pretrain.model import MaskedLM, build_config  # noqa: E402
from pretrain.precision import MasterWeights  # noqa: E402

VOCAB = 50265


class _Tok(SimpleNamespace):
    def __len__(self) -> int:
        return VOCAB


class KernelBytes:
    """Counts, while active, the bytes each kernel inductor generates reads and writes."""

    def __init__(self) -> None:
        self.total = 0
        self.kernels = 0
        self.by_ops: Counter[str] = Counter()

    @contextlib.contextmanager
    def active(self):
        import torch._inductor.scheduler as sch

        original = sch.Scheduler.codegen
        counter = self

        def codegen(scheduler):
            for node in scheduler.nodes:
                if isinstance(node, (sch.ExternKernelSchedulerNode, sch.NopKernelSchedulerNode)):
                    continue  # matmuls, attention: library kernels, not inductor's
                size = node.get_read_write_buffers_sizes()
                ops = {
                    str(o.name).rstrip("_0123456789")
                    for sn in node.get_nodes()
                    if sn.node is not None
                    for o in sn.node.get_origins()
                }
                counter.total += size
                counter.kernels += 1
                counter.by_ops[",".join(sorted(ops))[:100]] += size
            return original(scheduler)

        sch.Scheduler.codegen = codegen
        try:
            yield self
        finally:
            sch.Scheduler.codegen = original


def measure(cpu_model: MaskedLM, precision: str, batch: int, seq: int) -> KernelBytes:
    torch._dynamo.reset()
    model = copy.deepcopy(cpu_model).train()
    precision, _, extra = precision.partition("+")
    if extra == "bits":
        use_bitmask_dropout(model.hf)
    elif extra:
        raise SystemExit(f"unknown precision suffix +{extra}; known: +bits")
    master = MasterWeights(model) if precision == "master" else None
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, VOCAB, (batch, seq), generator=g)
    n = int(0.15 * batch * seq)
    positions = torch.randperm(batch * seq, generator=g)[:n].sort().values
    targets = torch.randint(3, VOCAB, (n,), generator=g)
    fwd = torch.compile(model, dynamic=False)
    cast = contextlib.nullcontext() if master else torch.autocast("cpu", torch.bfloat16)
    with KernelBytes().active() as counted:
        with cast:
            loss = fwd(ids, None, positions, targets)
        (loss / n).backward()
    return counted


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--batches", default="4,8", help="two batch sizes (blocks of --seq tokens)")
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--project", type=int, default=64, help="blocks to project the totals to")
    ap.add_argument("--precisions", default="autocast,master", help="e.g. master,master+bits")
    ap.add_argument("--hidden-dropout", type=float, default=0.1, help="RoBERTa's: 0.1")
    ap.add_argument("--top", type=int, default=0, help="print the N largest kernel groups")
    a = ap.parse_args()
    b1, b2 = (int(x) for x in a.batches.split(","))
    if not 0 < b1 < b2:
        raise SystemExit("--batches takes two increasing batch sizes, e.g. 4,8")
    import torch._inductor.config as inductor_config

    inductor_config.force_disable_caches = True  # a cached graph generates no kernels to count
    tok = _Tok(pad_token_id=1, bos_token_id=0, eos_token_id=2)
    model_cfg = ModelConfig(preset="roberta_base", dropout=a.hidden_dropout, attention_dropout=0.0)
    cfg = build_config(model_cfg, tok, a.seq)
    from transformers import RobertaForMaskedLM

    torch.manual_seed(0)
    cpu_model = MaskedLM(RobertaForMaskedLM(cfg))
    print(f"machine: {machine()}")
    print(f"roberta_base, seq {a.seq}, hidden dropout {a.hidden_dropout}, attention dropout 0 "
          "(see the doc)")  # fmt: skip
    rows = []
    for precision in a.precisions.split(","):
        t = time.perf_counter()
        c1 = measure(cpu_model, precision, b1, a.seq)
        c2 = measure(cpu_model, precision, b2, a.seq)
        per_token = (c2.total - c1.total) / ((b2 - b1) * a.seq)
        fixed = c1.total - per_token * b1 * a.seq
        projected = fixed + per_token * a.project * a.seq
        rows.append((precision, c2.kernels, per_token, fixed, projected))
        print(f"{precision}: {c1.total / 2**30:.2f} GiB at batch {b1}, {c2.total / 2**30:.2f} GiB "
              f"at batch {b2}, {c2.kernels} kernels ({time.perf_counter() - t:.0f} s)")  # fmt: skip
        for ops, size in c2.by_ops.most_common(a.top):
            print(f"    {size / 2**20:8.0f} MiB  {ops}")
    print(f"\n| precision | kernels | per token | fixed per step | at batch {a.project} | ratio |")
    print("| --- | --- | --- | --- | --- | --- |")
    for precision, kernels, per_token, fixed, projected in rows:
        print(f"| {precision} | {kernels} | {per_token / 1e6:.3f} MB | {fixed / 2**30:.2f} GiB | "
              f"{projected / 2**30:.1f} GiB | {projected / rows[0][4]:.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
