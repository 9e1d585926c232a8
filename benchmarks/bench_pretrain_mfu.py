"""Model FLOPs utilisation of the pretraining step for RoBERTa-base, bf16, on a GPU.

    python benchmarks/bench_pretrain_mfu.py [--batch 32] [--compile] [--peak-tflops 989]
    python benchmarks/bench_pretrain_mfu.py --variants eager,compile,compile+nomask+lossc+b64 \
        [--budget-s 210] [--probe] [--profile]

The step is the trainer's (pretrain/train.py): `pretrain.model.MaskedLM` (LM head only at the
scored positions) under bf16 autocast with the dropout seed set before the forward, the summed
cross-entropy at 15% of 512-token blocks (sorted positions, as the objective gives them) scaled by
1 / count, fused AdamW, then zero_grad. Random tokens (throughput does not depend on the text).
MFU counts the model FLOPs a step must do (pretrain/flops.py, the count the trainer logs MFU with:
6 per parameter per token for the encoder, the attention score/value products, and the LM head at
the scored positions only), divided by the GPU's dense bf16 peak (H100 SXM: 989 TFLOP/s; H200 the
same).
Goal (pretrain issue): >= 40%.

A variant is '+'-joined words; one process measures them one after another, each on a fresh copy
of the same model and a fresh optimizer, after its own compile and warmup; one that fails prints
its error and the next one runs:

    eager | compile | cudagraphs | autotune   how the module runs: eager; torch.compile with the
                  default mode, "reduce-overhead" (CUDA graphs) or "max-autotune-no-cudagraphs"
    nomask      attention_mask=None (a batch of full blocks: SDPA may pick FlashAttention);
                otherwise an all-ones mask, which costs what a padded batch's mask costs (the
                usual batch: packed `complete` blocks are rarely all full)
    lossc       the cross-entropy inside the compiled module (compile_loss=true)
    fullgraph   torch.compile(fullgraph=True) (compile_fullgraph=true)
    b<N>        N blocks per micro-batch instead of --batch (the paper's batch comes from
                accumulation, so a larger micro-batch changes nothing else)
    acc<N>      N micro-batches per optimizer step (the trainer's update_freq: the paper config
                has 16 on one GPU, 2 on eight), which spreads the step's fixed costs (AdamW, the
                masters' copy) over N; times and rates are per micro-batch
    flash       SDPA restricted to FlashAttention: fails unless the mask is gone (nomask)
    cudnn       SDPA's cuDNN backend tried first (then flash, memory-efficient, math)
    cdt         inductor's coordinate-descent tuning of its own generated kernels' launch settings
                (block sizes, warps) at compile time: by a byte estimate the LayerNorm + dropout +
                residual kernels ran at about half the card's bandwidth (BENCHMARKS.md, session
                6); the matmuls stay cuBLAS's
    nodrop      dropout 0 (hidden and attention; the trainer's model.dropout=0
                model.attention_dropout=0): not RoBERTa's recipe, measured to size what dropout's
                random masks cost (a third of the step is memory-bound fused kernels, led by them)
    master      precision=bf16-master: a bf16 model (bf16 residual stream and LayerNorm, no
                autocast) stepped through fp32 master weights, the trainer's MasterWeights
                (fairseq's --fp16 recipe in bf16); otherwise bf16 autocast over fp32 weights
    vpad        the embedding and LM-head rows padded to a multiple of 128 (50,265 -> 50,304; the
                trainer's model.pad_vocab_to_multiple_of=128): rows of 50,265 are no multiple of 8,
                which keeps the LM head's matmuls off the sm90 kernels (a 1.65 ms sm80 cutlass
                GEMM in session 6's profile) and its softmax off vector loads
    bits        hidden dropout's masks drawn as bits, eight per Philox call, by a Triton kernel
                outside inductor's fused kernels (the trainer's dropout_bitmask=true,
                pretrain/dropout.py); the kernel is first checked bit for bit against its NumPy
                reference on the GPU, and the variant fails if it differs
    segments    a padded batch's attention as FlashAttention-2 varlen segments, no mask (the
                trainer's padded_attention=segments, pretrain/attention.py); only acts on a
                batch with a mask, and the bench's mask is all ones (every row's padding
                segment empty): --probe times it on rows that are really padded
    varpos      the count of scored positions changes every step as the objective's does (what
                the trainer does without static_shapes=true: recompiles, then dynamic shapes);
                without it the count is fixed (static_shapes=true, less its ~0.3% filler rows)

--probe first times each SDPA backend alone on the model's attention shapes, with and without the
padding mask, and checks that attention_mask=None reaches SDPA as no mask inside the model.
Imports nothing that needs omegaconf (the GPU image lacks it).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import math
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine, sync  # noqa: E402
from pretrain import attention  # noqa: E402
from pretrain.config import ModelConfig  # noqa: E402
from pretrain.dropout import use_bitmask_dropout  # noqa: E402
from pretrain.flops import FlopCount  # noqa: E402
from pretrain.model import MaskedLM, build_config, summed_cross_entropy  # noqa: E402
from pretrain.precision import MasterWeights  # noqa: E402

PAD = 1
MODES = {"eager": None, "compile": "default", "cudagraphs": "reduce-overhead",
         "autotune": "max-autotune-no-cudagraphs"}  # fmt: skip
FLAGS = ("nomask", "lossc", "fullgraph", "flash", "cudnn", "varpos", "nodrop", "master", "cdt",
         "vpad", "bits", "segments")  # fmt: skip
VPAD = 128
# Rough seconds a variant needs on an H100 box (compile dominates), to skip what would overrun
# --budget-s rather than be killed half-way.
COST_S = {"eager": 10, "compile": 60, "cudagraphs": 75, "autotune": 200}


class _Tok(SimpleNamespace):
    def __len__(self) -> int:
        return self.vocab


@dataclass
class Variant:
    name: str
    run: str  # a key of MODES
    batch: int
    nomask: bool = False
    lossc: bool = False
    fullgraph: bool = False
    flash: bool = False
    cudnn: bool = False
    varpos: bool = False
    nodrop: bool = False
    master: bool = False
    cdt: bool = False
    vpad: bool = False
    bits: bool = False
    segments: bool = False
    acc: int = 1  # micro-batches per optimizer step


def parse_variant(name: str, default_batch: int) -> Variant:
    words = [w.strip() for w in name.split("+") if w.strip()]
    if not words or words[0] not in MODES:
        raise SystemExit(f"variant {name!r} must start with one of: {', '.join(MODES)}")
    v = Variant(name=name, run=words[0], batch=default_batch)
    for w in words[1:]:
        if w in FLAGS:
            setattr(v, w, True)
        elif w[0] == "b" and w[1:].isdigit() and int(w[1:]) > 0:
            v.batch = int(w[1:])
        elif w.startswith("acc") and w[3:].isdigit() and int(w[3:]) > 0:
            v.acc = int(w[3:])
        else:
            words = f"b<N>, acc<N>, {', '.join(FLAGS)}"
            raise SystemExit(f"unknown word {w!r} in variant {name!r}; words: {words}")
    if v.run == "eager" and (v.lossc or v.fullgraph):
        raise SystemExit(f"variant {name!r}: lossc and fullgraph need a compiled run")
    return v


def sdpa_context(v: Variant):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if v.flash:
        return sdpa_kernel([SDPBackend.FLASH_ATTENTION])
    if v.cudnn:
        order = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION,
                 SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]  # fmt: skip
        try:
            return sdpa_kernel(order, set_priority=True)
        except TypeError:  # an older torch without priorities: cuDNN only
            return sdpa_kernel([SDPBackend.CUDNN_ATTENTION])
    return contextlib.nullcontext()


def make_inputs(v: Variant, seq: int, vocab: int, dev: torch.device, n_sets: int = 8):
    """n_sets batches (ids, mask, positions, targets) cycled through the timed steps; with varpos
    each has the objective's count of scored positions (76 or 77 per 512-token block), else all
    have int(0.15 * tokens)."""
    g = torch.Generator().manual_seed(0)
    tokens = v.batch * seq
    out = []
    for _ in range(n_sets):
        ids = torch.randint(3, vocab, (v.batch, seq), generator=g)
        mask = None if v.nomask else torch.ones_like(ids)
        if v.varpos:
            per_block = torch.floor(0.15 * seq + torch.rand(v.batch, generator=g))
            n = int(per_block.sum())
        else:
            n = int(0.15 * tokens)
        positions = torch.randperm(tokens, generator=g)[:n].sort().values
        targets = torch.randint(3, vocab, (n,), generator=g)
        out.append(tuple(None if t is None else t.to(dev) for t in (ids, mask, positions, targets)))
    return out


def build_cpu_model(a, pad_to: int = 1) -> MaskedLM:
    """The benchmark's model, its init drawn from seed 0 (padded rows are drawn after the rest of
    the embedding's, so the two models differ in their values, not in anything timed)."""
    from transformers import RobertaForMaskedLM

    tok = _Tok(vocab=a.vocab, pad_token_id=PAD, bos_token_id=0, eos_token_id=2)
    cfg = build_config(ModelConfig(preset=a.preset, pad_vocab_to_multiple_of=pad_to), tok, a.seq)
    torch.manual_seed(0)
    return MaskedLM(RobertaForMaskedLM(cfg))


def run_variant(v: Variant, cpu_model, a, counts) -> dict:
    dev = torch.device(a.device)
    if v.vpad:
        cpu_model = build_cpu_model(a, pad_to=VPAD)
    model = copy.deepcopy(cpu_model).to(dev).train()
    if v.segments:
        model = MaskedLM(model.hf, padded_attention="segments")
    if v.bits:
        check_keep_bits(dev)
        use_bitmask_dropout(model.hf)
    if v.nodrop:  # same weights, every dropout at 0 (the attention reads its module's p too)
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
    master = MasterWeights(model) if v.master else None  # the model's weights become bf16
    fwd = model
    import torch._inductor.config as inductor_config

    inductor_config.coordinate_descent_tuning = v.cdt  # read when the graph compiles (first step)
    if v.run != "eager":
        mode = MODES[v.run]
        fwd = torch.compile(model, mode=None if mode == "default" else mode,
                            fullgraph=v.fullgraph, dynamic=None if v.varpos else False)  # fmt: skip
    params = master.params if master else model.parameters()
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01,
                            fused=True)  # fmt: skip
    inputs = make_inputs(v, a.seq, a.vocab, dev)
    total = torch.zeros((), dtype=torch.float64, device=dev)

    def step(k: int) -> None:
        """One optimizer step over v.acc micro-batches, as the trainer's train_update (one
        process)."""
        for j in range(v.acc):
            ids, mask, positions, targets = inputs[(k * v.acc + j) % len(inputs)]
            torch.manual_seed(k * v.acc + j)  # as the trainer, before every forward
            cast = contextlib.nullcontext() if master else torch.autocast(dev.type, torch.bfloat16)
            with cast:
                if v.lossc:
                    loss_sum = fwd(ids, mask, positions, targets)
                else:
                    loss_sum = summed_cross_entropy(fwd(ids, mask, positions), targets)
            (loss_sum * (1.0 / len(targets))).backward()
            total.add_(loss_sum.detach().double())
            if master:
                master.accumulate()
        if master:
            master.prepare_step()
        opt.step()
        if master:
            master.after_step()
        else:
            opt.zero_grad(set_to_none=True)

    cuda = dev.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with sdpa_context(v):
        t0 = time.perf_counter()
        step(0)
        sync(dev)
        first = time.perf_counter() - t0
        for k in range(1, 1 + a.warmup):
            step(k)
        sync(dev)
        t = time.perf_counter()
        for k in range(a.steps):
            step(1 + a.warmup + k)
        sync(dev)
        dt = (time.perf_counter() - t) / (a.steps * v.acc)  # per micro-batch
        if a.profile:
            kernel_profile(lambda k: step(10_000 + k), dev, per=v.acc)
    if not math.isfinite(total.item()):
        raise RuntimeError("the loss is not finite")
    tokens = v.batch * a.seq
    first_timed = (1 + a.warmup) * v.acc
    n_scored = sum(len(inputs[(first_timed + k) % len(inputs)][3]) for k in range(a.steps * v.acc))
    n_scored /= a.steps * v.acc
    flops = counts.per_step(tokens, n_scored, a.seq)
    return dict(first_s=first, step_ms=dt * 1e3, tok_s=tokens / dt, tflops=flops / dt / 1e12,
                mfu=flops / dt / (a.peak_tflops * 1e12),
                peak_gb=torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0)  # fmt: skip


def check_keep_bits(dev: torch.device) -> None:
    """The keep-bits kernel on this device against its NumPy reference, bit for bit."""
    if dev.type != "cuda":
        return  # the CPU draws its bits with torch
    from pretrain.kernels import triton_dropout

    if not triton_dropout.available():
        raise RuntimeError("bits: Triton is not importable here")
    seed, nbytes, threshold = 0x0123456789ABCDEF, 3 * triton_dropout.BLOCK + 77, 6554
    got = triton_dropout.keep_bits(torch.tensor([seed], device=dev), nbytes, threshold)
    want = triton_dropout.reference_keep_bits(seed, nbytes, threshold)
    wrong = int((got.cpu().numpy() != want).sum())
    if wrong:
        raise RuntimeError(
            f"bits: the keep-bits kernel differs from its reference in {wrong} bytes"
        )
    print("  keep-bits kernel: identical to its NumPy reference")


# Kernel name fragments -> what they are (first match wins), for --profile's summary.
KERNEL_KINDS = (
    ("attention", ("flash", "fmha", "attention", "cudnn")),
    ("matmul", ("gemm", "nvjet", "sm90_xmma", "cutlass", "cublas", "wgmma")),
    ("optimizer", ("adam",)),
    ("inductor (fused)", ("triton_",)),
    ("embedding / index", ("embedding", "index", "gather", "scatter", "sort", "radix")),
)


def kernel_profile(step, dev: torch.device, steps: int = 3, per: int = 1) -> None:
    """Where a step's GPU time goes: the kernels by kind, then the top kernels (ms per micro-batch:
    a step holds `per` of them)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for k in range(steps):
            step(k)
        sync(dev)
    kernels = [e for e in prof.key_averages()
               if e.device_type == DeviceType.CUDA and not e.is_user_annotation]  # fmt: skip
    kinds: dict[str, float] = {}
    for e in kernels:
        name = e.key.lower()
        kind = next((k for k, frags in KERNEL_KINDS if any(f in name for f in frags)), "other")
        kinds[kind] = kinds.get(kind, 0.0) + e.self_device_time_total / (steps * per) / 1e3
    busy = sum(kinds.values())
    parts = [
        f"{k} {t:.1f} ms ({t / busy:.0%})" for k, t in sorted(kinds.items(), key=lambda x: -x[1])
    ]
    print(f"  profile: GPU busy {busy:.1f} ms per micro-batch; " + ", ".join(parts))
    n = steps * per
    for e in sorted(kernels, key=lambda e: -e.self_device_time_total)[:25]:
        print(f"    {e.self_device_time_total / n / 1e3:7.2f} ms  x{e.count // n:<4d} "
              f"{e.key[:110]}")  # fmt: skip


def _time_ms(f, reps: int = 10) -> float:
    f()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        f()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / reps * 1e3


def probe_segments(a, heads: int, d: int) -> None:
    """A padded batch's attention without a mask and without copies: FlashAttention-2's varlen
    kernel over the (B x L, heads, d) buffer the QKV projections write, with every row cut into two
    segments, its real tokens and its padding. Real tokens then attend to their row's real tokens
    only (what the padding mask does), padding to padding (outputs nobody reads). With
    `empty` segments every row has two, full rows a zero-length second one, so the segment count
    is fixed (static shapes); without, full rows have one. Checked against SDPA with the padding
    mask (dropout 0: outputs at real tokens and all gradients), then timed with dropout 0.1."""
    B, S = a.batch, a.seq
    lengths = [S - 9] + [S - 3 * (b % 4) for b in range(1, B)]  # about a quarter of rows full
    dev = torch.device("cuda")
    q, k, v = (torch.randn(B, S, heads, d, device=dev, dtype=torch.bfloat16, requires_grad=True)
               for _ in range(3))  # fmt: skip
    keep = torch.arange(S, device=dev)[None, :] < torch.tensor(lengths, device=dev)[:, None]
    weight = torch.randn(B, S, heads, d, device=dev, dtype=torch.bfloat16)

    def masked(p):
        t = [x.transpose(1, 2) for x in (q, k, v)]  # SDPA's (B, heads, L, d) views
        out = torch.nn.functional.scaled_dot_product_attention(
            *t, attn_mask=keep[:, None, None, :], dropout_p=p
        )
        return out.transpose(1, 2)

    def varlen(p, edges):
        flat = [x.reshape(B * S, heads, d) for x in (q, k, v)]  # a view: no copy
        out = torch.ops.aten._flash_attention_forward(*flat, edges, edges, S, S, p, False, False)
        return out[0].view(B, S, heads, d)

    def trainers(p):  # the trainer's own padded_attention=segments path: 2B + 1 boundaries
        t = [x.transpose(1, 2) for x in (q, k, v)]
        return attention.segment_attention(None, *t, keep[:, None, None, :], dropout=p)[0]

    def grads(f):
        for x in (q, k, v):
            x.grad = None
        out = f()
        ((out * weight)[keep].float().sum()).backward()
        return out.detach(), [x.grad.clone() for x in (q, k, v)]

    ref_out, ref_grads = grads(lambda: masked(0.0))
    padded = B - sum(n == S for n in lengths)
    ms = _time_ms(lambda: grads(lambda: masked(0.1)))
    print(f"  padded batch ({padded} of {B} rows padded), fwd + bwd: SDPA, mask {ms:.2f} ms")
    edges = [0]  # full rows as one segment: no empty ones, a count that varies
    for b, n in enumerate(lengths):
        edges += [b * S + n, (b + 1) * S] if n < S else [(b + 1) * S]
    edges = torch.tensor(edges, dtype=torch.int32, device=dev)
    for label, f in (("varlen segments", lambda p: varlen(p, edges)),
                     ("the trainer's segments (fixed count, empty ones)", trainers)):  # fmt: skip
        try:
            out, g = grads(lambda f=f: f(0.0))
            diffs = [(x - y).abs().max().item() for x, y in zip(g, ref_grads, strict=True)]
            err = max((out - ref_out)[keep].abs().max().item(), *diffs)
            ms = _time_ms(lambda f=f: grads(lambda: f(0.1)))
            print(f"    {label}: {ms:.2f} ms, largest difference from the mask {err:.1e}")
        except Exception as e:  # noqa: BLE001
            print(f"    {label}: unsupported ({type(e).__name__}: {str(e).splitlines()[0][:80]})")


def probe(cpu_model, a) -> None:
    """Which SDPA backends take the model's attention (bf16, dropout 0.1, head dim 64), with the
    compact (B, 1, 1, L) padding mask the trainer passes and with none, and how fast each is
    (forward + backward); then whether attention_mask=None reaches SDPA as no mask in the model."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    cfg = cpu_model.hf.config
    heads, d = cfg.num_attention_heads, cfg.hidden_size // cfg.num_attention_heads
    qkv = [torch.randn(a.batch, heads, a.seq, d, device="cuda", dtype=torch.bfloat16,
                       requires_grad=True) for _ in range(3)]  # fmt: skip
    mask = torch.ones(a.batch, 1, 1, a.seq, dtype=torch.bool, device="cuda")
    mask[0, ..., a.seq - 9 :] = False
    print("SDPA backends, one layer's attention, forward + backward (ms):")
    for backend in ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH"):
        row = []
        for label, m in (("no mask", None), ("padding mask", mask)):
            try:
                with sdpa_kernel([getattr(SDPBackend, backend)]):

                    def f(m=m):
                        out = torch.nn.functional.scaled_dot_product_attention(
                            *qkv, attn_mask=m, dropout_p=0.1
                        )
                        out.sum().backward()

                    row.append(f"{label} {_time_ms(f):.2f}")
            except Exception as e:  # noqa: BLE001  a backend that refuses these inputs
                row.append(f"{label} unsupported ({str(e).splitlines()[0][:60]})")
        print(f"  {backend:20s} " + "; ".join(row))
    qkv.clear()  # free them before the model check
    try:
        probe_segments(a, heads, d)
    except Exception as e:  # noqa: BLE001  a probe, not a variant
        print(f"  padding as varlen segments: failed ({type(e).__name__}: {str(e)[:120]})")
    small = copy.deepcopy(cpu_model).cuda().train()
    ids = torch.randint(3, a.vocab, (2, a.seq), device="cuda")
    positions = torch.arange(0, 2 * a.seq, 7, device="cuda")
    for label, m in (("attention_mask=None", None), ("all-ones mask", torch.ones_like(ids))):
        try:
            with sdpa_kernel([SDPBackend.FLASH_ATTENTION]), torch.autocast("cuda", torch.bfloat16):
                small(ids, m, positions).float().sum().backward()
            torch.cuda.synchronize()
            print(f"  model with {label}: runs on FlashAttention alone")
        except Exception as e:  # noqa: BLE001
            print(f"  model with {label}: not on FlashAttention ({str(e).splitlines()[0][:80]})")
    del small
    gc.collect()
    torch.cuda.empty_cache()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=512)
    # RoBERTa's vocabulary by default; the trainer's smoke run on a generated corpus has 397, and
    # the LM head's share of the FLOPs follows the vocabulary (gpu_run.sh trainer compares both).
    ap.add_argument("--vocab", type=int, default=50265)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--compile", action="store_true", help="the same as --variants compile")
    ap.add_argument("--variants", default="", help="comma-separated; default eager (or compile)")
    ap.add_argument(
        "--budget-s",
        type=float,
        default=0.0,
        help="skip a variant that would end past this many seconds (0: no limit)",
    )
    ap.add_argument("--probe", action="store_true", help="SDPA backend probe first")
    ap.add_argument(
        "--profile", action="store_true", help="after each variant, its kernels by GPU time"
    )
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    # For a CPU smoke test of this script (the numbers mean nothing there):
    #   --device cpu --preset roberta_tiny --seq 64 --batch 4 --steps 2 --warmup 1
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--preset", default="roberta_base", choices=["roberta_base", "roberta_tiny"])
    a = ap.parse_args()
    start = time.perf_counter()
    names = a.variants or ("compile" if a.compile else "eager")
    variants = [parse_variant(n, a.batch) for n in names.split(",") if n.strip()]
    from transformers import __version__ as tf_version

    cpu_model = build_cpu_model(a)
    n_total = sum(p.numel() for p in cpu_model.parameters())
    # The trainer's count (pretrain/flops.py), at the tokenizer's vocabulary for vpad too.
    counts = FlopCount.of(cpu_model.hf, vocab=a.vocab)
    print(f"machine: {machine()}; transformers {tf_version}")
    print(f"{a.preset} MLM (D={n_total:,}), seq {a.seq}, bf16 (autocast, or master), fused AdamW, "
          f"{a.warmup} warmup + {a.steps} timed steps per variant, peak {a.peak_tflops:.0f} "
          "TFLOP/s")  # fmt: skip
    if a.probe and a.device == "cuda":
        try:
            probe(cpu_model, a)
        except Exception:  # noqa: BLE001  the variants are what matters
            traceback.print_exc()
    rows = []
    for v in variants:
        elapsed = time.perf_counter() - start
        cost = COST_S[v.run] * (2 if v.varpos else 1)
        if a.budget_s and elapsed + cost > a.budget_s:
            print(f"{v.name}: skipped, {elapsed:.0f} s + ~{cost} s would pass --budget-s")
            rows.append((v, None, "skipped (budget)"))
            continue
        try:
            r = run_variant(v, cpu_model, a, counts)
            rows.append((v, r, "ok"))
            print(f"{v.name} (batch {v.batch}): first step {r['first_s']:.1f} s, step "
                  f"{r['step_ms']:.1f} ms, {r['tok_s']:,.0f} tokens/s, {r['tflops']:.0f} TFLOP/s,"
                  f" MFU {r['mfu']:.1%}, peak memory {r['peak_gb']:.1f} GiB")  # fmt: skip
        except Exception as e:  # noqa: BLE001  report it and measure the next variant
            msg = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:160] if str(e) else ''}"
            print(f"{v.name}: FAILED {msg}")
            traceback.print_exc(limit=3)
            rows.append((v, None, f"failed: {msg}"))
        finally:
            torch._dynamo.reset()
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    print("\n| variant | batch | first step | step | tokens/s | TFLOP/s | MFU | peak GiB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for v, r, status in rows:
        if r is None:
            print(f"| {v.name} | {v.batch} | {status} | | | | | |")
        else:
            print(f"| {v.name} | {v.batch} | {r['first_s']:.1f} s | {r['step_ms']:.1f} ms | "
                  f"{r['tok_s']:,.0f} | {r['tflops']:.0f} | {r['mfu']:.1%} | "
                  f"{r['peak_gb']:.1f} |")  # fmt: skip
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
