"""The watcher without SLURM: checkpoint completeness, planning every (checkpoint, task), the
journal that makes restarts safe, retries, and one real run through submitit's LocalExecutor."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from intdim.config import load_config
from intdim.errors import UserError
from probe.config import ProbeConfig
from probe.journal import Journal
from probe.records import read_records, write_record
from probe.search import SearchKey, SearchResult, plan_next
from probe.simulate import Curve, StepModel, drive, fake_run
from probe.watch import FAULT_ENV, CheckpointScanner, WatchConfig, Watcher, _fault
from slurm.backend import Backend, JobStatus

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "probe" / "tiny.yaml"
CURVES = {"sst2": Curve(d_star=60), "mrpc": Curve(d_star=300)}


@pytest.fixture(autouse=True)
def fake_identity(monkeypatch):
    """The checkpoints here are empty directories and the tasks' data is never read (the jobs are
    simulated): each checkpoint directory is its own model. test_watch_identity_* below uses
    the real fingerprints."""
    import probe.driver

    monkeypatch.setattr(
        probe.driver,
        "run_identity",
        lambda model, data: {"model": model, "data": data.task, "projection": "fake"},
    )


def fake_job(spec, env, out):
    """A probe job that trains nothing: the simulated outcome of the run (probe/simulate.py)."""
    _fault(spec)
    rec = fake_run(spec, CURVES[spec.task], StepModel())
    write_record(out, dataclasses.replace(rec, config={**env.config, **rec.config}))
    return spec.run_id


def make_run(tmp_path: Path, updates=(10, 20), done=True) -> Path:
    run = tmp_path / "run"
    for u in updates:
        ckpt = run / "checkpoints" / f"checkpoint_{u}"
        ckpt.mkdir(parents=True)
        (ckpt / "checkpoint.json").write_text("{}")
    if done:
        (run / "DONE").write_text("{}")
    return run


def probe_cfg(*overrides: str) -> ProbeConfig:
    return load_config(ProbeConfig, TINY, list(overrides))


def watcher(run: Path, backend: Backend, *overrides: str, **watch) -> Watcher:
    cfg = probe_cfg(*overrides)
    wcfg = WatchConfig(poll_seconds=0.01, **watch)
    return Watcher(run, cfg, backend, wcfg, log=lambda line: None, job_fn=fake_job)


def results(run: Path, cfg: ProbeConfig, checkpoints) -> dict:
    recs = read_records(run / "probe")
    out = {}
    for c in checkpoints:
        for t in cfg.tasks:
            mine = [r for r in recs if r.checkpoint == c and r.task == t]
            out[(c, t)] = plan_next(mine, cfg.search, SearchKey(c, t, "said"))
    return out


def attempts(run: Path) -> dict[str, int]:
    return {rid: len(e.attempts) for rid, e in Journal(run / "probe").entries.items()}


# --------------------------------------------------------------------------- checkpoints


def test_scanner_takes_marked_checkpoints_at_once_and_foreign_ones_when_stable(tmp_path):
    root = tmp_path / "checkpoints"
    (root / ".checkpoint_30.tmp-77").mkdir(parents=True)  # being written by pretrain
    (root / ".checkpoint_30.tmp-77" / "checkpoint.json").write_text("{}")
    ours = root / "checkpoint_20"
    ours.mkdir()
    (ours / "checkpoint.json").write_text("{}")
    foreign = root / "checkpoint_5"  # another program, no marker: needs two equal scans
    foreign.mkdir()
    (foreign / "config.json").write_text("{}")
    scanner = CheckpointScanner(tmp_path)
    assert scanner.scan() == ([ours], 0)  # no weights yet: not a checkpoint at all
    (foreign / "model.safetensors").write_bytes(b"x" * 10)
    assert scanner.scan() == ([ours], 1)
    with (foreign / "model.safetensors").open("ab") as f:  # still growing
        f.write(b"y" * 10)
    assert scanner.scan() == ([ours], 1)
    assert scanner.scan() == ([foreign, ours], 0)  # unchanged since the last scan; update order


# --------------------------------------------------------------------------- planning


def test_debug_watcher_settles_every_checkpoint_and_task_with_one_submission_each(tmp_path):
    run = make_run(tmp_path)
    w = watcher(run, Backend("debug", tmp_path / "jobs"))
    assert w.run() == 0
    res = results(run, w.cfg, ["checkpoint_10", "checkpoint_20"])
    assert len(res) == 4
    for r in res.values():
        assert isinstance(r, SearchResult) and r.status == "done"
    # The same d90 as the in-process search loop over the same simulated runs.
    for (ckpt, task), r in res.items():
        alone = drive(w.cfg.search, SearchKey(ckpt, task, "said"), CURVES[task]).result
        assert (r.d90, r.lo, r.hi) == (alone.d90, alone.lo, alone.hi)
    recs = read_records(run / "probe")
    # Full fine-tuning is shared by methods, and every run went out exactly once.
    assert sorted(attempts(run).values()) == [1] * len(recs)
    assert set(attempts(run)) == {r.run_id for r in recs}


def test_watcher_waits_for_done_and_for_late_checkpoints(tmp_path):
    run = make_run(tmp_path, updates=(10,), done=False)
    w = watcher(run, Backend("debug", tmp_path / "jobs"))
    for _ in range(30):
        assert w.poll() is False  # no DONE: more checkpoints may come
    assert isinstance(
        results(run, w.cfg, ["checkpoint_10"])[("checkpoint_10", "sst2")], SearchResult
    )
    late = run / "checkpoints" / "checkpoint_20"
    late.mkdir()
    (late / "checkpoint.json").write_text("{}")
    (run / "DONE").write_text("{}")
    while not w.poll():
        pass
    assert all(isinstance(r, SearchResult) for r in results(run, w.cfg, ["checkpoint_20"]).values())


def test_failing_job_is_retried_then_recorded_failed_and_the_rest_goes_on(tmp_path, monkeypatch):
    run = make_run(tmp_path)
    monkeypatch.setenv(FAULT_ENV, "checkpoint_20/mrpc/full/*")
    w = watcher(run, Backend("debug", tmp_path / "jobs"), max_retries=2)
    assert w.run() == 0
    recs = read_records(run / "probe")
    failed = [r for r in recs if r.status == "failed"]
    assert len(failed) == 1
    (bad,) = failed
    assert (bad.checkpoint, bad.task, bad.method) == ("checkpoint_20", "mrpc", "full")
    assert "injected fault" in bad.error and "after 3 attempts" in bad.error
    assert attempts(run)[bad.run_id] == 3
    res = results(run, w.cfg, ["checkpoint_10", "checkpoint_20"])
    assert res[("checkpoint_20", "mrpc")].status == "failed"
    assert [k for k, r in res.items() if r.status == "done"] == [
        ("checkpoint_10", "sst2"),
        ("checkpoint_10", "mrpc"),
        ("checkpoint_20", "sst2"),
    ]


def test_a_failed_run_is_retried_when_the_watcher_starts_again(tmp_path, monkeypatch):
    """The cause of a failure (a wrong device, a full disk) may be fixed between two starts: the
    next watcher sets the failed record aside and gives the run a fresh set of attempts."""
    run = make_run(tmp_path)
    monkeypatch.setenv(FAULT_ENV, "checkpoint_20/mrpc/full/*")
    assert watcher(run, Backend("debug", tmp_path / "jobs"), max_retries=0).run() == 0
    [bad] = [r for r in read_records(run / "probe") if r.status == "failed"]
    monkeypatch.delenv(FAULT_ENV)  # fixed
    w = watcher(run, Backend("debug", tmp_path / "jobs2"), max_retries=0)
    assert w.run() == 0
    recs = read_records(run / "probe")
    assert not [r for r in recs if r.status == "failed"]
    assert any(r.run_id == bad.run_id and r.status == "ok" for r in recs)
    res = results(run, w.cfg, ["checkpoint_20"])
    assert res[("checkpoint_20", "mrpc")].status == "done"
    assert [p.name.split(".")[0] for p in (run / "probe" / "failed").iterdir()] == [bad.run_id]


# --------------------------------------------------------------------------- restarts


class HeldBackend(Backend):
    """Jobs stay in flight until `finish()`; `find` answers like sacct --name. The point: a
    second watcher must learn what is in flight from the journal alone."""

    def __init__(self, folder: Path, die: str | None = None) -> None:
        super().__init__("local", folder)
        self.submitted: list[tuple[str, str]] = []  # (run id, job name) per array task
        self.jobs: dict[str, tuple] = {}
        self.done: set[str] = set()
        self.die = die  # "before" / "after": the watcher is killed around sbatch

    def submit_array(self, fn, calls, name):
        if self.die == "before":
            raise KeyboardInterrupt
        ids = []
        for call in calls:
            job_id = f"{len(self.jobs) + 1}"
            self.jobs[job_id] = (name, fn, call)
            self.submitted.append((call[0].run_id, name))
            ids.append(job_id)
        if self.die == "after":
            raise KeyboardInterrupt
        return ids

    def finish(self) -> None:
        for job_id, (_, fn, call) in self.jobs.items():
            if job_id not in self.done:
                fn(*call)
                self.done.add(job_id)

    def status(self, job_ids):
        return {j: JobStatus("succeeded" if j in self.done else "alive") for j in job_ids}

    def find(self, name):
        return [j for j, (n, _, _) in self.jobs.items() if n == name]


@pytest.mark.parametrize("die", [None, "before", "after"])
def test_restarted_watcher_submits_nothing_twice_and_loses_nothing(tmp_path, die):
    run = make_run(tmp_path, updates=(10,))
    backend = HeldBackend(tmp_path / "jobs", die=die)
    first = watcher(run, backend, "tasks=[sst2]")
    if die:
        with pytest.raises(KeyboardInterrupt):
            first.poll()
    else:
        first.poll()
    pending = {rid for rid, _ in backend.submitted}
    assert len(pending) == (0 if die == "before" else 1)  # the full fine-tuning run
    backend.die = None
    # Killed anywhere, started again: the in-flight run is known, not resubmitted.
    while True:
        again = watcher(run, backend, "tasks=[sst2]")
        if again.poll():
            break
        backend.finish()
    ids = [rid for rid, _ in backend.submitted]
    assert len(ids) == len(set(ids)), "a run was submitted twice"
    recs = read_records(run / "probe")
    assert {r.run_id for r in recs} == set(ids)
    assert all(n == 1 for n in attempts(run).values())


# --------------------------------------------------------------------------- config, cli


def test_watch_config_and_inputs_are_checked(tmp_path):
    with pytest.raises(UserError, match="poll_seconds"):
        WatchConfig(poll_seconds=0)
    with pytest.raises(UserError, match="max_retries"):
        WatchConfig(max_retries=-1)
    run = make_run(tmp_path)
    with pytest.raises(UserError, match="data_dirs.sst2"):
        watcher(run, Backend("debug", tmp_path), f"data_dirs.sst2={tmp_path / 'nope'}")
    with pytest.raises(UserError):
        watcher(run, Backend("debug", tmp_path), "tasks=[no_such_task]")


def test_cli_watch_reports_bad_input_as_one_error_line(tmp_path, capsys):
    from intdim.cli import main

    run = make_run(tmp_path)
    bad = tmp_path / "cluster.yaml"
    bad.write_text("partition: x\nprobe:\n  gpus: 1\n")
    assert main(["watch", str(run), "--probe", str(TINY), "--cluster", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cluster profile") and "gpus_per_node" in err
    assert len(err.splitlines()) == 1


# --------------------------------------------------------------------------- local executor


def test_local_executor_runs_real_probe_jobs(tmp_path, tiny_ckpt, sst2_dir):
    """submitit's LocalExecutor: every run is a subprocess that fine-tunes the tiny model."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    os.symlink(tiny_ckpt, run / "checkpoints" / "checkpoint_100")
    (run / "DONE").write_text("{}")
    cfg = probe_cfg(
        "tasks=[sst2]",
        f"data_dirs.sst2={sst2_dir}",
        "search.d_min=8",
        "search.d_max=64",
        "search.ratio=8",
        "search.lrs=[0.03]",
        "finetune.full_max_steps=30",
        "finetune.subspace_max_steps=30",
        "finetune.progress=false",
    )
    w = Watcher(
        run, cfg, Backend("local", tmp_path / "jobs"), WatchConfig(poll_seconds=0.5),
        log=lambda line: None,
    )  # fmt: skip
    assert w.run() == 0
    recs = read_records(run / "probe")
    assert {r.method for r in recs} == {"full", "said"}
    assert all(r.status == "ok" for r in recs)
    (res,) = results(run, cfg, ["checkpoint_100"]).values()
    assert isinstance(res, SearchResult) and res.status in ("done", "not_reached")
    assert json.loads((run / "probe" / "journal" / f"{recs[0].run_id}.json").read_text())[
        "attempts"
    ][0]["job_id"].isdigit()  # a pid: it ran as its own process
