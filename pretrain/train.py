"""The pretrain stage: `main(cfg)` = setup (data, model, optimizer, resume) / run / cleanup.

An update is fairseq's: update_freq micro-batches of batch_size blocks on each of the world's
processes, so one update sees batch_size x world x update_freq blocks. The loss is the summed
cross-entropy at the scored positions divided by their count over the *whole* update (every
process and micro-batch), as fairseq normalises by sample_size, which makes one process with a
batch of 8 and two processes with 4 each take the same step.

Exactness on resume: the data order is one integer (blocks consumed), each block's masking is
seeded by (seed, epoch, block), dropout is re-seeded from (seed, update, micro-batch, rank) before
every forward, and optimizer, scheduler and RNG states are restored from the checkpoint. A run
killed after a checkpoint and started again logs the same per-update losses (train_log.jsonl).
SIGTERM and SIGUSR2 make the run write a checkpoint at the end of the current update and return
without writing DONE (SLURM requeue then reruns the same command, which resumes).
"""

from __future__ import annotations

import contextlib
import copy
import gc
import json
import logging
import math
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from intdim.config import to_dict, to_yaml
from intdim.errors import UserError
from intdim.io import atomic_write_json, atomic_write_text, check_writable_dir
from pretrain import checkpoint as ckpt
from pretrain import distributed
from pretrain.config import RESUME_MAY_CHANGE, PretrainConfig
from pretrain.data import BlockStream, PackedBlocks, resolve_corpus
from pretrain.dropout import use_bitmask_dropout
from pretrain.flops import FlopCount, peak_tflops
from pretrain.model import MaskedLM, build_model
from pretrain.objectives import Objective, build_objective
from pretrain.objectives.base import Vocab
from pretrain.precision import MasterWeights
from pretrain.prepare import prepare_data
from pretrain.tokenizer import check_vocab_size

log = logging.getLogger("pretrain")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR2)
# Fault injection for tests: "SIGKILL@15" (or SIGTERM@15, SIGUSR2@15) signals this process
# right after update 15.
FAULT_ENV = "INTDIM_PRETRAIN_FAULT"


def lr_factor(updates_done: int, warmup: int, total: int) -> float:
    """Share of the peak LR used by the update after `updates_done` updates (fairseq's
    polynomial_decay with power 1 and end LR 0): linear warmup over `warmup` updates (the first
    update uses 1/warmup, as fairseq), then linear decay reaching 0 at `total`."""
    n = updates_done
    if warmup > 0 and n <= warmup:
        return max(n, 1) / warmup
    if n >= total:
        return 0.0
    return (total - n) / (total - warmup)


@dataclass
class Run:
    cfg: PretrainConfig
    dist: distributed.DistInfo
    run_dir: Path
    tokenizer: object
    train_blocks: PackedBlocks
    valid_blocks: PackedBlocks | None
    objective: Objective
    hf_model: torch.nn.Module  # the plain transformers model: what checkpoints save
    module: torch.nn.Module  # MaskedLM, or the subspace wrapper around it
    forward: torch.nn.Module  # what the loss calls: module, maybe DDP- and compile-wrapped
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    stream: BlockStream
    update_freq: int
    updates: int = 0
    tokens_seen: int = 0
    stop_signal: int | None = None
    writer: object = None
    # precision=bf16-master: the fp32 masters the optimizer steps (pretrain/precision.py).
    master: MasterWeights | None = None
    flops: FlopCount | None = None  # for the MFU in the logs
    peak_tflops: float | None = None  # per process; None: no MFU shown
    wall_start: float = field(default_factory=time.time)

    @property
    def ddp(self) -> bool:
        """Gradients reduced by DDP (else by `master`, in fp32, or not at all: one process)."""
        return self.dist.enabled and self.master is None


class PendingLoss:
    """An update's mean loss, read on the host only when it is needed.

    Reading a CUDA value (`.item()`) waits for every kernel queued so far, so reading each
    update's loss as soon as its kernels are queued would leave the GPU idle while the host builds
    the next update's batches (masking 128 x 512 tokens takes ~7 ms of CPU). Instead the sum is
    copied into pinned host memory behind the update's kernels, and `value()` waits for that copy
    alone: the training loop reads update k's loss after update k+1's kernels are queued."""

    def __init__(self, total: torch.Tensor, n_targets: float) -> None:
        self.n_targets, self.ready = n_targets, None
        if total.is_cuda:
            self.total = torch.empty((), dtype=total.dtype, pin_memory=True)
            self.total.copy_(total, non_blocking=True)
            self.ready = torch.cuda.Event()
            self.ready.record()
        else:
            self.total = total

    def value(self) -> float:
        if self.ready is not None:
            self.ready.synchronize()
        return float(self.total.item() / max(self.n_targets, 1.0))


# -- setup ---------------------------------------------------------------------------------------
def setup(cfg: PretrainConfig) -> Run:
    dist = distributed.setup(cfg.device)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    logging.basicConfig(
        level=logging.INFO if dist.is_main else logging.WARNING,
        format="%(asctime)s | %(levelname)s | %(name)s | %(message)s",
    )
    run_dir = Path(cfg.run_dir)
    check_vocab_size(cfg.tokenizer)  # before any expensive work
    update_freq = _update_freq(cfg, dist.world)
    resume = ckpt.latest_resumable(run_dir)
    if resume is not None:
        _check_same_settings(cfg, resume)
    failed: Exception | None = None
    prepared = None
    if dist.is_main:
        try:
            resolve_corpus(cfg.data)  # a missing or empty corpus fails before run_dir exists
            created = _make_run_dir(run_dir)
            try:
                ckpt.remove_partial(run_dir)
                prepared = prepare_data(cfg)  # tokenizer and shards, once; other ranks wait
            except BaseException:
                _remove_empty(created)  # a failed first start leaves no empty run_dir behind
                raise
        except Exception as e:  # the others must hear of it, or they would wait for hours
            failed = e
    if not distributed.wait_for_main(dist, ok=failed is None):
        if failed is not None:
            raise failed
        raise UserError("process 0 failed while preparing the data (its own error is in its log)")
    # The other ranks load what process 0 prepared (from the cache).
    tokenizer, shards = prepared if prepared is not None else prepare_data(cfg)
    tps = cfg.data.tokens_per_sample
    train_blocks = PackedBlocks(shards, "train", tps, tokenizer.bos_token_id)
    valid_blocks = PackedBlocks(shards, "valid", tps, tokenizer.bos_token_id)
    if len(valid_blocks) == 0:
        log.warning("the validation split is empty; raise data.valid_fraction to validate")
        valid_blocks = None
    log.info(
        "data: %d train blocks (%d tokens), %d valid blocks, vocabulary %d",
        len(train_blocks),
        train_blocks.n_tokens,
        len(valid_blocks) if valid_blocks else 0,
        len(tokenizer),
    )
    vocab = Vocab(len(tokenizer), tokenizer.pad_token_id, tokenizer.mask_token_id,
                  list(tokenizer.all_special_ids))  # fmt: skip
    objective = build_objective(cfg.objective, vocab, cfg.seed)

    hf_model = build_model(cfg.model, tokenizer, tps, cfg.seed)
    if cfg.dropout_bitmask:
        use_bitmask_dropout(hf_model)  # modules only: the weights and checkpoints are unchanged
    if resume is not None and cfg.subspace.d == 0:
        ckpt.load_weights(hf_model, resume)
    module: torch.nn.Module = MaskedLM(hf_model, padded_attention=cfg.padded_attention)
    if cfg.subspace.d > 0:
        module = _wrap_subspace(module, cfg)
        if resume is not None:
            with torch.no_grad():
                module.theta_d.copy_(ckpt.load_subspace_theta(resume))
    module.to(dist.device)
    master = None
    if cfg.precision == "bf16-master":
        master = MasterWeights(module)  # the module's weights become bf16; the masters fp32
        params = master.params
    else:
        params = [p for p in module.parameters() if p.requires_grad]
    o = cfg.optim
    # fused: one kernel for all parameters instead of ~10 ops per tensor (HF's Trainer uses it
    # too); the same AdamW update. Not for subspace runs: the fused kernel does not bump the
    # parameter's version counter, which the subspace wrapper's cache of merged weights keys on
    # (tests/pretrain/test_train.py::test_subspace_pretraining_trains_theta_d_only catches it).
    fused = cfg.subspace.d == 0 and dist.device.type in ("cpu", "cuda")
    optimizer = torch.optim.AdamW(
        params, lr=o.lr, betas=(o.betas[0], o.betas[1]), eps=o.eps, weight_decay=o.weight_decay,
        fused=fused,
    )  # fmt: skip
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda n: lr_factor(n, o.warmup_updates, cfg.max_updates)
    )
    stream = BlockStream(len(train_blocks), cfg.seed)
    forward = module
    if dist.enabled and master is None:
        ids = [dist.device.index] if dist.device.type == "cuda" else None
        forward = torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)
    if cfg.compile:
        if cfg.compile_tune_kernels:  # read when the graph compiles, at the first forward
            import torch._inductor.config as inductor_config

            inductor_config.coordinate_descent_tuning = True
        # static_shapes gives every training batch one shape, so dynamic=False compiles one static
        # graph (two: with and without an attention mask). Without it, torch's default marks the
        # dimensions that changed as dynamic after the first recompilation.
        forward = torch.compile(
            forward,
            mode=None if cfg.compile_mode == "default" else cfg.compile_mode,
            fullgraph=cfg.compile_fullgraph,
            dynamic=False if cfg.static_shapes else None,
        )
    run = Run(cfg, dist, run_dir, tokenizer, train_blocks, valid_blocks, objective, hf_model,
              module, forward, optimizer, scheduler, stream, update_freq, master=master,
              flops=FlopCount.of(hf_model, vocab=len(tokenizer)),
              peak_tflops=peak_tflops(dist.device, cfg.peak_tflops))  # fmt: skip
    if resume is not None:
        _restore(run, resume)
    if dist.is_main and cfg.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        run.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=run.updates + 1)
    return run


def _update_freq(cfg: PretrainConfig, world: int) -> int:
    o = cfg.optim
    if o.global_batch_size <= 0:
        return o.update_freq
    per_update = o.batch_size * world
    if o.global_batch_size % per_update:
        raise UserError(
            f"optim.global_batch_size={o.global_batch_size} is not a multiple of "
            f"batch_size x world = {o.batch_size} x {world}; change one of them"
        )
    return o.global_batch_size // per_update


def _make_run_dir(run_dir: Path) -> list[Path]:
    """Create run_dir and its missing parents; return those created, deepest first. A file in
    the way or a place this process cannot write is one UserError line."""
    hint = "pass run_dir= a directory this process can create or write to"
    check_writable_dir(run_dir, "run_dir", hint)
    missing, p = [], run_dir.absolute()
    while not p.exists():
        missing.append(p)
        p = p.parent
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create run_dir {run_dir} ({e.strerror}); {hint}") from None
    return missing


def _remove_empty(dirs: list[Path]) -> None:
    for d in dirs:  # deepest first; stop at the first that holds something
        try:
            d.rmdir()
        except OSError:
            return


def _check_same_settings(cfg: PretrainConfig, resume: Path) -> None:
    """Refuse to resume under settings that change the training trajectory: the run would go on
    as another run than its checkpoints, silently. RESUME_MAY_CHANGE lists what may change."""
    saved = ckpt.saved_config(resume)
    if saved is None:
        return
    then, now = _flatten(saved), _flatten(to_dict(cfg))
    for key in cfg.allow_changed_settings:
        if not any(k == key or k.startswith(key + ".") for k in now):
            raise UserError(
                f"allow_changed_settings names {key!r}, which is no config key; name keys such as "
                "seed or optim.lr, or a section such as optim"
            )
    free = (*RESUME_MAY_CHANGE, *cfg.allow_changed_settings)
    changed = [
        k
        for k in now
        if k in then
        and then[k] != now[k]
        and not any(k == f or k.startswith(f + ".") for f in free)
    ]
    if not changed:
        return
    shown = "; ".join(f"{k}: {then[k]!r} then, {now[k]!r} now" for k in changed[:4])
    more = f"; and {len(changed) - 4} more" if len(changed) > 4 else ""
    raise UserError(
        f"{cfg.run_dir} was trained with other settings ({shown}{more}), and resuming would go "
        f"on under the new ones: pass the values it was trained with ({resume.name}/"
        f"resolved_config.yaml), a new run_dir= to start another run, or "
        f"allow_changed_settings=[{','.join(changed)}] to change them from here on"
    )


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _wrap_subspace(module: torch.nn.Module, cfg: PretrainConfig):
    from intdim.subspace import SubspaceConfig, wrap

    s = cfg.subspace
    sub = wrap(module, SubspaceConfig(d=s.d, method=s.method, projection=s.projection, seed=s.seed))
    log.info("subspace pretraining: %s", sub.describe())
    return sub


def _restore(run: Run, path: Path) -> None:
    trainer, optimizer, rng = ckpt.load_state(path, run.dist.rank)
    run.optimizer.load_state_dict(optimizer)
    run.scheduler.load_state_dict(trainer["scheduler"])
    _use_config_hyperparameters(run)
    run.updates = int(trainer["updates"])
    run.tokens_seen = int(trainer["tokens_seen"])
    run.stream.consumed = int(trainer["blocks_consumed"])
    if rng is not None:
        ckpt.set_rng_state(rng)
    if run.dist.is_main:
        _truncate_log(run.run_dir / "train_log.jsonl", run.updates)
    log.info("resumed from %s at update %d", path, run.updates)


def _use_config_hyperparameters(run: Run) -> None:
    """Loading the optimizer and scheduler states brings back the LR, betas, eps and weight decay
    they were saved with, which would silently override a change that allow_changed_settings
    lets through; set them from the config. Unchanged settings give the very same numbers (the
    LR is computed as LambdaLR computes it), so resume stays exact."""
    o = run.cfg.optim
    groups = run.optimizer.param_groups
    run.scheduler.base_lrs = [o.lr] * len(groups)
    factor = lr_factor(run.scheduler.last_epoch, o.warmup_updates, run.cfg.max_updates)
    for group in groups:
        group.update(betas=(o.betas[0], o.betas[1]), eps=o.eps, weight_decay=o.weight_decay,
                     initial_lr=o.lr, lr=o.lr * factor)  # fmt: skip


# -- run -----------------------------------------------------------------------------------------
def run_training(run: Run) -> None:
    cfg = run.cfg
    if (run.run_dir / "DONE").is_file() and run.updates >= cfg.max_updates:
        log.info("%s is already finished (%d updates)", run.run_dir, run.updates)
        return
    if run.updates == 0 and cfg.save_initial_checkpoint:
        save(run)
    previous = {s: signal.signal(s, _on_signal(run)) for s in STOP_SIGNALS}
    fault = _parse_fault(os.environ.get(FAULT_ENV, ""))
    bar = tqdm(total=cfg.max_updates, initial=run.updates, unit="upd", dynamic_ncols=True,
               disable=not run.dist.is_main)  # fmt: skip
    window_tokens, window_flops, window_start = 0, 0.0, time.time()
    unlogged: list[tuple[int, float, PendingLoss, int]] = []  # the last update, until read

    def log_unlogged() -> float:
        loss = math.nan
        for update, lr, pending, tokens in unlogged:
            loss = pending.value()
            if run.dist.is_main:
                _log_update(run.run_dir, update, loss, lr, tokens)
        unlogged.clear()
        return loss

    try:
        while run.updates < cfg.max_updates:
            lr = run.optimizer.param_groups[0]["lr"]
            pending, tokens = train_update(run)
            log_unlogged()  # the previous update's loss: ready while this one runs on the GPU
            run.updates += 1
            run.tokens_seen += tokens
            window_tokens += tokens
            window_flops += run.flops.per_step(
                tokens, pending.n_targets, cfg.data.tokens_per_sample
            )
            bar.update(1)
            unlogged.append((run.updates, lr, pending, tokens))
            if run.updates % cfg.log_interval == 0 or run.updates == cfg.max_updates:
                loss = log_unlogged()
                seconds = max(time.time() - window_start, 1e-9)
                mfu = None
                if run.peak_tflops:  # the whole world's FLOPs over the whole world's peak
                    mfu = window_flops / seconds / (run.peak_tflops * 1e12 * run.dist.world)
                _report(run, bar, loss, lr, window_tokens / seconds, mfu)
                window_tokens, window_flops, window_start = 0, 0.0, time.time()
            scheduled = run.updates % cfg.save_interval_updates == 0
            if scheduled or run.updates == cfg.max_updates:
                log_unlogged()  # a checkpoint's log holds every update it contains
                save(run)
            val_every = cfg.validate_interval_updates or cfg.save_interval_updates
            if run.valid_blocks is not None and (
                run.updates % val_every == 0 or run.updates == cfg.max_updates
            ):
                validate(run)
            if fault and fault[1] == run.updates:
                log_unlogged()  # the fault comes after the update, its log line included
                os.kill(os.getpid(), fault[0])
            if _stop_requested(run):
                log_unlogged()
                save(run)
                log.warning(
                    "stopped by %s at update %d; checkpoint written; rerun to resume",
                    signal.Signals(run.stop_signal or signal.SIGTERM).name,
                    run.updates,
                )
                return
    finally:
        bar.close()
        for s, h in previous.items():
            signal.signal(s, h)
    if run.dist.is_main:
        atomic_write_json(
            run.run_dir / "DONE",
            {"updates": run.updates, "tokens_seen": run.tokens_seen, "time": time.time()},
        )


def train_update(run: Run) -> tuple[PendingLoss, int]:
    """One optimizer step over update_freq micro-batches; returns (its mean loss, to be read
    later, and the tokens of the whole world). Nothing here waits for the GPU: the loss is read
    later (PendingLoss), and the batches go to the GPU from pinned memory (Batch.to)."""
    dist, cfg, B, F = run.dist, run.cfg, run.cfg.optim.batch_size, run.update_freq
    keys = run.stream.take(B * dist.world * F)  # the whole update's blocks, same on every rank
    batches = []
    static = {}
    if cfg.static_shapes:
        tps = cfg.data.tokens_per_sample
        static = dict(length=tps, n_scored=B * run.objective.max_scored(tps))
    for k in range(F):
        mine = keys[(k * dist.world + dist.rank) * B : (k * dist.world + dist.rank + 1) * B]
        blocks = [run.train_blocks[i] for _, i in mine]
        batches.append(run.objective.make_batch(blocks, mine, **static))
    n_targets = float(sum(b.n_scored for b in batches))
    n_tokens = sum(b.n_tokens for b in batches)
    if dist.enabled:  # a CPU tensor: over gloo, also on GPUs (distributed.backend)
        counts = torch.tensor([n_targets, n_tokens], dtype=torch.float64)
        n_targets, n_tokens = distributed.all_reduce(dist, counts).tolist()
    # DDP averages over the world: undo that, then normalise (the masters' all-reduce sums).
    scale = (dist.world if run.ddp else 1) / max(n_targets, 1.0)
    run.module.train()
    total = torch.zeros((), dtype=torch.float64, device=dist.device)
    for k, batch in enumerate(batches):
        # Dropout comes from a stream fixed by (seed, update, micro-batch, rank): exact on resume.
        torch.manual_seed(((cfg.seed * 1_000_003 + run.updates) * 1009 + k) * 131 + dist.rank)
        sync = k == F - 1 or not run.ddp
        ctx = contextlib.nullcontext() if sync else run.forward.no_sync()
        with ctx, _autocast(run):
            loss_sum = run.objective.loss(run.forward, batch.to(dist.device), cfg.compile_loss)
        (loss_sum * scale).backward()
        if run.master is not None:
            run.master.accumulate()
        total += loss_sum.detach().double()
    if run.master is not None:
        run.master.all_reduce(dist)
        run.master.prepare_step()
    if cfg.optim.clip_norm > 0:
        params = [p for g in run.optimizer.param_groups for p in g["params"]]
        torch.nn.utils.clip_grad_norm_(params, cfg.optim.clip_norm)
    run.optimizer.step()
    run.scheduler.step()
    if run.master is not None:
        run.master.after_step()
    else:
        run.optimizer.zero_grad(set_to_none=True)
    total = distributed.all_reduce(dist, total)
    return PendingLoss(total, n_targets), int(n_tokens)


def _autocast(run: Run):
    if run.dist.device.type == "cuda" and run.cfg.precision == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def validate(run: Run) -> float:
    """Mean loss over the first max_valid_blocks validation blocks, masked the same way every
    time (epoch key -1), split across the processes."""
    assert run.valid_blocks is not None
    dist, B = run.dist, run.cfg.optim.batch_size
    n = min(len(run.valid_blocks), run.cfg.data.max_valid_blocks)
    sums = torch.zeros(2, dtype=torch.float64, device=dist.device)
    run.module.eval()
    for start in range(dist.rank * B, n, B * dist.world):
        keys = [(2**31 - 1, i) for i in range(start, min(start + B, n))]
        batch = run.objective.make_batch([run.valid_blocks[i] for _, i in keys], keys)
        with _autocast(run):
            loss = run.objective.loss(run.module, batch.to(dist.device))
        sums += torch.tensor([float(loss), batch.n_scored], dtype=torch.float64,
                             device=dist.device)  # fmt: skip
    run.module.train()
    total, count = distributed.all_reduce(dist, sums).tolist()
    value = total / max(count, 1.0)
    if dist.is_main:
        tqdm.write(f"valid | update {run.updates} | loss {value:.4f} | ppl {_ppl(value):.2f}")
        if run.writer is not None:
            run.writer.add_scalar("valid/loss", value, run.updates)
            run.writer.add_scalar("valid/ppl", _ppl(value), run.updates)
    return value


def save(run: Run) -> Path | None:
    """Write checkpoint_<updates> atomically (all ranks contribute their RNG state)."""
    dist = run.dist
    final = ckpt.checkpoints_root(run.run_dir) / f"checkpoint_{run.updates}"
    # Decide together whether it already exists: rank 0 renames the checkpoint into place after
    # the last barrier below, so a fast rank calling save() again (the final save right after a
    # periodic one) could see no checkpoint while rank 0 sees it, and the ranks would then wait at
    # different barriers for ever (seen as a hang of the two-process test).
    exists = torch.tensor([1.0 if final.exists() else 0.0], device=dist.device)
    if distributed.all_reduce(dist, exists, op=torch.distributed.ReduceOp.MAX).item():
        return final
    tmp = ckpt.temp_dir(run.run_dir, run.updates, os.environ.get("TORCHELASTIC_RUN_ID", "x"))
    if dist.is_main:
        tmp.mkdir(parents=True, exist_ok=True)
    distributed.barrier(dist)
    ckpt.write_rank_rng(tmp, dist.rank)
    distributed.barrier(dist)
    path = None
    if dist.is_main:
        hf = run.hf_model
        theta = None
        if run.master is not None:  # the fp32 masters, not the bf16 weights the model runs
            hf = run.master.fp32_model(run.hf_model, prefix="hf.")
        if run.cfg.subspace.d > 0:  # save theta0 + P theta_d, loadable like any checkpoint
            theta = run.module.theta_d
            hf = copy.deepcopy(run.hf_model).cpu()
            merged = run.module.merged_state_dict()
            hf.load_state_dict({k.removeprefix("hf."): v for k, v in merged.items()},
                               strict=False)  # fmt: skip
        path = ckpt.write_checkpoint(
            tmp,
            updates=run.updates,
            hf_model=hf,
            tokenizer=run.tokenizer,
            resolved_yaml=to_yaml(run.cfg),
            trainer_state={
                "updates": run.updates,
                "tokens_seen": run.tokens_seen,
                "blocks_consumed": run.stream.consumed,
                "scheduler": run.scheduler.state_dict(),
                "world": dist.world,
            },
            optimizer_state=run.optimizer.state_dict(),
            info={
                "tokens_seen": run.tokens_seen,
                "wall_seconds": time.time() - run.wall_start,
                "subspace_d": run.cfg.subspace.d,
            },  # fmt: skip
            subspace_theta=theta,
        )
        ckpt.prune_optimizer_states(run.run_dir, run.cfg.keep_last_optimizer_states)
        tqdm.write(f"saved {path}")
    distributed.barrier(dist)
    return path


def _on_signal(run: Run):
    def handler(signum, frame):
        run.stop_signal = signum

    return handler


def _stop_requested(run: Run) -> bool:
    flag = torch.tensor([1.0 if run.stop_signal is not None else 0.0])
    flag = distributed.all_reduce(run.dist, flag, op=torch.distributed.ReduceOp.MAX)
    if flag.item() and run.stop_signal is None:
        run.stop_signal = signal.SIGTERM
    return bool(flag.item())


def _parse_fault(spec: str) -> tuple[int, int] | None:
    if not spec:
        return None
    name, _, at = spec.partition("@")
    return int(getattr(signal, name)), int(at)


def _ppl(loss: float) -> float:
    return math.exp(min(loss, 50.0))


def _log_update(run_dir: Path, update: int, loss: float, lr: float, tokens: int) -> None:
    line = json.dumps({"update": update, "loss": loss, "lr": lr, "tokens": tokens})
    with open(run_dir / "train_log.jsonl", "a") as f:
        f.write(line + "\n")


def _report(run: Run, bar, loss: float, lr: float, tok_s: float, mfu: float | None) -> None:
    if not run.dist.is_main:
        return
    extra = {} if mfu is None else {"mfu": f"{mfu:.1%}"}
    bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{tok_s:,.0f}", **extra)
    tqdm.write(
        f"update {run.updates} | loss {loss:.4f} | ppl {_ppl(loss):.2f} | lr {lr:.3e} | "
        f"tokens/s {tok_s:,.0f}" + ("" if mfu is None else f" | MFU {mfu:.1%}")
    )
    if run.writer is not None:
        scalars = [("loss", loss), ("ppl", _ppl(loss)), ("lr", lr), ("tokens_per_s", tok_s)]
        for name, value in scalars + ([] if mfu is None else [("mfu", mfu)]):
            run.writer.add_scalar(f"train/{name}", value, run.updates)


def _truncate_log(path: Path, updates: int) -> None:
    """Drop log lines past the resumed checkpoint: those updates are about to be redone."""
    if not path.is_file():
        return
    keep = [
        ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["update"] <= updates
    ]
    atomic_write_text(path, "".join(ln + "\n" for ln in keep))


# -- cleanup -------------------------------------------------------------------------------------
def cleanup(run: Run | None) -> None:
    if run is not None and run.writer is not None:
        run.writer.close()
    if run is not None and run.dist.enabled:
        # DDP's Reducer holds the gloo process group; if it is freed only at interpreter exit,
        # after the other rank has gone, ~ProcessGroupGloo can wait for that rank for ever (seen
        # as an intermittent hang of the two-process test). Free it while every rank is alive.
        distributed.barrier(run.dist)
        run.forward = None
        gc.collect()
        distributed.barrier(run.dist)
    distributed.cleanup(run.dist if run is not None else distributed.DistInfo())


def main(cfg: PretrainConfig) -> Path:
    """Run (or resume) the pretraining described by `cfg`; return the run directory."""
    run = None
    try:
        run = setup(cfg)
        run_training(run)
    finally:
        cleanup(run)
    return Path(cfg.run_dir)
