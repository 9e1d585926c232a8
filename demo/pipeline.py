"""`intdim demo [--run-dir DIR]`: the whole pipeline on one CPU machine, offline, in minutes.

    1. data:     WordNet (demo/wordnet.py) -> RUN/data/wordnet_corpus.txt and three tasks
                 (demo/tasks.py) -> RUN/data/tasks/<task>/{train,eval}.jsonl
    2. pretrain: configs/demo/pretrain.yaml as a `local` executor job (the same PretrainJob a
                 SLURM run submits), checkpoints every 400 updates from update 0
    3. watch:    the same Watcher `intdim watch` runs, with the local executor: every checkpoint
                 x task gets full fine-tuning and the d90 search (configs/demo/probe.yaml), one
                 job per run, as checkpoints land
    4. report:   the trajectory figure (RUN/plots/) and a summary (printed, and RUN/summary.md)

Cores: every process runs one torch thread. Pretraining takes one core and probe jobs the rest;
when pretraining ends, probe jobs take every core.

Resuming: each step keeps its state on disk (data manifest, checkpoints, records, the watcher's
journal). Rerun the same command after an interruption and it goes on where it was. Ctrl-C stops
the jobs this process started; the runs it interrupts are run again on the next start.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from intdim.config import load_config
from intdim.errors import UserError
from intdim.io import atomic_write_json, atomic_write_text

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "demo"
PRETRAIN_CONFIG = CONFIG_DIR / "pretrain.yaml"
PROBE_CONFIG = CONFIG_DIR / "probe.yaml"
DATA_FORMAT = 1  # bump when demo/wordnet.py or demo/tasks.py would write different data


@dataclass(frozen=True)
class DemoData:
    corpus: Path
    tasks: dict[str, Path]  # task name -> data dir (train.jsonl, eval.jsonl)


def prepare_data(run_dir: Path, wordnet: str | None = None, seed: int = 0) -> DemoData:
    """The corpus and the task files, written once; the manifest, written last, marks them done."""
    from demo.tasks import TASK_BUILDERS, write_tasks
    from demo.wordnet import corpus_text, find_wordnet, read_synsets

    data_dir = run_dir / "data"
    manifest_path = data_dir / "manifest.json"
    data = DemoData(
        corpus=data_dir / "wordnet_corpus.txt",
        tasks={name: data_dir / "tasks" / name for name in TASK_BUILDERS},
    )
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if manifest.get("format") == DATA_FORMAT and manifest.get("seed") == seed:
            return data
        raise UserError(
            f"{run_dir} holds demo data made by another version or seed ({manifest_path}); "
            "use another --run-dir"
        )
    root = find_wordnet(wordnet)
    synsets = read_synsets(root)
    atomic_write_text(data.corpus, corpus_text(synsets))
    write_tasks(synsets, data_dir / "tasks", seed=seed)
    atomic_write_json(
        manifest_path,
        {"format": DATA_FORMAT, "seed": seed, "wordnet": str(root), "synsets": len(synsets)},
    )
    return data


def one_thread_per_process() -> None:
    """Jobs inherit this environment: one torch/OpenMP thread each, so that N processes share N
    cores without OpenMP's spin-waiting threads fighting over them (10x slower here)."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def run_demo(
    run_dir: str = "runs/demo",
    wordnet: str | None = None,
    poll_seconds: float = 2.0,
    pretrain_overrides: Sequence[str] = (),
    probe_overrides: Sequence[str] = (),
) -> int:
    """The four steps above; returns 0 when every search settled. `*_overrides` are key=value
    lines on top of configs/demo/*.yaml (the tests shrink the demo with them)."""
    from demo.progress import DemoProgress
    from demo.summary import provenance, summarize_run
    from pretrain.config import PretrainConfig
    from probe.config import ProbeConfig
    from probe.records import read_records
    from probe.report import plot_records
    from probe.watch import WatchConfig, Watcher
    from slurm.backend import Backend

    run = Path(run_dir).resolve()
    run.mkdir(parents=True, exist_ok=True)
    one_thread_per_process()
    print(f"intdim demo: run directory {run}", flush=True)
    data = prepare_data(run, wordnet)
    pre_overrides = [
        f"run_dir={run}",
        f"data.corpus={data.corpus}",
        f"data.cache_dir={run / 'cache'}",
        *pretrain_overrides,
    ]
    pcfg = load_config(PretrainConfig, str(PRETRAIN_CONFIG), pre_overrides)
    data_dirs = [f"data_dirs.{name}={folder}" for name, folder in data.tasks.items()]
    cfg = load_config(ProbeConfig, str(PROBE_CONFIG), [*data_dirs, *probe_overrides])

    pretrain = PretrainLauncher(run, pre_overrides)
    cores = max(_usable_cores(), 2)
    watcher = Watcher(
        run,
        cfg,
        Backend("local", run / "jobs" / "probe", role="probe"),
        WatchConfig(poll_seconds=poll_seconds, max_parallel=cores - 1),
        log=_Log(run / "demo.log"),
    )
    progress = DemoProgress(run, pcfg, cfg)
    try:
        pretrain.start()
        while True:
            if pretrain.finished():
                watcher.watch.max_parallel = cores
            elif not pretrain.alive():
                pretrain.start()  # it stopped without DONE (a crash or a kill): resume it
            done = watcher.poll()
            progress.update(watcher.journal)
            if done:
                break
            time.sleep(poll_seconds)
    except KeyboardInterrupt:  # intdim.cli says "interrupted; rerun the same command to resume"
        progress.close()
        pretrain.stop()
        abandon_in_flight(watcher)
        raise
    progress.close()
    records = read_records(watcher.out)
    report = plot_records(records, run / "plots")
    summary = summarize_run(records, cfg.search.d_max, cfg.methods[0])
    text = summary.markdown(report.written, provenance())
    atomic_write_text(run / "summary.md", text)
    print(text, flush=True)
    return 0


def _usable_cores() -> int:
    """The cores this process may run on (a cluster allocation or taskset), not the machine's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class PretrainLauncher:
    """The pretraining job: submitted once, resubmitted (it resumes) when it is not running,
    at most MAX_STARTS times per demo process: a job that keeps dying has a real problem."""

    MAX_STARTS = 3

    def __init__(self, run: Path, overrides: list[str]) -> None:
        from probe.watch import PRETRAIN_JOB_FILE
        from slurm.backend import Backend

        self.run = run
        self.overrides = overrides
        self.backend = Backend("local", run / "jobs" / "pretrain", role="pretrain")
        self.job_id: str | None = None
        self.starts = 0
        info = run / PRETRAIN_JOB_FILE
        if info.is_file():
            self.job_id = str(json.loads(info.read_text(encoding="utf-8")).get("job_id"))

    def finished(self) -> bool:
        return (self.run / "DONE").is_file()

    def alive(self) -> bool:
        return self.job_id is not None and not self.backend.ended(self.job_id)

    def start(self) -> None:
        from slurm.launch import submit_pretraining

        if self.finished() or self.alive():
            return
        if self.starts >= self.MAX_STARTS:
            assert self.job_id is not None
            error = self.backend.status([self.job_id])[self.job_id].error or "no error text"
            raise UserError(
                f"pretraining stopped {self.starts} times without finishing, last: {error} "
                f"(logs in {self.backend.folder})"
            )
        self.starts += 1
        self.job_id = submit_pretraining(
            self.backend, str(PRETRAIN_CONFIG), self.overrides, self.run
        )

    def stop(self) -> int:
        if self.job_id is None or not self.alive():
            return 0
        self.backend.cancel([self.job_id])
        return 1


def abandon_in_flight(watcher) -> int:
    """Stop the probe jobs in flight and forget their attempts: they were interrupted, not
    failed, so they do not count against the retry budget and run again on the next start."""
    flying = watcher.journal.in_flight()
    ids = [a.job_id for a in flying.values() if a.job_id]
    watcher.backend.cancel(ids)
    for rid in flying:
        entry = watcher.journal.get(rid)
        entry.attempts.pop()
        watcher.journal.save(entry)
    return len(ids)


class _Log:
    """The watcher's lines go to RUN/demo.log (the progress bars own the terminal)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, line: str) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%H:%M:%S')} {line}\n")
