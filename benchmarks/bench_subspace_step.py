"""SAID (and DID) training step against a full fine-tuning step with AdamW, same model and batch.

    python benchmarks/bench_subspace_step.py                       # CPU: RoBERTa 6x256, 16 x 128
    python benchmarks/bench_subspace_step.py --preset base --device cuda   # RoBERTa-base, bf16

Goals (issue "Foundation and the intdim core"): SAID step / full step <= 1.25x on CPU for the
small RoBERTa, <= 1.1x for RoBERTa-base on a GPU; peak memory of SAID below full fine-tuning.
Steps are timed interleaved (full, SAID, full, SAID, ...) so machine noise hits both alike. Peak
memory is measured in a fresh subprocess per mode: peak RSS on CPU, max_memory_allocated on GPU.

--compare-triton (CUDA) also times SAID and DID with the fused Triton kernels turned off
(INTDIM_TRITON=0: the torch path) and with their split TF32 dots (INTDIM_TRITON_DOT=split), on
the same wrapped models, interleaved with the rest, and measures SAID's peak memory both ways.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (  # noqa: E402
    interleaved,
    machine,
    native_on_cpu,
    on_torch_path,
    sync,
    with_env,
)
from intdim import SubspaceConfig, wrap  # noqa: E402

PRESETS = {
    "small": dict(
        hidden_size=256, num_hidden_layers=6, num_attention_heads=4, intermediate_size=1024
    ),
    "base": dict(
        hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072
    ),
}


def build(preset: str, device: str):
    from transformers import RobertaConfig, RobertaForSequenceClassification

    torch.manual_seed(0)
    cfg = RobertaConfig(
        vocab_size=50265,
        max_position_embeddings=514,
        num_labels=2,
        attn_implementation="sdpa",
        **PRESETS[preset],
    )
    return RobertaForSequenceClassification(cfg).to(device)


def make_batch(args, device):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 50265, (args.batch, args.seq), generator=g)
    return {
        "input_ids": ids.to(device),
        "attention_mask": torch.ones_like(ids).to(device),
        "labels": torch.randint(0, 2, (args.batch,), generator=g).to(device),
    }


def stepper(module, params, batch, device, lr):
    opt = torch.optim.AdamW(params, lr=lr)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device == "cuda"
        else contextlib.nullcontext()
    )

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast:
            loss = module(**batch).loss
        loss.backward()
        opt.step()

    return step


def setup(mode: str, args):
    model = build(args.preset, args.device)
    if mode == "full":
        return stepper(model, model.parameters(), make_batch(args, args.device), args.device, 1e-5)
    sub = wrap(model, SubspaceConfig(d=args.d, method=mode, seed=0))
    return stepper(sub, sub.parameters(), make_batch(args, args.device), args.device, 1e-3)


def profile_steps(name: str, step, device: str, steps: int = 3) -> None:
    """Print where `steps` steps spend their time: the top ops by device (or CPU) time."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device == "cuda":
        activities.append(ProfilerActivity.CUDA)
    step()
    sync(device)
    t = time.perf_counter()
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        sync(device)
    wall = (time.perf_counter() - t) / steps
    avg = prof.key_averages()
    keys = ["self_cpu_time_total"]
    if device == "cuda":
        keys.insert(0, "device_time_total")
        # Busy time of the GPU per step against the wall time: far below it, the step waits on
        # the CPU (launches, Python) rather than on kernels.
        # (Kernels only, as the table's "Self CUDA time total": user annotations such as the
        # optimizer's step span kernels already counted.)
        kernels = [e for e in avg if e.device_type == DeviceType.CUDA and not e.is_user_annotation]
        busy = sum(e.self_device_time_total for e in kernels) / steps / 1e3
        print(f"--- {name}: {wall * 1e3:.1f} ms per step (profiled), GPU busy {busy:.1f} ms")
    for key in keys:
        print(f"--- profile: {steps} {name} steps, sorted by {key} ---")
        print(avg.table(sort_by=key, row_limit=22, max_name_column_width=60))


def peak_memory(mode: str, args, triton: str | None = None) -> int:
    """Run 3 steps of `mode` in a fresh process; return its peak memory in bytes.

    `triton` sets INTDIM_TRITON for that process ("0": torch path); None leaves it as it is.
    """
    cmd = [
        sys.executable,
        __file__,
        "--_memory",
        mode,
        "--preset",
        args.preset,
        "--device",
        args.device,
        "--batch",
        str(args.batch),
        "--seq",
        str(args.seq),
        "--d",
        str(args.d),
    ]
    env = dict(os.environ) if triton is None else {**os.environ, "INTDIM_TRITON": triton}
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])["peak"]


def _memory_child(mode: str, args) -> None:
    step = setup(mode, args)
    step()  # the first step allocates optimizer state: it belongs to the measurement
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    else:
        # Reset the peak-RSS mark so model construction (HF init temporaries) is not counted.
        Path("/proc/self/clear_refs").write_text("5")
    for _ in range(3):
        step()
    peak = torch.cuda.max_memory_allocated() if args.device == "cuda" else _vm_hwm()
    print(json.dumps({"peak": peak}))


def _vm_hwm() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", choices=sorted(PRESETS), default="small")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--d", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--compare-triton", action="store_true", help="also time INTDIM_TRITON=0")
    ap.add_argument("--profile", action="store_true", help="also profile full and SAID steps")
    ap.add_argument("--_memory", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.compare_triton and args.device != "cuda":
        ap.error("--compare-triton times the Triton kernels, which run on CUDA only")
    if args._memory:
        _memory_child(args._memory, args)
        return
    steps = {mode: setup(mode, args) for mode in ("full", "said", "did")}
    if native_on_cpu(args.device):  # SAID on the pure-torch path, side by side
        steps["said (torch path)"] = on_torch_path(steps["said"])
    if args.compare_triton:
        # Same models and optimisers, the kernels off for the step: only the projection differs.
        for mode in ("said", "did"):
            steps[f"{mode}:torch"] = with_env(steps[mode], INTDIM_TRITON="0")
            steps[f"{mode}:split"] = with_env(steps[mode], INTDIM_TRITON_DOT="split")
    times = interleaved(steps, repeat=args.repeat, device=args.device)
    n = sum(p.numel() for p in build(args.preset, "cpu").parameters())
    print(f"machine: {machine()}")
    print(
        f"RoBERTa {args.preset} (D={n:,}), batch {args.batch} x {args.seq}, d={args.d}, "
        f"device {args.device}"
    )
    if args.compare_triton:
        from intdim.kernels import triton_fastfood

        on = args.device == "cuda" and triton_fastfood.available()
        print(
            f"  (said/did: Triton kernels {'on' if on else 'OFF'}; :torch = INTDIM_TRITON=0, "
            ":split = INTDIM_TRITON_DOT=split)"
        )
    for mode, t in times.items():
        print(f"  {mode:>12} step: {t * 1e3:8.1f} ms  = {t / times['full']:.3f}x full")
    if args.profile:
        for mode in ("full", "said"):
            profile_steps(mode, steps[mode], args.device)
    if not args.no_memory:
        mem = {mode: peak_memory(mode, args) for mode in ("full", "said")}
        if args.compare_triton:
            mem["said:torch"] = peak_memory("said", args, triton="0")
        kind = "max_memory_allocated" if args.device == "cuda" else "peak RSS"
        for mode, b in mem.items():
            print(f"  {mode:>10} {kind}: {b / 2**20:8.0f} MiB = {b / mem['full']:.3f}x full")


if __name__ == "__main__":
    main()
