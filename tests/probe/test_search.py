"""The d90 search, without training: synthetic curves drive plan_next through probe.simulate."""

from __future__ import annotations

import math
import random

import pytest

from intdim.config import load_config
from intdim.errors import UserError
from probe.records import Record, read_records, write_record
from probe.search import (
    RunSpec,
    SearchConfig,
    SearchKey,
    SearchResult,
    best_lrs,
    interior_points,
    plan_next,
    search_state,
    sweep_grid,
    threshold_for,
)
from probe.simulate import Curve, StepModel, drive, fake_run

KEY = SearchKey("checkpoint_1000", "mrpc", "said")
FULL = 0.88
THRESHOLD = 0.9 * FULL


def full_record(value: float = FULL, majority: float = 0.5, lr: float = 2e-5, **kw) -> Record:
    kw.setdefault("status", "ok")
    return Record(
        checkpoint=KEY.checkpoint,
        task=KEY.task,
        method="full",
        d=None,
        lr=lr,
        seed=0,
        eval_value=value if kw["status"] == "ok" else None,
        majority_baseline=majority,
        **kw,
    )


def full_records(value: float = FULL, majority: float = 0.5, **kw) -> list[Record]:
    """Full fine-tuning at every LR of the default grid (the search waits for all of them)."""
    return [full_record(value, majority, lr=lr, **kw) for lr in SearchConfig().full_lrs]


def sub_record(d: int, lr: float, value: float | None, status: str = "ok", **kw) -> Record:
    """A search run's record (stopped at the threshold, as the search asks)."""
    kw.setdefault("stop_at", THRESHOLD)
    return Record(
        checkpoint=KEY.checkpoint,
        task=KEY.task,
        method=KEY.method,
        d=d,
        lr=lr,
        seed=0,
        status=status,
        eval_value=value,
        error="boom" if status == "failed" else None,
        **kw,
    )


def true_crossing(curve: Curve, lr: float) -> float:
    """The real-valued d where curve(d, lr) crosses the threshold (bisection in log d)."""
    lo, hi = 1.0, 1e9
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if curve(round(mid), lr) >= THRESHOLD else (mid, hi)
    return hi


# ----------------------------------------------------------------------------- bracketing


@pytest.mark.parametrize("d_star", [150, 1000, 7_500, 37_000, 3_000_000])
def test_binary_search_brackets_a_monotone_curve(d_star):
    cfg = SearchConfig()
    out = drive(cfg, KEY, Curve(d_star=d_star))
    r = out.result
    assert r.status == "done"
    assert r.d90 == r.hi and r.hi / r.lo <= cfg.ratio
    assert r.lo < d_star <= r.hi + 1  # the true crossing lies in the bracket (integer rounding)
    assert r.threshold == pytest.approx(THRESHOLD) and r.full_metric == FULL
    # the paper's k = 1 binary search needs ceil(log2(ln(40000) / ln(1.25))) = 6 rounds here
    assert r.rounds == 6 and out.rounds == 8  # + the full fine-tuning round and the final run
    # the d90 run, trained again to its budget (Figures 4-5 read it)
    assert r.final is not None and (r.final.d, r.final.stop_at) == (r.d90, None)
    assert r.final.lr == {p.d: p.best_lr for p in r.points}[r.d90]
    # every resolved point agrees with the curve
    for p in r.points:
        assert (p.outcome == "reached") == (Curve(d_star=d_star)(p.d, p.best_lr) >= THRESHOLD)


def test_k_points_per_round_bracket_in_fewer_rounds():
    seen_rounds = []

    def check(todo, records):
        if todo[0].method != "full" and todo[0].stop_at is not None:  # not the final run
            seen_rounds.append(sorted({s.d for s in todo}))

    out1 = drive(SearchConfig(k=1), KEY, Curve(d_star=2345))
    out4 = drive(SearchConfig(k=4), KEY, Curve(d_star=2345), on_round=check)
    r = out4.result
    assert r.status == "done" and r.lo < 2345 <= r.hi and r.hi / r.lo <= 1.25
    assert out4.result.rounds < out1.result.rounds
    assert all(len(ds) == 4 for ds in seen_rounds)
    # round one splits [100, 4e6] at 4 log-spaced interior points
    first = seen_rounds[0]
    assert first == interior_points(100, 4_000_000, 4)
    logs = [math.log(d) for d in [100, *first, 4_000_000]]
    gaps = [b - a for a, b in zip(logs, logs[1:], strict=False)]
    assert max(gaps) - min(gaps) < 2e-3  # equal in log space up to integer rounding
    # each later round splits exactly one gap of the round before: the new bracket
    for prev, nxt in zip(seen_rounds, seen_rounds[1:], strict=False):
        edges = [100, *prev, 4_000_000]
        gaps_hit = {i for d in nxt for i in range(len(edges) - 1) if edges[i] < d < edges[i + 1]}
        assert len(gaps_hit) == 1


def test_interior_points_and_sweep_grid():
    assert interior_points(100, 10_000, 1) == [1000]
    assert interior_points(10, 10_000, 2) == [100, 1000]
    assert interior_points(5, 6, 3) == []  # no integer strictly between
    grid = sweep_grid(10, 10_000, 4)
    assert grid == [10, 100, 1000, 10_000]
    fine = sweep_grid(10, 10_000, 100)  # the paper's Figure 1 grid
    assert fine[0] == 10 and fine[-1] == 10_000 and fine == sorted(set(fine))
    assert 95 <= len(fine) <= 100  # rounding merges a few neighbours near d = 10


def test_d_min_already_reaches():
    r = drive(SearchConfig(), KEY, Curve(d_star=40)).result
    assert r.status == "done" and r.d90 == 100 and r.lo is None and r.hi == 100
    assert 100 in {p.d for p in r.points}  # d_min itself was tested, not assumed
    assert "d90 <= d_min" in r.reason


def test_just_above_d_min_tests_d_min_last():
    r = drive(SearchConfig(), KEY, Curve(d_star=110)).result
    assert r.status == "done" and r.lo == 100 and r.hi / r.lo <= 1.25
    assert {p.d: p.outcome for p in r.points}[100] == "not_reached"


def test_not_reached_tests_d_max():
    r = drive(SearchConfig(), KEY, Curve(d_star=9e6)).result
    assert r.status == "not_reached" and r.d90 is None and r.lo == 4_000_000
    assert r.points[-1].d == 4_000_000 and r.points[-1].outcome == "not_reached"


def test_d90_equal_to_d_max():
    r = drive(SearchConfig(), KEY, Curve(d_star=3_900_000)).result
    assert r.status == "done" and r.d90 == 4_000_000 and r.lo >= 4_000_000 / 1.25


# ----------------------------------------------------------------------------- noise


def test_noise_smallest_success_is_hi():
    # k = 3: round two splits [100, 1414] at 194, 376, 729. With d* = 300, 376 reaches; the
    # flipped 729 fails against the trend. The smallest success (376) stays hi.
    cfg = SearchConfig(k=3)
    second = interior_points(100, interior_points(100, 4_000_000, 3)[0], 3)
    assert second == [194, 376, 729]
    out = drive(cfg, KEY, Curve(d_star=300, flips={729: False}))
    r = out.result
    assert r.status == "done" and r.lo < 300 <= r.hi <= 376 and r.hi / r.lo <= 1.25
    assert r.noisy == (729,)  # the contradiction is reported, not silently dropped
    assert {p.d: p.outcome for p in r.points}[729] == "not_reached"


def test_noise_above_every_success_does_not_move_d90():
    # The failing point 20000 lies above 1414, which reached: d90 follows the smallest success.
    out = drive(SearchConfig(k=3), KEY, Curve(d_star=900, flips={20000: False}))
    assert out.result.status == "done" and out.result.lo < 900 <= out.result.hi
    assert out.result.noisy == (20000,)


def test_noisy_curve_still_brackets_its_own_outcomes():
    curve = Curve(d_star=3000, noise=0.01, seed=7)
    for k in (1, 2, 5):
        r = drive(SearchConfig(k=k), KEY, curve).result
        assert r.status == "done"
        outcome = {p.d: p.outcome for p in r.points}
        assert outcome[r.hi] == "reached" and outcome[r.lo] != "reached"
        assert r.hi / r.lo <= 1.25
        assert all(outcome[d] != "reached" for d in outcome if d < r.hi)  # hi is the smallest


# ----------------------------------------------------------------------------- learning rates


def lrs_by_d(records: list[Record]) -> dict[int, set[float]]:
    out: dict[int, set[float]] = {}
    for r in records:
        if r.method != "full":
            out.setdefault(r.d, set()).add(r.lr)
    return out


def test_lr_grid_at_every_d_below_and_fixed_above():
    cfg = SearchConfig(lrs=[1e-3, 3e-3, 1e-2, 3e-2], fixed_lr=5e-3, lr_reuse_below=10_000)
    curve = Curve(d_star=900, best_lr=3e-3, lr_penalty=0.02)
    out = drive(cfg, KEY, curve)
    by_d = lrs_by_d(out.records)
    above = {d: lrs for d, lrs in by_d.items() if d >= 10_000}
    below = {d: lrs for d, lrs in by_d.items() if d < 10_000}
    assert above and all(lrs == {5e-3} for lrs in above.values())
    # no LR hints (the first checkpoint): the whole grid at every d below 10^4 (paper, section 4)
    assert len(below) > 3 and all(len(lrs) == 4 for lrs in below.values())
    assert out.result.status == "done" and out.result.lo < 900 <= out.result.hi


def test_reuse_best_lr_is_the_grid_once_then_its_best():
    cfg = SearchConfig(lrs=[1e-3, 3e-3, 1e-2, 3e-2], fixed_lr=5e-3, reuse_best_lr=True)
    curve = Curve(d_star=900, best_lr=3e-3, lr_penalty=0.02)
    out = drive(cfg, KEY, curve)
    below = {d: lrs for d, lrs in lrs_by_d(out.records).items() if d < 10_000}
    grid_ds = [d for d, lrs in below.items() if len(lrs) == 4]
    assert grid_ds == [1414]  # the first point below 10^4 ran the whole grid
    # every later point below 10^4 reused the grid's best LR: 3e-3 reaches fastest there
    assert all(lrs == {3e-3} for d, lrs in below.items() if d != 1414)


def test_reusing_one_lr_biases_d90_when_the_best_lr_depends_on_d():
    """The shortcut (one grid point's LR everywhere) against the grid at every d, on a task
    whose best LR falls with d: reusing a large d's LR leaves small d short of the threshold."""
    curve = Curve(d_star=3000, best_lr=3e-3, lr_slope=0.5, lr_penalty=0.06, width=0.9)
    grid = drive(SearchConfig(lr_reuse_below=None), KEY, curve).result
    reuse = drive(SearchConfig(lr_reuse_below=None, reuse_best_lr=True), KEY, curve).result
    assert grid.status == reuse.status == "done"
    assert grid.lo < 3000 <= grid.hi + 1  # per-d LRs find the crossing of the best LR
    assert reuse.d90 > 1.25 * grid.d90  # the shortcut does not


def test_no_reuse_gives_the_grid_everywhere():
    cfg = SearchConfig(lr_reuse_below=None, reuse_best_lr=False, lrs=[1e-3, 1e-2])
    out = drive(cfg, KEY, Curve(d_star=1000))
    assert all(lrs == {1e-3, 1e-2} for lrs in lrs_by_d(out.records).values())


def test_lr_hints_from_a_sweep():
    sweep = SearchConfig(mode="sweep", d_min=100, d_max=10_000, sweep_points=3, lrs=[1e-3, 1e-2])
    curve = Curve(d_star=800, best_lr=1e-3, lr_penalty=0.02)
    sweep_out = drive(sweep, KEY, curve)
    hints = best_lrs(sweep_out.records, KEY)
    assert set(hints) == {100, 1000, 10_000} and hints[1000] == 1e-3
    cfg = SearchConfig(lrs=[1e-3, 1e-2], lr_reuse_below=10_000)
    todo = plan_next([*full_records(), sub_record(20000, 1e-2, 0.85)], cfg, KEY, lr_hints=hints)
    assert [(s.d, s.lr) for s in todo] == [(1414, 1e-3)]  # no grid: the sweep already chose


def test_best_lr_prefers_reaching_fastest():
    cfg = SearchConfig(lr_reuse_below=None, lrs=[1e-3, 1e-2], reuse_best_lr=True)
    recs = [
        *full_records(),
        sub_record(20000, 1e-3, 0.80, steps=300),
        sub_record(20000, 1e-2, 0.85, steps=900),
    ]
    assert {s.lr for s in plan_next(recs, cfg, KEY)} == {1e-3}


# ----------------------------------------------------------------------------- unstable, failed


def test_unstable_lr_counts_as_not_reached_for_that_lr():
    # 3e-2 diverges everywhere; the grid point still resolves through the other LRs.
    cfg = SearchConfig(lrs=[1e-3, 1e-2, 3e-2])
    out = drive(cfg, KEY, Curve(d_star=1000, unstable_lr=2e-2))
    assert out.result.status == "done" and out.result.lo < 1000 <= out.result.hi
    assert out.result.unstable == ()
    assert any(r.status == "unstable" for r in out.records)


def test_all_lrs_unstable_makes_the_point_unstable():
    # the fixed LR used above 10^4 diverges there: those points count as not reached
    cfg = SearchConfig(fixed_lr=5e-2)
    out = drive(cfg, KEY, Curve(d_star=3000, unstable_lr=4e-2))
    r = out.result
    assert 20000 in r.unstable
    assert {p.d: p.outcome for p in r.points}[20000] == "unstable"
    # unstable above, so the search goes up and ends at an unstable d_max: not computable
    assert r.status == "not_computable" and "unstable at d_max" in r.reason


def test_every_run_unstable_is_not_computable():
    cfg = SearchConfig(lrs=[1e-3, 1e-2])
    out = drive(cfg, KEY, Curve(d_star=5000, unstable_lr=1e-4, unstable_d_above=None))
    # unstable_lr below every LR: every subspace run diverges -> nothing reaches
    assert out.result.status == "not_computable"
    assert 4_000_000 in out.result.unstable


def test_failed_run_inside_the_bracket_stops_the_search():
    recs = [*full_records(), sub_record(20000, 1e-2, None, status="failed")]
    r = plan_next(recs, SearchConfig(), KEY)
    assert isinstance(r, SearchResult) and r.status == "failed"
    assert "d = 20000" in r.reason and "run the command again" in r.reason


def test_failed_run_outside_the_bracket_is_ignored():
    cfg = SearchConfig(k=3)
    pts = interior_points(100, 4_000_000, 3)
    recs = [
        *full_records(),
        sub_record(pts[0], 1e-2, 0.85),  # reached
        sub_record(pts[1], 1e-2, None, status="failed"),  # above hi: cannot matter
        sub_record(pts[2], 1e-2, 0.85),
    ]
    for lr in SearchConfig().lrs:  # pts[0] = 1414 < 10^4 ran the grid
        if lr != 1e-2:
            recs.append(sub_record(pts[0], lr, 0.5))
    todo = plan_next(recs, cfg, KEY)
    assert isinstance(todo, list) and todo
    assert all(s.d < pts[0] for s in todo)


def test_failed_full_run():
    r = plan_next([*full_records(status="failed", error="OOM")], SearchConfig(), KEY)
    assert r.status == "failed" and "OOM" in r.reason


# ----------------------------------------------------------------------------- full fine-tuning


def test_full_fine_tuning_is_proposed_first():
    todo = plan_next([], SearchConfig(full_lrs=[1e-5, 2e-5]), KEY)
    assert [(s.method, s.d, s.lr, s.stop_at) for s in todo] == [
        ("full", None, 1e-5, None),
        ("full", None, 2e-5, None),
    ]
    # the best full LR sets the threshold
    recs = [full_record(0.80, lr=1e-5), full_record(0.88, lr=2e-5)]
    cfg = SearchConfig(full_lrs=[1e-5, 2e-5], threshold_fraction=0.8)
    assert threshold_for(recs, cfg, KEY) == pytest.approx(0.8 * 0.88)
    assert all(s.stop_at == pytest.approx(0.8 * 0.88) for s in plan_next(recs, cfg, KEY))


def test_not_computable_when_full_does_not_beat_majority():
    r = plan_next([*full_records(0.52, majority=0.53)], SearchConfig(), KEY)
    assert isinstance(r, SearchResult) and r.status == "not_computable"
    assert "majority class" in r.reason and r.full_metric == 0.52


@pytest.mark.parametrize(
    "full,majority",
    [(0.56, 0.53), (0.703, 0.684)],  # RTE and MRPC with MiniLM (the issue that found this)
)
def test_not_computable_when_the_threshold_does_not_beat_majority(full, majority):
    """Full fine-tuning beats the majority class, 90% of it does not: a subspace run answering
    the majority class would "reach" the threshold, so no d90 is reported, whatever the runs."""
    recs = [*full_records(full, majority=majority)]
    r = plan_next(recs, SearchConfig(), KEY)
    assert isinstance(r, SearchResult) and r.status == "not_computable"
    assert r.threshold == pytest.approx(0.9 * full) and r.majority == majority
    assert "does not beat the majority class" in r.reason and f"{majority:.4f}" in r.reason
    # runs that exist (e.g. from an older intdim) change nothing
    recs.append(sub_record(100, 1e-2, majority))
    assert plan_next(recs, SearchConfig(), KEY).status == "not_computable"


def test_the_threshold_just_above_majority_is_computable():
    r = search_state([*full_records(0.60, majority=0.53)], SearchConfig(), KEY)
    assert r.result is None and r.threshold == pytest.approx(0.54) and r.majority == 0.53
    assert all(s.stop_at == pytest.approx(0.54) for s in r.pending)


def test_not_computable_when_full_is_unstable():
    r = plan_next([*full_records(status="unstable")], SearchConfig(), KEY)
    assert r.status == "not_computable" and "unstable" in r.reason


def test_early_stop_off_gives_no_target():
    todo = plan_next([*full_records()], SearchConfig(early_stop=False), KEY)
    assert todo and all(s.stop_at is None for s in todo)


# ----------------------------------------------------------------------------- sweep


def test_sweep_mode_runs_the_grid_at_once_and_reads_d90_from_the_curve():
    cfg = SearchConfig(mode="sweep", d_min=10, d_max=10_000, sweep_points=10, lrs=[1e-3, 1e-2])
    todo = plan_next([], cfg, KEY)
    grid = sweep_grid(10, 10_000, 10)
    sub = [s for s in todo if s.method != "full"]
    assert {(s.d, s.lr) for s in sub} == {(d, lr) for d in grid for lr in (1e-3, 1e-2)}
    assert all(s.stop_at is None for s in sub)  # the curve needs whole runs
    curve = Curve(d_star=700, flips={grid[-2]: False})
    out = drive(cfg, KEY, curve)
    r = out.result
    assert out.rounds == 1 and r.status == "done"
    reached = [d for d in grid if curve(d, 1e-2) >= THRESHOLD or curve(d, 1e-3) >= THRESHOLD]
    assert r.d90 == min(reached) and r.lo == max(d for d in grid if d < r.d90)
    assert r.noisy == (grid[-2],)
    assert [p.d for p in r.points] == grid
    assert all(p.best_eval is not None for p in r.points)


def test_sweep_not_reached():
    cfg = SearchConfig(mode="sweep", d_min=10, d_max=1000, sweep_points=5, lrs=[1e-2])
    r = drive(cfg, KEY, Curve(d_star=50_000)).result
    assert r.status == "not_reached" and r.lo == 1000


# ----------------------------------------------------------------------------- restartability


def test_never_reproposes_a_finished_run():
    def check(todo, records):
        done = {r.run_id for r in records}
        assert not done & {s.run_id for s in todo}
        assert len({s.run_id for s in todo}) == len(todo)

    for k in (1, 3):
        drive(SearchConfig(k=k), KEY, Curve(d_star=1234), on_round=check)


def test_killed_mid_round_resumes_with_the_rest_of_the_round(tmp_path):
    cfg = SearchConfig(k=3)
    curve, steps = Curve(d_star=4321), StepModel()
    out = drive(cfg, KEY, curve)  # the uninterrupted reference
    # replay, but "kill" the driver after half of each round's runs finished, and restart it
    # from what is on disk
    while True:
        todo = plan_next(read_records(tmp_path), cfg, KEY)
        if isinstance(todo, SearchResult):
            break
        half = todo[: max(1, len(todo) // 2)]
        for spec in half:
            write_record(tmp_path, fake_run(spec, curve, steps))
        again = plan_next(read_records(tmp_path), cfg, KEY)
        if isinstance(again, list):
            finished = {s.run_id for s in half}
            rest = [s for s in todo if s.run_id not in finished]
            if rest:  # same round: exactly the unfinished runs, nothing new, nothing repeated
                assert again == rest
        for spec in todo[len(half) :]:
            write_record(tmp_path, fake_run(spec, curve, steps))
    assert todo == out.result
    assert len(list((tmp_path / "records").glob("*.json"))) == len(out.records)


def test_proposals_do_not_depend_on_record_order():
    out = drive(SearchConfig(k=2), KEY, Curve(d_star=777))
    partial = out.records[: len(out.records) * 2 // 3]
    expected = plan_next(partial, SearchConfig(k=2), KEY)
    shuffled = partial[:]
    random.Random(0).shuffle(shuffled)
    assert plan_next(shuffled, SearchConfig(k=2), KEY) == expected


def test_other_searches_records_are_ignored():
    other = [
        Record("checkpoint_2000", "mrpc", "full", None, 2e-5, 0, "ok", eval_value=0.9),
        Record(KEY.checkpoint, "rte", "full", None, 2e-5, 0, "ok", eval_value=0.9),
        Record(KEY.checkpoint, KEY.task, "did", 20000, 1e-2, 0, "ok", eval_value=0.9),
    ]
    assert plan_next(other, SearchConfig(), KEY) == plan_next([], SearchConfig(), KEY)


def test_runspec_ids_match_their_records():
    spec = RunSpec("c", "t", "said", 100, 1e-3, 0, 0.5)
    rec = fake_run(spec, Curve(), StepModel())
    assert rec.run_id == spec.run_id


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("mode=grid", "mode must be one of"),
        ("d_min=5000000", "d_min < d_max"),
        ("ratio=1.0", "ratio must be > 1"),
        ("k=0", "k must be >= 1"),
        ("lrs=[]", "lrs must be distinct positive"),
        ("lrs=[0.1,0.1]", "lrs must be distinct positive"),
        ("threshold_fraction=1.5", r"threshold_fraction must be in \(0, 1\]"),
        ("fixed_lr=0", "fixed_lr must be positive"),
        ("sweep_points=1", "sweep_points must be >= 2"),
        ("kk=3", "kk"),
    ],
)
def test_search_config_rejects_bad_values(override, match):
    with pytest.raises(UserError, match=match):
        load_config(SearchConfig, None, [override])


def test_search_config_file_loads():
    cfg = load_config(SearchConfig, "configs/probe/search.yaml", ["k=4"])
    assert cfg.k == 4 and cfg.d_min == 100 and cfg.d_max == 4_000_000 and len(cfg.lrs) == 4
    sweep = load_config(SearchConfig, "configs/probe/sweep.yaml")
    assert sweep.mode == "sweep" and sweep.d_min == 10 and sweep.d_max == 10_000


def test_search_key_rejects_full():
    with pytest.raises(UserError, match="did or said"):
        SearchKey("c", "t", "full")


def test_hints_from_the_previous_checkpoint_give_one_lr_per_d():
    cfg = SearchConfig()
    earlier = SearchKey("checkpoint_500", KEY.task, KEY.method)
    curve = Curve(d_star=900, best_lr=3e-3, lr_penalty=0.02)
    first = drive(cfg, earlier, curve)
    grid = {d: lrs for d, lrs in lrs_by_d(first.records).items() if d < 10_000}
    assert all(len(lrs) == 4 for lrs in grid.values())  # no earlier checkpoint: the grid
    hints = best_lrs(first.records, earlier)
    assert set(hints) == set(grid)  # fixed-LR points chose no LR: they are not hints
    later = drive(cfg, KEY, curve, records=first.records)  # checkpoint_1000, same OUT
    own = [r for r in later.records if r.checkpoint == KEY.checkpoint and r.method != "full"]
    for r in own:
        if r.d < 10_000:
            near = min(hints, key=lambda h: (abs(math.log(h) - math.log(r.d)), h))
            assert r.lr == hints[near]
        assert r.config["lr_hints"]["from"] == "checkpoint_500"
    assert later.result.d90 == first.result.d90
    assert sum(r.steps for r in own) < first.steps


def test_a_search_keeps_the_hints_it_started_with():
    """Hints are read back from the search's first record: a checkpoint probed later in between
    (the watcher probes several at once) does not change the LRs of a search under way."""
    cfg = SearchConfig()
    curve = Curve(d_star=900, best_lr=3e-3, lr_penalty=0.02)
    first = drive(cfg, SearchKey("checkpoint_500", KEY.task, KEY.method), curve)
    started = []

    def stop_after_one_round(todo, records):
        if todo[0].method != "full":
            started.append(todo)
            raise StopIteration

    with pytest.raises(StopIteration):
        drive(cfg, KEY, curve, records=first.records, on_round=stop_after_one_round)
    recs = list(first.records) + [*full_records()]
    recs += [fake_run(s, curve, StepModel()) for s in started[0]]
    between = drive(cfg, SearchKey("checkpoint_700", KEY.task, KEY.method), Curve(d_star=900))
    recs += between.records  # now the closest earlier checkpoint would be checkpoint_700
    todo = plan_next(recs, cfg, KEY)
    assert isinstance(todo, list) and todo
    assert all(s.lr_hints is not None and s.lr_hints.source == "checkpoint_500" for s in todo)


def test_no_previous_checkpoint_for_a_model_id():
    """ "previous" means an earlier pretraining checkpoint_<n>; other ids (models) get the grid."""
    cfg = SearchConfig(lrs=[1e-3, 1e-2])
    curve = Curve(d_star=900)
    other = drive(cfg, SearchKey("checkpoint_500", KEY.task, KEY.method), curve)
    model = SearchKey("roberta-base", KEY.task, KEY.method)
    out = drive(cfg, model, curve, records=other.records)
    own = [r for r in out.records if r.checkpoint == "roberta-base"]
    below = [lrs for d, lrs in lrs_by_d(own).items() if d < 10_000]
    assert below and all(lrs == {1e-3, 1e-2} for lrs in below)


def test_hints_from_a_directory_of_records(tmp_path):
    sweep = SearchConfig(mode="sweep", d_min=100, d_max=10_000, sweep_points=3, lrs=[1e-3, 1e-2])
    curve = Curve(d_star=800, best_lr=1e-3, lr_penalty=0.02)
    model = SearchKey("roberta-base", KEY.task, KEY.method)
    for r in drive(sweep, model, curve).records:
        write_record(tmp_path, r)
    cfg = SearchConfig(lrs=[1e-3, 1e-2], lr_hints=str(tmp_path))
    todo = plan_next(
        [*full_records(), sub_record(20000, 1e-2, 0.85)],
        cfg,
        KEY,
        hint_records=read_records(tmp_path),
    )
    assert [(s.d, s.lr) for s in todo] == [(1414, 1e-3)]
    assert todo[0].lr_hints.source == f"{tmp_path}:roberta-base"
