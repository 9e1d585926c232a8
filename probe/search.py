"""The d90 search as a pure function of finished records (paper section 5.1, made restartable).

    cfg = load_config(SearchConfig, "configs/probe/search.yaml")
    key = SearchKey(checkpoint="checkpoint_20000", task="mrpc", method="said")
    todo = plan_next(read_records(out), cfg, key)   # list[RunSpec] to run, or a SearchResult

The driver runs what `plan_next` returns (a job array), each run writes one record, and the
driver calls `plan_next` again. The search keeps no state of its own: every call replays the
search from the beginning over the records, so a killed driver resumes exactly where it was and
never re-proposes a finished run. Proposals are a deterministic function of finished records, so
a run that is still in flight is proposed again, identically (same run id): the driver skips ids
it already submitted.

The rules (docs/probe.md has the long version):
- Full fine-tuning first, once per LR in `full_lrs`; the full metric is the best eval value.
  threshold = threshold_fraction * full metric. "Not computable" when every full run is
  unstable, or the threshold does not beat the majority class (then a subspace run could "reach"
  it while answering the majority class; this includes full fine-tuning that does not beat it).
- A subspace run "reaches" when its best eval value is >= threshold (so it beats the majority
  class too); search runs get the threshold as `stop_at` so the trainer can stop them there.
- A point d is resolved once all its LRs have finished. It is "reached" if any LR reached,
  "unstable" if every LR's loss turned NaN/inf, "failed" if a run failed (an error) and none
  reached, else "not_reached". Unstable counts as not reached.
- Bracket over resolved points, tolerant of noise: hi = the smallest reached d; lo = the largest
  not-reached d below hi. A not-reached d above hi contradicts monotonicity; it is ignored for
  the bracket and reported in `SearchResult.noisy`. Before anything reached, hi is d_max
  (untested); before anything below hi failed, lo is d_min (untested).
- Each round proposes k log-spaced interior points of [lo, hi] (k = 1: the geometric midpoint,
  the paper's binary search). The search ends when hi/lo <= ratio. An untested end is tested
  last: d_max, to tell "not reached" from d90 = d_max; d_min, to tell d90 = d_min from a bracket.
- LRs per point (paper 5.1): d >= lr_reuse_below gets fixed_lr alone. Below it, the best LR of
  the nearest d in the search's LR hints when it has any (`lr_hints`: "previous", the best LRs
  per d of the closest earlier pretraining checkpoint in the same records; or a directory of
  records, e.g. a sweep's), else the whole grid `lrs` at every d. The hints a search starts with
  are written into its records and read back from them, so a search never changes LRs midway.
  `reuse_best_lr: true` (a cheaper, biased shortcut) reuses the first grid point's best LR.
- Once d90 is found, its run is trained again to its budget (`final_run`): the accuracy and the
  generalization gap at d90 (Figures 4-5) are not those of a run stopped at the threshold.
- A failed point stops the search only if it matters: if it lies strictly inside the bracket
  once the rest of its round is counted. The driver retries failed runs when it is run again.
- Sweep mode (Figure 1): every point of a fixed log grid between d_min and d_max with the whole
  LR grid and no early stopping; d90 and the bracket come from the curve by the same rule.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from intdim.errors import UserError
from probe.records import Record, run_id_of

MODES = ("search", "sweep")
HINTS_PREVIOUS, HINTS_NONE = "previous", "none"
SUBSPACE_METHODS = ("did", "said")
_EPS = 1e-12  # a run that lands exactly on the threshold has reached it, despite float rounding


@dataclass
class SearchConfig:
    mode: str = "search"  # search (binary / k-ary bracketing) | sweep (fixed log grid, Fig. 1)
    d_min: int = 100
    d_max: int = 4_000_000
    ratio: float = 1.25  # stop when hi / lo <= ratio
    k: int = 1  # points per round; 1 is the paper's binary search, k > 1 fills a job array
    # The LR grid for subspace training (the paper searched four). These are starting values:
    # tune them with a sweep on your model, whose best LRs `best_lrs` hands back as lr_hints.
    lrs: list[float] = field(default_factory=lambda: [1e-3, 3e-3, 1e-2, 3e-2])
    lr_reuse_below: int | None = 10_000  # d below: per-d LRs (hints or grid); null: everywhere
    fixed_lr: float = 1e-2  # the one LR for d >= lr_reuse_below (paper 5.1)
    # Per-d LRs below lr_reuse_below: "previous" (the closest earlier checkpoint_<n> in the same
    # records), "none" (the grid at every d), or a directory of records (a sweep's OUT).
    lr_hints: str = HINTS_PREVIOUS
    reuse_best_lr: bool = False  # true: no hints -> the first grid point's best LR everywhere
    final_run: bool = True  # retrain the d90 run to its budget (Figures 4-5)
    threshold_fraction: float = 0.9  # d90: 90% of the full fine-tuning metric
    # full fine-tuning LR grid: RoBERTa's GLUE recipe (the best eval value is the full solution)
    full_lrs: list[float] = field(default_factory=lambda: [1e-5, 2e-5, 3e-5])
    seed: int = 0  # seed of every run (projection, head init, data order)
    early_stop: bool = True  # give search runs the threshold as a stopping target
    sweep_points: int = 100  # sweep mode: points on the log grid between d_min and d_max

    def __post_init__(self) -> None:
        def bad(msg: str) -> UserError:
            return UserError(f"search config: {msg}")

        if self.mode not in MODES:
            raise bad(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if not 1 <= self.d_min < self.d_max:
            raise bad(f"need 1 <= d_min < d_max, got d_min={self.d_min}, d_max={self.d_max}")
        if not self.ratio > 1:
            raise bad(f"ratio must be > 1, got {self.ratio}")
        if self.k < 1:
            raise bad(f"k must be >= 1, got {self.k}")
        if not self.lrs or any(lr <= 0 for lr in self.lrs) or len(set(self.lrs)) != len(self.lrs):
            raise bad(f"lrs must be distinct positive numbers, got {self.lrs}")
        if not self.full_lrs or any(lr <= 0 for lr in self.full_lrs):
            raise bad(f"full_lrs must be positive numbers, got {self.full_lrs}")
        if self.fixed_lr <= 0:
            raise bad(f"fixed_lr must be positive, got {self.fixed_lr}")
        if self.lr_reuse_below is not None and self.lr_reuse_below < 1:
            raise bad(f"lr_reuse_below must be positive or null, got {self.lr_reuse_below}")
        if not 0 < self.threshold_fraction <= 1:
            raise bad(f"threshold_fraction must be in (0, 1], got {self.threshold_fraction}")
        if self.sweep_points < 2:
            raise bad(f"sweep_points must be >= 2, got {self.sweep_points}")
        if self.seed < 0:
            raise bad(f"seed must be >= 0, got {self.seed}")
        if not self.lr_hints:
            raise bad('lr_hints must be "previous", "none" or a directory of records')
        self.lrs = [float(x) for x in self.lrs]
        self.full_lrs = [float(x) for x in self.full_lrs]
        self.fixed_lr = float(self.fixed_lr)


@dataclass(frozen=True)
class SearchKey:
    """What one search measures: d90 of `method` for `task` on `checkpoint`."""

    checkpoint: str
    task: str
    method: str = "said"

    def __post_init__(self) -> None:
        if self.method not in SUBSPACE_METHODS:
            raise UserError(f"search method must be did or said, not {self.method!r}")


@dataclass(frozen=True)
class LRHints:
    """The best LR per d a search takes its LRs from, and where they came from."""

    source: str  # "none", a checkpoint id, or "<records dir>:<checkpoint id>"
    lrs: tuple[tuple[int, float], ...] = ()

    @classmethod
    def of(cls, source: str, lrs: Mapping[int, float]) -> LRHints:
        return cls(source, tuple(sorted((int(d), float(lr)) for d, lr in lrs.items())))

    def to_json(self) -> dict:
        return {"from": self.source, "lrs": {str(d): lr for d, lr in self.lrs}}

    @classmethod
    def from_json(cls, obj: Mapping) -> LRHints:
        return cls.of(str(obj.get("from", "?")), {int(d): lr for d, lr in obj["lrs"].items()})


@dataclass(frozen=True)
class RunSpec:
    """One training run to do. `stop_at` is the early-stopping target (None: train to the end).
    `lr_hints` (search runs) goes into the record, which freezes the search's LR rule."""

    checkpoint: str
    task: str
    method: str  # full | did | said
    d: int | None
    lr: float
    seed: int
    stop_at: float | None = None
    lr_hints: LRHints | None = None

    @property
    def run_id(self) -> str:
        return run_id_of(self)

    def record_fields(self) -> dict:
        """The fields a Record of this run carries to say which run it is."""
        out = dataclasses.asdict(self)
        del out["lr_hints"]
        return out

    def record_config(self) -> dict:
        """What the run adds to its record's config (the search's LR hints)."""
        return {} if self.lr_hints is None else {"lr_hints": self.lr_hints.to_json()}


@dataclass(frozen=True)
class Point:
    """A resolved d: its outcome and the LR that did best there."""

    d: int
    outcome: str  # reached | not_reached | unstable | failed
    lrs: tuple[float, ...]
    best_lr: float | None
    best_eval: float | None


@dataclass(frozen=True)
class SearchResult:
    status: str  # done | not_reached | not_computable | failed
    d90: int | None = None
    lo: int | None = None  # largest d that did not reach; None when d_min itself reached
    hi: int | None = None
    full_metric: float | None = None
    threshold: float | None = None
    reason: str = ""
    points: tuple[Point, ...] = ()
    unstable: tuple[int, ...] = ()  # points where every LR was unstable
    noisy: tuple[int, ...] = ()  # not-reached points above d90 (ignored by the monotone rule)
    rounds: int = 0
    majority: float | None = None  # the majority class's eval value (from the full runs)
    final: Record | None = None  # the d90 run trained to its budget (final_run), once done


@dataclass(frozen=True)
class SearchState:
    """Where a search stands: the runs it waits for, or its result; plus the current bracket."""

    pending: tuple[RunSpec, ...]
    result: SearchResult | None
    lo: int | None
    hi: int | None
    full_metric: float | None
    threshold: float | None
    rounds: int  # rounds fully resolved so far
    majority: float | None = None


# --------------------------------------------------------------------------- helpers


def interior_points(lo: int, hi: int, k: int) -> list[int]:
    """k log-spaced integer points strictly between lo and hi (fewer if integers run out)."""
    span = math.log(hi) - math.log(lo)
    pts = {round(math.exp(math.log(lo) + span * i / (k + 1))) for i in range(1, k + 1)}
    return sorted(p for p in pts if lo < p < hi)


def sweep_grid(d_min: int, d_max: int, n: int) -> list[int]:
    """n log-spaced integers from d_min to d_max inclusive (duplicates after rounding merged)."""
    span = math.log(d_max) - math.log(d_min)
    return sorted({round(math.exp(math.log(d_min) + span * i / (n - 1))) for i in range(n)})


def reaches(value: float, threshold: float) -> bool:
    """Whether an eval value reaches the threshold (the trainer's early stop uses this too)."""
    return value >= threshold - _EPS


def _reached(rec: Record, threshold: float) -> bool:
    return rec.status == "ok" and rec.eval_value is not None and reaches(rec.eval_value, threshold)


def _best(recs: Sequence[Record], threshold: float | None) -> Record | None:
    """The best run at one point: a reaching run with the fewest steps (it reached fastest),
    else the highest eval value; ties go to the smaller LR, so the choice is deterministic."""
    ok = [r for r in recs if r.status == "ok" and r.eval_value is not None]
    if not ok:
        return None
    if threshold is not None:
        hits = [r for r in ok if _reached(r, threshold)]
        if hits:
            return min(hits, key=lambda r: (r.steps, -r.eval_value, r.lr))  # type: ignore[operator]
    return min(ok, key=lambda r: (-r.eval_value, r.lr))  # type: ignore[operator]


def _nearest(d: int, candidates: Iterable[int]) -> int | None:
    """The candidate closest to d in log space; ties go to the smaller one."""
    cands = sorted(candidates)
    if not cands:
        return None
    return min(cands, key=lambda c: (abs(math.log(c) - math.log(d)), c))


def best_lrs(records: Iterable[Record], key: SearchKey, seed: int = 0) -> dict[int, float]:
    """d -> the best LR there, for `lr_hints`: from a sweep, or the search of an earlier
    checkpoint (the paper reuses the LRs found in its section 4). Only points where two or
    more LRs finished count: elsewhere no LR was chosen (a fixed or reused LR)."""
    by_d: dict[int, list[Record]] = {}
    for r in records:
        if (r.checkpoint, r.task, r.method, r.seed) == (key.checkpoint, key.task, key.method, seed):
            by_d.setdefault(r.d, []).append(r)  # type: ignore[arg-type]
    out = {}
    for d, recs in by_d.items():
        if len({r.lr for r in recs}) < 2:
            continue
        # early-stopped runs carry their target: reaching it fastest is what "best" means then
        targets = [r.stop_at for r in recs if r.stop_at is not None]
        best = _best(recs, max(targets) if targets else None)
        if best is not None:
            out[d] = best.lr
    return out


_CHECKPOINT_N = re.compile(r"^checkpoint_(\d+)$")  # pretraining checkpoints (pretrain/)


def natural_key(text: str) -> list:
    """checkpoint_9000 before checkpoint_10000."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def lr_hints_for(
    records: Iterable[Record],
    cfg: SearchConfig,
    key: SearchKey,
    hint_records: Iterable[Record] = (),
) -> LRHints:
    """The LR hints of the search `key`: the ones its first recorded run used (a search never
    changes LRs midway), else what `cfg.lr_hints` names, found now:
    - "previous": best LRs per d of the closest earlier checkpoint_<n> in `records` (same task,
      method and seed) that has any;
    - "none": none (the grid at every d);
    - a directory: `hint_records`, read from it by the caller; of their checkpoints with hints
      for this task and method, the last one.
    """
    records = list(records)
    own = [
        r
        for r in records
        if (r.checkpoint, r.task, r.method, r.seed) == (*_key3(key), cfg.seed)
        and isinstance(r.config.get("lr_hints"), Mapping)
    ]
    if own:
        first = min(own, key=lambda r: (r.finished_at, r.run_id))
        return LRHints.from_json(first.config["lr_hints"])
    if cfg.lr_hints == HINTS_NONE:
        return LRHints(HINTS_NONE)
    if cfg.lr_hints == HINTS_PREVIOUS:
        m = _CHECKPOINT_N.match(key.checkpoint)
        if m is None:  # a model, not a pretraining checkpoint: there is no "previous"
            return LRHints(HINTS_NONE)
        pool = [
            r
            for r in records
            if (mm := _CHECKPOINT_N.match(r.checkpoint)) and int(mm[1]) < int(m[1])
        ]
        prefix = ""
    else:
        pool, prefix = list(hint_records), f"{cfg.lr_hints}:"
    for ckpt in sorted({r.checkpoint for r in pool}, key=natural_key, reverse=True):
        hints = best_lrs(pool, SearchKey(ckpt, key.task, key.method), cfg.seed)
        if hints:
            return LRHints.of(prefix + ckpt, hints)
    return LRHints(HINTS_NONE)


def _key3(key: SearchKey) -> tuple[str, str, str]:
    return key.checkpoint, key.task, key.method


class _Index:
    """The finished records that belong to one search, by (d, lr): `runs` holds the search's own
    runs (stopped at the threshold when `early_stop`), `budget` the runs trained to their budget
    (a sweep's, the final run's)."""

    def __init__(self, records: Iterable[Record], key: SearchKey, seed: int, early: bool) -> None:
        self.full: dict[float, Record] = {}
        self.runs: dict[tuple[int, float], Record] = {}
        self.budget: dict[tuple[int, float], Record] = {}
        for r in records:
            if r.checkpoint != key.checkpoint or r.task != key.task or r.seed != seed:
                continue
            if r.method == "full":
                self.full[r.lr] = r
            elif r.method == key.method:
                if (r.stop_at is not None) == early:
                    self.runs[(r.d, r.lr)] = r  # type: ignore[index]
                if r.stop_at is None:
                    self.budget[(r.d, r.lr)] = r  # type: ignore[index]


# --------------------------------------------------------------------------- the replay


def _full_phase(
    idx: _Index, cfg: SearchConfig, key: SearchKey
) -> tuple[list[RunSpec], SearchResult | None, float | None, float | None, float | None]:
    """Full fine-tuning: (runs still needed, a terminal result or None, full metric, threshold,
    majority)."""
    missing = [lr for lr in cfg.full_lrs if lr not in idx.full]
    if missing:
        specs = [RunSpec(key.checkpoint, key.task, "full", None, lr, cfg.seed) for lr in missing]
        return specs, None, None, None, None
    recs = [idx.full[lr] for lr in cfg.full_lrs]
    baselines = [r.majority_baseline for r in recs if r.majority_baseline is not None]
    majority = max(baselines) if baselines else None
    ok = [r for r in recs if r.status == "ok"]
    if not ok:
        failed = [r for r in recs if r.status == "failed"]
        if failed:
            why = f"full fine-tuning failed ({failed[0].error}); run the command again to retry"
            return [], SearchResult("failed", reason=why, majority=majority), None, None, majority
        why = "full fine-tuning was unstable (loss NaN/inf) at every LR"
        result = SearchResult("not_computable", reason=why, majority=majority)
        return [], result, None, None, majority
    full = max(r.eval_value for r in ok)  # type: ignore[type-var]
    threshold = cfg.threshold_fraction * full
    if majority is not None and threshold <= majority + _EPS:
        if full <= majority + _EPS:
            why = f"full fine-tuning ({full:.4f}) does not beat the majority class ({majority:.4f})"
        else:
            why = (
                f"the threshold {threshold:.4f} ({cfg.threshold_fraction:g} x full fine-tuning "
                f"{full:.4f}) does not beat the majority class ({majority:.4f}): a run answering "
                "the majority class would reach it"
            )
        result = SearchResult(
            "not_computable", full_metric=full, threshold=threshold, reason=why, majority=majority
        )
        return [], result, full, threshold, majority
    return [], None, full, threshold, majority


def _lrs_for(
    d: int, cfg: SearchConfig, grid_points: Mapping[int, float], hints: LRHints
) -> tuple[float, ...]:
    """The LRs to try at d (see the module docstring). grid_points: d -> best LR of earlier
    points that ran the whole grid."""
    if cfg.lr_reuse_below is not None and d >= cfg.lr_reuse_below:
        return (cfg.fixed_lr,)
    source = dict(hints.lrs) or (grid_points if cfg.reuse_best_lr else {})
    near = _nearest(d, source)
    if near is not None:
        return (float(source[near]),)
    return tuple(cfg.lrs)


def _resolve(d: int, lrs: Sequence[float], idx: _Index, threshold: float) -> Point | None:
    """The point's outcome once every LR has finished; None while any is missing."""
    recs = [idx.runs.get((d, lr)) for lr in lrs]
    if any(r is None for r in recs):
        return None
    done: list[Record] = recs  # type: ignore[assignment]
    best = _best(done, threshold)
    if any(_reached(r, threshold) for r in done):
        outcome = "reached"
    elif any(r.status == "failed" for r in done):
        outcome = "failed"
    elif all(r.status == "unstable" for r in done):
        outcome = "unstable"
    else:
        outcome = "not_reached"
    return Point(
        d,
        outcome,
        tuple(lrs),
        best.lr if best else None,
        best.eval_value if best else None,
    )


def _bracket(points: Mapping[int, Point], cfg: SearchConfig) -> tuple[int, bool, int, bool]:
    """(lo, lo_tested, hi, hi_tested) by the noise-tolerant monotone rule."""
    reached = [d for d, p in points.items() if p.outcome == "reached"]
    hi = min(reached) if reached else cfg.d_max
    below = [d for d, p in points.items() if p.outcome in ("not_reached", "unstable") and d < hi]
    lo = max(below) if below else cfg.d_min
    return lo, lo in points, hi, hi in points


def _finish(
    points: Mapping[int, Point],
    cfg: SearchConfig,
    full: float,
    threshold: float,
    rounds: int,
) -> SearchResult | None:
    """The result if the resolved points settle the search, else None (more rounds needed)."""
    lo, lo_tested, hi, hi_tested = _bracket(points, cfg)
    ordered = tuple(points[d] for d in sorted(points))
    unstable = tuple(d for d in sorted(points) if points[d].outcome == "unstable")
    common = dict(full_metric=full, threshold=threshold, points=ordered, unstable=unstable)
    common["rounds"] = rounds
    reached_any = any(p.outcome == "reached" for p in points.values())
    if not reached_any:
        if hi_tested:  # d_max itself was run and did not reach
            if points[hi].outcome == "unstable":
                why = f"subspace training was unstable at d_max = {hi} at every LR"
                return SearchResult("not_computable", lo=lo, reason=why, **common)
            why = f"even d_max = {hi} does not reach {threshold:.4f}"
            return SearchResult("not_reached", lo=hi, reason=why, **common)
        return None
    common["noisy"] = tuple(
        d for d in sorted(points) if d > hi and points[d].outcome in ("not_reached", "unstable")
    )
    if hi == cfg.d_min:
        why = f"d_min = {hi} already reaches the threshold; d90 <= d_min"
        return SearchResult("done", d90=hi, lo=None, hi=hi, reason=why, **common)
    narrow = hi / lo <= cfg.ratio or not interior_points(lo, hi, 1)
    if narrow and lo_tested:
        return SearchResult("done", d90=hi, lo=lo, hi=hi, **common)
    return None


def _failed_blocks(points: Mapping[int, Point], cfg: SearchConfig) -> Point | None:
    """A failed point inside the bracket: its outcome would change the answer. The ends count
    too: a failed point can only sit on an end that is still an assumption (d_min, d_max)."""
    lo, _, hi, _ = _bracket(points, cfg)
    for d in sorted(points):
        if points[d].outcome == "failed" and lo <= d <= hi:
            return points[d]
    return None


def _next_round(points: Mapping[int, Point], cfg: SearchConfig) -> list[int]:
    lo, lo_tested, hi, hi_tested = _bracket(points, cfg)
    if hi / lo > cfg.ratio:
        inner = interior_points(lo, hi, cfg.k)
        if inner:
            return inner
    # The bracket is narrow enough: test whichever end is still an assumption.
    if not hi_tested:
        return [hi]
    return [lo] if not lo_tested else []


def search_state(
    records: Iterable[Record],
    cfg: SearchConfig,
    key: SearchKey,
    lr_hints: Mapping[int, float] | None = None,
    hint_records: Iterable[Record] = (),
) -> SearchState:
    """Replay the search over the finished records (see the module docstring).

    `records` may hold other searches' records (a whole OUT): "previous" LR hints come from
    them. `lr_hints` (d -> LR) overrides the hints; `hint_records` are those of the directory
    that `cfg.lr_hints` names, read by the caller."""
    records = list(records)
    early = cfg.mode == "search" and cfg.early_stop
    idx = _Index(records, key, cfg.seed, early)
    full_specs, verdict, full, threshold, majority = _full_phase(idx, cfg, key)
    if cfg.mode == "sweep":
        return _sweep_state(idx, cfg, key, full_specs, verdict, full, threshold, majority)
    if full_specs or verdict is not None:
        return SearchState(tuple(full_specs), verdict, None, None, full, threshold, 0, majority)
    assert full is not None and threshold is not None
    stop_at = threshold if early else None
    if lr_hints is not None:
        hints = LRHints.of("given", lr_hints)
    else:
        hints = lr_hints_for(records, cfg, key, hint_records)

    def state(pending, result, lo, hi, rounds) -> SearchState:
        return SearchState(tuple(pending), result, lo, hi, full, threshold, rounds, majority)

    points: dict[int, Point] = {}
    grid_points: dict[int, float] = {}  # d -> best LR, for points that ran the whole grid
    rounds = 0
    while True:
        result = _finish(points, cfg, full, threshold, rounds)
        if result is not None:
            result = dataclasses.replace(result, majority=majority)
            return _with_final_run(result, points, idx, cfg, key, hints, early, state)
        round_ds = [d for d in _next_round(points, cfg) if d not in points]
        if not round_ds:  # cannot happen with a valid config; guard against an endless loop
            raise RuntimeError(f"d90 search made no progress with points {sorted(points)}")
        plan = {d: _lrs_for(d, cfg, grid_points, hints) for d in round_ds}
        resolved = {d: _resolve(d, lrs, idx, threshold) for d, lrs in plan.items()}
        waiting = [d for d, p in resolved.items() if p is None]
        if waiting:
            lo, _, hi, _ = _bracket(points, cfg)
            pending = [
                RunSpec(key.checkpoint, key.task, key.method, d, lr, cfg.seed, stop_at, hints)
                for d in waiting
                for lr in plan[d]
                if (d, lr) not in idx.runs
            ]
            return state(pending, None, lo, hi, rounds)
        rounds += 1
        for d, p in resolved.items():
            assert p is not None
            points[d] = p
            if len(p.lrs) == len(cfg.lrs) and p.best_lr is not None:
                grid_points[d] = p.best_lr
        blocker = _failed_blocks(points, cfg)
        if blocker is not None:
            lo, _, hi, _ = _bracket(points, cfg)
            why = (
                f"runs at d = {blocker.d} failed and d lies inside the bracket [{lo}, {hi}]; "
                "run the command again to retry them"
            )
            ordered = tuple(points[d] for d in sorted(points))
            result = SearchResult(
                "failed", None, lo, hi, full, threshold, why, ordered, rounds=rounds,
                majority=majority,
            )  # fmt: skip
            return state((), result, lo, hi, rounds)


def _with_final_run(result, points, idx, cfg, key, hints, early, state) -> SearchState:
    """The settled search, plus its d90 run trained to the budget when `final_run` asks for it
    (pending until it has a record; with early_stop off the d90 run is that run already)."""
    if result.status != "done" or result.d90 is None:
        return state((), result, result.lo, result.hi, result.rounds)
    best_lr = points[result.d90].best_lr
    if best_lr is None:  # cannot happen for a reached point; keep the result as it is
        return state((), result, result.lo, result.hi, result.rounds)
    final = idx.budget.get((result.d90, best_lr))
    if final is None and early and cfg.final_run:
        spec = RunSpec(key.checkpoint, key.task, key.method, result.d90, best_lr, cfg.seed,
                       None, hints)  # fmt: skip
        return state((spec,), result, result.lo, result.hi, result.rounds)
    result = dataclasses.replace(result, final=final)
    return state((), result, result.lo, result.hi, result.rounds)


def _sweep_state(
    idx: _Index,
    cfg: SearchConfig,
    key: SearchKey,
    full_specs: list[RunSpec],
    verdict: SearchResult | None,
    full: float | None,
    threshold: float | None,
    majority: float | None,
) -> SearchState:
    """Sweep mode: all grid points at once, whole LR grid, no early stopping (Figure 1)."""

    def state(pending, result, lo, hi, rounds) -> SearchState:
        return SearchState(tuple(pending), result, lo, hi, full, threshold, rounds, majority)

    if verdict is not None:
        return state((), verdict, None, None, 0)
    grid = sweep_grid(cfg.d_min, cfg.d_max, cfg.sweep_points)
    pending = [
        RunSpec(key.checkpoint, key.task, key.method, d, lr, cfg.seed, None)
        for d in grid
        for lr in cfg.lrs
        if (d, lr) not in idx.runs
    ]
    if full_specs or pending:  # sweep runs need no threshold, so they go out with full runs
        return state(full_specs + pending, None, None, None, 0)
    assert full is not None and threshold is not None
    points = {}
    for d in grid:
        p = _resolve(d, cfg.lrs, idx, threshold)
        assert p is not None
        points[d] = p
    # The sweep's ends are the search's ends: an unreached d_max means "not reached".
    sweep_cfg = _SweepBounds(d_min=grid[0], d_max=grid[-1], ratio=math.inf)
    blocker = _failed_blocks(points, sweep_cfg)  # type: ignore[arg-type]
    result = _finish(points, sweep_cfg, full, threshold, 1)  # type: ignore[arg-type]
    if blocker is not None:
        lo, _, hi, _ = _bracket(points, sweep_cfg)  # type: ignore[arg-type]
        ordered = tuple(points[d] for d in sorted(points))
        why = f"runs at d = {blocker.d} failed inside the bracket [{lo}, {hi}]; run again to retry"
        result = SearchResult("failed", None, lo, hi, full, threshold, why, ordered, rounds=1)
    assert result is not None  # every grid point is tested, so the curve always settles
    final = None
    if result.status == "done" and result.d90 is not None:
        best_lr = points[result.d90].best_lr
        final = idx.budget.get((result.d90, best_lr)) if best_lr is not None else None
    result = dataclasses.replace(result, majority=majority, final=final)
    return state((), result, result.lo, result.hi, 1)


@dataclass(frozen=True)
class _SweepBounds:
    # The slice of SearchConfig that _bracket/_finish read; ratio = inf: the grid is the grid.
    d_min: int
    d_max: int
    ratio: float


def plan_next(
    records: Iterable[Record],
    cfg: SearchConfig,
    key: SearchKey,
    lr_hints: Mapping[int, float] | None = None,
    hint_records: Iterable[Record] = (),
) -> list[RunSpec] | SearchResult:
    """The runs the search needs next (not yet finished), or its result when nothing is left."""
    state = search_state(records, cfg, key, lr_hints, hint_records)
    if state.pending or state.result is None:
        return list(state.pending)
    return state.result


def full_state(
    records: Iterable[Record], cfg: SearchConfig, checkpoint: str, task: str
) -> SearchState:
    """Full fine-tuning alone (shared by the DID and SAID searches of a checkpoint and task):
    the full runs still needed, or a terminal verdict, plus the full metric, threshold and the
    majority class's value."""
    key = SearchKey(checkpoint, task)
    specs, verdict, full, threshold, majority = _full_phase(
        _Index(records, key, cfg.seed, early=False), cfg, key
    )
    return SearchState(tuple(specs), verdict, None, None, full, threshold, 0, majority)


def threshold_for(records: Iterable[Record], cfg: SearchConfig, key: SearchKey) -> float | None:
    """The early-stopping target for subspace runs of `key`, once full fine-tuning is done."""
    return search_state(records, cfg, key).threshold
