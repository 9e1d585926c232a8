"""What each LR protocol of the d90 search does to d90 and to its cost, against the paper's.

    PYTHONPATH=. python benchmarks/bench_search.py [--max-steps 2000] [--eval-every 100]

No training: synthetic accuracy-of-d curves (probe.simulate.Curve) with the true d90 at several
places in [100, 4e6], and a simple step model (probe.simulate.StepModel): a run trains
`max_steps` unless it is stopped early at the first evaluation at or above the threshold. Two
families of tasks: the best LR the same at every d, and the best LR falling with d (as d^-0.5:
larger subspaces want smaller steps per coordinate), where one LR cannot serve every d.

Protocols (full fine-tuning is the same for all and is not counted):
- "paper": section 5.1 as we read it: binary search (k = 1) over [100, 4e6] to hi/lo <= 1.25,
  four LRs at every d, every run trained to its budget.
- "reuse one LR": the old default: the grid at the first d below 10^4, its best LR reused at
  every later d below 10^4 (`reuse_best_lr: true`), a fixed LR above, early stopping.
- "grid every d": the default on a first checkpoint (no LR hints): the grid at every d below
  10^4, a fixed LR above, early stopping, and the d90 run trained again to its budget.
- "+hints": the default on a later checkpoint: one LR per d, the best the previous checkpoint's
  search found at the nearest d (`lr_hints: previous`).
- "k=3 +hints": three points per round (fewer rounds: wall clock on a cluster).

"true d90" is the crossing of the best of the four grid LRs at each d (what a search with the
whole grid everywhere can find). A bracket "ok" contains it. The cost goal (issue: <= 1/3 of the
paper's steps for the same bracket) is met over a trajectory: the last lines give a run of 10
checkpoints, the first with the grid, the nine others with hints.
"""

from __future__ import annotations

import argparse
import math

from probe.search import SearchConfig, SearchKey, best_lrs
from probe.simulate import Curve, StepModel, drive

KEY = SearchKey("checkpoint_2000", "synthetic", "said")
EARLIER = SearchKey("checkpoint_1000", "synthetic", "said")
PAPER = SearchConfig(k=1, lr_reuse_below=None, reuse_best_lr=False, early_stop=False)
GRID = SearchConfig().lrs
CHECKPOINTS = 10


def true_d90(curve: Curve, lr_reuse_below: float, fixed_lr: float) -> float:
    """Smallest d where the best grid LR (the fixed LR at and above lr_reuse_below) reaches."""
    target = curve.threshold_fraction * curve.full

    def reaches(d: float) -> bool:
        lrs = [fixed_lr] if d >= lr_reuse_below else GRID
        return max(curve(round(d), lr) for lr in lrs) >= target

    lo, hi = 1.0, 1e8
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if reaches(mid) else (mid, hi)
    return hi


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-steps", type=int, default=2000)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--d-stars", type=float, nargs="+", default=[150, 900, 3000, 30000, 800000])
    ap.add_argument("--checkpoints", type=int, default=CHECKPOINTS)
    args = ap.parse_args()
    steps = StepModel(max_steps=args.max_steps, eval_every=args.eval_every)
    # family -> (curve shape, search settings shared by our protocols). With the best LR
    # moving with d, the paper's one fixed LR above 10^4 cannot serve, so that family uses
    # per-d LRs everywhere (lr_reuse_below: null), as the paper's section 4 does.
    families = {
        "best LR fixed": ({"best_lr": 1e-2, "lr_slope": 0.0, "lr_penalty": 0.05}, {}),
        "best LR ~ d^-0.5": (
            {"best_lr": 3e-3, "lr_slope": 0.5, "lr_penalty": 0.06, "width": 0.9},
            {"lr_reuse_below": None},
        ),
    }
    header = f"{'true d90':>9}  {'protocol':<13} {'d90':>9} {'bracket':>20} {'ok':>3} "
    header += f"{'runs':>5} {'steps':>8} {'vs paper':>8}"
    for family, (shape, common) in families.items():
        # name -> (config, take LR hints from an earlier checkpoint's search)
        configs = {
            "paper": (PAPER, False),
            "reuse one LR": (SearchConfig(reuse_best_lr=True, final_run=False, **common), False),
            "grid every d": (SearchConfig(lr_hints="none", **common), False),
            "+hints": (SearchConfig(**common), True),
            "k=3 +hints": (SearchConfig(k=3, **common), True),
        }
        reuse_below = common.get("lr_reuse_below", 10_000) or math.inf
        print(f"\n## {family}\n")
        print(header)
        print("-" * len(header))
        totals = dict.fromkeys(configs, 0)
        wrong = dict.fromkeys(configs, 0)
        for d_star in args.d_stars:
            curve = Curve(d_star=d_star, **shape)
            truth = true_d90(curve, reuse_below, SearchConfig().fixed_lr)
            # The previous checkpoint (same curve) searched with the grid at every d.
            first = drive(SearchConfig(lr_hints="none", **common), EARLIER, curve, steps)
            hints = best_lrs(first.records, EARLIER)
            paper_steps = None
            for name, (cfg, use_hints) in configs.items():
                out = drive(cfg, KEY, curve, steps, lr_hints=hints if use_hints else None)
                r = out.result
                done = r.status == "done" and r.lo is not None
                ok = done and r.lo < truth <= r.hi + 1
                wrong[name] += not ok
                paper_steps = paper_steps or out.steps
                totals[name] += out.steps
                d90 = f"{r.d90:,}" if done else r.status.replace("_", " ")
                bracket = f"[{r.lo:,}, {r.hi:,}]" if done else "-"
                print(
                    f"{truth:>9,.0f}  {name:<13} {d90:>9} {bracket:>20} "
                    f"{'yes' if ok else 'NO':>3} {out.runs:>5} {out.steps:>8,} "
                    f"{out.steps / paper_steps:>8.2f}"
                )
        print("-" * len(header))
        for name, total in totals.items():
            print(f"{'total':>9}  {name:<13} {'':>9} {'':>20} {len(args.d_stars) - wrong[name]:>3} "
                  f"{'':>5} {total:>8,} {total / totals['paper']:>8.2f}")  # fmt: skip
        n = args.checkpoints
        trajectory = totals["grid every d"] + (n - 1) * totals["+hints"]
        print(
            f"\n{n} checkpoints (grid on the first, hints on the rest): {trajectory:,} steps = "
            f"{trajectory / (n * totals['paper']):.2f} x the paper's {n} x {totals['paper']:,}"
        )


if __name__ == "__main__":
    main()
