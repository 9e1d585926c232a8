"""The watcher against a real SLURM: checkpoint-landing -> submission latency, and how often it
asks the scheduler (sacct/squeue) with 50 jobs in flight.

    eval "$(sudo slurm/dev-cluster/up.sh)"
    PYTHONPATH=. python benchmarks/bench_watch.py [--poll-seconds 30] [--minutes 3]
    sudo slurm/dev-cluster/down.sh

The jobs train nothing: full fine-tuning "runs" return at once (so the searches start), every
subspace run sleeps for an hour (so it stays in flight) — the scheduler traffic is the watcher's
alone. The probe config is tiny.yaml in sweep mode, 9 points x 2 tasks per checkpoint: 3
checkpoints put 54 runs in flight.
Every job it submitted is cancelled at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

from intdim.config import load_config
from probe.config import ProbeConfig
from probe.records import Record, write_record
from probe.watch import WatchConfig, Watcher
from slurm.backend import Backend

REPO = Path(__file__).resolve().parents[1]


def sleepy_job(spec, env, out):
    if spec.method != "full":
        time.sleep(3600)
    rec = Record(spec.checkpoint, spec.task, spec.method, spec.d, spec.lr, spec.seed, "ok",
                 eval_value=0.9, majority_baseline=0.5)  # fmt: skip
    write_record(out, rec)
    return spec.run_id


def land(run: Path, updates: int) -> float:
    ckpt = run / "checkpoints" / f"checkpoint_{updates}"
    ckpt.mkdir(parents=True)
    (ckpt / "checkpoint.json").write_text(json.dumps({"updates": updates}))
    return time.time()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--poll-seconds", type=float, default=WatchConfig().poll_seconds)
    ap.add_argument("--minutes", type=float, default=3.0, help="measuring 50 jobs in flight")
    ap.add_argument("--landings", type=int, default=3)
    args = ap.parse_args()
    run = Path(tempfile.mkdtemp(prefix="bench-watch-"))
    cfg = load_config(
        ProbeConfig,
        REPO / "configs/probe/tiny.yaml",
        ["search.mode=sweep", "search.sweep_points=9", "search.lrs=[0.01]"],
    )
    backend = Backend("slurm", run / "jobs")
    w = Watcher(run, cfg, backend, WatchConfig(poll_seconds=args.poll_seconds, max_parallel=64),
                log=lambda line: None, job_fn=sleepy_job)  # fmt: skip
    landed: dict[str, float] = {}
    latencies = []

    def lander() -> None:
        # Checkpoints land from another thread, at times unrelated to the poll phase.
        for n in range(1, args.landings + 1):
            time.sleep(1.37 * args.poll_seconds if n > 1 else 0.3 * args.poll_seconds)
            landed[f"checkpoint_{n}"] = land(run, n)

    threading.Thread(target=lander, daemon=True).start()
    measuring_since, queries_at = None, 0
    while True:
        w.poll()
        n = len(landed)
        for name, t in list(landed.items()):
            if name in w.submitted_at and name not in [x[0] for x in latencies]:
                latencies.append((name, w.submitted_at[name] - t))
        flying = len(w.journal.in_flight())
        if (
            measuring_since is None
            and n == args.landings
            and flying >= 50
            and len(latencies) == args.landings
        ):
            measuring_since, queries_at = time.time(), backend.queries
        if measuring_since and time.time() - measuring_since >= args.minutes * 60:
            break
        # sleep to the next poll as the watcher does (wall clock, like Watcher.run)
        time.sleep(args.poll_seconds)
    minutes = (time.time() - measuring_since) / 60
    calls = backend.queries - queries_at
    ids = [a.job_id for a in w.journal.in_flight().values() if a.job_id]
    backend.cancel(ids)
    lat = [x for _, x in latencies]
    print(f"poll interval {args.poll_seconds:g} s, executor slurm (dev cluster, 1 node)")
    print("landing -> submitted: " + ", ".join(f"{n} {x:.1f} s" for n, x in latencies)
          + f"; mean {statistics.mean(lat):.1f} s, max {max(lat):.1f} s")  # fmt: skip
    print(f"in flight: {flying} jobs; scheduler calls: {calls} in {minutes:.1f} min "
          f"= {calls / minutes:.2f} per minute (sacct/squeue)")  # fmt: skip


if __name__ == "__main__":
    main()
