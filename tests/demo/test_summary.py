"""The demo's verdict (demo/summary.py) on records made by the fake trainer (probe/simulate.py)."""

from __future__ import annotations

import dataclasses

from demo.summary import Cell, TaskTrend, summarize_run
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
    assert trends["falls"].first_and_last == (0, 600) and trends["falls"].fell is True
    assert trends["rises"].fell is False
    assert trends["late"].cells[0].text() == "n/c" and trends["late"].fell is None
    verdict = summary.verdict()
    assert verdict.startswith("d90 fell for 1 of 3 tasks")
    assert "did not fall for rises" in verdict and "cannot tell for late" in verdict
    md = summary.markdown()
    assert "| falls | > 32,768 |" in md and md.count("\n| ") == 4  # header + 3 tasks


def test_d90_is_the_bracket_top_and_a_running_search_is_not_judged():
    recs = search(0, "t", Curve(d_star=3000)) + search(300, "t", Curve(d_star=900))[:2]
    trend = summarize_run(recs, d_max=CFG["d_max"]).trends[0]
    assert trend.cells[300].text() == "..." and trend.fell is None
    d90 = trend.cells[0].d90
    assert d90 is not None and 3000 <= d90 <= 2 * 3000


def test_not_reached_compares_above_any_measured_d90():
    top = Cell("not_reached", None, 1000)
    assert top.comparable is not None and top.comparable > 1000
    trend = TaskTrend("t", {0: top, 10: Cell("done", 1000, 1000)})
    assert trend.fell is True
    assert TaskTrend("t", {0: top, 10: Cell("not_reached", None, 1000)}).fell is False


def test_markdown_points_at_the_trajectory_png(tmp_path):
    recs = search(0, "t", Curve(d_star=3000))
    figures = [tmp_path / "d90_trajectory.png", tmp_path / "d90_trajectory.pdf", tmp_path / "x.png"]
    md = summarize_run(recs, d_max=CFG["d_max"]).markdown(figures)
    assert f"The trajectory (Figure 2): {tmp_path / 'd90_trajectory.png'}" in md
    assert "d90_trajectory, x" in md and ".pdf" not in md
