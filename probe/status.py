"""`intdim status`: one row per (checkpoint, task, method), derived from the records alone.

    rows = summarize(read_records(out_dir), cfg)
    print(format_status_table(rows))

The d90, bracket and state of each search come from `search_state`, the same replay the driver
uses, so the table can never disagree with what the driver will do next. Full fine-tuning has a
row of its own (method "full"): it is shared by the DID and SAID searches of a checkpoint and
task, and its compute is counted once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from probe.records import Record
from probe.search import (
    SUBSPACE_METHODS,
    SearchConfig,
    SearchKey,
    full_state,
    natural_key,
    search_state,
)

COLUMNS = ("checkpoint", "task", "method", "full", "majority", "thresh", "d90", "bracket",
           "status", "runs", "pending", "steps", "wall")  # fmt: skip

_natural = natural_key  # checkpoint_9000 before checkpoint_10000


def summarize(
    records: Iterable[Record],
    cfg: SearchConfig | None = None,
    methods: Sequence[str] | None = None,
    hint_records: Iterable[Record] = (),
    only: Iterable[tuple[str, str]] | None = None,
) -> list[dict[str, Any]]:
    """Rows in checkpoint (natural order), task, method order.

    Each row: checkpoint, task, method, metric, full_metric, majority (the majority class's
    eval value), threshold, d90, lo, hi, status (running | done | not_reached | not_computable
    | failed), reason, runs ({ok, unstable, failed}), pending (runs the search still needs),
    rounds, steps and wall_seconds spent. `methods` adds rows for searches that have not started
    yet (e.g. ["said"]). `records` may span a whole OUT (LR hints come from other checkpoints);
    `only` limits the rows to some (checkpoint, task) pairs.
    """
    cfg = cfg or SearchConfig()
    records = list(records)
    hint_records = list(hint_records)
    wanted_pairs = None if only is None else set(only)
    groups: dict[tuple[str, str], dict[str, list[Record]]] = {}
    for r in records:
        if wanted_pairs is None or (r.checkpoint, r.task) in wanted_pairs:
            groups.setdefault((r.checkpoint, r.task), {}).setdefault(r.method, []).append(r)
    rows = []
    for (checkpoint, task), by_method in groups.items():
        wanted = set(by_method) | {"full"} | set(methods or ())
        for method in sorted(wanted, key=("full", *SUBSPACE_METHODS).index):
            own = [r for r in by_method.get(method, []) if r.seed == cfg.seed]
            if method == "full":
                state = full_state(records, cfg, checkpoint, task)
            else:
                key = SearchKey(checkpoint, task, method)
                state = search_state(records, cfg, key, hint_records=hint_records)
            result = state.result
            if method == "full" and result is None and not state.pending:
                status, reason = "done", ""
            elif result is None:
                status, reason = "running", ""
            else:
                status, reason = result.status, result.reason
            metric = next((r.metric for r in own), None) or next(
                (r.metric for r in by_method.get("full", [])), "accuracy"
            )
            rows.append(
                {
                    "checkpoint": checkpoint,
                    "task": task,
                    "method": method,
                    "metric": metric,
                    "full_metric": state.full_metric,
                    "majority": state.majority,
                    "threshold": state.threshold,
                    "d90": result.d90 if result else None,
                    "lo": state.lo if method != "full" else None,
                    "hi": state.hi if method != "full" else None,
                    "status": status,
                    "reason": reason,
                    "runs": {
                        s: sum(r.status == s for r in own) for s in ("ok", "unstable", "failed")
                    },
                    # full runs a search waits for are counted on the full row only
                    "pending": sum(s.method == method for s in state.pending),
                    "rounds": state.rounds,
                    "steps": sum(r.steps for r in own),
                    "wall_seconds": sum(r.wall_seconds for r in own),
                }
            )
    rows.sort(key=row_key)
    return rows


def row_key(row: dict[str, Any]) -> tuple[Any, ...]:
    """Table order: checkpoints in natural order, then task, then full before did before said."""
    return (
        _natural(row["checkpoint"]),
        row["task"],
        ("full", *SUBSPACE_METHODS).index(row["method"]),
    )


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def _d(x: int | None) -> str:
    return "-" if x is None else f"{x:,}"


def _wall(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _cells(row: dict[str, Any]) -> list[str]:
    runs = row["runs"]
    if row["method"] == "full":
        bracket = "-"
    elif row["status"] == "not_reached":
        bracket = f"> {_d(row['lo'])}"  # even d_max did not reach
    elif row["status"] == "done" and row["lo"] is None:
        bracket = f"<= {_d(row['hi'])}"  # d_min itself reached
    elif row["lo"] is None and row["hi"] is None:
        bracket = "-"
    else:
        bracket = f"[{_d(row['lo'])}, {_d(row['hi'])}]"
    return [
        row["checkpoint"],
        row["task"],
        row["method"],
        _num(row["full_metric"]),
        _num(row.get("majority")),
        _num(row["threshold"]),
        _d(row["d90"]),
        bracket,
        row["status"],
        f"{runs['ok']}/{runs['unstable']}/{runs['failed']}",
        str(row["pending"]) if row["pending"] else "-",
        f"{row['steps']:,}",
        _wall(row["wall_seconds"]),
    ]


def format_status_table(rows: Sequence[dict[str, Any]]) -> str:
    """A fixed-width table for the terminal; reasons (not computable, failed) follow as notes.
    runs = ok/unstable/failed; bracket = [lo, hi] of the d90 search (d90 = hi when done)."""
    if not rows:
        return "no records yet"
    table = [list(COLUMNS)] + [_cells(r) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [
        f"  {r['checkpoint']} {r['task']} {r['method']}: {r['reason']}" for r in rows if r["reason"]
    ]
    if notes:
        lines += ["", "notes:", *notes]
    return "\n".join(lines)
