"""`intdim watch RUN_DIR --probe CONFIG`: probe every checkpoint as it lands.

Every `poll_seconds` the watcher
1. lists RUN_DIR/checkpoints and keeps the complete ones (`CheckpointScanner`);
2. settles the jobs in flight (journal.py): a record -> done; a job that ended without one ->
   retried, or after `max_retries` retries recorded `failed` with the job's error;
3. asks `plan_next` for every (checkpoint, task, method) what to run, drops what is in flight
   (plan_next re-proposes in-flight runs under the same run id), and submits the rest as one job
   array (slurm.backend), journaled before and after submission;
4. stops when RUN_DIR/DONE exists and every search has a result (or the pretraining job is
   known to have ended without DONE: then it settles what it has and exits 1).
Each array task runs `probe_job`: one RunSpec -> one record, the unit of work of probe.driver.

State is the records and the journal, both on disk: kill the watcher anywhere, start it again,
and it resubmits nothing that is in flight or finished and loses no result.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from intdim.errors import UserError
from probe.config import ProbeConfig
from probe.driver import (
    RunEnv,
    check_compatible,
    describe_record,
    failed_record,
    hint_records,
    make_env,
)
from probe.journal import Attempt, Journal
from probe.records import Record, has_record, read_records, set_aside_failed, write_record
from probe.search import RunSpec, SearchKey, SearchResult, plan_next
from probe.tasks import load_task_spec
from slurm.backend import Backend

_CHECKPOINT = re.compile(r"^checkpoint_(\d+)$")
# pretrain writes checkpoint.json last, inside a directory renamed into place when complete.
COMPLETION_MARKER = "checkpoint.json"
PRETRAIN_JOB_FILE = "pretrain_job.json"  # {"executor", "job_id"}: written by `intdim pretrain`
# Fault injection for tests: a glob over "<checkpoint>/<task>/<method>/<d>" (d "-" for full runs);
# a probe job whose run matches raises before training.
FAULT_ENV = "INTDIM_PROBE_FAULT"


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class WatchConfig:
    poll_seconds: float = 30.0  # between scans; a checkpoint's jobs go out within one poll
    max_retries: int = 2  # a run whose job fails is resubmitted this many times, then recorded
    max_parallel: int | None = None  # runs in flight at once; null: 64 on slurm, CPUs locally
    lost_after_seconds: float = 600.0  # a job the scheduler never heard of is failed after this

    def __post_init__(self) -> None:
        if self.poll_seconds <= 0:
            raise UserError(f"watch: poll_seconds must be positive, got {self.poll_seconds}")
        if self.max_retries < 0:
            raise UserError(f"watch: max_retries must be >= 0, got {self.max_retries}")
        if self.max_parallel is not None and self.max_parallel < 1:
            raise UserError(f"watch: max_parallel must be >= 1, got {self.max_parallel}")


# --------------------------------------------------------------------------- checkpoints


def _fingerprint(path: Path) -> tuple:
    return tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in path.iterdir()))


class CheckpointScanner:
    """Complete checkpoints only. Ours are complete once visible (built under a temp name,
    renamed; checkpoint.json written last). A directory written by another program counts once
    it has config.json and model.safetensors and its file names, sizes and mtimes are the same
    at two consecutive scans."""

    def __init__(self, run_dir: str | Path) -> None:
        self.root = Path(run_dir) / "checkpoints"
        self._last: dict[str, tuple] = {}
        self._ready: dict[str, Path] = {}
        self.first_seen: dict[str, float] = {}

    def scan(self) -> tuple[list[Path], int]:
        """(complete checkpoints in update order, how many are still being written)."""
        waiting = 0
        if self.root.is_dir():
            for path in self.root.iterdir():
                name = path.name
                if name in self._ready or not _CHECKPOINT.match(name) or not path.is_dir():
                    continue
                self.first_seen.setdefault(name, time.time())
                try:
                    if (path / COMPLETION_MARKER).is_file():
                        self._ready[name] = path
                        continue
                    if not (
                        (path / "config.json").is_file() and (path / "model.safetensors").is_file()
                    ):
                        continue
                    fp = _fingerprint(path)
                except FileNotFoundError:  # removed or renamed while we looked
                    continue
                if self._last.get(name) == fp:
                    self._ready[name] = path
                else:
                    self._last[name] = fp
                    waiting += 1
        ready = sorted(self._ready.values(), key=lambda p: int(p.name.split("_")[1]))
        return ready, waiting


# --------------------------------------------------------------------------- the job


class ProbeRunError(RuntimeError):
    """A run that raised; the job fails so that the watcher can retry it."""


def _fault(spec: RunSpec) -> None:
    pattern = os.environ.get(FAULT_ENV)
    name = f"{spec.checkpoint}/{spec.task}/{spec.method}/{spec.d if spec.d else '-'}"
    if pattern and fnmatch.fnmatchcase(name, pattern):
        raise ProbeRunError(f"injected fault ({FAULT_ENV}={pattern}) in {name}")


def probe_job(spec: RunSpec, env: RunEnv, out: str) -> str:
    """One array task: train `spec`, write its record, return its run id. A run that fails
    raises instead of writing a failed record, so the watcher sees a failed job and retries."""
    from probe.driver import run_one

    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if cpus:  # torch would otherwise use every core of the node, not the ones allocated
        import torch

        torch.set_num_threads(int(cpus))
    if has_record(out, spec.run_id):  # a failed record was set aside before resubmission
        return spec.run_id
    _fault(spec)
    rec = run_one(spec, env)
    if rec.status == "failed":
        raise ProbeRunError(rec.error)
    write_record(out, rec)
    return spec.run_id


JobFn = Callable[[RunSpec, RunEnv, str], Any]


# --------------------------------------------------------------------------- the watcher


class Watcher:
    def __init__(
        self,
        run_dir: str | Path,
        cfg: ProbeConfig,
        backend: Backend,
        watch: WatchConfig | None = None,
        log: Callable[[str], None] = _stderr,
        job_fn: JobFn = probe_job,
    ) -> None:
        self.run_dir = Path(run_dir).resolve()
        self.cfg = cfg
        self.out = Path(cfg.out).resolve() if cfg.out else self.run_dir / "probe"
        self.backend = backend
        self.watch = watch or WatchConfig()
        self.log = log
        self.job_fn = job_fn
        self.scanner = CheckpointScanner(self.run_dir)
        self.journal = Journal(self.out)
        self._envs: dict[tuple[str, str], RunEnv] = {}
        self.submitted_at: dict[str, float] = {}  # checkpoint -> first submission (benchmarks)
        for task in cfg.tasks:  # a bad task name or file is an error now, not in every job
            load_task_spec(task)
        for task, folder in cfg.data_dirs.items():
            if not Path(folder).is_dir():
                raise UserError(f"data_dirs.{task} = {folder} is not a directory")
        self.hint_records = hint_records(cfg.search)
        self._recover()
        self._retry_failed()

    @property
    def max_parallel(self) -> int:
        if self.watch.max_parallel is not None:
            return self.watch.max_parallel
        return 64 if self.backend.kind == "slurm" else max(os.cpu_count() or 1, 1)

    # -- restart ------------------------------------------------------------------------------

    def _recover(self) -> None:
        """Attempts journaled just before a submission whose outcome was never written."""
        unconfirmed: dict[str, list] = {}
        for entry in self.journal.entries.values():
            a = entry.current
            if a is not None and a.job_id is None:
                unconfirmed.setdefault(a.batch, []).append(entry)
        for batch, entries in unconfirmed.items():
            ids = self.backend.find(_job_name(batch))
            for entry in entries:
                a = entry.attempts[-1]
                if ids and a.index < len(ids):
                    a.job_id = ids[a.index]
                    self.log(f"recovered {entry.run_id}: job {a.job_id} was submitted")
                else:  # never reached the scheduler (or this executor cannot tell): resubmit
                    entry.attempts.pop()
                self.journal.save(entry)

    def _retry_failed(self) -> None:
        """Runs recorded failed (out of retries) get another round of attempts at every start:
        their cause may be fixed. Their records are set aside (OUT/failed/) and their journal
        entries start over."""
        for rid in set_aside_failed(self.out):
            entry = self.journal.get(rid)
            entry.attempts.clear()
            self.journal.save(entry)
            self.log(f"retrying run {rid}, which failed before (its record: {self.out}/failed/)")

    # -- one poll -----------------------------------------------------------------------------

    def env(self, checkpoint: Path, task: str) -> RunEnv:
        key = (checkpoint.name, task)
        if key not in self._envs:
            env = make_env(self.cfg, str(checkpoint), checkpoint.name, task)
            check_compatible(read_records(self.out), env, self.out)
            self._envs[key] = env
        return self._envs[key]

    def settle(self) -> None:
        """Mark the attempts whose job ended without a record (submit() retries or records)."""
        flying = self.journal.in_flight()
        ids = {a.job_id: rid for rid, a in flying.items() if a.job_id}
        if not ids:
            return
        states = self.backend.status(list(ids))
        now = time.time()
        for job_id, rid in ids.items():
            st, entry = states[job_id], self.journal.get(rid)
            attempt = entry.current
            assert attempt is not None
            if has_record(self.out, rid):  # read after the status: a job writes it, then ends
                attempt.finished = True
                self.journal.save(entry)
                continue
            if st.state == "succeeded":
                error = f"job {job_id} returned but left no record under {self.out}"
            elif st.state == "failed":
                error = st.error or f"job {job_id} failed"
            elif (
                st.state == "unknown" and now - attempt.submitted_at > self.watch.lost_after_seconds
            ):
                error = f"job {job_id} is unknown to the scheduler"
            else:
                continue
            attempt.error = error
            self.journal.save(entry)
            self.log(f"run {rid} failed (attempt {entry.failures}): {error}")

    def plan(self, checkpoints: list[Path]) -> tuple[list[tuple[RunSpec, RunEnv]], bool]:
        """(runs wanted now, whether every search of these checkpoints has a result)."""
        records: list[Record] = read_records(self.out)  # all: "previous" LR hints read them
        wanted: dict[str, tuple[RunSpec, RunEnv]] = {}
        settled = True
        for ckpt in checkpoints:
            for task in self.cfg.tasks:
                env = self.env(ckpt, task)
                for method in self.cfg.methods:
                    key = SearchKey(ckpt.name, env.task, method)
                    todo = plan_next(records, self.cfg.search, key, None, self.hint_records)
                    if isinstance(todo, SearchResult):
                        continue
                    settled = False
                    for spec in todo:  # full runs are shared by the methods: once
                        wanted.setdefault(spec.run_id, (spec, env))
        return list(wanted.values()), settled

    def submit(self, runs: list[tuple[RunSpec, RunEnv]]) -> None:
        flying = self.journal.in_flight()
        tries = self.watch.max_retries + 1
        new = []
        for spec, env in runs:
            if spec.run_id in flying:
                continue
            entry = self.journal.get(spec.run_id)
            if entry.failures >= tries:  # out of retries: the failure becomes its record
                error = entry.attempts[-1].error
                rec = failed_record(spec, env, f"{error} (after {entry.failures} attempts)")
                write_record(self.out, rec)
                self.log(describe_record(rec))
            else:
                new.append((spec, env))
        new = new[: max(self.max_parallel - len(flying), 0)]
        if not new:
            return
        batch = uuid.uuid4().hex[:12]
        entries = []
        for i, (spec, _) in enumerate(new):  # 1. journal before submitting
            entry = self.journal.get(spec.run_id)
            entry.attempts.append(Attempt(batch=batch, index=i))
            self.journal.save(entry)
            entries.append(entry)
        calls = [(spec, env, str(self.out)) for spec, env in new]
        try:
            ids = self.backend.submit_array(self.job_fn, calls, _job_name(batch))
        except Exception as e:
            for entry in entries:  # nothing went out: forget the attempts
                entry.attempts.pop()
                self.journal.save(entry)
            raise UserError(f"submitting probe jobs failed: {str(e).strip()[:300]}") from None
        for entry, job_id in zip(entries, ids, strict=True):  # 2. confirm
            entry.attempts[-1].job_id = job_id
            self.journal.save(entry)
        now = time.time()
        for spec, _ in new:
            self.submitted_at.setdefault(spec.checkpoint, now)
        first = ids[0].split("_")[0] if ids else "?"
        self.log(f"submitted {len(new)} run(s) as {self.backend.kind} job {first}: " + ", ".join(
            f"{s.checkpoint}/{s.task}/{s.method}{'' if s.d is None else f' d={s.d}'}"
            for s, _ in new[:6]) + (" ..." if len(new) > 6 else ""))  # fmt: skip

    def poll(self) -> bool:
        """One round; True when the watcher is done."""
        done_marker = (self.run_dir / "DONE").is_file()
        checkpoints, waiting = self.scanner.scan()
        self.settle()
        runs, settled = self.plan(checkpoints)
        self.submit(runs)
        in_flight = bool(self.journal.in_flight())
        if done_marker and settled and not waiting and not in_flight:
            return True
        if not done_marker and settled and not in_flight and self._pretraining_died():
            raise UserError(
                f"the pretraining job ended without {self.run_dir / 'DONE'}; every checkpoint "
                "it wrote is probed. Resume it (rerun `intdim pretrain`) and the watcher"
            )
        return False

    def _pretraining_died(self) -> bool:
        path = self.run_dir / PRETRAIN_JOB_FILE
        if not path.is_file():
            return False
        info = json.loads(path.read_text(encoding="utf-8"))
        if info.get("executor") != self.backend.kind or self.backend.kind == "debug":
            return False
        return self.backend.ended(str(info["job_id"]))

    def run(self) -> int:
        self.log(
            f"watching {self.run_dir / 'checkpoints'} every {self.watch.poll_seconds:g}s; "
            f"records -> {self.out}; executor {self.backend.kind}"
        )
        while not self.poll():
            time.sleep(self.watch.poll_seconds)
        self.log(f"pretraining finished and every probe is settled; records in {self.out}")
        return 0


def _job_name(batch: str) -> str:
    return f"intdim-probe-{batch}"
