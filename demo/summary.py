"""The demo's closing summary: d90 per task over pretraining, and whether it fell.

The paper's claim (Figure 2) is that pretraining lowers d90. A search resolves d90 only to a
bracket [lo, hi] (hi: the smallest d that reached, lo: the largest below it that did not;
"<= d_min" is [0, d_min]; "> d_max" is [d_max, inf)), and reruns on another machine move d90 by
about a bracket. So the demo's rule, per task, is a skeptic's: d90 fell only if the last
checkpoint's bracket lies entirely below the first computable checkpoint's (its top is below the
other's bottom), rose only if entirely above, and otherwise did not change at this resolution.
The same rule judges each step between consecutive checkpoints.
"""

from __future__ import annotations

import datetime
import math
import os
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from probe.records import Record
from probe.report import d90_rows, updates_of

FELL, ROSE, SAME = "fell", "rose", "no change at this resolution"
_STEP_MARK = {FELL: "↓", ROSE: "↑", SAME: "="}


@dataclass(frozen=True)
class Cell:
    status: str  # done | not_reached | not_computable | running | failed
    d90: int | None
    d_max: int
    lo: int | None = None  # done: the largest d below d90 that did not reach; None: d90 = d_min

    @property
    def bracket(self) -> tuple[float, float] | None:
        """Where d90 lies, both ends included; None when the search did not settle on one."""
        if self.status == "done" and self.d90 is not None:
            return float(self.lo or 0), float(self.d90)
        if self.status == "not_reached":
            return float(self.d_max), math.inf
        return None

    def text(self) -> str:
        if self.status == "done" and self.d90 is not None:
            return f"{self.d90:,}" if self.lo is not None else f"<= {self.d90:,}"
        return {
            "not_reached": f"> {self.d_max:,}",
            "not_computable": "n/c",
            "failed": "failed",
        }.get(self.status, "...")


def change(before: Cell, after: Cell) -> str | None:
    """FELL / ROSE / SAME from `before` to `after` (the rule in the module docstring); None
    when either has no bracket."""
    a, b = before.bracket, after.bracket
    if a is None or b is None:
        return None
    if b[1] < a[0]:
        return FELL
    if a[1] < b[0]:
        return ROSE
    return SAME


@dataclass(frozen=True)
class TaskTrend:
    task: str
    cells: dict[int, Cell]  # updates -> cell

    @property
    def first_and_last(self) -> tuple[int, int] | None:
        """(updates of the first computable checkpoint, updates of the last checkpoint)."""
        settled = [u for u, c in sorted(self.cells.items()) if c.bracket is not None]
        if len(settled) < 2:
            return None
        return settled[0], max(self.cells)

    @property
    def change(self) -> str | None:
        """First computable checkpoint -> last: FELL, ROSE or SAME; None when it cannot be told."""
        ends = self.first_and_last
        if ends is None:
            return None
        return change(self.cells[ends[0]], self.cells[ends[1]])

    @property
    def steps(self) -> list[tuple[int, int, str]]:
        """(from, to, change) between consecutive checkpoints that both have a bracket."""
        settled = [u for u, c in sorted(self.cells.items()) if c.bracket is not None]
        out = []
        for u, v in zip(settled, settled[1:], strict=False):
            verdict = change(self.cells[u], self.cells[v])
            assert verdict is not None
            out.append((u, v, verdict))
        return out


@dataclass(frozen=True)
class RunSummary:
    method: str
    updates: list[int]
    trends: list[TaskTrend]

    def verdict(self) -> str:
        by = {v: [t.task for t in self.trends if t.change == v] for v in (FELL, ROSE, SAME, None)}
        parts = [f"d90 fell for {len(by[FELL])} of {len(self.trends)} tasks"]
        if by[ROSE]:
            parts.append(f"rose for {', '.join(by[ROSE])}")
        if by[SAME]:
            parts.append(f"no change at this resolution for {', '.join(by[SAME])}")
        if by[None]:
            parts.append(f"cannot tell for {', '.join(by[None])} (too few settled checkpoints)")
        return "; ".join(parts)

    def markdown(self, figures: Sequence[Path] = (), provenance: str = "") -> str:
        head = ["task", *(f"update {u:,}" for u in self.updates), "first -> last", "steps"]
        lines = [
            f"## d90 ({self.method.upper()}) over pretraining",
            "",
            *([provenance, ""] if provenance else []),
            "| " + " | ".join(head) + " |",
            "|" + "---|" * len(head),
        ]
        for t in self.trends:
            cells = [t.cells[u].text() if u in t.cells else "" for u in self.updates]
            steps = " ".join(_STEP_MARK[v] for _, _, v in t.steps) or "?"
            lines.append("| " + " | ".join([t.task, *cells, t.change or "?", steps]) + " |")
        lines += [
            "",
            "n/c: not computable (full fine-tuning did not beat the majority class); "
            "> N: no d up to N reached 90% of full fine-tuning; <= N: the smallest d tried "
            "reached it. A d90 is the top of its bracket: it fell (↓) only where the later "
            "bracket lies entirely below the earlier one, rose (↑) only where entirely above; "
            "= is no change at this resolution.",
            "",
            f"Finding: {self.verdict()}. (Paper, Figure 2: d90 falls as pretraining goes on.)",
        ]
        pngs = [Path(p) for p in figures if Path(p).suffix == ".png"]
        trajectory = [p for p in pngs if p.stem == "d90_trajectory"]
        if trajectory:
            lines += ["", f"The trajectory (Figure 2): {trajectory[0]}"]
        if pngs:
            names = ", ".join(p.stem for p in pngs)
            lines += [f"All figures (PNG and PDF) in {pngs[0].parent}: {names}"]
        return "\n".join(lines) + "\n"


def provenance(when: datetime.datetime | None = None) -> str:
    """Which code on which machine printed a table: a rerun elsewhere is compared against it.
    The CPU's kernel set (torch's ATen capability) is named because it changes float results,
    and with them d90 by about a bracket."""
    import torch

    from intdim import __version__
    from intdim.machine import cpu_name

    repo = Path(__file__).resolve().parents[1]
    try:
        git = ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"]
        commit = subprocess.run(git, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    cpu = cpu_name()
    when = when or datetime.datetime.now(datetime.timezone.utc)
    code = f"intdim {__version__}" + (f" (commit {commit})" if commit else "")
    return (
        f"Run {when:%Y-%m-%d %H:%M} UTC, {code}, on {cpu}, {os.cpu_count()} cores, torch "
        f"{torch.__version__}, CPU kernels {torch.backends.cpu.get_cpu_capability()}."
    )


def summarize_run(records: Iterable[Record], d_max: int, method: str = "said") -> RunSummary:
    rows = [
        r
        for r in d90_rows(records)
        if r["method"] in (method, "full") and updates_of(r["checkpoint"]) is not None
    ]
    by_task: dict[str, dict[int, Cell]] = {}
    for r in rows:
        updates = updates_of(r["checkpoint"])
        assert updates is not None
        cells = by_task.setdefault(r["task"], {})
        if r["method"] == "full":
            if r["status"] == "not_computable":
                cells[updates] = Cell("not_computable", None, d_max)
            continue
        if cells.get(updates, Cell("", None, d_max)).status != "not_computable":
            cells[updates] = Cell(r["status"], r["d90"], d_max, r.get("lo"))
    updates_seen = sorted({u for cells in by_task.values() for u in cells})
    trends = [TaskTrend(task, cells) for task, cells in sorted(by_task.items())]
    return RunSummary(method, updates_seen, trends)
