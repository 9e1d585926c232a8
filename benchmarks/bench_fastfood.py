"""Fastfood forward + backward for D = 125M, d = 4096 on CPU, as a ratio to copying D floats.

    python benchmarks/bench_fastfood.py [--D 125000000] [--d 4096]
    python benchmarks/bench_fastfood.py --device cuda --d 1000 --compare-triton [--sweep]

Goal (issue "Foundation and the intdim core"): <= 20x a copy. Also reports the Hadamard transform
alone over D floats in blocks of LL, and the state the projection holds.

--compare-triton (CUDA) times the fused Triton kernels (intdim/kernels/triton_fastfood.py) and
the torch path (INTDIM_TRITON=0) side by side, interleaved: the whole projection and the block-row
operations over all rows in chunks as intdim.subspace runs them (forward_rows into theta's
buffer, forward_rows + add, and the backward's reduction with SAID's weights and dots).
--sweep also times the kernels at several num_warps / PROGRAMS settings.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (  # noqa: E402
    interleaved,
    machine,
    native_on_cpu,
    on_torch_path,
    with_env,
)
from intdim.hadamard import fwht_  # noqa: E402
from intdim.projection import build_projection  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--D", type=int, default=125_000_000)
    ap.add_argument("--d", type=int, default=4096)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--compare-triton", action="store_true", help="Triton kernels vs torch path")
    ap.add_argument("--sweep", action="store_true", help="with --compare-triton: tuning sweep")
    a = ap.parse_args()
    if a.compare_triton and a.device != "cuda":
        ap.error("--compare-triton times the Triton kernels, which run on CUDA only")
    dev = torch.device(a.device)
    t = time.perf_counter()
    proj = build_projection("fastfood", a.D, a.d, seed=0).to(dev)
    build_s = time.perf_counter() - t
    src = torch.randn(a.D, device=dev)
    dst = torch.empty_like(src)
    g = torch.randn(a.D, device=dev)
    x = torch.randn(a.d, device=dev, requires_grad=True)
    rows = torch.randn(proj.n_blocks, proj.block, device=dev)

    def fwd_bwd():
        x.grad = None
        proj(x).backward(g)

    def fwd():
        with torch.no_grad():
            proj(x)

    fns = {
        "copy": lambda: dst.copy_(src),
        "hadamard": lambda: fwht_(rows, out=rows),
        "forward": fwd,
        "forward+backward": fwd_bwd,
    }
    if native_on_cpu(dev):  # the same on the pure-torch path, side by side
        for k in ("hadamard", "forward", "forward+backward"):
            fns[f"{k} (torch path)"] = on_torch_path(fns[k])
    if a.compare_triton:  # copy, then each operation with the kernels off and on
        fns = {"copy": fns["copy"]}
        del rows  # room for the block-row buffers
        ops = block_row_ops(proj, x.detach(), dev)
        for name, fn in {"forward": fwd, "forward+backward": fwd_bwd, **ops}.items():
            fns[f"{name} [torch]"] = with_env(fn, INTDIM_TRITON="0")
            fns[f"{name} [triton]"] = with_env(fn, INTDIM_TRITON="1")
    times = interleaved(fns, repeat=a.repeat, device=dev)
    print(f"machine: {machine()}")
    print(f"D={a.D:,} d={a.d} LL={proj.block} blocks={proj.n_blocks:,} (built in {build_s:.1f} s)")
    print(f"state: {proj.state_bytes() / a.D:.2f} bytes per parameter")
    width = max(len(k) for k in times)
    for k, v in times.items():
        line = f"{k:>{width}}: {v * 1e3:9.2f} ms  = {v / times['copy']:6.1f}x copy"
        if k.endswith("[triton]"):
            line += f"  ({v / times[k.replace('[triton]', '[torch]')]:.2f}x torch)"
        print(line)
    if not a.compare_triton:
        ok = times["forward+backward"] / times["copy"] <= 20
        print(f"goal forward+backward <= 20x copy: {'met' if ok else 'NOT met'}")
    elif a.sweep:
        sweep(ops, a.repeat, dev)


def block_row_ops(proj, x: torch.Tensor, dev: torch.device) -> dict:
    """The projection's per-step block-row work, chunked as intdim.subspace does it."""
    blk, n, step = proj.block, proj.n_blocks, proj.rows_per_chunk()
    spans = [(b0, min(b0 + step, n)) for b0 in range(0, n, step)]
    prep = proj.prepare(x)
    theta = torch.empty(n * blk, device=dev)
    theta0 = torch.randn(n * blk, device=dev)
    g = torch.randn(n, blk, device=dev)
    lam = torch.randn(n, device=dev)

    def forward_rows():  # DID in float32: P's rows straight into theta
        for b0, b1 in spans:
            proj.forward_rows(prep, b0, b1, out=theta[b0 * blk : b1 * blk])

    def forward_rows_add():  # theta0 + P x in one pass (contiguous theta0)
        for b0, b1 in spans:
            sl = slice(b0 * blk, b1 * blk)
            proj.forward_rows(prep, b0, b1, out=theta[sl], add=theta0[sl])

    def reduce_said():  # SAID's backward: sum_i lambda_i t_i and <t_i, prep> per row
        acc = torch.zeros(blk, device=dev)
        for b0, b1 in spans:
            dots = torch.empty(b1 - b0, device=dev)
            proj.transpose_reduce(g[b0:b1], b0, b1, acc, lam[b0:b1], prep, dots)

    def reduce_did():
        acc = torch.zeros(blk, device=dev)
        for b0, b1 in spans:
            proj.transpose_reduce(g[b0:b1], b0, b1, acc)

    return {
        "forward_rows": forward_rows,
        "forward_rows+add": forward_rows_add,
        "transpose_reduce DID": reduce_did,
        "transpose_reduce SAID": reduce_said,
    }


def sweep(ops: dict, repeat: int, dev: torch.device) -> None:
    """The kernels at other launch settings and with the split TF32 dots (INTDIM_TRITON_DOT)."""
    from intdim.kernels import triton_fastfood as tf

    default = (tf.NUM_WARPS, tf.PROGRAMS)
    print("sweep, ms (kernels on):   dot  warps  PROGRAMS  " + "  ".join(ops))
    try:
        for dot in ("ieee", "split"):
            for warps in (2, 4, 8):
                for programs in (1024, 4096):
                    tf.NUM_WARPS, tf.PROGRAMS = warps, programs
                    fns = {
                        k: with_env(f, INTDIM_TRITON="1", INTDIM_TRITON_DOT=dot)
                        for k, f in ops.items()
                    }
                    t = interleaved(fns, repeat, dev)
                    cells = "  ".join(f"{t[k] * 1e3:{len(k)}.2f}" for k in ops)
                    print(f"{'':24} {dot:>5} {warps:6d} {programs:9d}  {cells}")
    finally:
        tf.NUM_WARPS, tf.PROGRAMS = default


if __name__ == "__main__":
    main()
