"""DID step against a direct step for Li et al.'s MNIST fully-connected network.

    python benchmarks/bench_li_mnist.py [--d 750] [--batch 100] [--device cpu]

Li et al. (2018), 784-200-200-10 (199,210 parameters), d = 750, random inputs of MNIST shape.
Their published figure is 22 ms per DID step against 2.68 ms per direct step (8.2x).
Goal (issue "Foundation and the intdim core"): <= 2x. Both steps use SGD.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import interleaved, machine  # noqa: E402
from intdim import SubspaceConfig, wrap  # noqa: E402
from intdim.kernels import cpu as cpu_kernels  # noqa: E402


def fc() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 200),
        nn.ReLU(),
        nn.Linear(200, 200),
        nn.ReLU(),
        nn.Linear(200, 10),
    )


def stepper(module, params, x, y):
    opt = torch.optim.SGD(params, lr=0.01)

    def step():
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(module(x), y).backward()
        opt.step()

    return step


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--d", type=int, default=750)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=200)
    a = ap.parse_args()
    torch.manual_seed(0)
    x = torch.randn(a.batch, 1, 28, 28, device=a.device)
    y = torch.randint(0, 10, (a.batch,), device=a.device)
    direct = fc().to(a.device)
    model = fc().to(a.device)
    sub = wrap(model, SubspaceConfig(d=a.d, method="did", seed=0))
    did = stepper(sub, sub.parameters(), x, y)
    steps = {"direct": stepper(direct, direct.parameters(), x, y), "did": did}
    if a.device == "cpu" and cpu_kernels.available():
        # The same DID step on the pure-torch path (no compiled kernels), side by side.
        def did_torch():
            with cpu_kernels.disabled():
                did()

        steps["did (torch path)"] = did_torch
    # Many short steps: take the best of `repeat` batches of 10 steps each.
    times = interleaved(
        {k: (lambda f=f: [f() for _ in range(10)]) for k, f in steps.items()},
        repeat=a.repeat // 10,
        device=a.device,
    )
    D = sum(p.numel() for p in direct.parameters())
    print(f"machine: {machine()}")
    print(f"MNIST FC 784-200-200-10, D={D:,}, d={a.d}, batch {a.batch}, device {a.device}")
    for k, t in times.items():
        print(f"  {k:>16} step: {t * 100:7.3f} ms  = {t / times['direct']:.2f}x direct")
    print("  Li et al. 2018 (their figure): 22 ms vs 2.68 ms = 8.2x")


if __name__ == "__main__":
    main()
