"""The demo's two progress bars: pretraining updates, and d90 searches settled.

Both are read from what the jobs leave on disk (RUN/train_log.jsonl, the records and the
watcher's journal), so they show the truth whichever process did the work, resumes included.
"""

from __future__ import annotations

import json
from pathlib import Path

from tqdm import tqdm

from probe.commands import status_rows
from probe.records import read_records

SETTLED = ("done", "not_reached", "not_computable", "failed")


def last_update(run: Path) -> int:
    """The newest update in RUN/train_log.jsonl (0 before the first), read from the file's end."""
    path = run / "train_log.jsonl"
    if not path.is_file():
        return 0
    with path.open("rb") as f:
        f.seek(0, 2)
        f.seek(max(f.tell() - 4096, 0))
        lines = f.read().decode("utf-8", errors="replace").splitlines()
    for line in reversed(lines):
        try:
            return int(json.loads(line)["update"])
        except (ValueError, KeyError, TypeError):
            continue  # a line being written, or the tail of one cut by the seek
    return 0


class DemoProgress:
    def __init__(self, run: Path, pretrain_cfg, probe_cfg) -> None:
        self.run = run
        self.out = run / "probe"
        total = pretrain_cfg.max_updates
        n_checkpoints = total // pretrain_cfg.save_interval_updates + int(
            pretrain_cfg.save_initial_checkpoint
        )
        self.methods = list(probe_cfg.methods)
        self.searches = n_checkpoints * len(probe_cfg.tasks) * len(self.methods)
        self.pretrain = tqdm(total=total, desc="pretrain", unit="upd", dynamic_ncols=True)
        self.probe = tqdm(total=self.searches, desc="d90 searches", unit="search", position=1,
                          dynamic_ncols=True)  # fmt: skip

    def update(self, journal) -> None:
        done = (self.run / "DONE").is_file()
        upd = self.pretrain.total if done else last_update(self.run)
        self.pretrain.update(max(upd - self.pretrain.n, 0))
        records = read_records(self.out) if self.out.is_dir() else []
        rows = status_rows(records)
        searches: dict[tuple[str, str, str], str] = {}
        for r in rows:
            if r["method"] != "full":
                searches[(r["checkpoint"], r["task"], r["method"])] = r["status"]
        for r in rows:
            # a checkpoint whose full fine-tuning is not computable settles all its searches
            if r["method"] == "full" and r["status"] == "not_computable":
                for method in self.methods:
                    searches.setdefault((r["checkpoint"], r["task"], method), "not_computable")
        settled = sum(status in SETTLED for status in searches.values())
        self.probe.update(max(min(settled, self.searches) - self.probe.n, 0))
        self.probe.set_postfix(runs=len(records), in_flight=len(journal.in_flight()), refresh=False)
        self.probe.refresh()

    def close(self) -> None:
        self.pretrain.close()
        self.probe.close()
