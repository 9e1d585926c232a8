"""The in-process driver: run the d90 search's proposals until it has a result.

    env = make_env(cfg, model="ckpt_dir", checkpoint="checkpoint_20000", task="rte")
    result = run_search(SearchKey("checkpoint_20000", "rte", "said"), cfg.search, env, out)

`run_specs(specs, env, out)` is the unit of work: one RunSpec -> one training -> one record
written atomically under OUT/records. It is all a job-array executor (SLURM, later) needs to call,
with `env` (plain, picklable data) shipped to the job. The search loop keeps no state of its own:
it asks `plan_next` what to run (a replay over the records on disk), runs what it has not yet
submitted, and asks again, so a killed driver rerun with the same command re-runs nothing that
finished.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from intdim.config import to_dict
from intdim.errors import UserError
from probe.config import ProbeConfig
from probe.encode import DataKey, encoded_task
from probe.finetune import FinetuneConfig, finetune, load_model
from probe.records import (
    Record,
    has_record,
    read_records,
    record_path,
    software_versions,
    write_record,
)
from probe.search import RunSpec, SearchConfig, SearchKey, SearchResult, plan_next
from probe.tasks import load_task_spec

Log = Callable[[str], None]

# Settings that change what a run measures. Records in one OUT made with other values would be
# silently mixed into the search (a record's id covers checkpoint, task, method, d, lr and seed
# only), so the driver refuses them. Device, precision, batch size of evaluation and the progress
# bar do not change the measurement.
_NOT_MEASURED = ("device", "precision", "eval_batch_size", "progress")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class RunEnv:
    """What every run of one (checkpoint, task) shares. Plain data: a job can receive it."""

    model: str  # where the model and tokenizer load from: a checkpoint dir or a hub id
    checkpoint: str  # the checkpoint id records carry
    task: str  # the task's registered name, which records carry
    data: DataKey  # how to load it (data.task may be a YAML path)
    finetune: FinetuneConfig
    config: dict[str, Any] = field(default_factory=dict)  # resolved config, stored in records

    @property
    def settings(self) -> dict[str, Any]:
        """The part of the config that decides a run's outcome (see _NOT_MEASURED)."""
        ft = {k: v for k, v in to_dict(self.finetune).items() if k not in _NOT_MEASURED}
        d = self.data
        return {
            "finetune": ft,
            "max_train_examples": d.max_train,
            "max_eval_examples": d.max_eval,
            "data_seed": d.data_seed,
        }


def make_env(cfg: ProbeConfig, model: str, checkpoint: str, task: str) -> RunEnv:
    key = DataKey(
        model=model,
        task=task,
        data_dir=cfg.data_dirs.get(task),
        max_train=cfg.max_train_examples,
        max_eval=cfg.max_eval_examples,
        data_seed=cfg.data_seed,
        max_seq_len=cfg.finetune.max_seq_len,
        train_metric_examples=cfg.finetune.train_metric_examples,
    )
    name = load_task_spec(task).name
    env = RunEnv(model, checkpoint, name, key, cfg.finetune)
    config = {**to_dict(cfg), "model": model, "settings": env.settings}
    return RunEnv(model, checkpoint, name, key, cfg.finetune, config)


def preflight(cfg: ProbeConfig, envs: Sequence[RunEnv]) -> None:
    """Everything that can fail on bad input, before any run: tasks, data files, tokenizer,
    model, and a d range the model can hold. Data loading and tokenizing are cached, so this
    costs nothing later."""
    for env in envs:
        encoded_task(env.data)
    if not envs:
        return
    model = load_model(envs[0].model, 2)
    D = sum(p.numel() for p in model.parameters())
    if cfg.search.d_max > D:
        raise UserError(
            f"search.d_max = {cfg.search.d_max:,} exceeds the model's {D:,} parameters; "
            "lower it (--d-max or search.d_max=...)"
        )


def check_compatible(records: Iterable[Record], env: RunEnv, out: str | Path) -> None:
    """Refuse to mix records of the same checkpoint and task made with other settings."""
    want = env.settings
    for r in records:
        if (r.checkpoint, r.task) != (env.checkpoint, env.task):
            continue
        have = r.config.get("settings")
        if have is None or have == want:
            continue
        diff = _first_difference(have, want)
        raise UserError(
            f"{out} holds runs of {env.checkpoint} / {env.task} made with other settings "
            f"({diff}); use another --out, or the settings those runs used"
        )


def _first_difference(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> str:
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            if a != b:
                return _first_difference(a, b, f"{prefix}{k}.")
        elif a != b:
            return f"{prefix}{k}: {a!r} then, {b!r} now"
    return "?"


# --------------------------------------------------------------------------- one run


def run_one(spec: RunSpec, env: RunEnv) -> Record:
    """Train one run and describe it as a Record. An exception becomes a `failed` record (the
    search decides whether it matters); an interrupt propagates and leaves no record."""
    task = None
    try:
        task = encoded_task(env.data)
        outcome = finetune(spec, env.model, task, env.finetune)
    except Exception as e:
        last = traceback.extract_tb(e.__traceback__)[-1:]
        where = f" at {Path(last[0].filename).name}:{last[0].lineno}" if last else ""
        message = str(e).strip().splitlines()[0] if str(e).strip() else ""
        metric = task.data.spec.primary_metric if task else "accuracy"
        return failed_record(spec, env, f"{type(e).__name__}: {message}{where}", metric)
    primary = task.data.spec.primary_metric
    return Record(
        status=outcome.status,
        metric=primary,
        eval_value=outcome.eval_metrics.get(primary),
        train_value=outcome.train_metrics.get(primary),
        eval_metrics=outcome.eval_metrics,
        steps=outcome.steps,
        wall_seconds=round(outcome.wall_seconds, 3),
        majority_baseline=task.data.majority_baseline if spec.method == "full" else None,
        # The report's d90-vs-parameter-count figure reads the model size from here.
        config={**env.config, "num_parameters": outcome.num_parameters},
        software=software_versions(),
        **spec.record_fields(),
    )


def failed_record(spec: RunSpec, env: RunEnv, error: str, metric: str = "accuracy") -> Record:
    """The record of a run that could not finish (an exception here, or a job that kept
    failing under a job executor)."""
    return Record(
        status="failed",
        error=error,
        metric=metric,
        config=env.config,
        software=software_versions(),
        **spec.record_fields(),
    )


def describe_record(r: Record) -> str:
    what = r.method if r.d is None else f"{r.method} d={r.d:,}"
    head = f"{r.task} {what} lr={r.lr:g}: {r.status}"
    if r.status == "failed":
        return f"{head} ({r.error})"
    if r.eval_value is None:
        return f"{head} after {r.steps:,} steps"
    extra = "".join(f" {k} {v:.4f}" for k, v in r.eval_metrics.items() if k != r.metric)
    train = f", train {r.train_value:.4f}" if r.train_value is not None else ""
    return (
        f"{head}, eval {r.metric} {r.eval_value:.4f}{extra}{train} "
        f"in {r.steps:,} steps ({r.wall_seconds:.1f}s)"
    )


def run_specs(
    specs: Sequence[RunSpec], env: RunEnv, out: str | Path, log: Log | None = None
) -> list[Record]:
    """Run each spec and write its record. One spec -> one record: a spec whose record already
    exists is not run again (a retried job-array task finds its work done)."""
    records = []
    for spec in specs:
        if has_record(out, spec.run_id):
            path = record_path(out, spec.run_id)
            rec = Record.from_json(json.loads(path.read_text(encoding="utf-8")), str(path))
        else:
            rec = run_one(spec, env)
            write_record(out, rec)
        if log is not None:
            log(describe_record(rec))
        records.append(rec)
    return records


# --------------------------------------------------------------------------- the search loop


def run_search(
    key: SearchKey,
    cfg: SearchConfig,
    env: RunEnv,
    out: str | Path,
    lr_hints: Mapping[int, float] | None = None,
    log: Log | None = _stderr,
    runner: Callable[[Sequence[RunSpec], RunEnv, str | Path], Any] | None = None,
) -> SearchResult:
    """Plan, run what was not yet submitted, plan again, until the search has a result.

    `runner(specs, env, out)` runs a batch (default: `run_specs` in this process). A proposal
    that was already submitted is still in flight (plan_next re-proposes unfinished runs with
    the same run id); it is skipped, never submitted twice."""
    submitted: set[str] = set()
    while True:
        todo = plan_next(read_records(out), cfg, key, lr_hints)
        if isinstance(todo, SearchResult):
            return todo
        new = [s for s in todo if s.run_id not in submitted]
        if not new:
            # In process every submitted run has finished (and written its record) by now.
            ids = ", ".join(s.run_id for s in todo)
            raise RuntimeError(f"runs {ids} were submitted but left no record under {out}")
        submitted.update(s.run_id for s in new)
        if runner is not None:
            runner(new, env, out)
        else:
            run_specs(new, env, out, log)


def result_line(task: str, method: str, result: SearchResult) -> str:
    """The one line `intdim d90` ends with."""
    head = f"d90 {task} {method}:"
    if result.status == "done":
        lo = "" if result.lo is None else f"{result.lo}"
        return f"{head} {result.d90} (bracket {lo}-{result.hi})" + (
            f" ({result.reason})" if result.lo is None else ""
        )
    label = {"not_reached": "not reached", "not_computable": "not computable"}
    return f"{head} {label.get(result.status, result.status)} ({result.reason})"


def checkpoint_id(model: str) -> str:
    """The id records carry: a local directory's name, else the hub id as given."""
    path = Path(model)
    return path.name if path.exists() else model


def search_all(
    cfg: ProbeConfig, model: str, checkpoint: str, out: str | Path, log: Log = _stderr
) -> list[tuple[str, str, SearchResult]]:
    """Every task x method of `cfg` on one checkpoint; full fine-tuning is shared by methods."""
    envs = [make_env(cfg, model, checkpoint, task) for task in cfg.tasks]
    preflight(cfg, envs)
    records = read_records(out)
    for env in envs:
        check_compatible(records, env, out)
    results = []
    for env in envs:
        for method in cfg.methods:
            key = SearchKey(checkpoint, env.task, method)
            log(f"search {checkpoint} / {env.task} / {method} -> {out}")
            result = run_search(key, cfg.search, env, out, log=log)
            results.append((env.task, method, result))
    return results
