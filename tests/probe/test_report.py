"""Figures and Table 1, derived from records made by the fake trainer (probe/simulate.py)."""

from __future__ import annotations

import dataclasses
import math
import os

import pytest

from intdim.errors import UserError
from probe.records import Record, read_records, write_record
from probe.report import (
    Skipped,
    accuracy_curves,
    accuracy_figure,
    default_curve_checkpoints,
    defining_run,
    find_probe_dir,
    generalization_gap_figure,
    generalization_points,
    parameter_points,
    parameters_figure,
    plot,
    table,
    table_markdown,
    trajectory_figure,
    trajectory_not_reached,
    trajectory_series,
    updates_of,
)
from probe.report_cli import plot_command, table_command
from probe.search import SearchConfig, SearchKey, plan_next
from probe.simulate import Curve, StepModel, drive, fake_run
from probe.status import summarize

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SWEEP = {"mode": "sweep", "d_min": 10, "d_max": 10_000, "sweep_points": 12}

# d* per (task, updates): pretraining lowers d90, ANLI stays hardest. checkpoint_5000 sorts after
# checkpoint_20000 as a string, so update order is tested too.
FULL = {5000: 0.80, 20_000: 0.85, 100_000: 0.88}  # full fine-tuning improves too
D_STAR = {
    "mrpc": {5000: 60_000, 20_000: 9_000, 100_000: 1_500},
    "sst2": {5000: 20_000, 20_000: 3_000, 100_000: 400},
}


class Flat(Curve):
    """A checkpoint that never gets close to the threshold (even d_max does not reach)."""

    def __call__(self, d: int, lr: float) -> float:
        return 0.6


def with_train(records: list[Record], gap: float) -> list[Record]:
    # fake_run writes train == eval; a real run fits its training data a bit better
    return [
        dataclasses.replace(r, train_value=min(1.0, r.eval_value + gap))
        if r.method != "full" and r.status == "ok"
        else r
        for r in records
    ]


def with_config(records: list[Record], config: dict) -> list[Record]:
    return [dataclasses.replace(r, config=config) for r in records]


def search(
    checkpoint: str, task: str, method: str, curve: Curve, majority: float = 0.5, **cfg
) -> list[Record]:
    key = SearchKey(checkpoint, task, method)
    return drive(SearchConfig(**cfg), key, curve, majority=majority).records


def pretraining_records() -> list[Record]:
    recs: list[Record] = []
    for task, by_updates in D_STAR.items():
        for updates, d_star in by_updates.items():
            for method, factor in (("said", 1.0), ("did", 1.6)):
                recs += with_train(
                    search(
                        f"checkpoint_{updates}",
                        task,
                        method,
                        Curve(d_star=d_star * factor, full=FULL[updates]),
                    ),
                    gap=0.02 * math.log10(d_star),
                )
    # the random init: mrpc's full fine-tuning loses to the majority class (not computable),
    # sst2 fine-tunes but even d_max = 4,000,000 does not reach 90% of it
    recs += search("checkpoint_0", "mrpc", "said", Curve(full=0.6), majority=0.68)
    recs += search("checkpoint_0", "sst2", "said", Flat())
    # qqp: one finished search, and a later checkpoint whose search was killed midway
    recs += with_train(search("checkpoint_20000", "qqp", "said", Curve(d_star=2_000)), 0.05)
    key, cfg = SearchKey("checkpoint_100000", "qqp", "said"), SearchConfig()
    for _ in range(3):
        recs += [fake_run(s, Curve(d_star=900), StepModel()) for s in plan_next(recs, cfg, key)]
    return recs


def model_records() -> list[Record]:
    """Two hub models measured with `intdim d90` in sweep mode (the paper's Figure 1 and 3)."""
    recs: list[Record] = []
    for model, d_star, n_params in (("roberta-base", 800, 124_645_632), ("bert-base", 1600, None)):
        cfg = {"search": SWEEP}
        for method in ("said", "did"):
            sweep = search(model, "mrpc", method, Curve(d_star=d_star), **SWEEP)
            recs += with_config(with_train(sweep, 0.03), cfg)
        if n_params is not None:  # the driver writes num_parameters into the full run's config
            recs = [
                dataclasses.replace(r, config={**cfg, "num_parameters": n_params})
                if r.checkpoint == model and r.method == "full"
                else r
                for r in recs
            ]
        else:  # ... or as a top-level field of a newer minor schema (kept in Record.extra)
            recs = [
                dataclasses.replace(r, extra={"num_parameters": 110_000_000})
                if r.checkpoint == model and r.method == "full"
                else r
                for r in recs
            ]
    return recs


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A pretraining run dir (records under RUN_DIR/probe/) plus two models, read back from disk."""
    root = tmp_path_factory.mktemp("run")
    for r in pretraining_records() + model_records():
        write_record(root / "probe", r)
    (root / "checkpoints").mkdir()
    return root


@pytest.fixture(scope="module")
def records(run_dir):
    return read_records(run_dir / "probe")


def rows_by_key(records):
    out = {}
    for checkpoint, task in {(r.checkpoint, r.task) for r in records}:
        group = [r for r in records if (r.checkpoint, r.task) == (checkpoint, task)]
        cfg = SearchConfig(**SWEEP) if updates_of(checkpoint) is None else SearchConfig()
        for row in summarize(group, cfg):
            out[(row["checkpoint"], row["task"], row["method"])] = row
    return out


# ----------------------------------------------------------------------------- Figure 2


def test_trajectory_series_orders_by_updates_and_leaves_out_searches_without_d90(records):
    series = trajectory_series(records)
    rows = rows_by_key(records)
    # keys: task by name, SAID before DID (the paper's order)
    assert list(series) == [
        ("mrpc", "said"), ("mrpc", "did"), ("qqp", "said"), ("sst2", "said"), ("sst2", "did"),
    ]  # fmt: skip
    for (task, method), points in series.items():
        updates = [p.updates for p in points]
        assert updates == sorted(updates)
        for p in points:
            row = rows[(f"checkpoint_{p.updates}", task, method)]
            assert row["status"] == "done"
            assert (p.d90, p.lo, p.hi) == (row["d90"], row["lo"], row["hi"]) and p.d90 == p.hi
    # checkpoint_0 is left out: mrpc not computable, sst2 not reached (Figure 2 omits both);
    # qqp at 100000 is still running; the hub models have no pretraining updates
    assert [p.updates for p in series[("mrpc", "said")]] == [5000, 20_000, 100_000]
    assert [p.updates for p in series[("sst2", "said")]] == [5000, 20_000, 100_000]
    assert [p.updates for p in series[("qqp", "said")]] == [20_000]
    # d90 falls as pretraining goes on, and every bracket holds the true crossing
    for task, by_updates in D_STAR.items():
        points = series[(task, "said")]
        assert [p.d90 for p in points] == sorted((p.d90 for p in points), reverse=True)
        for p in points:
            assert p.lo < by_updates[p.updates] <= p.hi + 1


def test_updates_come_from_pretraining_checkpoint_ids_only():
    assert updates_of("checkpoint_0") == 0 and updates_of("checkpoint_125000") == 125_000
    assert updates_of("roberta-base") is None and updates_of("my_checkpoint_5") is None


def test_searches_that_reach_nothing_are_lower_bounds_at_d_max(records):
    # checkpoint_0: sst2 reached no d up to d_max; mrpc is not computable (no bound at all)
    assert trajectory_not_reached(records) == {("sst2", "said"): [(0, 4_000_000)]}
    fig = trajectory_figure(records)
    ax = fig.axes[0]
    triangles = [ln for ln in ax.lines if ln.get_marker() == "^" and len(ln.get_xdata())]
    assert [(list(ln.get_xdata()), list(ln.get_ydata())) for ln in triangles] == [
        ([0], [4_000_000])
    ]
    assert ax.get_ylim()[1] > 4_000_000  # the bound is inside the axes
    # a dotted line joins the bound to sst2's next measured d90 (update 5000)
    dotted = [ln for ln in ax.lines if ln.get_linestyle() == ":"]
    first = trajectory_series(records)[("sst2", "said")][0]
    assert [(list(ln.get_xdata()), list(ln.get_ydata())) for ln in dotted] == [
        ([0, 5000], [4_000_000, first.d90])
    ]
    only_bound = [r for r in records if r.checkpoint == "checkpoint_0" and r.task == "sst2"]
    assert not isinstance(trajectory_figure(only_bound), Skipped)


def test_trajectory_figure_is_skipped_without_pretraining_d90():
    out = trajectory_figure(model_records())
    assert isinstance(out, Skipped) and "checkpoint_<updates>" in out.reason


# ----------------------------------------------------------------------------- Figure 1


def test_accuracy_curve_takes_the_best_lr_per_d_and_the_search_seed():
    def run(d, lr, value, seed=0, status="ok"):
        return Record("ckpt", "rte", "did", d, lr, seed, status,
                      eval_value=value if status == "ok" else None,
                      error="oom" if status == "failed" else None)  # fmt: skip

    full = Record("ckpt", "rte", "full", None, 2e-5, 0, "ok", eval_value=0.8,
                  majority_baseline=0.5, config={"search": {"full_lrs": [2e-5]}})  # fmt: skip
    recs = [
        full,
        run(1000, 1e-3, 0.62),
        run(1000, 1e-2, 0.71),
        run(1000, 3e-2, 0.71),  # a tie: the smaller LR is reported
        run(1000, 1e-1, 0.0, status="unstable"),
        run(1000, 3e-3, 0.99, seed=7),  # another seed: not this search's
        run(300, 1e-2, 0.55),
        run(300, 1e-3, 0.58),
        run(300, 3e-3, 0.0, status="failed"),
    ]
    (curve,) = accuracy_curves(recs)
    assert curve.points == ((300, 0.58, 1e-3), (1000, 0.71, 1e-2))
    assert curve.full_metric == 0.8 and curve.threshold == pytest.approx(0.72)
    assert (curve.checkpoint, curve.task, curve.method, curve.metric) == (
        "ckpt", "rte", "did", "accuracy",
    )  # fmt: skip


def test_accuracy_curves_default_to_the_latest_checkpoint_and_every_model(records):
    chosen = default_curve_checkpoints(records)
    # latest by updates, not by string order ("checkpoint_5000" > "checkpoint_100000")
    assert chosen["mrpc"] == ["checkpoint_100000", "bert-base", "roberta-base"]
    assert chosen["sst2"] == ["checkpoint_100000"]
    assert chosen["qqp"] == ["checkpoint_100000"]  # its search is still running: runs so far
    curves = accuracy_curves(records)
    keys = {(c.checkpoint, c.task, c.method) for c in curves}
    assert ("checkpoint_100000", "mrpc", "said") in keys and ("roberta-base", "mrpc", "did") in keys
    assert not any(c.checkpoint == "checkpoint_5000" for c in curves)
    # the sweep's curve: every grid point, each the best over the 4 LRs, rising with d
    rob = next(c for c in curves if (c.checkpoint, c.method) == ("roberta-base", "said"))
    assert len(rob.points) == 12 and [p[2] for p in rob.points] == [1e-2] * 12
    values = [p[1] for p in rob.points]
    assert values == sorted(values)
    sweep_said = [r for r in records if (r.checkpoint, r.method) == ("roberta-base", "said")]
    for d, value, _ in rob.points:
        assert value == max(r.eval_value for r in sweep_said if r.d == d)
    # chosen explicitly
    picked = accuracy_curves(records, checkpoints=["checkpoint_5000"])
    assert {c.checkpoint for c in picked} == {"checkpoint_5000"}
    assert {c.task for c in picked} == {"mrpc", "sst2"}


# ----------------------------------------------------------------------------- Figures 4, 5


def test_generalization_gap_uses_the_best_eval_run_at_d90():
    recs = with_train(search("checkpoint_1000", "mrpc", "said", Curve(d_star=3000)), 0.01)
    row = next(r for r in summarize(recs, SearchConfig()) if r["method"] == "said")
    hi = row["hi"]
    # two more LRs at d90: the better eval value defines the gap ("the training accuracy that
    # provides us with the best evaluation metrics", section 5.3), not the run that reached the
    # threshold fastest (the search's own pick), nor a run of another seed or at a larger d
    extra = [
        Record("checkpoint_1000", "mrpc", "said", hi, 5e-2, 0, "ok",
               eval_value=0.83, train_value=0.95, steps=1500),
        Record("checkpoint_1000", "mrpc", "said", hi, 7e-2, 0, "ok",
               eval_value=0.80, train_value=0.99, steps=100),
        Record("checkpoint_1000", "mrpc", "said", hi, 5e-2, 1, "ok",
               eval_value=0.90, train_value=0.91, steps=1500),
        Record("checkpoint_1000", "mrpc", "said", hi * 4, 5e-2, 0, "ok",
               eval_value=0.86, train_value=0.87, steps=1500),
    ]  # fmt: skip
    recs += extra
    assert defining_run(recs, {**row, "seed": 0}) == extra[0]
    (p,) = generalization_points(recs)
    assert (p.checkpoint, p.task, p.method, p.d90, p.lr) == ("checkpoint_1000", "mrpc", "said",
                                                              hi, 5e-2)  # fmt: skip
    assert p.eval_value == 0.83 and p.train_value == 0.95
    assert p.gap == pytest.approx((0.95 - 0.83) / (1 - 0.83))


def test_generalization_points_one_per_checkpoint_and_task_with_d90(records):
    points = generalization_points(records)
    rows = rows_by_key(records)
    done = {k for k, r in rows.items() if k[2] == "said" and r["status"] == "done"}
    assert {(p.checkpoint, p.task, "said") for p in points} == done
    assert all(p.method == "said" for p in points)  # SAID, as the paper
    assert not any(p.checkpoint == "checkpoint_0" for p in points)
    for p in points:
        assert p.gap == pytest.approx((p.train_value - p.eval_value) / (1 - p.eval_value))
    did = generalization_points(records, method="did")
    assert {p.method for p in did} == {"did"} and len(did) == len([k for k in rows if
            k[2] == "did" and rows[k]["status"] == "done"])  # fmt: skip


def test_gap_figure_is_skipped_without_train_values():
    recs = search("checkpoint_1000", "mrpc", "said", Curve(d_star=3000))
    recs = [dataclasses.replace(r, train_value=None) for r in recs]
    assert generalization_points(recs)[0].gap is None
    out = generalization_gap_figure(recs)
    assert isinstance(out, Skipped) and "train_value" in out.reason


# ----------------------------------------------------------------------------- Figure 3


def test_parameter_points_come_from_models_with_a_recorded_parameter_count(records):
    points = parameter_points(records)
    rows = rows_by_key(records)
    assert sorted(points) == [
        ("bert-base", "mrpc", 110_000_000, rows[("bert-base", "mrpc", "said")]["d90"], "said"),
        (
            "roberta-base",
            "mrpc",
            124_645_632,
            rows[("roberta-base", "mrpc", "said")]["d90"],
            "said",
        ),
    ]
    assert points[0].d90 is not None


def test_parameters_figure_needs_two_models(records):
    one = [r for r in records if r.checkpoint != "bert-base"]
    out = parameters_figure(one)
    assert isinstance(out, Skipped) and "found 1" in out.reason and "num_parameters" in out.reason
    assert not isinstance(parameters_figure(records), Skipped)


# ----------------------------------------------------------------------------- files


def test_plot_writes_every_figure_as_png_and_pdf(run_dir):
    paths = plot(run_dir)
    names = ("d90_trajectory", "accuracy_vs_d", "eval_accuracy_vs_d90",
             "generalization_gap_vs_d90", "d90_vs_parameters")  # fmt: skip
    assert sorted(paths) == sorted(
        run_dir / "plots" / f"{n}.{ext}" for n in names for ext in ("png", "pdf")
    )
    for path in paths:
        data = path.read_bytes()
        if path.suffix == ".png":
            assert data.startswith(PNG_MAGIC) and len(data) > 10_000
        else:
            assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    # written atomically: no temp files are left behind
    assert sorted(p.name for p in (run_dir / "plots").iterdir()) == sorted(p.name for p in paths)


def test_a_figure_without_data_is_not_written(tmp_path, capsys):
    for r in search("checkpoint_1000", "mrpc", "said", Curve(d_star=3000)):
        write_record(tmp_path, dataclasses.replace(r, train_value=None))
    assert plot_command(str(tmp_path)) == 0
    out = capsys.readouterr().out
    written = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert "generalization_gap_vs_d90.png" not in written and "d90_vs_parameters.png" not in written
    assert "d90_trajectory.png" in written and "d90_trajectory.pdf" in written
    assert "skipped generalization_gap_vs_d90:" in out and "skipped d90_vs_parameters:" in out
    assert str(tmp_path / "plots" / "d90_trajectory.png") in out.splitlines()


def test_plot_into_a_place_it_cannot_write_is_one_line(tmp_path, capsys):
    from intdim.cli import main

    for r in search("checkpoint_1000", "mrpc", "said", Curve(d_star=3000)):
        write_record(tmp_path, r)
    (tmp_path / "plots").write_text("a file where the plots would go")
    assert main(["plot", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "plots directory" in err[0] and "is a file" in err[0], err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_plot_into_a_read_only_dir_is_one_line(tmp_path, capsys):
    from intdim.cli import main

    for r in search("checkpoint_1000", "mrpc", "said", Curve(d_star=3000)):
        write_record(tmp_path, r)
    (tmp_path / "plots").mkdir(mode=0o555)
    assert main(["plot", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not writable" in err[0], err


def test_records_are_found_in_the_dir_or_its_probe_dir(run_dir, tmp_path):
    assert find_probe_dir(run_dir) == run_dir / "probe"
    assert find_probe_dir(run_dir / "probe") == run_dir / "probe"
    (tmp_path / "records").mkdir()  # a records dir with nothing in it yet
    for empty in (tmp_path, tmp_path / "nothing"):
        for call in (plot, table, plot_command, table_command):
            with pytest.raises(UserError, match=r"^no records under .*; run intdim probe or intd"):
                call(str(empty))


# ----------------------------------------------------------------------------- Table 1


def parse_table(md: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    lines = [line for line in md.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    body = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        body[cells[0]] = dict(zip(header[1:], cells[1:], strict=True))
    return header, body


def test_table_cells(run_dir, records):
    md = table(run_dir)
    header, body = parse_table(md)
    rows = rows_by_key(records)
    assert header == ["Model", "SAID MRPC", "SAID QQP", "SAID SST-2",
                      "DID MRPC", "DID QQP", "DID SST-2"]  # fmt: skip
    # pretraining checkpoints by updates (5000 before 20000), then the models by name
    assert list(body) == ["checkpoint_0", "checkpoint_5000", "checkpoint_20000",
                          "checkpoint_100000", "bert-base", "roberta-base"]  # fmt: skip
    assert body["checkpoint_0"]["SAID MRPC"] == "n/c"  # full fine-tuning lost to the majority
    assert body["checkpoint_0"]["SAID SST-2"] == ">4,000,000"  # not reached at d_max
    assert body["checkpoint_0"]["DID MRPC"] == "n/c"  # for every method: no full solution
    assert body["checkpoint_0"]["DID SST-2"] == "—"  # never searched
    assert body["checkpoint_100000"]["SAID QQP"] == "—"  # still running
    qqp = rows[("checkpoint_20000", "qqp", "said")]
    assert body["checkpoint_20000"]["SAID QQP"] == f"{qqp['hi']:,}"
    for model in ("checkpoint_5000", "checkpoint_100000"):
        for method in ("said", "did"):
            row = rows[(model, "mrpc", method)]
            assert row["status"] == "done" and row["lo"] is not None
            assert body[model][f"{method.upper()} MRPC"] == f"{row['hi']:,}"
    # the sweep-mode models are replayed with the search config their records carry
    assert body["roberta-base"]["SAID MRPC"] == f"{rows[('roberta-base', 'mrpc', 'said')]['hi']:,}"
    assert body["roberta-base"]["SAID MRPC"] != "—"
    assert "upper end of the search's final bracket" in md and "n/c: not computable" in md


def test_table_marks_d_min_reached_and_lists_only_methods_present():
    recs = search("gpt-tiny", "rte", "said", Curve(d_star=50))  # d_min = 100 already reaches
    md = table_markdown(recs)
    header, body = parse_table(md)
    assert header == ["Model", "SAID RTE"] and body == {"gpt-tiny": {"SAID RTE": "≤100"}}


def test_table_command_prints_the_table(run_dir, capsys):
    assert table_command(str(run_dir)) == 0
    out = capsys.readouterr().out
    assert out.startswith("| Model | SAID MRPC |") and "| checkpoint_0 | n/c |" in out


def test_accuracy_figure_draws_one_panel_per_task(records):
    fig = accuracy_figure(records)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["MRPC", "QQP", "SST-2"]
    assert all(ax.get_xscale() == "log" for ax in panels)


# ----------------------------------------------------------------------------- what not to misread


def test_figures_4_and_5_use_the_d90_run_trained_to_its_budget():
    """A search run stops at the threshold, so its accuracy is ~0.9 x full by construction; the
    d90 run trained again to its budget (final_run) is what Figures 4-5 plot."""
    recs = search("checkpoint_1000", "mrpc", "said", Curve(d_star=3000))
    [final] = [r for r in recs if r.method == "said" and r.stop_at is None]
    stopped = [r for r in recs if r.method == "said" and r.d == final.d and r.stop_at is not None]
    (p,) = generalization_points(recs)
    assert p.eval_value == final.eval_value and p.lr == final.lr
    assert final.eval_value > max(r.eval_value for r in stopped)  # it trained on past the stop
    # without it, no point: the stopped runs are never used
    assert generalization_points([r for r in recs if r is not final]) == []


def test_trajectory_marks_not_computable_checkpoints(records):
    from probe.report import trajectory_not_computable

    # mrpc at the random init: both methods' searches (DID and SAID were run elsewhere)
    assert trajectory_not_computable(records) == {("mrpc", "said"): [0], ("mrpc", "did"): [0]}
    fig = trajectory_figure(records)
    ax = fig.axes[0]
    crosses = [ln for ln in ax.lines if ln.get_marker() == "x" and len(ln.get_xdata())]
    assert len(crosses) == 2 and all(abs(ln.get_xdata()[0]) < 0.05 * 100_000 for ln in crosses)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "not computable (at the bottom)" in labels


def test_table_says_nc_for_a_search_whose_threshold_does_not_beat_majority():
    """Full fine-tuning 0.56 against a majority class of 0.53: 0.9 x 0.56 is below it, so no
    subspace run is ever made; the table must not say "no d90 searches yet"."""
    full = Record("checkpoint_0", "rte", "full", None, 2e-5, 0, "ok", eval_value=0.56,
                  majority_baseline=0.53,
                  config={"methods": ["said"], "search": {"full_lrs": [2e-5]}})  # fmt: skip
    text = table_markdown([full])
    assert "| checkpoint_0 | n/c |" in text and "no d90 searches yet" not in text


def test_accuracy_figure_draws_the_majority_class(records):
    fig = accuracy_figure(records)
    majority = [ln for ax in fig.axes for ln in ax.lines if ln.get_linestyle() == "-."]
    assert majority and all(set(ln.get_ydata()) == {0.5} for ln in majority)
