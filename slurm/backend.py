"""Submit jobs and ask how they are doing, the same way for all three executors.

    backend = Backend("slurm", folder, cluster, role="probe")
    ids = backend.submit_array(fn, [(a1, b1), (a2, b2)], name="intdim-probe-3f2a")
    backend.status(ids)     # {id: JobStatus("alive" | "succeeded" | "failed", error)}
    backend.find("intdim-probe-3f2a")   # the ids an earlier process submitted under that name

Executors (one switch, one code path: submitit's Executor for each):
- `debug`: submitit's DebugExecutor, in this process; the job runs during `submit_array`.
- `local`: submitit's LocalExecutor, one subprocess per job (the default: laptops, one GPU box).
- `slurm`: submitit's SlurmExecutor; an array is one `sbatch`.

How status is known, and why it is cheap: a job that returns or raises leaves submitit's result
pickle (outcome and value, or the traceback), a plain file. Only jobs without one need the
scheduler's word, and SLURM gets one `sacct` call per `status()` for all of them together (never
one per job: clusters rate-limit their controller). `queries` counts those calls.
"""

from __future__ import annotations

import re
import subprocess
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit
from submitit.core.utils import pickle_load

from intdim.errors import UserError
from slurm.cluster import ClusterConfig, JobResources

EXECUTORS = ("local", "debug", "slurm")

# sacct states after which a job will not run again (anything else: pending, running, requeued,
# suspended, completing... is alive). PREEMPTED is alive: a requeueable job comes back.
_ENDED = {
    "BOOT_FAIL",
    "CANCELLED",
    "COMPLETED",
    "DEADLINE",
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "TIMEOUT",
    "REVOKED",
}


@dataclass(frozen=True)
class JobStatus:
    state: str  # alive | succeeded | failed | unknown (the scheduler does not know it yet)
    error: str | None = None  # failed: one line saying why
    value: Any = None  # succeeded: what the function returned


def check_executor(kind: str) -> str:
    if kind not in EXECUTORS:
        raise UserError(f"unknown executor {kind!r}; use one of {', '.join(EXECUTORS)}")
    return kind


def _last_line(text: str) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no error text"


class Backend:
    def __init__(
        self,
        kind: str,
        folder: str | Path,
        cluster: ClusterConfig | None = None,
        role: str = "probe",
    ) -> None:
        self.kind = check_executor(kind)
        self.folder = Path(folder)
        self.cluster = cluster or ClusterConfig()
        self.resources: JobResources = self.cluster.resources(role)
        self.queries = 0  # sacct/squeue calls made (the cluster-friendliness budget)
        self._debug: dict[str, JobStatus] = {}  # debug jobs ran in process: their outcomes
        self._processes: dict[str, Any] = {}  # local jobs started here: Popen, to reap them

    # ------------------------------------------------------------------------- submitting

    def executor(self, name: str, requeue: bool = False) -> submitit.Executor:
        if self.kind == "debug":
            return submitit.DebugExecutor(self.folder)
        if self.kind == "local":
            ex = submitit.LocalExecutor(self.folder)
            ex.update_parameters(timeout_min=self.resources.time_min)
            return ex
        c, r = self.cluster, self.resources
        ex = submitit.SlurmExecutor(self.folder)
        extra = dict(c.additional_parameters)
        if requeue:
            extra.setdefault("requeue", True)
        params: dict[str, Any] = dict(
            job_name=name,
            nodes=r.nodes,
            ntasks_per_node=r.tasks_per_node,
            cpus_per_task=r.cpus_per_task,
            time=r.time_min,
            array_parallelism=r.array_parallelism,
            setup=list(c.setup),
            additional_parameters=extra,
        )
        if r.gpus_per_node:
            params["gpus_per_node"] = r.gpus_per_node
        if r.mem_gb is not None:
            params["mem"] = f"{int(r.mem_gb * 1024)}M"
        for key, value in (
            ("partition", r.partition or c.partition),
            ("account", c.account),
            ("qos", c.qos),
            ("constraint", c.constraint),
        ):
            if value:
                params[key] = value
        ex.update_parameters(**params)
        return ex

    def submit(self, fn: Callable[..., Any], args: tuple, name: str, requeue: bool = False) -> str:
        """One job (multi-task when the resources say so). Returns its id."""
        job = self.executor(name, requeue).submit(fn, *args)
        self._after_submit([job])
        return str(job.job_id)

    def submit_array(self, fn: Callable[..., Any], calls: Sequence[tuple], name: str) -> list[str]:
        """fn(*call) for each call, as one job array. Ids come back in the order of `calls`."""
        if not calls:
            return []
        columns = list(zip(*calls, strict=True))
        jobs = self.executor(name).map_array(fn, *columns)
        self._after_submit(jobs)
        return [str(j.job_id) for j in jobs]

    def _after_submit(self, jobs: Sequence[submitit.Job]) -> None:
        for job in jobs:
            if self.kind == "debug":
                self._debug[str(job.job_id)] = _run_debug(job)
            elif self.kind == "local":
                self._processes[str(job.job_id)] = job._process

    # ------------------------------------------------------------------------- asking

    def _job(self, job_id: str) -> submitit.Job:
        if self.kind == "slurm":
            return submitit.SlurmJob(self.folder, job_id)
        return submitit.LocalJob(self.folder, job_id)

    def _outcome(self, job_id: str) -> JobStatus | None:
        """The result pickle, if the job left one."""
        path = self._job(job_id).paths.result_pickle
        if not path.exists():
            return None
        try:
            outcome, value = pickle_load(path)
        except Exception:  # being written right now (submitit writes it in place)
            return None
        if outcome == "success":
            return JobStatus("succeeded", value=value)
        return JobStatus("failed", error=_last_line(value))

    def status(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        if self.kind == "debug":
            lost = JobStatus("failed", error="debug job of an earlier process (ran in it)")
            return {j: self._debug.get(j, lost) for j in job_ids}
        # Ask the scheduler first, then read the files: a job writes its result before it ends,
        # so "ended" with no result file really means it died without one.
        sched = self._sacct(job_ids) if self.kind == "slurm" else self._local_alive(job_ids)
        out = {}
        for j in job_ids:
            found = self._outcome(j)
            if found is not None:
                out[j] = found
                continue
            state = sched.get(j)
            if state is None:
                out[j] = JobStatus("unknown")
            elif state in ("RUNNING", "PENDING") or state.split()[0] not in _ENDED:
                out[j] = JobStatus("alive")
            else:
                log = self._job(j).paths.stderr
                out[j] = JobStatus(
                    "failed", error=f"job {j} ended {state} without a result (log: {log})"
                )
        return out

    def ended(self, job_id: str) -> bool:
        """The scheduler's word alone (no result file): will this job run no more? A job that
        was requeued left the result of its first run behind, so files would mislead here."""
        if self.kind == "debug":
            return True
        if self.kind == "local":
            return self._local_alive([job_id])[job_id] != "RUNNING"
        state = self._sacct([job_id]).get(job_id)
        return state is not None and state.split()[0] in _ENDED

    def _local_alive(self, job_ids: Sequence[str]) -> dict[str, str]:
        states = {}
        for j in job_ids:
            proc = self._processes.get(j)
            if proc is not None:
                states[j] = "RUNNING" if proc.poll() is None else "FAILED"
            else:  # started by an earlier watcher: look at the pid itself
                states[j] = "RUNNING" if _pid_running(int(j)) else "FAILED"
        return states

    def _sacct(self, job_ids: Sequence[str]) -> dict[str, str]:
        parents = sorted({j.split("_")[0] for j in job_ids})
        if not parents:
            return {}
        text = self._run(["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", ",".join(parents)])
        return parse_sacct(text) if text is not None else {}

    def find(self, name: str) -> list[str] | None:
        """Array-task ids of the array submitted under `name` by an earlier process, in index
        order ([] when none was submitted); None when this executor cannot tell."""
        if self.kind != "slurm":
            return None
        text = self._run(
            ["sacct", "-X", "-n", "-P", "-S", "now-30days", "--name", name, "-o", "JobID,State"]
        )
        states = parse_sacct(text or "")
        if not states:  # sacct learns of a job a moment after sbatch returns; squeue knows now
            text = self._run(["squeue", "-h", "-r", "-n", name, "-o", "%i|%T"])
            states = parse_sacct(text or "")
        return sorted(states, key=_array_index)

    def _run(self, cmd: list[str]) -> str | None:
        self.queries += 1
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return proc.stdout if proc.returncode == 0 else None

    def cancel(self, job_ids: Sequence[str]) -> None:
        if self.kind == "slurm" and job_ids:
            self._run(["scancel", *job_ids])
        elif self.kind == "local":
            for j in job_ids:
                proc = self._processes.get(j)
                if proc is not None and proc.poll() is None:
                    proc.terminate()


_RANGE = re.compile(r"^(\d+)_\[([0-9,\-]+)(?:%\d+)?\]$")


def parse_sacct(text: str) -> dict[str, str]:
    """`JobID|State` lines -> {job id: state}; pending array ranges (123_[0-3,7%2]) expanded."""
    states: dict[str, str] = {}
    for line in text.splitlines():
        if "|" not in line:
            continue
        jid, state = (x.strip() for x in line.split("|", 1))
        if not jid or "." in jid:  # job steps (123.batch) are not jobs
            continue
        m = _RANGE.match(jid)
        if m is None:
            states[jid] = state
            continue
        for part in m.group(2).split(","):
            lo, _, hi = part.partition("-")
            for i in range(int(lo), int(hi or lo) + 1):
                states[f"{m.group(1)}_{i}"] = state
    return states


def _array_index(job_id: str) -> int:
    _, _, idx = job_id.partition("_")
    return int(idx) if idx.isdigit() else 0


def _pid_running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has finished


def _run_debug(job: submitit.Job) -> JobStatus:
    # job.result() would drop into pdb on an exception; run the submission ourselves.
    try:
        return JobStatus("succeeded", value=job.submission().result())
    except Exception as e:
        tb = "".join(traceback.format_exception_only(type(e), e))
        return JobStatus("failed", error=_last_line(tb))
