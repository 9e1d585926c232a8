"""The demo's progress bars (demo/progress.py), read from a run directory's files."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

from demo.progress import DemoProgress, last_update
from probe.records import write_record
from probe.search import SearchConfig, SearchKey
from probe.simulate import Curve, drive

CFG = dict(d_min=64, d_max=4096, ratio=2.0)


def _search(updates, task, curve, majority=0.5, rounds=None):
    key = SearchKey(f"checkpoint_{updates}", task, "said")
    recs = drive(SearchConfig(**CFG), key, curve, majority=majority).records
    recs = recs if rounds is None else recs[:rounds]
    return [dataclasses.replace(r, config={"search": CFG, "methods": ["said"]}) for r in recs]


def test_last_update_reads_the_newest_whole_line(tmp_path):
    assert last_update(tmp_path) == 0
    lines = [json.dumps({"update": u, "loss": 1.0}) for u in range(1, 2000)]
    (tmp_path / "train_log.jsonl").write_text("\n".join(lines) + '\n{"update": 20')  # mid-write
    assert last_update(tmp_path) == 1999


def test_searches_settle_when_done_not_reached_or_not_computable(tmp_path):
    run = tmp_path / "run"
    out = run / "probe"
    for r in (
        _search(0, "a", Curve(d_star=500))  # done
        + _search(0, "b", Curve(full=0.6), majority=0.7)  # not computable: settled
        + _search(10, "a", Curve(d_star=300), rounds=2)  # still running
    ):
        write_record(out, r)
    pcfg = SimpleNamespace(max_updates=20, save_interval_updates=10, save_initial_checkpoint=True)
    qcfg = SimpleNamespace(tasks=["a", "b"], methods=["said"])
    progress = DemoProgress(run, pcfg, qcfg)
    (run / "train_log.jsonl").write_text('{"update": 7}\n')
    progress.update(SimpleNamespace(in_flight=lambda: {"x": 1}))
    assert progress.searches == 3 * 2  # checkpoints 0, 10, 20 x two tasks
    assert progress.probe.n == 2 and progress.pretrain.n == 7
    (run / "DONE").write_text("")
    progress.update(SimpleNamespace(in_flight=lambda: {}))
    assert progress.pretrain.n == 20
    progress.close()
