"""Entry points of `intdim d90`, `intdim probe` and `intdim status` (intdim/cli.py parses).

Each one builds a `ProbeConfig` (defaults <- YAML <- the command's flags <- key=value), checks
everything that can be checked before any training (probe.driver.preflight), then runs the
searches in this process. Records under OUT are the whole state: rerunning a command after a
kill re-runs nothing that finished.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from intdim.config import load_config
from intdim.errors import UserError
from probe.config import ProbeConfig
from probe.driver import checkpoint_id, hint_records, result_line, search_all
from probe.encode import model_location
from probe.records import Record, read_records
from probe.search import SearchConfig
from probe.status import format_status_table, row_key, summarize


def _search_file(path: str) -> dict[str, Any]:
    """A SearchConfig YAML (configs/probe/search.yaml) as the `search` section."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"search config {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise UserError(f"search config {p} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UserError(f"search config {p} must hold a mapping of keys")
    return {"search": data}


def d90(
    model: str,
    task: str,
    out: str,
    method: str = "said",
    data_dir: str | None = None,
    max_train_examples: int | None = None,
    max_eval_examples: int | None = None,
    d_min: int | None = None,
    d_max: int | None = None,
    seed: int | None = None,
    config: str | None = None,
    search: str | None = None,
    overrides: Sequence[str] = (),
) -> int:
    flags: dict[str, Any] = {"tasks": [task], "methods": [method], "out": out}
    if data_dir is not None:
        flags["data_dirs"] = {task: data_dir}
    for name, value in (("max_train_examples", max_train_examples),
                        ("max_eval_examples", max_eval_examples)):  # fmt: skip
        if value is not None:
            flags[name] = value
    search_flags = {k: v for k, v in (("d_min", d_min), ("d_max", d_max), ("seed", seed))
                    if v is not None}  # fmt: skip
    if search_flags:
        flags["search"] = search_flags
    layers = [_search_file(search)] if search else []
    cfg = load_config(ProbeConfig, config, overrides, values=[*layers, flags])
    location = model_location(model)
    ckpt = cfg.checkpoint_id or checkpoint_id(location)
    assert cfg.out is not None
    results = search_all(cfg, location, ckpt, cfg.out)
    name, _, result = results[-1]
    print(result_line(name, method, result), flush=True)
    return 1 if result.status == "failed" else 0


def default_out(checkpoint: Path) -> Path:
    """RUN/checkpoints/checkpoint_N -> RUN/probe: every checkpoint's records in one place."""
    return checkpoint.resolve().parent.parent / "probe"


def probe(checkpoint: str, config: str, overrides: Sequence[str] = ()) -> int:
    cfg = load_config(ProbeConfig, config, overrides)
    ckpt_dir = Path(checkpoint)
    if not ckpt_dir.is_dir():
        raise UserError(f"checkpoint directory {ckpt_dir} does not exist")
    out = Path(cfg.out) if cfg.out else default_out(ckpt_dir)
    ckpt = cfg.checkpoint_id or ckpt_dir.resolve().name
    results = search_all(cfg, str(ckpt_dir.resolve()), ckpt, out)
    rows = [r for r in status_rows(read_records(out)) if r["checkpoint"] == ckpt]
    print(format_status_table(rows))
    print()
    for task, method, result in results:
        print(result_line(task, method, result), flush=True)
    return 1 if any(r.status == "failed" for _, _, r in results) else 0


def _search_config_of(records: Sequence[Record]) -> tuple[SearchConfig, list[str]]:
    """The search config and methods the newest record was made with (the replay must use the
    same rules the driver used); defaults for records without one."""
    newest = max(records, key=lambda r: r.finished_at)
    saved = newest.config
    if not isinstance(saved.get("search"), dict):
        return SearchConfig(), []
    cfg = load_config(SearchConfig, values=[saved["search"]])
    return cfg, list(saved.get("methods") or [])


def status_rows(records: Sequence[Record]) -> list[dict[str, Any]]:
    """Rows for every (checkpoint, task), each replayed with the search config of its records
    (over all the records: LR hints come from other checkpoints)."""
    groups: dict[tuple[str, str], list[Record]] = {}
    for r in records:
        groups.setdefault((r.checkpoint, r.task), []).append(r)
    rows = []
    for pair, group in groups.items():
        cfg, methods = _search_config_of(group)
        try:
            hints = hint_records(cfg)
        except UserError:  # the hints' directory is gone: frozen hints are in the records
            hints = []
        rows += summarize(records, cfg, methods, hints, only=[pair])
    rows.sort(key=row_key)
    return rows


def status(out: str, as_json: bool = False) -> int:
    folder = Path(out)
    if not folder.is_dir():
        raise UserError(f"{folder} does not exist; pass the --out of a d90 or probe run")
    if not (folder / "records").is_dir() and (folder / "probe").is_dir():
        folder = folder / "probe"  # a pretraining RUN_DIR: the watcher writes to RUN_DIR/probe
    rows = status_rows(read_records(folder))
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_status_table(rows))
    return 0
