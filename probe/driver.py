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

import functools
import hashlib
import json
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from intdim.config import to_dict
from intdim.errors import UserError
from intdim.projection import PROJECTIONS
from intdim.subspace import SubspaceConfig, body_fingerprint, layer_of
from probe.config import ProbeConfig
from probe.encode import DataKey, encoded_task
from probe.finetune import FinetuneConfig, finetune, load_model
from probe.records import (
    Record,
    has_record,
    read_records,
    record_path,
    set_aside_failed,
    software_versions,
    write_record,
)
from probe.search import (
    HINTS_NONE,
    HINTS_PREVIOUS,
    RunSpec,
    SearchConfig,
    SearchKey,
    SearchResult,
    plan_next,
)
from probe.tasks import load_examples, load_task_spec

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
    """The runs' shared environment, with the identity of what they measure: the model's
    weights, the task's examples and the projection (see `check_compatible`). Hashes the weight
    files and reads the examples once per process (both cached)."""
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
    config = {
        **to_dict(cfg),
        "model": model,
        "settings": env.settings,
        "identity": run_identity(model, key),
    }
    return RunEnv(model, checkpoint, name, key, cfg.finetune, config)


def run_identity(model: str, data: DataKey) -> dict[str, str]:
    """What a run's id does not say and its result depends on (`check_compatible`): the model's
    weights, the task's examples after subsampling, and the projection's construction."""
    return {
        "model": model_fingerprint(model),
        "data": data_fingerprint(
            data.task,
            data.data_dir,
            data.max_train,
            data.max_eval,
            data.data_seed,
            _stamp(data.data_dir),
        ),
        "projection": PROJECTIONS.get(SubspaceConfig().projection).CONSTRUCTION,
    }


_WEIGHT_FILES = ("*.safetensors", "*.bin", "config.json")


def model_fingerprint(model: str) -> str:
    """A hash of the model's weights: two checkpoints with the same directory name (two
    pretraining runs' checkpoint_30) are told apart, a copy of the same files is not. A local
    directory hashes its weight files (cached by size and mtime: the watcher asks once per
    checkpoint per poll); a hub id hashes the loaded body's weights."""
    path = Path(model)
    if not path.is_dir():
        return _loaded(model)[0]
    files = sorted({f for pattern in _WEIGHT_FILES for f in path.glob(pattern) if f.is_file()})
    stamp = tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    return _hash_files(str(path), stamp)


@functools.lru_cache(maxsize=256)
def _hash_files(folder: str, stamp: tuple) -> str:
    h = hashlib.sha256()
    for name, _, _ in stamp:
        h.update(name.encode() + b"\0")
        with open(Path(folder) / name, "rb") as f:
            while chunk := f.read(1 << 24):
                h.update(chunk)
    return h.hexdigest()[:32]


@functools.lru_cache(maxsize=8)
def _loaded(model: str) -> tuple[str, int, int]:
    """(body fingerprint, parameter count, SAID's m) of the model at `model`, loaded once."""
    net = load_model(model, 2)
    m = len({layer_of(n) for n, _ in net.named_parameters()})
    return body_fingerprint(net), sum(p.numel() for p in net.parameters()), m


def _stamp(folder: str | None) -> tuple:
    """Names, sizes and mtimes of a local data dir's files: the cache key of its fingerprint."""
    if folder is None or not Path(folder).is_dir():
        return ()
    return tuple(
        (f.name, f.stat().st_size, f.stat().st_mtime_ns)
        for f in sorted(Path(folder).iterdir())
        if f.is_file()
    )


@functools.lru_cache(maxsize=64)
def data_fingerprint(
    task: str,
    data_dir: str | None,
    max_train: int | None,
    max_eval: int | None,
    seed: int,
    stamp: tuple = (),
) -> str:
    """A hash of the examples a run trains and evaluates on (after subsampling), read without
    tokenizing: a changed data file is a different measurement (`stamp` notices the change)."""
    data = load_examples(load_task_spec(task), data_dir, max_train, max_eval, seed)
    h = hashlib.sha256()
    for split in (data.train, data.eval):
        for ex in split:
            h.update(json.dumps([ex.text_a, ex.text_b, ex.label]).encode("utf-8"))
        h.update(b"|")
    return h.hexdigest()[:32]


def preflight(cfg: ProbeConfig, envs: Sequence[RunEnv]) -> None:
    """Everything that can fail on bad input, before any run: tasks, data files, tokenizer,
    model, a d range the model can hold, and LR hints that exist. Data loading and tokenizing
    are cached, so this costs nothing later."""
    for env in envs:
        encoded_task(env.data)
    hint_records(cfg.search)
    if not envs:
        return
    _, D, m = _loaded(envs[0].model)
    if cfg.search.d_max > D:
        raise UserError(
            f"search.d_max = {cfg.search.d_max:,} exceeds the model's {D:,} parameters; "
            "lower it (--d-max or search.d_max=...)"
        )
    if "said" in cfg.methods and cfg.search.d_min <= m:
        raise UserError(
            f"search.d_min = {cfg.search.d_min} leaves SAID no projected coordinates: this model "
            f"has m = {m} layers, each with its own lambda among the d numbers; raise d_min "
            f"above {m} (--d-min or search.d_min=...)"
        )


def hint_records(cfg: SearchConfig) -> list[Record]:
    """The records `search.lr_hints` points to when it names a directory (else none)."""
    if cfg.lr_hints in (HINTS_PREVIOUS, HINTS_NONE):
        return []
    folder = Path(cfg.lr_hints)
    if not (folder / "records").is_dir():
        raise UserError(
            f"search.lr_hints = {cfg.lr_hints}: no records there; give the --out of a sweep or "
            'probe run, or "previous" / "none"'
        )
    return read_records(folder)


def check_compatible(records: Iterable[Record], env: RunEnv, out: str | Path) -> None:
    """Refuse to mix runs of the same checkpoint id and task that measured something else: other
    weights (another run's checkpoint_30), other examples (a changed data dir), another
    projection (an older intdim), or other settings. A record says which run it is by its id
    (checkpoint id, task, method, d, lr, seed); this is what makes that id mean one thing."""
    want, want_id = env.settings, env.config.get("identity", {})
    where = f"{out} holds runs of {env.checkpoint} / {env.task}"
    for r in records:
        if (r.checkpoint, r.task) != (env.checkpoint, env.task):
            continue
        have_id = r.config.get("identity")
        if not isinstance(have_id, Mapping):
            made = r.software.get("intdim", "an older intdim")
            raise UserError(
                f"{where} made by intdim {made}, which did not record the model and data they "
                "measured (and projected through an older Fastfood): use another --out, or "
                f"delete {Path(out) / 'records'}"
            )
        for part, what in (("model", "other weights"), ("data", "other examples"),
                           ("projection", "another projection")):  # fmt: skip
            if have_id.get(part) != want_id.get(part):
                raise UserError(
                    f"{where} made from {what} ({part} {str(have_id.get(part))[:12]} then, "
                    f"{str(want_id.get(part))[:12]} now); use another --out"
                    + (" or set checkpoint_id" if part == "model" else "")
                )
        have = r.config.get("settings")
        if have is None or have == want:
            continue
        diff = _first_difference(have, want)
        raise UserError(
            f"{where} made with other settings ({diff}); use another --out, or the settings "
            "those runs used"
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
        config={**env.config, "num_parameters": outcome.num_parameters, **spec.record_config()},
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
        config={**env.config, **spec.record_config()},
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
    exists is not run again (a retried job-array task finds its work done; failed runs are
    retried by setting their records aside first, `set_aside_failed`)."""
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
    hints_from = hint_records(cfg)
    while True:
        todo = plan_next(read_records(out), cfg, key, lr_hints, hints_from)
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
        if result.lo is None:  # d_min itself reached: an upper bound, not a bracket
            return f"{head} <= {result.d90} ({result.reason})"
        return f"{head} {result.d90} (bracket {result.lo}-{result.hi})"
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
    ours = {(checkpoint, env.task) for env in envs}
    for rid in set_aside_failed(out, lambda r: (r.checkpoint, r.task) in ours):
        log(f"retrying run {rid}, which failed before (its record: {out}/failed/)")
    results = []
    for env in envs:
        for method in cfg.methods:
            key = SearchKey(checkpoint, env.task, method)
            log(f"search {checkpoint} / {env.task} / {method} -> {out}")
            result = run_search(key, cfg.search, env, out, log=log)
            results.append((env.task, method, result))
    return results
