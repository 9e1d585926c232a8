"""Fastfood forward + backward for D = 125M, d = 4096 on CPU, as a ratio to copying D floats.

    python benchmarks/bench_fastfood.py [--D 125000000] [--d 4096]

Goal (issue "Foundation and the intdim core"): <= 20x a copy. Also reports the Hadamard transform
alone over D floats in blocks of LL, and the state the projection holds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import interleaved, machine, native_on_cpu, on_torch_path  # noqa: E402
from intdim.hadamard import fwht_  # noqa: E402
from intdim.projection import build_projection  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--D", type=int, default=125_000_000)
    ap.add_argument("--d", type=int, default=4096)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
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
            fns[f"{k} (torch)"] = on_torch_path(fns[k])
    times = interleaved(fns, repeat=a.repeat, device=dev)
    print(f"machine: {machine()}")
    print(f"D={a.D:,} d={a.d} LL={proj.block} blocks={proj.n_blocks:,} (built in {build_s:.1f} s)")
    print(f"state: {proj.state_bytes() / a.D:.2f} bytes per parameter")
    for k, v in times.items():
        print(f"{k:>25}: {v * 1e3:9.1f} ms  = {v / times['copy']:6.1f}x copy")
    ok = times["forward+backward"] / times["copy"] <= 20
    print(f"goal forward+backward <= 20x copy: {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
