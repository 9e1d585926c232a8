"""Entry points of `intdim watch` and `intdim pretrain --executor/--probe` (intdim/cli.py parses).

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
