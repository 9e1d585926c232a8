"""Pretraining and the checkpoint watcher on a real SLURM (the dev cluster of tests/slurm).

1. `intdim pretrain tiny --executor slurm --probe tiny`: the pretraining job is requeued with
   `scontrol requeue` mid-run and resumes from its checkpoint; the watcher probes every
   checkpoint as it lands; every (checkpoint, task) ends with a d90 or a stated verdict.
2. `intdim watch --executor slurm` over finished checkpoints, killed (SIGKILL) while its first
   jobs are in flight and started again, with one run whose job always raises: nothing is
   submitted twice, nothing is lost, the failing run is retried and then recorded failed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dev_cluster import REPO, SlurmCluster

from demo.progress import last_update  # the newest update in RUN/train_log.jsonl

sys.path.insert(0, str(REPO / "tests" / "probe"))
from tiny_fixtures import save_tiny_checkpoint, write_marker_task  # noqa: E402

from probe.commands import status_rows  # noqa: E402
from probe.journal import Journal  # noqa: E402
from probe.records import read_records  # noqa: E402

pytestmark = pytest.mark.slurm

PY = sys.executable
# Small enough for 2 shared cores: one search round or two per (checkpoint, task).
PROBE_FAST = [
    "search.d_min=8",
    "search.d_max=1000",
    "search.ratio=8",
    "search.lrs=[0.03]",
    "finetune.full_max_steps=60",
    "finetune.subspace_max_steps=60",
    "finetune.progress=false",
]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def sh(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True, timeout=60).stdout


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the command ended (exit {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def task_dirs(tmp_path_factory) -> list[str]:
    glue = tmp_path_factory.mktemp("glue")
    return [
        f"data_dirs.sst2={write_marker_task(glue / 'SST-2', 'sst2')}",
        f"data_dirs.mrpc={write_marker_task(glue / 'MRPC', 'mrpc')}",
    ]


def settled(out: Path) -> list[dict]:
    """Status rows; each must have a d90 or a verdict with its reason."""
    rows = [r for r in status_rows(read_records(out)) if r["method"] != "full"]
    for row in rows:
        assert row["status"] in ("done", "not_reached", "not_computable", "failed"), row
        assert row["d90"] is not None or row["reason"], row
    return rows


def test_pretrain_job_requeued_mid_run_resumes_and_every_checkpoint_is_probed(
    slurm_cluster: SlurmCluster, tmp_path: Path, task_dirs: list[str]
) -> None:
    run = tmp_path / "run"
    cmd = [
        PY, "-m", "intdim.cli", "pretrain", str(REPO / "configs/pretrain/tiny.yaml"),
        f"run_dir={run}", "max_updates=600", "save_interval_updates=300",
        "save_initial_checkpoint=false", "log_interval=100", "device=cpu",
        "--executor", "slurm", "--cluster", str(REPO / "configs/cluster/dev.yaml"),
        "--probe", str(REPO / "configs/probe/tiny.yaml"), "--poll-seconds", "2",
        *(f"--probe-set={o}" for o in [*task_dirs, *PROBE_FAST]),
    ]  # fmt: skip
    log = (tmp_path / "watcher.log").open("w")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        job_file = run / "pretrain_job.json"
        wait_for(job_file.is_file, 60, "the pretraining job to be submitted", proc)
        job_id = json.loads(job_file.read_text())["job_id"]
        first = run / "checkpoints" / "checkpoint_300"
        wait_for(first.is_dir, 240, "checkpoint_300", proc)
        # Requeue past update 300, so the SIGTERM checkpoint is one of its own (on a loaded
        # machine the requeue could otherwise land before update 301 and coincide with 300).
        wait_for(lambda: last_update(run) > 300, 240, "an update past 300", proc)
        assert not (run / "DONE").exists(), "pretraining ended before the requeue"
        sh("scontrol", "requeue", job_id)
        # SLURM holds a requeued batch job for 120 s (its BeginTime); an admin can release it,
        # and the test does, to stay short. Resuming is the same either way.
        wait_for(lambda: "PENDING" in sh("squeue", "-h", "-j", job_id, "-o", "%T"), 60,
                 "the requeued job to be pending", proc)  # fmt: skip
        sh("scontrol", "update", f"JobId={job_id}", "StartTime=now")
        proc.wait(timeout=420)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    output = (tmp_path / "watcher.log").read_text()
    assert proc.returncode == 0, output[-3000:]
    # The same job ran twice: requeued by SLURM, then completed.
    states = sh("sacct", "-D", "-X", "-n", "-P", "-o", "State", "-j", job_id).split()
    assert states[0] == "REQUEUED" and states[-1] == "COMPLETED", states
    # It resumed from the checkpoint its SIGTERM wrote: every update logged once, in order.
    updates = [json.loads(x)["update"] for x in (run / "train_log.jsonl").read_text().splitlines()]
    assert updates == list(range(1, 601))
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("check"))
    assert {"checkpoint_300", "checkpoint_600"} <= set(ckpts)
    assert len(ckpts) == 3, ckpts  # plus the one written at the SIGTERM
    # Every checkpoint x task has a settled search.
    rows = settled(run / "probe")
    assert {(r["checkpoint"], r["task"]) for r in rows} == {
        (c, t) for c in ckpts for t in ("sst2", "mrpc")
    }
    recs = read_records(run / "probe")
    assert all(r.status != "failed" for r in recs)
    attempts = {rid: len(e.attempts) for rid, e in Journal(run / "probe").entries.items()}
    assert set(attempts) == {r.run_id for r in recs} and set(attempts.values()) == {1}


def test_watcher_killed_and_restarted_submits_nothing_twice_and_retries_a_failing_job(
    slurm_cluster: SlurmCluster, tmp_path: Path, task_dirs: list[str]
) -> None:
    run = tmp_path / "run"
    for updates, seed in ((1, 0), (2, 1)):
        save_tiny_checkpoint(run / "checkpoints" / f"checkpoint_{updates}", seed=seed)
    (run / "DONE").write_text("{}")
    cmd = [
        PY, "-m", "intdim.cli", "watch", str(run), *task_dirs, *PROBE_FAST,
        "--executor", "slurm", "--probe", str(REPO / "configs/probe/tiny.yaml"),
        "--cluster", str(REPO / "configs/cluster/dev.yaml"),
        "--poll-seconds", "1", "--max-retries", "1",
    ]  # fmt: skip
    bad_env = {**env(), "INTDIM_PROBE_FAULT": "checkpoint_2/mrpc/full/*"}
    journal = run / "probe" / "journal"

    def submitted() -> bool:
        files = list(journal.glob("*.json")) if journal.is_dir() else []
        return any(json.loads(f.read_text())["attempts"][0]["job_id"] for f in files)

    log = (tmp_path / "watcher.log").open("w")
    first = subprocess.Popen(cmd, env=bad_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(submitted, 120, "the first probe jobs", first)
        first.send_signal(signal.SIGKILL)  # killed with jobs in flight
        first.wait(timeout=30)
        log.write("--- restarted ---\n")
        log.flush()
        again = subprocess.run(cmd, env=bad_env, stdout=log, stderr=subprocess.STDOUT, timeout=420)
    finally:
        if first.poll() is None:
            first.kill()
        log.close()
    output = (tmp_path / "watcher.log").read_text()
    assert again.returncode == 0, output[-3000:]
    entries = Journal(run / "probe").entries
    job_ids = [a.job_id for e in entries.values() for a in e.attempts]
    # submitit leaves one submission pickle per array task: every job ever submitted from this
    # run is in the journal, and no job id twice.
    folder = run / "jobs" / "probe"
    pickles = {p.name.removesuffix("_submitted.pkl") for p in folder.glob("*_submitted.pkl")}
    assert sorted(job_ids) == sorted(pickles)
    recs = read_records(run / "probe")
    failed = [r for r in recs if r.status == "failed"]
    assert [(r.checkpoint, r.task, r.method) for r in failed] == [("checkpoint_2", "mrpc", "full")]
    assert "injected fault" in failed[0].error and "after 2 attempts" in failed[0].error
    assert len(entries[failed[0].run_id].attempts) == 2  # the first try and one retry
    assert all(len(e.attempts) == 1 for rid, e in entries.items() if rid != failed[0].run_id)
    assert {r.run_id for r in recs} == set(entries)  # every submitted run has its record
    rows = {(r["checkpoint"], r["task"]): r for r in settled(run / "probe")}
    assert len(rows) == 4 and rows[("checkpoint_2", "mrpc")]["status"] == "failed"
    assert all(r["status"] != "failed" for k, r in rows.items() if k != ("checkpoint_2", "mrpc"))
