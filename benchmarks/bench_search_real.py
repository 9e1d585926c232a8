"""Real training: subspace steps our d90 search spends on a GLUE task, against the paper's.

    HF_HUB_OFFLINE=1 PYTHONPATH=. python benchmarks/bench_search_real.py \\
        --model /tmp/minilm/model --task cola --data-dir /work/shared/data/glue-cola \\
        --out /tmp/bench_real [--paper estimate|real] [key=value ...]

Ours: the default search rules (probe.search.SearchConfig: binary search in log d to
hi/lo <= 1.25; below 10^4 the LR grid at every d, or one LR per d from `search.lr_hints` (the
--out of an earlier run of this script, standing in for the previous checkpoint); one fixed LR
above; runs stopped at the threshold; the d90 run trained again to its budget). The old
shortcut is `search.reuse_best_lr=true` (the first grid point's LR everywhere below 10^4).
The paper (section 5.1 as we read it): the same binary search, four LRs at every d, every run
trained to its whole budget.

`--paper estimate` (the default, for CPUs): the paper's cost is taken from our own search's
points: every resolved d costs 4 LRs x the full step budget. This assumes the paper's
bisection visits the same d as ours, i.e. that the 4-LR grid reaches the threshold at the same
points as our reused LR did (when the grid does better at some d, the paper's path differs; its
length differs by a round at most either way). `--paper real` runs it (slow: 4x the runs and
no early stop) into OUT/paper and reports the bracket it found as well.

Every run goes through the real driver (probe.driver.run_search), so the records under OUT are
those `intdim status OUT` reads; rerunning the same command re-runs nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from benchmarks.common import machine
from intdim.config import load_config
from probe.config import ProbeConfig
from probe.driver import checkpoint_id, result_line, search_all
from probe.encode import model_location
from probe.records import read_records

DEFAULTS = [
    "max_train_examples=1000",
    "max_eval_examples=500",
    "search.d_min=100",
    "search.d_max=200000",
    "search.full_lrs=[0.0001]",
    "search.lrs=[0.003,0.01,0.03,0.1]",
    "search.fixed_lr=0.03",
    "search.threshold_fraction=0.9",
    "finetune.batch_size=16",
    "finetune.full_epochs=null",
    "finetune.full_max_steps=200",
    "finetune.subspace_epochs=null",
    "finetune.subspace_max_steps=200",
    "finetune.weight_decay=0.0",
    "finetune.eval_every=25",
    "finetune.patience=3",
    "finetune.max_seq_len=128",
    "finetune.train_metric_examples=500",
    "finetune.progress=false",
]


def _cost(out: Path, ckpt: str, task: str) -> dict:
    recs = [r for r in read_records(out) if r.checkpoint == ckpt and r.task == task]
    sub = [r for r in recs if r.method != "full"]
    full = [r for r in recs if r.method == "full"]
    return {
        "runs": len(sub),
        "points": len({r.d for r in sub}),
        "steps": sum(r.steps for r in sub),
        "wall": sum(r.wall_seconds for r in sub),
        "full_wall": sum(r.wall_seconds for r in full),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--task", default="cola")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--method", default="said", choices=("said", "did"))
    ap.add_argument("--paper", default="estimate", choices=("estimate", "real"))
    ap.add_argument("overrides", nargs="*", help="ProbeConfig key=value (after the defaults)")
    args = ap.parse_args()

    flags = {"tasks": [args.task], "methods": [args.method],
             "data_dirs": {args.task: args.data_dir}}  # fmt: skip
    cfg = load_config(ProbeConfig, None, [*DEFAULTS, *args.overrides], values=[flags])
    model = model_location(args.model)
    ckpt = checkpoint_id(model)
    out = Path(args.out)
    log = lambda line: print(f"  {line}", file=sys.stderr, flush=True)  # noqa: E731

    print(f"machine: {machine()}")
    print(f"model {ckpt} ({model}), task {args.task}, method {args.method}")
    print("settings: " + " ".join([*DEFAULTS, *args.overrides]))
    start = time.perf_counter()
    [(task, method, ours)] = search_all(cfg, model, ckpt, out / "ours", log=log)
    ours_wall = time.perf_counter() - start
    cost = _cost(out / "ours", ckpt, task)
    final = [r for r in read_records(out / "ours") if r.method != "full" and r.stop_at is None]
    budget = cfg.finetune.planned_steps(cfg.max_train_examples or 10**9, args.method)
    n_lrs = len(cfg.search.lrs)

    print("ours:  " + result_line(task, method, ours))
    if ours.threshold is None:
        return  # not computable: nothing to compare
    majority = next(r.majority_baseline for r in read_records(out / "ours") if r.method == "full")
    print(f"full fine-tuning {ours.full_metric:.4f}, threshold {ours.threshold:.4f}, "
          f"majority class {majority:.4f}")  # fmt: skip
    print(f"ours:  {cost['runs']} runs at {cost['points']} points, {cost['steps']:,} subspace "
          f"steps, {cost['wall']:.0f}s subspace training, {ours_wall:.0f}s in all")  # fmt: skip
    for r in final:  # trained to its budget for Figures 4-5 (counted in the runs above)
        print(f"ours:  the d90 run to its budget: d={r.d:,} lr={r.lr:g} eval {r.eval_value:.4f} "
              f"train {r.train_value:.4f} in {r.steps} steps")  # fmt: skip
    if args.paper == "estimate":
        paper_runs = n_lrs * cost["points"]
        paper_steps = paper_runs * budget
        print(f"paper (estimated: {cost['points']} points x {n_lrs} LRs x {budget} steps): "
              f"{paper_runs} runs, {paper_steps:,} subspace steps")  # fmt: skip
    else:
        paper_cfg = load_config(
            ProbeConfig,
            None,
            [*DEFAULTS, *args.overrides, "search.lr_reuse_below=null", "search.lr_hints=none",
             "search.reuse_best_lr=false", "search.early_stop=false"],
            values=[flags],
        )  # fmt: skip
        start = time.perf_counter()
        [(_, _, paper)] = search_all(paper_cfg, model, ckpt, out / "paper", log=log)
        paper_wall = time.perf_counter() - start
        pc = _cost(out / "paper", ckpt, task)
        paper_steps = pc["steps"]
        print("paper: " + result_line(task, method, paper))
        print(f"paper: {pc['runs']} runs at {pc['points']} points, {paper_steps:,} subspace steps, "
              f"{paper_wall:.0f}s wall in all")  # fmt: skip
    print(f"ours / paper steps: {cost['steps'] / paper_steps:.3f} (goal <= 0.333)")


if __name__ == "__main__":
    main()
