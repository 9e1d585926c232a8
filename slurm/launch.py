"""Entry points of `intdim watch`, `intdim pretrain --executor/--probe` and `intdim prepare
--executor` (intdim/cli.py parses).

    intdim pretrain CONFIG --executor slurm --cluster PROFILE --probe PROBE_CONFIG
      -> submits the pretraining job, writes RUN_DIR/pretrain_job.json, then runs the watcher
         in the foreground (kill it any time; `intdim watch` picks up where it was)
    intdim watch RUN_DIR --probe PROBE_CONFIG [--executor local|debug|slurm] [key=value ...]

Job folders (submitit's pickles and logs): RUN_DIR/jobs/pretrain and RUN_DIR/jobs/probe.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from intdim.config import load_config
from intdim.errors import UserError
from intdim.io import atomic_write_json
from slurm.backend import Backend, check_executor
from slurm.cluster import load_cluster


def watch(
    run_dir: str,
    probe: str,
    executor: str = "local",
    cluster: str | None = None,
    overrides: Sequence[str] = (),
    poll_seconds: float | None = None,
    max_retries: int | None = None,
    max_parallel: int | None = None,
) -> int:
    from probe.commands import status_rows
    from probe.config import ProbeConfig
    from probe.records import read_records
    from probe.status import format_status_table
    from probe.watch import WatchConfig, Watcher

    check_executor(executor)
    cfg = load_config(ProbeConfig, probe, list(overrides))
    profile = load_cluster(cluster)
    values = {
        "poll_seconds": poll_seconds,
        "max_retries": max_retries,
        "max_parallel": max_parallel,
    }
    wcfg = load_config(WatchConfig, values=[{k: v for k, v in values.items() if v is not None}])
    run = Path(run_dir).resolve()
    if not run.is_dir():
        raise UserError(f"run directory {run} does not exist")
    backend = Backend(executor, run / "jobs" / "probe", profile, role="probe")
    watcher = Watcher(run, cfg, backend, wcfg)
    code = watcher.run()
    print(format_status_table(status_rows(read_records(watcher.out))), flush=True)
    return code


def pretrain(
    config: str,
    overrides: Sequence[str],
    executor: str | None,
    cluster: str | None = None,
    probe: str | None = None,
    probe_overrides: Sequence[str] = (),
    poll_seconds: float | None = None,
) -> int:
    from pretrain.config import PretrainConfig
    from probe.config import ProbeConfig

    kind = check_executor(executor or ("local" if probe else "debug"))
    cfg = load_config(PretrainConfig, config, list(overrides))  # bad input fails here, not in a job
    if probe:
        load_config(ProbeConfig, probe, list(probe_overrides))
    profile = load_cluster(cluster)
    run = Path(cfg.run_dir).resolve()
    run.mkdir(parents=True, exist_ok=True)
    backend = Backend(kind, run / "jobs" / "pretrain", profile, role="pretrain")
    job_id = submit_pretraining(backend, config, overrides, run)
    print(f"pretraining: {kind} job {job_id}, run directory {run}", flush=True)
    if probe:
        return watch(str(run), probe, kind, cluster, probe_overrides, poll_seconds)
    if kind == "slurm":
        print(f"follow it with squeue -j {job_id}; logs in {run / 'jobs' / 'pretrain'}")
        return 0
    return _wait(backend, job_id, run)


def prepare(
    config: str,
    overrides: Sequence[str],
    executor: str,
    cluster: str | None = None,
    parts: int = 1,
) -> int:
    """`intdim prepare CONFIG --executor ...`: the tokenizer job, then one job per part of the
    corpus's files (an array; a streamed hub corpus is one job), then the merge; each stage
    waited for here. Finished stages are skipped, so a rerun resumes."""
    from pretrain.config import PretrainConfig
    from pretrain.data import resolve_corpus
    from pretrain.prepare import (
        binarize_job,
        describe,
        merge_job,
        part_job,
        plan_key,
        tokenizer_job,
    )
    from pretrain.shards import plan_chunks, shards_dir, split_parts
    from pretrain.tokenizer import cached_tokenizer

    kind = check_executor(executor)
    if parts < 1:
        raise UserError(f"--parts must be >= 1, got {parts}")
    cfg = load_config(PretrainConfig, config, list(overrides))  # bad input fails here, not in a job
    corpus = resolve_corpus(cfg.data)
    fp = corpus.fingerprint()
    cache = Path(cfg.data.cache_dir)
    backend = Backend(kind, cache.resolve() / "jobs" / "prepare", load_cluster(cluster),
                      role="prepare")  # fmt: skip
    # Absolute paths: a job may start in another directory (or on another node).
    args = (str(Path(config).resolve()), list(overrides))
    if cached_tokenizer(cfg.tokenizer, fp, cache) is None:
        _wait_all(backend, [backend.submit(tokenizer_job, args, name="intdim-prepare-tokenizer")])
    tokenizer = cached_tokenizer(cfg.tokenizer, fp, cache)
    if tokenizer is None:
        raise UserError(f"the tokenizer job left no tokenizer under {cache / 'tokenizers'}")
    out = shards_dir(fp, tokenizer, cfg.data)
    if not (out / "index.json").is_file():
        if corpus.hub is not None:
            _wait_all(backend, [backend.submit(binarize_job, args, name="intdim-prepare-corpus")])
        else:
            groups = split_parts(plan_chunks(corpus.files), parts)
            plan = plan_key(groups)
            calls = [(*args, plan, k, g) for k, g in enumerate(groups)]
            print(f"corpus: {len(groups)} part(s) through {kind}", flush=True)
            _wait_all(backend, backend.submit_array(part_job, calls, name="intdim-prepare-part"))
            merge = (*args, plan, len(groups))
            _wait_all(backend, [backend.submit(merge_job, merge, name="intdim-prepare-merge")])
    if not (out / "index.json").is_file():
        raise UserError(f"the preparation jobs left no shards at {out}; see {backend.folder}")
    print(f"corpus prepared: {describe(out)}", flush=True)
    return 0


def _wait_all(backend: Backend, job_ids: Sequence[str], poll: float = 2.0) -> None:
    """Until every job succeeded; the first failure is one line (its log has the rest)."""
    while True:
        states = backend.status(job_ids)
        failed = [(j, s) for j, s in states.items() if s.state == "failed"]
        if failed:
            j, s = failed[0]
            raise UserError(f"preparation job {j} failed: {s.error}; fix it and run again")
        if all(s.state == "succeeded" for s in states.values()):
            return
        time.sleep(poll)


def submit_pretraining(backend: Backend, config: str, overrides: Sequence[str], run: Path) -> str:
    """Submit the pretraining job of `run` and record it in RUN_DIR/pretrain_job.json (which the
    watcher reads to tell a dead pretraining from a slow one). Returns the job id."""
    from probe.watch import PRETRAIN_JOB_FILE
    from slurm.pretrain_job import PretrainJob

    # Absolute paths: a job may start in another directory (or on another node).
    args = (str(Path(config).resolve()), [*overrides, f"run_dir={run}"])
    job_id = backend.submit(PretrainJob(), args, name=f"intdim-pretrain-{run.name}", requeue=True)
    atomic_write_json(run / PRETRAIN_JOB_FILE, {"executor": backend.kind, "job_id": job_id})
    return job_id


def _wait(backend: Backend, job_id: str, run: Path) -> int:
    while (st := backend.status([job_id])[job_id]).state in ("alive", "unknown"):
        time.sleep(2)
    if st.state == "failed":
        raise UserError(f"pretraining job {job_id} failed: {st.error}")
    if (run / "DONE").is_file():
        print(f"pretraining finished: checkpoints in {run / 'checkpoints'}")
        return 0
    print(f"pretraining stopped before the end; rerun the same command to resume from {run}")
    return 3
