"""Status rows and the terminal table, derived from records only."""

from __future__ import annotations

from probe.records import Record, read_records, write_record
from probe.search import SearchConfig, SearchKey, plan_next
from probe.simulate import Curve, StepModel, drive, fake_run
from probe.status import format_status_table, summarize


def full(checkpoint: str, task: str, value: float, majority: float = 0.5, **kw) -> Record:
    return Record(
        checkpoint,
        task,
        "full",
        None,
        2e-5,
        0,
        "ok",
        eval_value=value,
        majority_baseline=majority,
        steps=500,
        wall_seconds=60.0,
        **kw,
    )


def test_rows_for_finished_running_and_not_computable_searches(tmp_path):
    cfg = SearchConfig(full_lrs=[2e-5])
    done = drive(cfg, SearchKey("checkpoint_20000", "mrpc", "said"), Curve(d_star=1000))
    # a second search, killed after two rounds of subspace runs
    key = SearchKey("checkpoint_9000", "mrpc", "said")
    recs: list[Record] = []
    for _ in range(3):
        todo = plan_next(recs, cfg, key)
        recs += [fake_run(s, Curve(d_star=5000), StepModel()) for s in todo]
    bad = [full("checkpoint_9000", "rte", 0.51, majority=0.53)]
    for r in done.records + recs + bad:
        write_record(tmp_path, r)

    rows = summarize(read_records(tmp_path), cfg)
    by = {(r["checkpoint"], r["task"], r["method"]): r for r in rows}
    # natural checkpoint order: 9000 before 20000; full before said
    assert [(r["checkpoint"], r["task"], r["method"]) for r in rows] == [
        ("checkpoint_9000", "mrpc", "full"),
        ("checkpoint_9000", "mrpc", "said"),
        ("checkpoint_9000", "rte", "full"),
        ("checkpoint_20000", "mrpc", "full"),
        ("checkpoint_20000", "mrpc", "said"),
    ]
    fin = by[("checkpoint_20000", "mrpc", "said")]
    assert fin["status"] == "done" and fin["d90"] == done.result.d90
    assert (fin["lo"], fin["hi"]) == (done.result.lo, done.result.hi)
    assert fin["full_metric"] == 0.88 and abs(fin["threshold"] - 0.792) < 1e-12
    sub = [r for r in done.records if r.method == "said"]
    assert fin["runs"] == {"ok": len(sub), "unstable": 0, "failed": 0}
    assert fin["steps"] == sum(r.steps for r in sub) and fin["pending"] == 0

    run = by[("checkpoint_9000", "mrpc", "said")]
    # the third round is below 10^4, with no earlier checkpoint's hints: the whole LR grid
    assert run["status"] == "running" and run["d90"] is None and run["pending"] == len(cfg.lrs)
    assert run["lo"] == 1414 and run["hi"] == 20000  # bracket after two rounds (d* = 5000)

    nc = by[("checkpoint_9000", "rte", "full")]
    assert nc["status"] == "not_computable" and "majority class" in nc["reason"]
    fr = by[("checkpoint_20000", "mrpc", "full")]
    assert fr["status"] == "done" and fr["runs"]["ok"] == 1 and fr["d90"] is None

    table = format_status_table(rows)
    lines = table.splitlines()
    assert lines[0].split() == [
        "checkpoint",
        "task",
        "method",
        "full",
        "majority",
        "thresh",
        "d90",
        "bracket",
        "status",
        "runs",
        "pending",
        "steps",
        "wall",
    ]
    said_line = next(line for line in lines if "checkpoint_20000" in line and "said" in line)
    assert f"{done.result.d90:,}" in said_line and "done" in said_line
    assert f"[{done.result.lo:,}, {done.result.hi:,}]" in said_line
    assert "notes:" in table and "does not beat the majority class" in table
    assert "0.5000" in said_line  # the majority class's accuracy, beside full and threshold


def test_pending_full_runs_show_on_the_full_row_only():
    rows = summarize([], SearchConfig(full_lrs=[2e-5]), methods=["said"])
    assert rows == []  # no records: nothing is known about any checkpoint
    recs = [Record("c", "t", "said", 100, 1e-2, 0, "ok", eval_value=0.7)]  # full not done yet
    by = {r["method"]: r for r in summarize(recs, SearchConfig(full_lrs=[1e-5, 2e-5]))}
    assert by["full"]["status"] == "running" and by["full"]["pending"] == 2
    assert by["said"]["status"] == "running" and by["said"]["pending"] == 0


def test_methods_adds_rows_for_searches_not_started():
    rows = summarize([full("c", "t", 0.9)], SearchConfig(full_lrs=[2e-5]), methods=["did", "said"])
    assert [r["method"] for r in rows] == ["full", "did", "said"]
    assert rows[1]["status"] == "running" and rows[1]["pending"] == 1  # the first midpoint


def test_counts_unstable_and_failed_and_compute():
    recs = [
        full("c", "t", 0.9),
        Record("c", "t", "said", 20000, 1e-2, 0, "unstable", steps=10, wall_seconds=5.0),
        Record("c", "t", "said", 1000, 1e-2, 0, "failed", error="OOM", steps=0, wall_seconds=2.5),
        Record("c", "t", "said", 1000, 3e-2, 0, "ok", eval_value=0.6, steps=90, wall_seconds=30),
    ]
    (_, said) = summarize(recs, SearchConfig(full_lrs=[2e-5]))
    assert said["runs"] == {"ok": 1, "unstable": 1, "failed": 1}
    assert said["steps"] == 100 and said["wall_seconds"] == 37.5


def test_not_reached_and_d_min_brackets_in_the_table():
    cfg = SearchConfig(full_lrs=[2e-5])
    nr = drive(cfg, SearchKey("a", "t", "said"), Curve(d_star=9e6)).records
    low = drive(cfg, SearchKey("b", "t", "said"), Curve(d_star=50)).records
    table = format_status_table(summarize(nr + low, cfg))
    assert "> 4,000,000" in table and "not_reached" in table
    assert "<= 100" in table
    assert format_status_table([]) == "no records yet"
