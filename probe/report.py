"""The results people look at: the paper's figures and Table 1, derived from the records alone.

    plot("runs/base")     # -> [runs/base/plots/d90_trajectory.png, ....pdf, ...]
    print(table("runs/base"))

`dir` is a pretraining run dir (records under RUN_DIR/probe/records/), a probe output dir, or any
dir holding `records/`. Figures (Aghajanyan et al. 2020), each written as 150 dpi PNG and PDF:

    d90_trajectory          Figure 2: d90 over pretraining updates, one line per task (and method)
    accuracy_vs_d           Figure 1: best eval metric per d, with the 90% and full lines
    eval_accuracy_vs_d90    Figure 4: eval accuracy of the run that defines d90, against d90
    generalization_gap_vs_d90  Figure 5: relative generalization gap of that run, against d90
    d90_vs_parameters       Figure 3: d90 against the parameter count, across models

Every figure is a data-extraction function (tested on its own) plus a drawing function; each
`*_figure(records)` returns a matplotlib Figure, or `Skipped(reason)` when it has nothing to draw
(a figure with no data is not written). d90 and its bracket come from `probe.status.summarize`,
i.e. the driver's own replay of the search, so a plot can never disagree with `intdim status`.

The replay needs the search config the runs were made with: it is read from the records
(`config["search"]`, written by the driver), else the defaults of `SearchConfig`; pass `cfg` to
override.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, ParamSpec, TypeVar

from intdim.bounds import relative_generalization_gap
from intdim.errors import UserError
from intdim.io import atomic_write_bytes
from probe.records import RECORDS_DIR, Record, read_records
from probe.search import SearchConfig
from probe.status import _natural, summarize

if TYPE_CHECKING:  # matplotlib is imported only when a figure is drawn: `table` does not need it
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

P = ParamSpec("P")
R = TypeVar("R")

PLOTS_DIR = "plots"
DPI = 150
_PRETRAIN_CHECKPOINT = re.compile(r"checkpoint_(\d+)")  # pretrain/checkpoint.py's directory names
_METHOD_LABEL = {"said": "SAID", "did": "DID"}
_METHOD_ORDER = ("full", "said", "did")  # the paper's order: SAID, its main method, first
_METHOD_STYLE = {"said": ("-", "o"), "did": ("--", "s")}  # (line style, marker)
# The paper's spelling of the shipped tasks; any other task is shown by its registry name.
_TASK_LABEL = {
    "mrpc": "MRPC",
    "qqp": "QQP",
    "sst2": "SST-2",
    "mnli": "MNLI",
    "mnli_mismatched": "MNLI-mm",
    "qnli": "QNLI",
    "rte": "RTE",
    "cola": "CoLA",
    "anli": "ANLI",
    "anli_r1": "ANLI R1",
    "anli_r2": "ANLI R2",
    "anli_r3": "ANLI R3",
    "yelp_polarity": "Yelp Polarity",
}


@dataclass(frozen=True)
class Skipped:
    """A figure that was not drawn, and why (printed by `intdim plot`)."""

    reason: str


_RC: dict[str, Any] = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "pdf.fonttype": 42,  # TrueType in the PDF: venues reject Type 3 fonts
}


def _styled(draw: Callable[P, R]) -> Callable[P, R]:
    """Run a drawing function under the house style. rcParams are read when each artist is made
    (titles, labels, ticks), so the whole drawing runs inside the context, not just Figure()."""

    @functools.wraps(draw)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        import matplotlib

        with matplotlib.rc_context(_RC):
            return draw(*args, **kwargs)

    return wrapper


# --------------------------------------------------------------------------- finding records


def find_probe_dir(dir: str | Path) -> Path:
    """The dir holding `records/`: `dir` itself or `dir/probe` (a pretraining run dir)."""
    root = Path(dir)
    for candidate in (root, root / "probe"):
        if (candidate / RECORDS_DIR).is_dir():
            return candidate
    raise UserError(f"no records under {dir}; run intdim probe or intdim d90 first")


def load_records(dir: str | Path) -> list[Record]:
    records = read_records(find_probe_dir(dir))
    if not records:
        raise UserError(f"no records under {dir}; run intdim probe or intdim d90 first")
    return records


# --------------------------------------------------------------------------- d90 per search


def updates_of(checkpoint: str) -> int | None:
    """Pretraining updates of a checkpoint id `checkpoint_<updates>`; None for other models."""
    m = _PRETRAIN_CHECKPOINT.fullmatch(checkpoint)
    return int(m.group(1)) if m else None


def search_config_of(records: Iterable[Record]) -> SearchConfig:
    """The search config the runs were made with (`config["search"]` of a record), else defaults.
    Keys this version does not know are dropped: a report must still read newer records."""
    known = {f.name for f in dataclasses.fields(SearchConfig)}
    for r in records:
        search = r.config.get("search") if isinstance(r.config, dict) else None
        if isinstance(search, dict):
            return SearchConfig(**{k: v for k, v in search.items() if k in known})
    return SearchConfig()


def d90_rows(records: Iterable[Record], cfg: SearchConfig | None = None) -> list[dict[str, Any]]:
    """`summarize` rows (checkpoint, task, method, d90, lo, hi, status, ...) plus `seed`, the seed
    of the search. Each (checkpoint, task) is replayed with its own records' search config, so
    models measured with different configs can share one record store."""
    records = list(records)
    groups: dict[tuple[str, str], list[Record]] = {}
    for r in records:
        groups.setdefault((r.checkpoint, r.task), []).append(r)
    # A row for every method measured anywhere: a checkpoint whose full fine-tuning is not
    # computable has no subspace records, yet its SAID and DID cells are "not computable".
    measured = {r.method for r in records if r.method != "full"}
    planned = {m for r in records for m in (r.config.get("methods") or []) if m in _METHOD_ORDER}
    methods = sorted((measured | planned) - {"full"}, key=_method_rank)
    rows = []
    for pair, group in groups.items():
        group_cfg = cfg or search_config_of(group)
        # over all the records, as `intdim status` replays it: LR hints come from other checkpoints
        for row in summarize(records, group_cfg, methods, only=[pair]):
            rows.append({**row, "seed": group_cfg.seed})
    rows.sort(key=lambda r: (_model_order(r["checkpoint"]), r["task"], _method_rank(r["method"])))
    return rows


def _subspace_rows_with_d90(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    # Only finished searches have a d90: not computable, not reached, running and failed ones
    # are left out of the figures, as the paper leaves out what it could not compute (Fig. 2).
    return [r for r in rows if r["method"] != "full" and r["d90"] is not None]


def _preferred_method(rows: Sequence[dict[str, Any]]) -> str:
    # The paper's Figures 3-5 use SAID; fall back to DID when only DID was measured.
    methods = {r["method"] for r in _subspace_rows_with_d90(rows)}
    return "said" if "said" in methods or not methods else "did"


# --------------------------------------------------------------------------- Figure 2


class TrajectoryPoint(NamedTuple):
    updates: int
    d90: int
    lo: int | None  # None when d_min itself reached (d90 <= d_min)
    hi: int


def trajectory_series(
    records: Iterable[Record], cfg: SearchConfig | None = None
) -> dict[tuple[str, str], list[TrajectoryPoint]]:
    """(task, method) -> d90 over pretraining updates, in update order. Only pretraining
    checkpoints (`checkpoint_<updates>`) count; searches without a d90 are left out."""
    series: dict[tuple[str, str], list[TrajectoryPoint]] = {}
    for row in _subspace_rows_with_d90(d90_rows(records, cfg)):  # rows come in update order
        updates = updates_of(row["checkpoint"])
        if updates is None:
            continue
        point = TrajectoryPoint(updates, row["d90"], row["lo"], row["hi"])
        series.setdefault((row["task"], row["method"]), []).append(point)
    return dict(sorted(series.items(), key=lambda kv: (kv[0][0], _method_rank(kv[0][1]))))


def trajectory_not_reached(
    records: Iterable[Record], cfg: SearchConfig | None = None
) -> dict[tuple[str, str], list[tuple[int, int]]]:
    """(task, method) -> [(updates, d_max)] of the searches that reached no d up to d_max: d90
    lies above d_max there. The paper leaves out only what is not computable; these are lower
    bounds, drawn as open triangles at d_max."""
    out: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for row in d90_rows(records, cfg):
        updates = updates_of(row["checkpoint"])
        if row["method"] == "full" or row["status"] != "not_reached" or updates is None:
            continue
        out.setdefault((row["task"], row["method"]), []).append((updates, row["lo"]))
    return out


def trajectory_not_computable(
    records: Iterable[Record], cfg: SearchConfig | None = None
) -> dict[tuple[str, str], list[int]]:
    """(task, method) -> updates of the checkpoints where d90 is not computable (full fine-tuning
    or its 90% does not beat the majority class, or training was unstable). The paper leaves
    them out; they are drawn as crosses along the bottom so an empty stretch is not misread."""
    out: dict[tuple[str, str], list[int]] = {}
    for row in d90_rows(records, cfg):
        updates = updates_of(row["checkpoint"])
        if row["method"] == "full" or row["status"] != "not_computable" or updates is None:
            continue
        out.setdefault((row["task"], row["method"]), []).append(updates)
    return out


@_styled
def trajectory_figure(
    records: Iterable[Record], cfg: SearchConfig | None = None
) -> Figure | Skipped:
    records = list(records)
    series = trajectory_series(records, cfg)
    above = trajectory_not_reached(records, cfg)
    missing = trajectory_not_computable(records, cfg)
    if not series and not above:
        return Skipped("no pretraining checkpoint (checkpoint_<updates>) has a d90 yet")
    keys = sorted(set(series) | set(above) | set(missing), key=lambda k: (k[0], _method_rank(k[1])))
    several_methods = len({method for _, method in keys}) > 1
    colors = _task_colors(task for task, _ in keys)
    fig, ax = _new_figure(6.4, 4.0)
    labels = {
        (task, method): _task_label(task)
        + (f" ({_METHOD_LABEL[method]})" if several_methods else "")
        for task, method in keys
    }
    for (task, method), points in series.items():
        line, marker = _METHOD_STYLE[method]
        if points:
            ax.errorbar(
                [p.updates for p in points],
                [p.d90 for p in points],
                # d90 is the bracket's upper end, so the bar reaches down to lo only
                yerr=[
                    [p.d90 - (p.lo if p.lo is not None else p.d90) for p in points],
                    [p.hi - p.d90 for p in points],
                ],
                color=colors[task],
                linestyle=line,
                marker=marker,
                markersize=4,
                linewidth=1.5,
                elinewidth=0.8,
                capsize=2,
                label=labels[(task, method)],
            )
    # Lower bounds share one spot when several tasks reach nothing at the same checkpoint:
    # spread them a little along x, and join each to its task's next measured d90 (dotted).
    span = max([u for pts in series.values() for u, *_ in pts]
               + [u for bs in above.values() for u, _ in bs]
               + [u for us in missing.values() for u in us] + [1])  # fmt: skip
    bounded = [k for k in keys if k in above]
    for i, (task, method) in enumerate(bounded):
        shift = (i - (len(bounded) - 1) / 2) * 0.012 * span
        for updates, d_max in above[(task, method)]:
            later = [p for p in series.get((task, method), []) if p.updates > updates]
            if later:
                ax.plot([updates + shift, later[0].updates], [d_max, later[0].d90], ":",
                        color=colors[task], linewidth=1.0)  # fmt: skip
        ax.plot([u + shift for u, _ in above[(task, method)]],
                [d for _, d in above[(task, method)]], linestyle="none", marker="^",
                markersize=7, markerfacecolor="none", color=colors[task],
                label=None if (task, method) in series else labels[(task, method)])  # fmt: skip
    if above:
        ax.plot([], [], linestyle="none", marker="^", markerfacecolor="none", color="0.4",
                label=r"$d_{90}$ above $d_{max}$")  # fmt: skip
    # Not computable: crosses on the bottom edge (x in data, y in axes coordinates).
    bottom = ax.get_xaxis_transform()
    for i, key in enumerate(k for k in keys if k in missing):
        xs = [u + (i * 0.008 * span) for u in missing[key]]
        ax.plot(xs, [0.03] * len(xs), linestyle="none", marker="x", markersize=6,
                color=colors[key[0]], transform=bottom, clip_on=False,
                label=None if key in series or key in above else labels[key])  # fmt: skip
    if missing:
        ax.plot([], [], linestyle="none", marker="x", color="0.4",
                label="not computable (at the bottom)")  # fmt: skip
    ys = [v for pts in series.values() for p in pts for v in (p.d90, p.lo) if v is not None]
    _log_axis(ax, "y", ys + [d for bounds in above.values() for _, d in bounds])
    ax.set_xlim(left=-0.04 * span)  # updates start at 0 (the paper's Figure 2); room for markers
    ax.set_xlabel("Updates")
    ax.set_ylabel(r"$d_{90}$")
    ax.set_title("Pre-Training Intrinsic Dimension Trajectory")
    ax.xaxis.set_major_formatter(_thousands_formatter())
    _legend_right(ax)
    return fig


# --------------------------------------------------------------------------- Figure 1


@dataclass(frozen=True)
class AccuracyCurve:
    checkpoint: str
    task: str
    method: str
    metric: str
    points: tuple[tuple[int, float, float], ...]  # (d, best eval value over LRs, that LR), by d
    full_metric: float | None
    threshold: float | None
    d90: int | None
    majority: float | None = None  # the majority class's eval value


def default_curve_checkpoints(records: Iterable[Record]) -> dict[str, list[str]]:
    """task -> the checkpoints Figure 1 shows by default: the latest pretraining checkpoint with
    subspace runs for that task, and every other model (the paper's Figure 1 compares models)."""
    by_task: dict[str, set[str]] = {}
    for r in records:
        if r.method != "full":
            by_task.setdefault(r.task, set()).add(r.checkpoint)
    out = {}
    for task, checkpoints in sorted(by_task.items()):
        pretraining = [c for c in checkpoints if updates_of(c) is not None]
        latest = [max(pretraining, key=_model_order)] if pretraining else []
        out[task] = latest + sorted((c for c in checkpoints if c not in pretraining), key=_natural)
    return out


def accuracy_curves(
    records: Iterable[Record],
    checkpoints: Sequence[str] | None = None,
    cfg: SearchConfig | None = None,
) -> list[AccuracyCurve]:
    """Best eval value per d over the LRs (ok runs of the search's seed), one curve per
    (checkpoint, task, method), with the full metric and 90% threshold of that checkpoint and task.
    `checkpoints`: the ones to show (every task); None: `default_curve_checkpoints`."""
    records = list(records)
    rows = d90_rows(records, cfg)
    full = {(r["checkpoint"], r["task"]): r for r in rows if r["method"] == "full"}
    searches = {(r["checkpoint"], r["task"], r["method"]): r for r in rows}
    wanted = default_curve_checkpoints(records)
    if checkpoints is not None:
        wanted = {task: list(checkpoints) for task in wanted}

    best: dict[tuple[str, str, str], dict[int, tuple[float, float]]] = {}
    for r in records:
        key = (r.checkpoint, r.task, r.method)
        if r.method == "full" or r.checkpoint not in wanted.get(r.task, ()):
            continue
        if r.status != "ok" or r.eval_value is None or r.seed != searches[key]["seed"]:
            continue
        by_d = best.setdefault(key, {})
        # the best LR at d: the highest eval value; ties go to the smaller LR
        if r.d not in by_d or (-r.eval_value, r.lr) < (-by_d[r.d][0], by_d[r.d][1]):
            by_d[r.d] = (r.eval_value, r.lr)  # type: ignore[index]

    curves = []
    for (checkpoint, task, method), by_d in best.items():
        base = full.get((checkpoint, task), {})
        curves.append(
            AccuracyCurve(
                checkpoint=checkpoint,
                task=task,
                method=method,
                metric=searches[(checkpoint, task, method)]["metric"],
                points=tuple((d, v, lr) for d, (v, lr) in sorted(by_d.items())),
                full_metric=base.get("full_metric"),
                threshold=base.get("threshold"),
                d90=searches[(checkpoint, task, method)]["d90"],
                majority=base.get("majority"),
            )
        )
    curves.sort(key=lambda c: (c.task, _model_order(c.checkpoint), _method_rank(c.method)))
    return curves


@_styled
def accuracy_figure(
    records: Iterable[Record],
    checkpoints: Sequence[str] | None = None,
    cfg: SearchConfig | None = None,
) -> Figure | Skipped:
    curves = accuracy_curves(records, checkpoints, cfg)
    if not curves:
        return Skipped("no subspace run has finished with an eval value yet")
    tasks = sorted({c.task for c in curves})
    ncols = min(len(tasks), 3)
    nrows = math.ceil(len(tasks) / ncols)
    fig, axes = _new_figure(4.0 * ncols + 1.6, 3.2 * nrows, nrows=nrows, ncols=ncols)
    flat = list(axes.flat) if hasattr(axes, "flat") else [axes]
    several_methods = len({c.method for c in curves}) > 1
    colors = _checkpoint_colors(c.checkpoint for c in curves)
    for ax, task in zip(flat, tasks, strict=False):
        drawn_baselines: set[str] = set()
        for c in (c for c in curves if c.task == task):
            line, marker = _METHOD_STYLE[c.method]
            label = c.checkpoint + (f" ({_METHOD_LABEL[c.method]})" if several_methods else "")
            color = colors[c.checkpoint]
            ds = [p[0] for p in c.points]
            ax.plot(ds, [p[1] for p in c.points], line, marker=marker, markersize=3,
                    color=color, linewidth=1.3, label=label)  # fmt: skip
            if c.checkpoint in drawn_baselines:  # DID and SAID share one full run
                continue
            drawn_baselines.add(c.checkpoint)
            if c.threshold is not None:
                ax.axhline(c.threshold, color=color, linestyle="--", linewidth=1.0)
            if c.full_metric is not None:
                ax.axhline(c.full_metric, color=color, linestyle=":", linewidth=1.0)
            if c.majority is not None:
                ax.axhline(c.majority, color="0.55", linestyle="-.", linewidth=0.8)
        _log_axis(ax, "x", [p[0] for c in curves if c.task == task for p in c.points])
        ax.set_title(_task_label(task))
        ax.set_xlabel("Subspace dimension $d$")
        ax.set_ylabel(f"Evaluation {curves[0].metric}" if ax in flat[::ncols] else "")
    for ax in flat[len(tasks) :]:
        ax.set_visible(False)
    _baseline_legend(fig)
    fig.suptitle("Evaluation accuracy across subspace dimensions", fontsize=12)
    return fig


# --------------------------------------------------------------------------- Figures 4 and 5


@dataclass(frozen=True)
class GeneralizationPoint:
    checkpoint: str
    task: str
    method: str
    d90: int
    lr: float  # the LR of the run that defines d90
    eval_value: float
    train_value: float | None
    gap: float | None  # relative generalization gap; None without a train value (or eval = 1)


def defining_run(records: Iterable[Record], row: dict[str, Any]) -> Record | None:
    """The run that defines d90 of a search row: among the ok runs at d = hi (= d90) trained to
    their budget (`stop_at` null: the search's final run, a sweep's run, or every run when
    early stopping is off), the one with the best eval value (ties: the smaller LR). A run
    stopped at the threshold is never used: its accuracy is ~0.9 x full by construction. The
    paper selects "the training accuracy that provides us with the best evaluation metrics"
    (section 5.3), hence the best eval value."""
    at_hi = [
        r
        for r in records
        if (r.checkpoint, r.task, r.method, r.d, r.seed)
        == (row["checkpoint"], row["task"], row["method"], row["hi"], row["seed"])
        and r.status == "ok"
        and r.eval_value is not None
        and r.stop_at is None
    ]
    return min(at_hi, key=lambda r: (-r.eval_value, r.lr), default=None)  # type: ignore[operator]


def generalization_points(
    records: Iterable[Record], method: str | None = None, cfg: SearchConfig | None = None
) -> list[GeneralizationPoint]:
    """One point per (checkpoint, task) with a d90, for `method` (None: SAID, else DID)."""
    records = list(records)
    rows = d90_rows(records, cfg)
    method = method or _preferred_method(rows)
    # runs by (checkpoint, task, method, d, seed): one lookup per point, not a scan of the store
    by_point: dict[tuple[Any, ...], list[Record]] = {}
    for r in records:
        by_point.setdefault((r.checkpoint, r.task, r.method, r.d, r.seed), []).append(r)
    points = []
    for row in _subspace_rows_with_d90(rows):
        if row["method"] != method:
            continue
        key = (row["checkpoint"], row["task"], method, row["hi"], row["seed"])
        run = defining_run(by_point.get(key, []), row)
        if run is None or run.eval_value is None:
            continue
        gap = None
        if run.train_value is not None:
            g = relative_generalization_gap(run.train_value, run.eval_value)
            gap = None if math.isnan(g) else g
        points.append(
            GeneralizationPoint(
                row["checkpoint"],
                row["task"],
                method,
                row["d90"],
                run.lr,
                run.eval_value,
                run.train_value,
                gap,
            )
        )
    return points


@_styled
def eval_accuracy_figure(
    records: Iterable[Record], method: str | None = None, cfg: SearchConfig | None = None
) -> Figure | Skipped:
    points = generalization_points(records, method, cfg)
    if not points:
        return Skipped("no search has a d90 whose run was trained to its budget yet (final_run)")
    return _scatter_by_task(
        [(p.task, p.d90, p.eval_value) for p in points],
        ylabel="Evaluation accuracy",
        title=f"Evaluation accuracy against $d_{{90}}$ ({_METHOD_LABEL[points[0].method]})",
    )


@_styled
def generalization_gap_figure(
    records: Iterable[Record], method: str | None = None, cfg: SearchConfig | None = None
) -> Figure | Skipped:
    points = [p for p in generalization_points(records, method, cfg) if p.gap is not None]
    if not points:
        return Skipped("no d90-defining run has a train value (train_value) yet")
    return _scatter_by_task(
        [(p.task, p.d90, p.gap) for p in points],
        ylabel="Relative generalization gap",
        title=f"Generalization gap against $d_{{90}}$ ({_METHOD_LABEL[points[0].method]})",
    )


def _scatter_by_task(data: list[tuple[str, int, float]], ylabel: str, title: str) -> Figure:
    colors = _task_colors(task for task, _, _ in data)
    fig, ax = _new_figure(6.0, 4.0)
    for task in colors:
        xs = [x for t, x, _ in data if t == task]
        ys = [y for t, _, y in data if t == task]
        ax.scatter(xs, ys, s=22, color=colors[task], label=_task_label(task), zorder=3)
    _log_axis(ax, "x", [x for _, x, _ in data])
    ax.set_xlabel(r"$d_{90}$")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    _legend_right(ax)
    return fig


# --------------------------------------------------------------------------- Figure 3


class ModelPoint(NamedTuple):
    model: str
    task: str
    num_parameters: int
    d90: int
    method: str


def num_parameters_of(records: Iterable[Record]) -> int | None:
    """A model's parameter count, as the driver records it: `config["num_parameters"]` (or a
    top-level `num_parameters` field, kept in `extra`), full-run records first."""
    for r in sorted(records, key=lambda r: r.method != "full"):
        for source in (r.config, r.extra):
            n = source.get("num_parameters") if isinstance(source, dict) else None
            if isinstance(n, int) and not isinstance(n, bool) and n > 0:
                return n
    return None


def parameter_points(
    records: Iterable[Record], method: str | None = None, cfg: SearchConfig | None = None
) -> list[ModelPoint]:
    """(model, task, parameter count, d90) for models measured with `intdim d90`: checkpoint ids
    that are not pretraining checkpoints (those share one parameter count), with a recorded
    parameter count and a d90 for `method` (None: SAID, else DID)."""
    records = list(records)
    rows = d90_rows(records, cfg)
    method = method or _preferred_method(rows)
    by_model: dict[str, list[Record]] = {}
    for r in records:
        by_model.setdefault(r.checkpoint, []).append(r)
    points = []
    for row in _subspace_rows_with_d90(rows):
        if row["method"] != method or updates_of(row["checkpoint"]) is not None:
            continue
        n = num_parameters_of(by_model[row["checkpoint"]])
        if n is not None:
            points.append(ModelPoint(row["checkpoint"], row["task"], n, row["d90"], method))
    return points


@_styled
def parameters_figure(
    records: Iterable[Record], method: str | None = None, cfg: SearchConfig | None = None
) -> Figure | Skipped:
    points = parameter_points(records, method, cfg)
    models = {p.model for p in points}
    if len(models) < 2:
        return Skipped(
            f"needs d90 of 2 or more models with a parameter count, found {len(models)} "
            "(the driver records it as config.num_parameters)"
        )
    colors = _task_colors(p.task for p in points)
    fig, ax = _new_figure(6.4, 4.2)
    for task in colors:
        mine = [p for p in points if p.task == task]
        ax.scatter([p.num_parameters for p in mine], [p.d90 for p in mine], s=26,
                   color=colors[task], label=_task_label(task), zorder=3)  # fmt: skip
        if len(points) <= 30:  # the paper names every model; beyond ~30 names are unreadable
            for p in mine:
                ax.annotate(p.model.split("/")[-1], (p.num_parameters, p.d90), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")  # fmt: skip
    _log_axis(ax, "x", [p.num_parameters for p in points])
    _log_axis(ax, "y", [p.d90 for p in points])
    ax.set_xlabel("Number of parameters")
    ax.set_ylabel(r"$d_{90}$")
    ax.set_title(f"$d_{{90}}$ against parameter count ({_METHOD_LABEL[points[0].method]})")
    _legend_right(ax)
    return fig


# --------------------------------------------------------------------------- writing


FIGURES = {
    "d90_trajectory": trajectory_figure,
    "accuracy_vs_d": accuracy_figure,
    "eval_accuracy_vs_d90": eval_accuracy_figure,
    "generalization_gap_vs_d90": generalization_gap_figure,
    "d90_vs_parameters": parameters_figure,
}


@dataclass
class PlotReport:
    written: list[Path]
    skipped: dict[str, str]  # figure name -> why it was not written


def plot_records(
    records: Sequence[Record], out_dir: str | Path, cfg: SearchConfig | None = None
) -> PlotReport:
    """Draw every figure of `records` into out_dir as NAME.png and NAME.pdf."""
    report = PlotReport([], {})
    for name, make in FIGURES.items():
        fig = make(records, cfg=cfg)
        if isinstance(fig, Skipped):
            report.skipped[name] = fig.reason
            continue
        report.written += save_figure(fig, Path(out_dir) / name)
    return report


def plot(dir: str | Path, cfg: SearchConfig | None = None) -> list[Path]:
    """Write the figures of the records under `dir` into `dir/plots/`; the written paths."""
    return plot_records(load_records(dir), Path(dir) / PLOTS_DIR, cfg).written


@_styled
def save_figure(fig: Figure, stem: Path) -> list[Path]:
    """stem.png (150 dpi) and stem.pdf, each written atomically: a viewer that reloads the file
    while `intdim plot` runs (or a plot killed midway) never shows half a figure."""
    paths = []
    for fmt in ("png", "pdf"):
        buf = io.BytesIO()
        # No creation date in the PDF: the same records give the same bytes.
        meta = {"CreationDate": None} if fmt == "pdf" else {}
        fig.savefig(buf, format=fmt, dpi=DPI, bbox_inches="tight", metadata=meta)
        path = stem.with_suffix(f".{fmt}")
        atomic_write_bytes(path, buf.getvalue())
        paths.append(path)
    return paths


# --------------------------------------------------------------------------- Table 1


def _cell(row: dict[str, Any] | None) -> str:
    if row is None or row["status"] in ("running", "failed"):
        return "—"
    if row["status"] == "not_computable":
        return "n/c"
    if row["status"] == "not_reached":
        return f">{row['lo']:,}"  # lo is d_max there: even d_max did not reach
    if row["lo"] is None:
        return f"≤{row['hi']:,}"  # d_min itself reached
    return f"{row['hi']:,}"


TABLE_NOTES = (
    "Numbers are d90 = hi, the upper end of the search's final bracket [lo, hi]: the smallest d "
    "measured that reached 90% of full fine-tuning; `intdim status` shows the brackets.",
    "≤N: d_min = N already reached. >N: not reached even at d_max = N. n/c: not computable (90% "
    "of full fine-tuning does not beat the majority class, or training was unstable). "
    "—: no finished search (not started, running or failed).",
)


def table_markdown(records: Iterable[Record], cfg: SearchConfig | None = None) -> str:
    """The paper's Table 1: a row per model (checkpoint id), a column per method x task."""
    rows = d90_rows(records, cfg)
    search = {(r["checkpoint"], r["task"], r["method"]): r for r in rows if r["method"] != "full"}
    methods = [m for m in ("said", "did") if any(k[2] == m for k in search)]
    if not methods:
        return "no d90 searches yet (only full fine-tuning records)"
    tasks = sorted({r["task"] for r in rows})
    models = sorted({r["checkpoint"] for r in rows}, key=_model_order)
    header = ["Model"] + [f"{_METHOD_LABEL[m]} {_task_label(t)}" for m in methods for t in tasks]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "---|" + "---:|" * (len(header) - 1),
    ]
    for model in models:
        cells = [model] + [_cell(search.get((model, t, m))) for m in methods for t in tasks]
        lines.append("| " + " | ".join(cells) + " |")
    caption = "Table 1: d90 computed with " + " and ".join(_METHOD_LABEL[m] for m in methods)
    return "\n".join([*lines, "", caption + ".", "", *(f"- {note}" for note in TABLE_NOTES)])


def table(dir: str | Path, cfg: SearchConfig | None = None) -> str:
    return table_markdown(load_records(dir), cfg)


# --------------------------------------------------------------------------- drawing helpers


def _method_rank(method: str) -> int:
    return _METHOD_ORDER.index(method)


def _model_order(checkpoint: str) -> tuple[bool, int, list[Any]]:
    # Pretraining checkpoints by updates first, then other models by name (natural order).
    updates = updates_of(checkpoint)
    return (updates is None, updates or 0, _natural(checkpoint))


def _task_label(task: str) -> str:
    return _TASK_LABEL.get(task, task)


def _task_colors(tasks: Iterable[str]) -> dict[str, Any]:
    # One color per task, by sorted name, so a task keeps its color across the figures of a run.
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {t: cmap(i % 10) for i, t in enumerate(sorted(set(tasks)))}


def _checkpoint_colors(checkpoints: Iterable[str]) -> dict[str, Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {c: cmap(i % 10) for i, c in enumerate(sorted(set(checkpoints), key=_model_order))}


def _new_figure(width: float, height: float, nrows: int = 1, ncols: int = 1) -> tuple[Figure, Any]:
    """A Figure built without pyplot (no global state, no display: any backend, Agg for files)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained", dpi=DPI)
    return fig, fig.subplots(nrows, ncols, squeeze=nrows * ncols == 1)


def _legend_right(ax: Axes) -> None:
    # Outside the axes: the lines the reader came for stay uncovered.
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, borderaxespad=0.0)


def _baseline_legend(fig: Figure) -> None:
    """One legend for all panels (a checkpoint has one color everywhere), plus the baselines."""
    from matplotlib.lines import Line2D

    entries: dict[str, Any] = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    entries["90% of full fine-tuning"] = Line2D([], [], color="0.3", linestyle="--", linewidth=1)
    entries["full fine-tuning"] = Line2D([], [], color="0.3", linestyle=":", linewidth=1)
    entries["majority class"] = Line2D([], [], color="0.55", linestyle="-.", linewidth=0.8)
    fig.legend(list(entries.values()), list(entries), loc="outside right upper", frameon=False)


def _log_axis(ax: Axes, which: str, values: Sequence[float]) -> None:
    """Log scale with at least two labelled decades and no minor-tick labels: matplotlib labels
    minor ticks when the data span less than a decade, and those labels overlap (2x10^3 3x10^3)."""
    from matplotlib.ticker import NullFormatter

    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    axis.set_minor_formatter(NullFormatter())
    lo, hi = min(values) / 1.5, max(values) * 1.5  # a margin so end points are not cut
    if math.floor(math.log10(hi)) - math.ceil(math.log10(lo)) < 1:  # fewer than 2 decade ticks
        lo_exp = math.floor(math.log10(lo))
        lo, hi = 10.0**lo_exp, 10.0 ** max(math.ceil(math.log10(hi)), lo_exp + 1)
    (ax.set_xlim if which == "x" else ax.set_ylim)(lo, hi)


def _thousands_formatter() -> Any:
    from matplotlib.ticker import FuncFormatter

    # 20k, 1.5k; below a thousand the number itself (a CPU demo pretrains for hundreds of updates)
    return FuncFormatter(lambda x, _: f"{x / 1000:g}k" if abs(x) >= 1000 else f"{x:g}")
