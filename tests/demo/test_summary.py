"""The demo's verdict (demo/summary.py) on records made by the fake trainer (probe/simulate.py)."""

from __future__ import annotations

import dataclasses

from demo.summary import FELL, ROSE, SAME, Cell, TaskTrend, change, provenance, summarize_run
from probe.search import SearchConfig, SearchKey
from probe.simulate import Curve, drive

CFG = dict(d_min=64, d_max=32768, ratio=2.0)


def search(updates: int, task: str, curve: Curve, majority: float = 0.5):
    key = SearchKey(f"checkpoint_{updates}", task, "said")
    recs = drive(SearchConfig(**CFG), key, curve, majority=majority).records
    # the driver stores the search config in every record; reports replay the search with it
    return [dataclasses.replace(r, config={"search": CFG}) for r in recs]


class Flat(Curve):
    def __call__(self, d: int, lr: float) -> float:
        return 0.55  # never near the threshold: not reached at d_max


def test_falling_rising_and_unknown_trends_are_told_apart():
    recs = []
    recs += search(0, "falls", Flat())
    recs += search(300, "falls", Curve(d_star=8000))
    recs += search(600, "falls", Curve(d_star=1000))
    recs += search(0, "rises", Curve(d_star=500))
    recs += search(600, "rises", Curve(d_star=6000))
    recs += search(0, "late", Curve(full=0.6), majority=0.7)  # not computable
    recs += search(600, "late", Curve(d_star=700))
    summary = summarize_run(recs, d_max=CFG["d_max"])
    trends = {t.task: t for t in summary.trends}
    assert summary.updates == [0, 300, 600]
    assert trends["falls"].cells[0].text() == "> 32,768"
    assert trends["falls"].first_and_last == (0, 600) and trends["falls"].change == FELL
    assert [v for _, _, v in trends["falls"].steps] == [FELL, FELL]
    assert trends["rises"].change == ROSE
    assert trends["late"].cells[0].text() == "n/c" and trends["late"].change is None
    verdict = summary.verdict()
    assert verdict.startswith("d90 fell for 1 of 3 tasks")
    assert "rose for rises" in verdict and "cannot tell for late" in verdict
    md = summary.markdown()
    assert "| falls | > 32,768 |" in md and md.count("\n| ") == 4  # header + 3 tasks
    assert "| fell | ↓ ↓ |" in md


def test_d90_is_the_bracket_top_and_a_running_search_is_not_judged():
    recs = search(0, "t", Curve(d_star=3000)) + search(300, "t", Curve(d_star=900))[:2]
    trend = summarize_run(recs, d_max=CFG["d_max"]).trends[0]
    assert trend.cells[300].text() == "..." and trend.change is None
    d90 = trend.cells[0].d90
    assert d90 is not None and 3000 <= d90 <= 2 * 3000


def test_a_fall_needs_the_later_bracket_entirely_below_the_earlier():
    top = Cell("not_reached", None, 16384)
    # The case: "> 16,384" then d90 16,384 in [4,871, 16,384]: not distinguishable.
    assert change(top, Cell("done", 16384, 16384, lo=4871)) == SAME
    assert change(top, Cell("done", 4871, 16384, lo=1448)) == FELL
    assert change(top, Cell("not_reached", None, 16384)) == SAME
    # Adjacent brackets share an end: no change at this resolution, either way.
    a, b = Cell("done", 1448, 16384, lo=431), Cell("done", 431, 16384, lo=128)
    assert change(a, b) == SAME and change(b, a) == SAME
    assert change(a, Cell("done", 128, 16384, lo=None)) == FELL  # <= 128 is [0, 128]
    assert Cell("done", 128, 16384, lo=None).text() == "<= 128"
    assert change(Cell("done", 128, 16384), a) == ROSE
    trend = TaskTrend("t", {0: top, 400: a, 800: Cell("running", None, 16384), 1200: b})
    assert trend.change == FELL and [v for *_, v in trend.steps] == [FELL, SAME]


def test_markdown_points_at_the_trajectory_png(tmp_path):
    recs = search(0, "t", Curve(d_star=3000))
    figures = [tmp_path / "d90_trajectory.png", tmp_path / "d90_trajectory.pdf", tmp_path / "x.png"]
    md = summarize_run(recs, d_max=CFG["d_max"]).markdown(figures)
    assert f"The trajectory (Figure 2): {tmp_path / 'd90_trajectory.png'}" in md
    assert "d90_trajectory, x" in md and ".pdf" not in md


def test_the_table_says_which_code_and_machine_printed_it():
    line = provenance()
    assert line.startswith("Run ") and " UTC, intdim " in line and "CPU kernels " in line
    md = summarize_run(search(0, "t", Curve(d_star=3000)), d_max=CFG["d_max"]).markdown((), line)
    assert md.splitlines()[2] == line
