"""Reproduce Li et al. (2018)'s MNIST intrinsic dimension with intdim's core: d90 = 750.

    python benchmarks/reproduce_li_mnist.py [--data ../shared/data/mnist] [--out runs/li_mnist]
        [--d 250 500 750 1000 1500] [--seeds 0 1] [--projections fastfood] [--epochs 100]
        [--direct] [--jobs 2]
    python benchmarks/reproduce_li_mnist.py --projections fastfood dense --epochs 10 --seeds 0
    python benchmarks/reproduce_li_mnist.py --projections fastfood@76b0015 --d 750 1500  # before

The reference measurement of the field: Li et al., "Measuring the Intrinsic Dimension of Objective
Landscapes" (ICLR 2018), MNIST, fully connected 784-200-200-10 (199,210 parameters), DID
subspaces theta = theta0 + P theta_d, d90 = the smallest d whose test accuracy reaches 0.90
(absolute): 750 (their bootstrap: 786 +- 66). Their training (uber-research/intrinsic-dimension:
README's MNIST command, train.py, standard_parser.py, model_builders.py): 100 epochs of Adam, lr
1e-3, betas (0.9, 0.99), minibatch 128, shuffled each epoch; he_normal weights (Keras 2.1.5: a
normal truncated at 2 sd, sd sqrt(2 / fan_in)), zero biases; L2 1e-5 on the (projected) weight
matrices; the test accuracy after the last epoch. Inputs are taken in [0, 1] (their h5 files are
not public any more). This script runs that through intdim's `wrap(..., method="did")`, several
seeds per d, with the Fastfood projection, and the dense Gaussian one beside it as the reference.

Every run is one JSON file under OUT/runs/ (rerunning skips finished runs); the table goes to
stdout and OUT/summary.md, the accuracy-against-d figure to OUT/accuracy_vs_d.png. Runs go to
`--jobs` worker processes with one thread each (the DID step is timed on one core elsewhere:
benchmarks/bench_li_mnist.py). A dense P of 199,210 x d floats is read twice per step, so dense
runs take ~30x longer than Fastfood's: the second command above compares the two at 10 epochs.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine  # noqa: E402
from intdim import SubspaceConfig, wrap  # noqa: E402
from intdim.io import atomic_write_json, atomic_write_text  # noqa: E402

THRESHOLD = 0.90
LI_D90 = 750
L2 = 1e-5  # Li et al.'s --l2: on every weight matrix (not biases), sum of squares
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def load_idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path) as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


def load_mnist(root: Path) -> dict[str, torch.Tensor]:
    names = {
        "train_x": ("train-images-idx3-ubyte.gz", 16),
        "train_y": ("train-labels-idx1-ubyte.gz", 8),
        "test_x": ("t10k-images-idx3-ubyte.gz", 16),
        "test_y": ("t10k-labels-idx1-ubyte.gz", 8),
    }
    missing = [f for f, _ in names.values() if not (root / f).is_file()]
    if missing:
        sys.exit(
            f"error: {root} lacks {', '.join(missing)}; pass --data DIR with MNIST's idx files"
        )
    out = {}
    for key, (fname, offset) in names.items():
        a = load_idx(root / fname, offset)
        if key.endswith("_x"):
            out[key] = torch.from_numpy(a.reshape(-1, 784).astype(np.float32) / 255.0)
        else:
            out[key] = torch.from_numpy(a.astype(np.int64))
    return out


def mnist_fc(seed: int) -> nn.Module:
    """784-200-200-10 initialised as Li et al.'s Keras model: he_normal weights, zero biases."""
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(784, 200), nn.ReLU(), nn.Linear(200, 200), nn.ReLU(), nn.Linear(200, 10)
    )
    with torch.no_grad():
        for m in model:
            if isinstance(m, nn.Linear):
                sd = math.sqrt(2.0 / m.in_features)
                w = torch.randn(m.weight.shape, generator=gen)
                while (bad := w.abs() > 2).any():  # Keras's truncated normal: redraw past 2 sd
                    w[bad] = torch.randn(int(bad.sum()), generator=gen)
                m.weight.copy_(w * sd)
                m.bias.zero_()
    return model


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def train_one(job: dict) -> dict:
    """One run: projection "direct" trains all 199,210 weights (Li et al.'s baseline)."""
    torch.set_num_threads(1)
    data = load_mnist(Path(job["data"]))
    seed, d, proj = job["seed"], job["d"], job["projection"]
    model = mnist_fc(seed)
    if proj == "direct":
        net, params = model, list(model.parameters())

        def weights_and_out(x):
            return [m.weight for m in model if isinstance(m, nn.Linear)], model(x)
    else:
        if proj == "dense":  # 199,210 x 1500 floats is over the library's guard for users
            from intdim import projection

            projection.DENSE_MAX_BYTES = 1 << 31
        kind, _, rev = proj.partition("@")
        if rev:  # "fastfood@REV": the construction of an older revision, side by side
            from benchmarks.bench_construction import construction, load_old

            with construction(load_old(rev)):
                net = wrap(model, SubspaceConfig(d=d, method="did", projection=kind, seed=seed))
        else:
            net = wrap(model, SubspaceConfig(d=d, method="did", projection=kind, seed=seed))
        params = list(net.parameters())

        def weights_and_out(x):
            theta = net.parameters_for_forward()  # built once, used by the loss and the L2
            out = torch.func.functional_call(net.base, theta, (x,))
            return [t for k, t in theta.items() if k.endswith("weight")], out

    opt = torch.optim.Adam(params, lr=1e-3, betas=(0.9, 0.99), eps=1e-8)
    gen = torch.Generator().manual_seed(10_000 + seed)
    n = data["train_x"].shape[0]
    curve, start = [], time.perf_counter()
    for _ in range(job["epochs"]):
        net.train()
        for idx in torch.randperm(n, generator=gen).split(job["batch"]):
            weights, out = weights_and_out(data["train_x"][idx])
            loss = nn.functional.cross_entropy(out, data["train_y"][idx])
            loss = loss + L2 * sum((w * w).sum() for w in weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        net.eval()
        curve.append(accuracy(net, data["test_x"], data["test_y"]))
    return {
        **{k: job[k] for k in ("projection", "d", "seed", "epochs", "batch")},
        "test_accuracy": curve[-1],
        "curve": curve,
        "train_accuracy": accuracy(net, data["train_x"], data["train_y"]),
        "wall_seconds": time.perf_counter() - start,
    }


def run_path(out: Path, job: dict) -> Path:
    d = job["d"] if job["projection"] != "direct" else "all"
    name = job["projection"].replace("@", "-at-")
    return out / "runs" / f"{name}-d{d}-seed{job['seed']}-e{job['epochs']}.json"


def d90(rows: dict[int, list[float]]) -> int | None:
    """Smallest d whose mean accuracy over seeds reaches the threshold."""
    for d in sorted(rows):
        if statistics.mean(rows[d]) >= THRESHOLD:
            return d
    return None


def summarise(results: list[dict], args) -> str:
    ds = sorted({r["d"] for r in results if r["projection"] != "direct"})
    projs = [p for p in args.projections if any(r["projection"] == p for r in results)]
    by = {
        p: {
            d: [r["test_accuracy"] for r in results if r["projection"] == p and r["d"] == d]
            for d in ds
        }
        for p in projs
    }
    lines = [
        f"Li et al. (2018) MNIST FC 784-200-200-10, DID, Adam 1e-3, batch {args.batch}, "
        f"{args.epochs} epochs, L2 {L2:g}, test accuracy after the last epoch, "
        f"threshold {THRESHOLD:.2f}",
        f"machine: {machine()}; {args.jobs} worker processes of 1 thread",
        "",
        "| d | " + " | ".join(f"{p} (mean +- sd over seeds)" for p in projs) + " |",
        "|---|" + "---|" * len(projs),
    ]
    for d in ds:
        cells = []
        for p in projs:
            accs = by[p][d]
            if not accs:
                cells.append("")
                continue
            sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
            mark = " *" if statistics.mean(accs) >= THRESHOLD else ""
            cells.append(f"{statistics.mean(accs):.4f} +- {sd:.4f} (n={len(accs)}){mark}")
        lines.append(f"| {d:,} | " + " | ".join(cells) + " |")
    direct = [r["test_accuracy"] for r in results if r["projection"] == "direct"]
    if direct:
        lines.append(f"| all 199,210 (direct) | {statistics.mean(direct):.4f} (n={len(direct)}) |")
    lines.append("")
    lines.append(f"(* reaches {THRESHOLD:.2f}.) Li et al.: d90 = {LI_D90} (bootstrap 786 +- 66).")
    for p in projs:
        got = d90({d: v for d, v in by[p].items() if v})
        where = "none of these d" if got is None else f"{got:,}"
        lines.append(f"d90 with {p}: {where}")
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for proj in dict.fromkeys(r["projection"] for r in results if r["projection"] != "direct"):
        marker = "s" if proj == "dense" else "^" if "@" in proj else "o"
        rs = [r for r in results if r["projection"] == proj]
        if not rs:
            continue
        ds = sorted({r["d"] for r in rs})
        accs = [[r["test_accuracy"] for r in rs if r["d"] == d] for d in ds]
        ax.scatter([r["d"] for r in rs], [r["test_accuracy"] for r in rs], marker=marker, alpha=0.4)
        ax.plot(ds, [statistics.mean(a) for a in accs], marker=marker, label=f"{proj} (mean)")
    ax.axhline(THRESHOLD, color="gray", ls="--", lw=1, label="0.90")
    ax.axvline(LI_D90, color="black", ls=":", lw=1, label=f"Li et al. d90 = {LI_D90}")
    ax.set_xlabel("subspace dimension d")
    ax.set_ylabel("MNIST test accuracy")
    ax.set_title("MNIST FC, DID: accuracy against d")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=Path("runs/li_mnist"))
    ap.add_argument("--d", type=int, nargs="+", default=[250, 500, 750, 1000, 1500])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--projections", nargs="+", default=["fastfood"])
    ap.add_argument("--direct", action="store_true", help="also train all weights (baseline)")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    bad = [p for p in args.projections if p.split("@")[0] not in ("fastfood", "dense", "sparse")]
    if bad:
        sys.exit(
            f"error: unknown projection {bad[0]!r}; choose fastfood, dense, sparse, or "
            "fastfood@REV (the Fastfood of an older git revision)"
        )
    load_mnist(args.data)  # fail now, not in a worker
    common = {"data": str(args.data), "epochs": args.epochs, "batch": args.batch}
    jobs = [
        {**common, "projection": p, "d": d, "seed": s}
        for p in args.projections
        for d in args.d
        for s in args.seeds
    ]
    if args.direct:
        jobs += [{**common, "projection": "direct", "d": 0, "seed": s} for s in args.seeds]
    todo = [j for j in jobs if not run_path(args.out, j).exists()]
    (args.out / "runs").mkdir(parents=True, exist_ok=True)
    print(f"{len(jobs) - len(todo)} of {len(jobs)} runs done already; running {len(todo)}")
    from tqdm import tqdm

    with mp.get_context("spawn").Pool(args.jobs) as pool:
        bar = tqdm(pool.imap_unordered(train_one, todo), total=len(todo), unit="run")
        for res in bar:
            job = {**common, **{k: res[k] for k in ("projection", "d", "seed")}}
            atomic_write_json(run_path(args.out, job), res)
            bar.write(
                f"{res['projection']:>8} d={res['d']:>5} seed {res['seed']}: "
                f"test {res['test_accuracy']:.4f} ({res['wall_seconds']:.0f} s)"
            )
    results = [json.loads(run_path(args.out, j).read_text()) for j in jobs]
    text = summarise(results, args)
    print(text)
    atomic_write_text(args.out / "summary.md", text + "\n")
    plot(results, args.out / "accuracy_vs_d.png")
    print(f"figure: {args.out / 'accuracy_vs_d.png'}")


if __name__ == "__main__":
    main()
