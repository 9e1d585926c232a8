"""The watcher's memory of what it submitted: OUT/journal/<run_id>.json, one file per run.

Records say what finished; the journal says what is in flight, so a watcher killed anywhere and
started again never submits a run twice. Each entry lists the run's attempts:

    {"run_id": "...", "attempts": [{"batch": "3f2a...", "index": 4, "job_id": "812_4",
                                    "submitted_at": 1700000000.0, "error": null}]}

The order of writes is what makes restarts safe:
1. before `sbatch`: an attempt with `job_id: null` and the batch token (the array's job name);
2. after it: the same attempt with the job id.
A restart that finds an attempt without a job id asks the scheduler for jobs named after its
batch (`Backend.find`): found -> the id is filled in; not found -> it was never submitted and is
dropped. An attempt that ended without a record gets its `error`; the watcher retries it or, after
the last retry, writes a failed record. Every write is atomic (intdim.io).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from intdim.io import atomic_write_json

JOURNAL_DIR = "journal"


@dataclass
class Attempt:
    batch: str  # token of the array it went out in; its job name is intdim-probe-<batch>
    index: int  # position in that array
    job_id: str | None = None  # None: written just before submission, not yet confirmed
    submitted_at: float = field(default_factory=time.time)
    error: str | None = None  # set when the job ended without a record
    finished: bool = False  # set when its record was seen

    @property
    def open(self) -> bool:
        return self.error is None and not self.finished


@dataclass
class Entry:
    run_id: str
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def current(self) -> Attempt | None:
        """The attempt in flight, if any."""
        return self.attempts[-1] if self.attempts and self.attempts[-1].open else None

    @property
    def failures(self) -> int:
        return sum(1 for a in self.attempts if a.error is not None)

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "attempts": [asdict(a) for a in self.attempts]}


class Journal:
    def __init__(self, out: str | Path) -> None:
        self.dir = Path(out) / JOURNAL_DIR
        self.entries: dict[str, Entry] = {}
        if self.dir.is_dir():
            for path in sorted(self.dir.glob("*.json")):
                obj = json.loads(path.read_text(encoding="utf-8"))
                attempts = [Attempt(**a) for a in obj.get("attempts", [])]
                self.entries[obj["run_id"]] = Entry(obj["run_id"], attempts)

    def get(self, run_id: str) -> Entry:
        return self.entries.setdefault(run_id, Entry(run_id))

    def save(self, entry: Entry) -> None:
        atomic_write_json(self.dir / f"{entry.run_id}.json", entry.to_json())

    def in_flight(self) -> dict[str, Attempt]:
        return {rid: e.current for rid, e in self.entries.items() if e.current is not None}
