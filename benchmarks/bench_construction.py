"""The Fastfood construction of this tree against an older one, side by side in one process.

    python benchmarks/bench_construction.py [--old-rev 76b0015] [--repeat 5] [--only ...]

The projection module of `--old-rev` (`git show REV:intdim/projection.py`) is loaded beside the
current one; every measurement alternates old and new (best of `--repeat`), so machine noise hits
both alike. The three speed goals of the core, each with both constructions:

- `fastfood`: P x and P^T g (forward + backward) for D = 125M, d = 4096, as a ratio to copying
  D floats (goal <= 20x);
- `said`: a SAID step (d = 1000) of a 6-layer, hidden-256 RoBERTa (D = 17.8M), batch 16 x 128,
  against a full fine-tuning step with AdamW (goal <= 1.25x);
- `mnist`: a DID step (d = 750) of Li et al.'s MNIST network, batch 100, against a direct step
  (goal <= 2x), on one thread as BENCHMARKS.md times it (`OMP_NUM_THREADS=1`).

The old module imports the rest of intdim (kernels, Hadamard transform) from this tree, so only
the construction differs.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import intdim.subspace as subspace_mod  # noqa: E402
from benchmarks.bench_li_mnist import fc  # noqa: E402
from benchmarks.bench_li_mnist import stepper as sgd_stepper  # noqa: E402
from benchmarks.bench_subspace_step import build, make_batch, stepper  # noqa: E402
from benchmarks.common import interleaved, machine  # noqa: E402
from intdim import SubspaceConfig, wrap  # noqa: E402
from intdim import projection as new_projection  # noqa: E402


def load_old(rev: str):
    """intdim/projection.py as of `rev`, as a module of its own."""
    source = subprocess.run(
        ["git", "show", f"{rev}:intdim/projection.py"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    path = Path(tempfile.mkdtemp()) / "old_projection.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_projection", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def construction(module):
    """`wrap` builds its projection with `module`'s construction inside this block."""
    saved = subspace_mod.build_projection
    subspace_mod.build_projection = module.build_projection
    try:
        yield
    finally:
        subspace_mod.build_projection = saved


def wrapped(module, model, cfg):
    with construction(module):
        return wrap(model, cfg)


def fastfood(mods: dict, repeat: int) -> None:
    D, d = 125_000_000, 4096
    src, dst, g = torch.randn(D), torch.empty(D), torch.randn(D)
    x = torch.randn(d, requires_grad=True)
    fns = {"copy": lambda: dst.copy_(src)}
    for name, module in mods.items():
        proj = module.build_projection("fastfood", D, d, seed=0)

        def fwd_bwd(proj=proj):
            x.grad = None
            proj(x).backward(g)

        fns[f"forward+backward ({name})"] = fwd_bwd
        print(f"  {name}: LL = {proj.block}, {proj.state_bytes() / D:.2f} bytes per parameter")
    times = interleaved(fns, repeat=repeat)
    print(f"Fastfood forward + backward, D = {D:,}, d = {d} (goal <= 20x copy)")
    for k, t in times.items():
        print(f"  {k:>28}: {t * 1e3:8.1f} ms = {t / times['copy']:5.1f}x copy")


def said(mods: dict, repeat: int) -> None:
    args = argparse.Namespace(batch=16, seq=128, preset="small", device="cpu")
    batch = make_batch(args, "cpu")
    model = build("small", "cpu")
    steps = {"full": stepper(model, model.parameters(), batch, "cpu", 1e-5)}
    for name, module in mods.items():
        sub = wrapped(module, build("small", "cpu"), SubspaceConfig(d=1000, method="said"))
        steps[f"said ({name})"] = stepper(sub, sub.parameters(), batch, "cpu", 1e-3)
    times = interleaved(steps, repeat=repeat)
    print("SAID step, RoBERTa 6 x 256 (D = 17.8M), batch 16 x 128, d = 1000 (goal <= 1.25x full)")
    for k, t in times.items():
        print(f"  {k:>22}: {t * 1e3:8.1f} ms = {t / times['full']:.3f}x full")


def mnist(mods: dict, repeat: int) -> None:
    torch.manual_seed(0)
    x, y = torch.randn(100, 1, 28, 28), torch.randint(0, 10, (100,))
    direct = fc()
    steps = {"direct": sgd_stepper(direct, direct.parameters(), x, y)}
    for name, module in mods.items():
        sub = wrapped(module, fc(), SubspaceConfig(d=750, method="did", seed=0))
        steps[f"did ({name})"] = sgd_stepper(sub, sub.parameters(), x, y)
    # many short steps: the best of `repeat` batches of 10 steps
    batches = {k: (lambda f=f: [f() for _ in range(10)]) for k, f in steps.items()}
    times = interleaved(batches, repeat=4 * repeat)
    print("Li et al.'s MNIST network, DID step (d = 750), batch 100 (goal <= 2x direct)")
    for k, t in times.items():
        print(f"  {k:>22}: {t * 100:7.3f} ms = {t / times['direct']:.2f}x direct")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old-rev", default="76b0015", help="git revision of the old construction")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--only", nargs="+", choices=("fastfood", "said", "mnist"),
                    default=["fastfood", "said", "mnist"])  # fmt: skip
    a = ap.parse_args()
    old = load_old(a.old_rev)
    mods = {
        f"old {getattr(old.FastfoodProjection, 'CONSTRUCTION', '') or 'fastfood/1'}": old,
        f"new {new_projection.FastfoodProjection.CONSTRUCTION}": new_projection,
    }
    print(f"machine: {machine()}")
    print(f"old: intdim/projection.py at {a.old_rev}; new: this tree")
    for name in a.only:
        {"fastfood": fastfood, "said": said, "mnist": mnist}[name](mods, a.repeat)


if __name__ == "__main__":
    main()
