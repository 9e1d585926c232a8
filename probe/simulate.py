"""A fake trainer for the d90 search: synthetic metric-of-d curves and a simple model of steps.

The tests and benchmarks/bench_search.py drive `plan_next` with it exactly as the real driver
does (plan, run, write a record per run, plan again) but without training anything:

    curve = Curve(d_star=1000)
    outcome = drive(SearchConfig(), SearchKey("ckpt", "mrpc"), curve)
    outcome.result.d90, outcome.steps

Steps model: a run trains for `max_steps` and evaluates every `eval_every` steps; its metric rises
from the majority-class floor towards its final value as 1 - exp(-3 t / max_steps) (normalised to
reach the final value at max_steps). Given `stop_at`, a run stops at the first evaluation at or
above it, which is the whole point of early stopping.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from probe.records import Record
from probe.search import RunSpec, SearchConfig, SearchKey, SearchResult, plan_next


@dataclass
class Curve:
    """accuracy(d, lr): logistic in log d, crossing the middle of [floor, ceiling] at d_mid.

    The threshold is 0.9 * full; with the defaults (floor 0.5, ceiling 0.85, full 0.88) the
    smallest d reaching 0.792 is d_star (at its best LR). LRs away from the best LR lose
    `lr_penalty` per decade; the best LR is best_lr at d_star and moves as d^-lr_slope (larger
    subspaces want smaller steps per coordinate); LRs above unstable_lr diverge. `noise` adds
    seeded Gaussian noise per (d, lr).
    """

    d_star: float = 1000.0
    floor: float = 0.5
    ceiling: float = 0.85
    full: float = 0.88
    width: float = 0.6  # logistic width in ln(d) units
    best_lr: float = 1e-2
    lr_slope: float = 0.0
    lr_penalty: float = 0.05
    unstable_lr: float | None = None
    unstable_d_above: float | None = None  # with unstable_lr: only these d diverge
    noise: float = 0.0
    seed: int = 0
    flips: dict[int, bool] = field(default_factory=dict)  # d -> forced reached / not reached
    threshold_fraction: float = 0.9

    def _mid(self) -> float:
        # Place the logistic so that accuracy(d_star, best_lr) equals the threshold exactly.
        target = self.threshold_fraction * self.full
        frac = (target - self.floor) / (self.ceiling - self.floor)
        return math.log(self.d_star) - self.width * math.log(frac / (1 - frac))

    def unstable(self, d: int, lr: float) -> bool:
        if self.unstable_lr is None or lr <= self.unstable_lr:
            return False
        return self.unstable_d_above is None or d > self.unstable_d_above

    def __call__(self, d: int, lr: float) -> float:
        z = (math.log(d) - self._mid()) / self.width
        acc = self.floor + (self.ceiling - self.floor) / (1 + math.exp(-z))
        best = self.best_lr * (d / self.d_star) ** -self.lr_slope
        acc -= self.lr_penalty * abs(math.log10(lr / best))
        if self.noise:
            acc += random.Random(f"{self.seed}:{d}:{lr!r}").gauss(0, self.noise)
        if d in self.flips:
            target = self.threshold_fraction * self.full
            acc = target + 0.01 if self.flips[d] else target - 0.01
        return min(max(acc, 0.0), 1.0)


@dataclass
class StepModel:
    max_steps: int = 2000  # steps of a subspace run that is not stopped early
    eval_every: int = 100
    full_steps: int = 2000

    def trajectory(self, final: float, floor: float, t: int) -> float:
        frac = (1 - math.exp(-3 * t / self.max_steps)) / (1 - math.exp(-3))
        return floor + (final - floor) * frac

    def run(self, final: float, floor: float, stop_at: float | None) -> tuple[int, float]:
        """(steps taken, best eval value) of one run."""
        if stop_at is not None:
            for t in range(self.eval_every, self.max_steps + 1, self.eval_every):
                value = self.trajectory(final, floor, t)
                if value >= stop_at - 1e-12:
                    return t, value
        return self.max_steps, final


def fake_run(spec: RunSpec, curve: Curve, steps: StepModel, majority: float = 0.5) -> Record:
    """The record the real trainer would write for `spec`, from the synthetic curve."""
    common = dict(spec.record_fields(), finished_at="", config=spec.record_config())
    if spec.method == "full":
        return Record(
            status="ok",
            eval_value=curve.full,
            steps=steps.full_steps,
            majority_baseline=majority,
            **common,
        )
    assert spec.d is not None
    if curve.unstable(spec.d, spec.lr):
        # A diverged run is noticed at its first evaluation.
        return Record(status="unstable", steps=steps.eval_every, **common)
    n, value = steps.run(curve(spec.d, spec.lr), curve.floor, spec.stop_at)
    return Record(status="ok", eval_value=value, train_value=value, steps=n, **common)


@dataclass
class Outcome:
    result: SearchResult
    records: list[Record]
    rounds: int  # calls to plan_next that returned work (job-array submissions)
    steps: int  # subspace training steps spent
    runs: int  # subspace runs


def drive(
    cfg: SearchConfig,
    key: SearchKey,
    curve: Curve,
    steps: StepModel | None = None,
    majority: float = 0.5,
    records: list[Record] | None = None,
    on_round: Callable[[list[RunSpec], list[Record]], None] | None = None,
    max_rounds: int = 200,
    lr_hints: Mapping[int, float] | None = None,
) -> Outcome:
    """Run the search to the end: plan, run every proposed run, plan again."""
    steps = steps or StepModel()
    records = list(records or [])
    rounds = 0
    while True:
        todo = plan_next(records, cfg, key, lr_hints)
        if isinstance(todo, SearchResult):
            sub = [r for r in records if r.method != "full"]
            return Outcome(todo, records, rounds, sum(r.steps for r in sub), len(sub))
        rounds += 1
        if rounds > max_rounds:
            raise RuntimeError("search did not finish")
        if on_round is not None:
            on_round(todo, records)
        records.extend(fake_run(spec, curve, steps, majority) for spec in todo)
