"""The dev cluster is a real SLURM: sbatch, accounting, and submitit all work against it."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import submitit
from dev_cluster import DAEMONS, SlurmCluster, parse_exports, run_down, run_up

pytestmark = pytest.mark.slurm


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def slurm(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True, timeout=60).stdout


def sacct_state(job_id: str) -> str:
    """State of the job's allocation as the accounting database has it ('' until it arrives)."""
    out = slurm("sacct", "-n", "-X", "-P", "-o", "State", "-j", job_id)
    return out.strip().splitlines()[0] if out.strip() else ""


def squeue_state(job_id: str) -> str:
    return slurm("squeue", "-h", "-j", job_id, "-o", "%T").strip()


def node_idle() -> bool:
    return slurm("sinfo", "-h", "-o", "%t").strip() == "idle"


def alive(pid: int) -> bool:
    """Running, i.e. not gone and not a zombie waiting for a slow PID 1 to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def daemon_pids(base_dir: Path) -> dict[str, int]:
    pids = {}
    for daemon in DAEMONS:
        pidfile = base_dir / "run" / f"{daemon}.pid"
        if pidfile.exists():
            pids[daemon] = int(pidfile.read_text().split()[0])
    return pids


# (a) ----------------------------------------------------------------------------------------------
def test_sbatch_job_runs_and_is_accounted(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    assert slurm("sinfo", "-h", "-o", "%P %a %D").split() == ["debug*", "up", "1"]
    wait_until(node_idle, 30, "the node to be idle")
    out = tmp_path / "job-%j.out"
    submitted = time.monotonic()
    job_id = slurm(
        "sbatch", "--parsable", f"--output={out}", "--wrap", 'echo "hello from job $SLURM_JOB_ID"'
    ).strip()
    assert job_id.isdigit()
    wait_until(lambda: squeue_state(job_id) != "PENDING", 30, f"job {job_id} to leave PENDING")
    start_latency = time.monotonic() - submitted
    # Accounting records reach slurmdbd asynchronously: poll until the job is there as done.
    wait_until(lambda: sacct_state(job_id) == "COMPLETED", 60, f"sacct COMPLETED for {job_id}")
    assert slurm("sacct", "-n", "-X", "-P", "-o", "ExitCode", "-j", job_id).strip() == "0:0"
    output = Path(str(out).replace("%j", job_id)).read_text()
    assert output == f"hello from job {job_id}\n"
    # batch_sched_delay=0 makes this ~1 s; the default waits for a scheduling cycle.
    print(f"job start latency (submit -> running): {start_latency:.2f} s")
    assert start_latency < 10


# (b) ----------------------------------------------------------------------------------------------
def executor(folder: Path) -> submitit.AutoExecutor:
    ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
    ex.update_parameters(timeout_min=5, slurm_partition="debug", cpus_per_task=1)
    return ex


def test_submitit_returns_the_function_value(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    # Defined here so that cloudpickle ships it by value (the test module is not importable
    # from the job's working directory).
    def where_am_i(a: int, b: int) -> dict[str, object]:
        return {"sum": a + b, "job": os.environ.get("SLURM_JOB_ID"), "pid": os.getpid()}

    job = executor(tmp_path).submit(where_am_i, 2, 40)
    result = job.result()
    assert result["sum"] == 42
    # It really ran as that SLURM job, not in this process.
    assert result["job"] == job.job_id
    assert result["pid"] != os.getpid()
    # result() returns once the result file exists; the accounting record follows shortly.
    wait_until(lambda: job.state == "COMPLETED", 60, f"submitit to see {job.job_id} COMPLETED")


# (c) ----------------------------------------------------------------------------------------------
def test_submitit_job_array(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    def square(x: int) -> tuple[int, str | None]:
        return x * x, os.environ.get("SLURM_ARRAY_TASK_ID")

    jobs = executor(tmp_path).map_array(square, [3, 4, 5])
    assert len(jobs) == 3
    array_id = jobs[0].job_id.split("_")[0]
    assert [job.job_id for job in jobs] == [f"{array_id}_{i}" for i in range(3)]
    assert [job.result() for job in jobs] == [(9, "0"), (16, "1"), (25, "2")]


# (d) ----------------------------------------------------------------------------------------------
def test_cancelled_job_is_seen_done_by_submitit(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    job = executor(tmp_path).submit(time.sleep, 600)
    wait_until(lambda: squeue_state(job.job_id) == "RUNNING", 30, f"job {job.job_id} to run")
    cancelled = time.monotonic()
    slurm("scancel", job.job_id)
    # Without accounting, submitit never learns that a cancelled job ended: done() stays False
    # and result() hangs. With slurmdbd it sees CANCELLED.
    wait_until(job.done, 60, f"submitit to see cancelled job {job.job_id} as done")
    print(f"submitit saw the cancelled job done after {time.monotonic() - cancelled:.1f} s")
    assert job.state.startswith("CANCELLED")
    # result() raises instead of hanging (after submitit's 15 s grace for a late result file).
    with pytest.raises(submitit.core.utils.UncompletedJobError):
        job.result()


# (e) ----------------------------------------------------------------------------------------------
def test_up_twice_is_harmless(slurm_cluster: SlurmCluster) -> None:
    pids_before = daemon_pids(slurm_cluster.base_dir)
    assert set(pids_before) == set(DAEMONS)
    started = time.monotonic()
    again = run_up(slurm_cluster.base_dir, timeout=120)
    assert again.returncode == 0, again.stderr
    assert time.monotonic() - started < 30  # nothing restarted, nothing reinstalled
    # Same environment, stdout still nothing but exports, and the same daemons still serving.
    assert parse_exports(again.stdout) == slurm_cluster.env
    assert slurm_cluster.env["SLURM_CONF"] == str(slurm_cluster.base_dir / "etc" / "slurm.conf")
    assert daemon_pids(slurm_cluster.base_dir) == pids_before
    assert all(alive(pid) for pid in pids_before.values())
    wait_until(node_idle, 30, "the session cluster's node to be idle")


def test_down_stops_its_daemons_and_jobs_only(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    """A second cluster on the same machine: its down.sh must stop exactly its own daemons
    (found by pidfile, not by name) and its running jobs, and leave the session cluster alone."""
    base = tmp_path / "second"
    try:
        up = run_up(base, timeout=300)
        assert up.returncode == 0, up.stderr
        env = {**os.environ, **parse_exports(up.stdout)}
        assert env["SLURM_CONF"] != slurm_cluster.env["SLURM_CONF"]
        pids = daemon_pids(base)
        assert set(pids) == set(DAEMONS)
        assert not set(pids.values()) & set(daemon_pids(slurm_cluster.base_dir).values())

        # A job that would outlive its slurmd if down.sh did not cancel it first.
        marker = tmp_path / "job-started"
        job_id = subprocess.run(
            ["sbatch", "--parsable", f"--output={tmp_path}/job-%j.out"]
            + ["--wrap", f"touch {marker}; exec sleep 600"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        wait_until(marker.exists, 30, f"job {job_id} of the second cluster to start")
        job_pids = [
            int(line.split()[0])
            for line in subprocess.run(
                ["scontrol", "listpids", job_id],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.splitlines()[1:]
        ]
        assert job_pids and all(alive(pid) for pid in job_pids)

        down = run_down(base)
        assert down.returncode == 0, down.stderr
        assert not [d for d, pid in pids.items() if alive(pid)], "daemons left running"
        assert not [pid for pid in job_pids if alive(pid)], "job processes left running"
        assert not list((base / "run").glob("*.pid"))
        assert run_down(base).returncode == 0  # twice is harmless
    finally:
        run_down(base)  # never leave the second cluster running, whatever failed above

    # The session cluster did not notice.
    assert all(alive(pid) for pid in daemon_pids(slurm_cluster.base_dir).values())
    wait_until(node_idle, 30, "the session cluster's node to be idle")
