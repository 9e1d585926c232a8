#!/usr/bin/env bash
# Everything measured on a lent GPU, in one go (device time is scarce):
#   bash benchmarks/gpu_run.sh            # all sections
#   bash benchmarks/gpu_run.sh core       # or: mfu (sections below, run alone)
# The fused Triton kernels for the Fastfood projection (intdim/kernels/triton_fastfood.py) are
# opt-in (INTDIM_TRITON=1) until this script has checked and timed them on a GPU; it turns them on
# and times them against the torch path (INTDIM_TRITON=0) in the same runs, so no second session
# is needed for the baseline.
# Each step's output also goes to $OUT/gpu_<step>.txt (the device tool brings $OUT back even when
# the whole command is cut off at its time limit), or to /tmp without $OUT.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=. INTDIM_TRITON=1
SECTION=${1:-all}
LOGS=${OUT:-/tmp}
step() {  # step NAME SECONDS COMMAND...: run with a hang guard, print and keep its output
    local name=$1 limit=$2
    shift 2
    echo "==== $name (at most ${limit} s)"
    timeout "$limit" "$@" 2>&1 | tee "$LOGS/gpu_$name.txt"
}
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name())"
python3 -c "import triton; print('triton', triton.__version__)" || echo "triton: NOT importable (torch path only)"

if [[ $SECTION == all || $SECTION == core ]]; then
    # ---- core: correctness, then Fastfood and the SAID/DID step, kernels on and off ---------
    # The limits only guard against a hang (e.g. a kernel that never finishes compiling); they add
    # up to 570 s, under one device command's 600 s. Most important first.
    step checks 150 python3 benchmarks/gpu_checks.py
    # The SAID step against full fine-tuning (the goal), kernels on and off, and profiles.
    step said_step 180 python3 benchmarks/bench_subspace_step.py --preset base --device cuda --repeat 10 --batch 32 --compare-triton --profile
    # RoBERTa-base's D and block length (d = 1000 -> LL = 1024), with a launch-settings sweep.
    step fastfood 150 python3 benchmarks/bench_fastfood.py --device cuda --repeat 5 --D 124647938 --d 1000 --compare-triton --sweep
    step mnist 45 python3 benchmarks/bench_li_mnist.py --device cuda --repeat 200
    INTDIM_TRITON=0 step mnist_torch 45 python3 benchmarks/bench_li_mnist.py --device cuda --repeat 200
fi

if [[ $SECTION == all || $SECTION == mfu ]]; then
    # ---- MFU variants (bench_pretrain_mfu.py; BENCHMARKS.md "Model FLOPs utilisation") ------
    # About 4 minutes: one process measures the variants in this order (baselines first, then
    # all levers together, then one lever off at a time), skips any that would end past 230 s
    # (compile time counts; each variant prints its own line as it finishes), and is killed at
    # 280 s at most. No omegaconf needed. More variants (cudagraphs+..., autotune+..., ...+b128,
    # compile+varpos): see the bench's docstring.
    step mfu 280 python3 benchmarks/bench_pretrain_mfu.py --probe --budget-s 230 --variants \
        eager,eager+nomask,compile,compile+nomask+lossc+b64,compile+nomask,compile+nomask+lossc,autotune+nomask+lossc+b64
fi
