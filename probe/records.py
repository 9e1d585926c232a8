"""The results store: one JSON file per finished run under OUT/records/. Records are the single
source of truth: the d90 search, `intdim status` and the plots are all derived from them.

    rec = Record(checkpoint="checkpoint_20000", task="mrpc", method="said", d=1000, lr=1e-2,
                 seed=0, status="ok", eval_value=0.81, train_value=0.85, steps=1200, ...)
    write_record(out_dir, rec)          # OUT/records/<run_id>.json, atomically
    read_records(out_dir)               # every record, oldest schema first understood

Why the file name is a hash of (checkpoint, task, method, d, lr, seed): the same run always lands
on the same file, so concurrent writers of different runs never collide, a rerun replaces its
record instead of adding a duplicate, and the driver can ask "is this run done?" by file name.

Schema versions are "MAJOR.MINOR". A reader accepts any minor version of its major (fields it
does not know are kept in `extra` and written back unchanged) and refuses a newer major, whose
meaning it cannot know.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from intdim.errors import UserError
from intdim.io import atomic_write_json

SCHEMA_VERSION = "1.0"
METHODS = ("full", "did", "said")
STATUSES = ("ok", "unstable", "failed")
RECORDS_DIR = "records"


def run_id(
    checkpoint: str,
    task: str,
    method: str,
    d: int | None,
    lr: float,
    seed: int,
    early_stop: bool = False,
) -> str:
    """Deterministic id of a run. lr goes through float() so 1e-3 and 0.001 are the same run.

    A run stopped at the threshold (`early_stop`, a search's run) and one trained to its budget
    (a sweep's, or the d90 run retrained for Figures 4-5) at the same point are different runs.
    """
    fields = [str(checkpoint), str(task), str(method), d, float(lr), int(seed)]
    key = json.dumps(fields + (["stop_at"] if early_stop else []))
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:20]


def run_id_of(run: Any) -> str:
    """The id of a Record or a RunSpec (anything with their identity fields)."""
    return run_id(run.checkpoint, run.task, run.method, run.d, run.lr, run.seed,
                  run.stop_at is not None)  # fmt: skip


def software_versions() -> dict[str, str]:
    """Versions that can change a result; read from package metadata (no heavy imports)."""
    from intdim import __version__

    out = {"intdim": __version__, "python": platform.python_version()}
    for pkg in ("torch", "transformers", "datasets"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out


def _finite_or_none(x: Any) -> float | None:
    # JSON has no NaN; an unstable run's metric is stored as null instead.
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class Record:
    checkpoint: str  # checkpoint id: the checkpoint directory name, or a hub model id
    task: str
    method: str  # full | did | said
    d: int | None  # None for full fine-tuning
    lr: float
    seed: int
    status: str  # ok | unstable (loss turned NaN/inf) | failed (an error; see `error`)
    metric: str = "accuracy"  # name of the task's primary metric
    eval_value: float | None = None  # best eval value of the run (the kept checkpoint)
    train_value: float | None = None  # train metric at that same evaluation
    eval_metrics: dict[str, float] = field(default_factory=dict)  # all task metrics there
    steps: int = 0  # optimizer steps taken (early stopping makes this smaller)
    wall_seconds: float = 0.0
    error: str | None = None
    stop_at: float | None = None  # the early-stopping target the run was given, if any
    majority_baseline: float | None = None  # eval accuracy of the majority class (full runs)
    config: dict[str, Any] = field(default_factory=dict)  # the resolved config of the run
    software: dict[str, str] = field(default_factory=dict)
    finished_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    schema_version: str = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)  # fields from newer minor versions

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UserError(
                f"record method must be one of {', '.join(METHODS)}, not {self.method!r}"
            )
        if self.status not in STATUSES:
            raise UserError(
                f"record status must be one of {', '.join(STATUSES)}, not {self.status!r}"
            )
        if (self.method == "full") != (self.d is None):
            raise UserError("record d must be null for full fine-tuning and an integer otherwise")
        if self.d is not None and (
            not isinstance(self.d, int) or isinstance(self.d, bool) or self.d < 1
        ):
            raise UserError(f"record d must be a positive integer, got {self.d!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise UserError(f"record lr must be a positive number, got {self.lr!r}")
        if self.status == "failed" and not self.error:
            raise UserError("a failed record must say why in `error`")
        object.__setattr__(self, "lr", float(self.lr))
        object.__setattr__(self, "eval_value", _finite_or_none(self.eval_value))
        object.__setattr__(self, "train_value", _finite_or_none(self.train_value))
        if self.status == "ok" and self.eval_value is None:
            raise UserError("an ok record needs a finite eval_value")

    @property
    def run_id(self) -> str:
        return run_id_of(self)

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        out.update(self.extra)  # unknown newer fields go back out as they came in
        out["run_id"] = self.run_id  # for humans and grep; recomputed, never trusted, on read
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any], where: str = "record") -> Record:
        if not isinstance(obj, dict):
            raise UserError(f"{where} is not a JSON object")
        version = obj.get("schema_version")
        major = _major(version, where)
        ours = _major(SCHEMA_VERSION, "this intdim")
        if major > ours:
            raise UserError(
                f"{where} has schema version {version}, newer than this intdim understands "
                f"({ours}.x); upgrade intdim to read it"
            )
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in obj.items() if k in names}
        extra = {k: v for k, v in obj.items() if k not in names and k != "run_id"}
        required = ("checkpoint", "task", "method", "d", "lr", "seed", "status")
        missing = [k for k in required if k not in known]
        if missing:
            raise UserError(f"{where} lacks required field(s): {', '.join(missing)}")
        known.setdefault("finished_at", "")
        try:
            return cls(**known, extra=extra)
        except UserError as e:
            raise UserError(f"{where}: {e}") from None
        except (TypeError, ValueError) as e:
            raise UserError(f"{where}: bad field value ({e})") from None


def _major(version: Any, where: str) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        raise UserError(f"{where} has no valid schema_version (got {version!r})") from None


def records_dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / RECORDS_DIR


def record_path(out_dir: str | Path, rid: str) -> Path:
    return records_dir(out_dir) / f"{rid}.json"


def write_record(out_dir: str | Path, record: Record) -> Path:
    """Write (or replace) the record of one run, atomically: temp file, fsync, rename."""
    path = record_path(out_dir, record.run_id)
    atomic_write_json(path, record.to_json())
    return path


FAILED_DIR = "failed"  # failed records set aside for a retry: OUT/failed/<run_id>.<time>.json


def set_aside_failed(
    out_dir: str | Path, which: Callable[[Record], bool] = lambda r: True
) -> list[str]:
    """Move the failed records that `which` selects out of OUT/records (into OUT/failed, kept for
    their error message), so that the search asks for those runs again: a failure's cause
    (a wrong device, a full disk, a bug since fixed) may be gone. Returns their run ids.

    Drivers call it once when they start, never in their loop: a run that fails again stays
    failed until the next start, so a deterministic error is not retried forever."""
    moved = []
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    for rec in read_records(out_dir):
        if rec.status != "failed" or not which(rec):
            continue
        target = Path(out_dir) / FAILED_DIR / f"{rec.run_id}.{stamp}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(record_path(out_dir, rec.run_id), target)
        moved.append(rec.run_id)
    return moved


def has_record(out_dir: str | Path, rid: str) -> bool:
    return record_path(out_dir, rid).is_file()


def read_records(out_dir: str | Path) -> list[Record]:
    """Every record under OUT/records/, in a stable order. No directory yet means no records."""
    folder = records_dir(out_dir)
    if not folder.is_dir():
        return []
    out = []
    # Temp files of in-flight writes are hidden (".name.tmp") and end in .tmp: never matched.
    for path in sorted(folder.glob("*.json")):
        if path.name.startswith("."):
            continue
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(
                f"record {path} is not valid JSON ({e}); delete it to rerun that run"
            ) from None
        out.append(Record.from_json(obj, where=f"record {path}"))
    out.sort(key=lambda r: (r.checkpoint, r.task, r.method, r.d or 0, r.lr, r.seed))
    return out
