"""Subspace training steps the d90 search spends, against the paper's procedure.

    PYTHONPATH=. python benchmarks/bench_search.py [--max-steps 2000] [--eval-every 100]

No training: synthetic accuracy-of-d curves (probe.simulate.Curve) with the true d90 at several
places in [100, 4e6], and a simple step model (probe.simulate.StepModel): a run trains
`max_steps` unless it is stopped early at the first evaluation at or above the threshold.

"paper" is section 5.1 as we read it: binary search (k = 1) over [100, 4e6] to hi/lo <= 1.25,
four LRs at every d, every run trained to the end. "ours k=1" is the default SearchConfig on a
first checkpoint: the same bisection, the LR grid once (first d below 10^4) and then its best LR
reused, one fixed LR at or above 10^4, and early stopping. "+hints": a later checkpoint whose
search reuses the best LRs an earlier checkpoint found (`lr_hints`), so it runs no grid at all.
k = 3 and k = 7 trade steps for fewer rounds (wall clock on a cluster). Full fine-tuning is the
same for all and is not counted. Goal: ours <= 1/3 of the paper's steps for the same bracket.
"""

from __future__ import annotations

import argparse

from probe.search import SearchConfig, SearchKey, best_lrs
from probe.simulate import Curve, StepModel, drive

KEY = SearchKey("bench", "synthetic", "said")
PAPER = SearchConfig(k=1, lr_reuse_below=None, reuse_best_lr=False, early_stop=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-steps", type=int, default=2000)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--d-stars", type=float, nargs="+", default=[150, 900, 5000, 30000, 800000])
    args = ap.parse_args()
    steps = StepModel(max_steps=args.max_steps, eval_every=args.eval_every)
    # name -> (config, use the LR hints of an earlier checkpoint's search)
    configs = {
        "paper": (PAPER, False),
        "ours k=1": (SearchConfig(k=1), False),
        "ours k=1 +hints": (SearchConfig(k=1), True),
        "ours k=3 +hints": (SearchConfig(k=3), True),
        "ours k=7 +hints": (SearchConfig(k=7), True),
    }

    header = f"{'true d90':>9}  {'config':<15} {'bracket':>20} {'rounds':>6} {'runs':>5} "
    header += f"{'steps':>8} {'vs paper':>8}"
    print(header)
    print("-" * len(header))
    totals = dict.fromkeys(configs, 0)
    for d_star in args.d_stars:
        curve = Curve(d_star=d_star)
        paper_steps = None
        # The first checkpoint's search runs the LR grid once; later checkpoints reuse its
        # best LRs (lr_hints), as section 5.1 reuses the LRs found in section 4.
        first = drive(SearchConfig(k=1), SearchKey("earlier", "synthetic", "said"), curve, steps)
        hints = best_lrs(first.records, SearchKey("earlier", "synthetic", "said"))
        for name, (cfg, use_hints) in configs.items():
            out = drive(cfg, KEY, curve, steps, lr_hints=hints if use_hints else None)
            r = out.result
            assert r.status == "done" and r.lo < d_star <= r.hi + 1, (name, d_star, r)
            paper_steps = paper_steps or out.steps
            totals[name] += out.steps
            bracket = f"[{r.lo:,}, {r.hi:,}]"
            print(
                f"{d_star:>9,.0f}  {name:<15} {bracket:>20} {r.rounds:>6} {out.runs:>5} "
                f"{out.steps:>8,} {out.steps / paper_steps:>8.2f}"
            )
    print("-" * len(header))
    for name, total in totals.items():
        print(f"{'total':>9}  {name:<15} {'':>20} {'':>6} {'':>5} {total:>8,} "
              f"{total / totals['paper']:>8.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
