"""One fine-tuning loop for full and subspace (DID/SAID) runs.

    outcome = finetune(spec, model="ckpt_dir", task=encoded_task(key), cfg=FinetuneConfig())
    outcome.status, outcome.eval_metrics, outcome.train_metrics, outcome.steps

The two kinds of run differ in their budget (`full_*` and `subspace_*`, in epochs scaled to the
task) and in that a subspace run wraps the model (`intdim.subspace.wrap`) so that the optimizer
sees theta_d alone (never weight-decayed). Everything else is shared: AdamW, linear warmup then
linear decay to zero over the planned steps, shuffled batches with dynamic padding, evaluation
every `eval_every` steps and at the end, the best evaluation kept. Two reasons to stop early:
the run reached `spec.stop_at` (the d90 threshold: further steps cannot change whether this d
reaches it), or, for full runs only, `patience` evaluations brought no improvement (a subspace
run stopped that way might have reached the threshold later).

The train metric is taken at the best evaluation (the generalization gap of the paper's
Figures 4-5 compares the two at the same point): the trainable parameters are snapshotted when
the eval metric improves (theta_d alone for a subspace run) and restored at the end, where the
train metric is computed once on a bounded subsample.

A loss that turns NaN/inf ends the run with status "unstable" (a measurement: the search counts
it as not reached), not with an exception.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from safetensors import SafetensorError
from tqdm import tqdm

from intdim.errors import UserError
from intdim.subspace import SubspaceConfig, wrap
from probe.encode import EncodedTask
from probe.search import RunSpec, reaches

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class FinetuneConfig:
    batch_size: int = 32
    # Full fine-tuning "in the standard way" (paper 5.1): RoBERTa's GLUE recipe, 10 epochs, weight
    # decay 0.1, warmup 6% (its LR grid {1e-5, 2e-5, 3e-5} is search.full_lrs). A budget is
    # epochs, steps, or both (whichever is fewer).
    full_epochs: float | None = 10
    full_max_steps: int | None = None
    # Subspace (DID/SAID) runs: their own budget (training through d numbers needs more steps
    # than full fine-tuning); search runs also stop once they reach the threshold.
    subspace_epochs: float | None = 20
    subspace_max_steps: int | None = None
    warmup_ratio: float = 0.06  # fraction of the planned steps (RoBERTa's GLUE recipe)
    weight_decay: float = 0.1  # full runs (theta_d is never decayed: 0 is the pretrained model)
    grad_clip: float | None = 1.0  # max gradient norm; null: no clipping
    eval_every: int = 100  # steps between evaluations (and one at the last step)
    eval_batch_size: int = 128
    # Full runs only: stop after this many evaluations without improvement. Never for subspace
    # runs, where stopping early could change whether a d reaches the threshold.
    patience: int | None = None
    max_seq_len: int = 128  # tokens per example after truncation
    train_metric_examples: int = 1000  # train subsample for the train metric
    device: str = "auto"  # auto (cuda when available) | cpu | cuda | cuda:N
    precision: str = "auto"  # auto (bf16 autocast on GPU, fp32 on CPU) | fp32 | bf16
    progress: bool = True  # a tqdm bar per run on stderr (rate and ETA)

    def __post_init__(self) -> None:
        def bad(msg: str) -> UserError:
            return UserError(f"finetune config: {msg}")

        for kind in ("full", "subspace"):
            epochs, steps = getattr(self, f"{kind}_epochs"), getattr(self, f"{kind}_max_steps")
            if epochs is None and steps is None:
                raise bad(f"give {kind}_epochs, {kind}_max_steps or both")
            if steps is not None and steps < 1:
                raise bad(f"{kind}_max_steps must be >= 1, got {steps}")
            if epochs is not None and not epochs > 0:
                raise bad(f"{kind}_epochs must be > 0, got {epochs}")
        for name in ("batch_size", "eval_every", "eval_batch_size", "max_seq_len"):
            if getattr(self, name) < 1:
                raise bad(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.train_metric_examples < 1:
            raise bad(f"train_metric_examples must be >= 1, got {self.train_metric_examples}")
        if not 0 <= self.warmup_ratio < 1:
            raise bad(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.weight_decay < 0:
            raise bad(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise bad(f"grad_clip must be > 0 or null, got {self.grad_clip}")
        if self.patience is not None and self.patience < 1:
            raise bad(f"patience must be >= 1 or null, got {self.patience}")
        if self.device.split(":")[0] not in DEVICES:
            raise bad(f"device must be auto, cpu, cuda or cuda:N, not {self.device!r}")
        if self.precision not in PRECISIONS:
            raise bad(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")

    def planned_steps(self, n_train: int, method: str = "full") -> int:
        """The step budget of a run of `method` on `n_train` examples."""
        kind = "full" if method == "full" else "subspace"
        epochs, steps = getattr(self, f"{kind}_epochs"), getattr(self, f"{kind}_max_steps")
        per_epoch = math.ceil(n_train / self.batch_size)
        limits = [steps] if steps is not None else []
        if epochs is not None:
            limits.append(max(1, math.ceil(epochs * per_epoch)))
        return min(limits)


@dataclass
class RunOutcome:
    """What a finished run measured; the driver turns it into a Record."""

    status: str  # ok | unstable
    eval_metrics: dict[str, float] = field(default_factory=dict)  # at the best evaluation
    train_metrics: dict[str, float] = field(default_factory=dict)  # same point, train subsample
    steps: int = 0
    best_step: int = 0
    wall_seconds: float = 0.0
    stopped: str = "budget"  # budget | stop_at | patience | unstable
    num_parameters: int | None = None  # of the model's body (no head), for Figure 3


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name!r} was asked for but no CUDA GPU is available")
    return torch.device(name)


def _autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    # auto: bf16 where it is fast (GPU); on CPU autocast is slower than fp32.
    return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None


def load_model(model: str, num_labels: int) -> torch.nn.Module:
    """A sequence classifier with a fresh head (drawn from the global seed) on `model`'s body."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    # The load report ("classifier.* MISSING") and the weight-loading bar would print on every
    # one of a search's runs; a fresh head is exactly what we ask for.
    verbosity, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            model, num_labels=num_labels, dtype=torch.float32
        )
    except (OSError, ValueError, SafetensorError) as e:  # a damaged model.safetensors too
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot load a model from {model!r} ({first})") from None
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()


def warmup_linear(total: int, warmup: int):
    """LR factor: 0 -> 1 over `warmup` steps, then 1 -> 0 at step `total`."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def _predict(model, batches, n: int, device: torch.device, amp: torch.dtype | None) -> list[int]:
    model.eval()
    preds = [0] * n
    with (
        torch.no_grad(),
        torch.autocast(device.type, dtype=amp or torch.float32, enabled=bool(amp)),
    ):
        for positions, batch in batches:
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
            for pos, p in zip(positions, logits.argmax(-1).tolist(), strict=True):
                preds[pos] = p
    return preds


def evaluate(model, task: EncodedTask, cfg: FinetuneConfig, device, amp) -> dict[str, float]:
    preds = _predict(model, task.eval_batches(cfg.eval_batch_size), len(task.eval), device, amp)
    return task.data.metric(preds, task.eval_labels)


def train_metric(model, task: EncodedTask, cfg: FinetuneConfig, device, amp) -> dict[str, float]:
    batches = task.train_metric_batches(cfg.eval_batch_size)
    preds = _predict(model, batches, len(task.train), device, amp)
    idx = task.train_metric_idx
    return task.data.metric([preds[i] for i in idx], [task.train_labels[i] for i in idx])


def build_trainable(spec: RunSpec, model: str, num_labels: int) -> torch.nn.Module:
    """The module whose parameters the optimizer updates: the model, or its subspace wrapper."""
    torch.manual_seed(spec.seed)  # the head of a full run, and dropout, follow the run's seed
    base = load_model(model, num_labels)
    if spec.method == "full":
        return base
    assert spec.d is not None
    return wrap(base, SubspaceConfig(d=spec.d, method=spec.method, seed=spec.seed))


def finetune(spec: RunSpec, model: str, task: EncodedTask, cfg: FinetuneConfig) -> RunOutcome:
    """Train one run to its budget or an early stop (see the module docstring)."""
    start = time.perf_counter()
    device = resolve_device(cfg.device)
    amp = _autocast_dtype(cfg.precision, device)
    trainable = build_trainable(spec, model, task.data.num_labels)
    base = getattr(trainable, "base", trainable)  # the model itself under a subspace wrapper
    # Figure 3's x axis: the pretrained model's size, without the task head it is given here
    body = getattr(base, "base_model", base)
    num_parameters = sum(p.numel() for p in body.parameters())
    trainable.to(device)
    params = [p for p in trainable.parameters() if p.requires_grad]
    full = spec.method == "full"
    opt = torch.optim.AdamW(params, lr=spec.lr, weight_decay=cfg.weight_decay if full else 0.0)
    total = cfg.planned_steps(len(task.train), spec.method)
    patience = cfg.patience if full else None
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, warmup_linear(total, round(cfg.warmup_ratio * total))
    )
    batches = task.train_batches(cfg.batch_size, torch.Generator().manual_seed(spec.seed))
    primary = task.data.spec.primary_metric

    best: dict[str, float] | None = None
    best_step = 0
    best_state: dict[str, torch.Tensor] = {}
    since_best = 0
    stopped = "budget"
    name = spec.method if spec.d is None else f"{spec.method} d={spec.d:,}"
    bar = tqdm(
        total=total, desc=f"{spec.task} {name} lr={spec.lr:g}", unit="step",
        disable=not cfg.progress, leave=False, dynamic_ncols=True,
    )  # fmt: skip
    step = 0
    try:
        for step in range(1, total + 1):  # noqa: B007 - `step` is read after the loop
            trainable.train()
            batch = {k: v.to(device) for k, v in next(batches).items()}
            with torch.autocast(device.type, dtype=amp or torch.float32, enabled=bool(amp)):
                loss = trainable(**batch).loss
            value = loss.detach().item()
            if not math.isfinite(value):
                stopped = "unstable"
                break
            loss.backward()
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            bar.update()
            if step % cfg.eval_every and step != total:
                continue
            metrics = evaluate(trainable, task, cfg, device, amp)
            if best is None or metrics[primary] > best[primary]:
                best, best_step, since_best = metrics, step, 0
                best_state = {n: p.detach().clone() for n, p in trainable.named_parameters()}
            else:
                since_best += 1
            bar.set_postfix(
                loss=f"{value:.3f}", eval=f"{metrics[primary]:.4f}", best=f"{best[primary]:.4f}"
            )
            if spec.stop_at is not None and reaches(metrics[primary], spec.stop_at):
                stopped = "stop_at"
                break
            if patience is not None and since_best >= patience:
                stopped = "patience"
                break
    finally:
        bar.close()

    if stopped == "unstable":
        return RunOutcome(
            "unstable",
            steps=step,
            wall_seconds=time.perf_counter() - start,
            stopped=stopped,
            num_parameters=num_parameters,
        )
    assert best is not None  # the last step always evaluates
    with torch.no_grad():
        for n, p in trainable.named_parameters():
            p.copy_(best_state[n])
    train = train_metric(trainable, task, cfg, device, amp)
    return RunOutcome(
        "ok",
        eval_metrics=best,
        train_metrics=train,
        steps=step,
        best_step=best_step,
        wall_seconds=time.perf_counter() - start,
        stopped=stopped,
        num_parameters=num_parameters,
    )
