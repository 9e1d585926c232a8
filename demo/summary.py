"""The demo's closing summary: d90 per task over pretraining, and whether it fell.

The paper's claim (Figure 2) is that pretraining lowers d90. The demo's test of it, per task:
is d90 at the last checkpoint below d90 at the first checkpoint where d90 is computable (full
fine-tuning beats the majority class)? A search that reached no d up to d_max counts as
"d90 > d_max", a lower bound, which is enough to compare against a measured d90 below d_max.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from probe.records import Record
from probe.report import d90_rows, updates_of


@dataclass(frozen=True)
class Cell:
    status: str  # done | not_reached | not_computable | running | failed
    d90: int | None
    d_max: int

    @property
    def comparable(self) -> float | None:
        """A number to compare checkpoints by: d90, or just above d_max when not reached."""
        if self.status == "done" and self.d90 is not None:
            return float(self.d90)
        if self.status == "not_reached":
            return self.d_max + 0.5
        return None

    def text(self) -> str:
        if self.status == "done" and self.d90 is not None:
            return f"{self.d90:,}"
        return {
            "not_reached": f"> {self.d_max:,}",
            "not_computable": "n/c",
            "failed": "failed",
        }.get(self.status, "...")


@dataclass(frozen=True)
class TaskTrend:
    task: str
    cells: dict[int, Cell]  # updates -> cell

    @property
    def first_and_last(self) -> tuple[int, int] | None:
        """(updates of the first computable checkpoint, updates of the last checkpoint)."""
        computable = [u for u, c in sorted(self.cells.items()) if c.comparable is not None]
        if len(computable) < 2:
            return None
        return computable[0], max(self.cells)

    @property
    def fell(self) -> bool | None:
        """True/False once both ends are known; None when it cannot be told."""
        ends = self.first_and_last
        if ends is None:
            return None
        first, last = (self.cells[u].comparable for u in ends)
        if first is None or last is None:
            return None
        return last < first


@dataclass(frozen=True)
class RunSummary:
    method: str
    updates: list[int]
    trends: list[TaskTrend]

    def verdict(self) -> str:
        fell = [t.task for t in self.trends if t.fell]
        rose = [t.task for t in self.trends if t.fell is False]
        unknown = [t.task for t in self.trends if t.fell is None]
        parts = [f"d90 fell for {len(fell)} of {len(self.trends)} tasks"]
        if rose:
            parts.append(f"did not fall for {', '.join(rose)}")
        if unknown:
            parts.append(f"cannot tell for {', '.join(unknown)} (too few computable checkpoints)")
        return "; ".join(parts)

    def markdown(self, figures: Sequence[Path] = ()) -> str:
        head = ["task", *(f"update {u:,}" for u in self.updates), "fell?"]
        lines = [
            f"## d90 ({self.method.upper()}) over pretraining",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "---|" * len(head),
        ]
        for t in self.trends:
            cells = [t.cells[u].text() if u in t.cells else "" for u in self.updates]
            mark = {True: "yes", False: "no", None: "?"}[t.fell]
            lines.append("| " + " | ".join([t.task, *cells, mark]) + " |")
        lines += [
            "",
            "n/c: not computable (90% of full fine-tuning did not beat the majority class); "
            "> N: no d up to N reached 90% of full fine-tuning.",
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
            cells[updates] = Cell(r["status"], r["d90"], d_max)
    updates_seen = sorted({u for cells in by_task.values() for u in cells})
    trends = [TaskTrend(task, cells) for task, cells in sorted(by_task.items())]
    return RunSummary(method, updates_seen, trends)
