#!/usr/bin/env bash
# Everything measured on a lent GPU, in one go (device time is scarce):
#   bash benchmarks/gpu_run.sh                    # all sections, in this order:
#   bash benchmarks/gpu_run.sh checks said mfu mfuprof said512 fastfood mnist   # any, in order
# The fused Triton kernels for the Fastfood projection (intdim/kernels/triton_fastfood.py) are on
# by default for CUDA tensors; the benches time them against the torch path (INTDIM_TRITON=0) in
# the same runs, so no second session is needed for the baseline.
# Each step's output also goes to $OUT/gpu_<step>.txt (the device tool brings $OUT back even when
# the whole command is cut off at its time limit), or to /tmp without $OUT.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=. INTDIM_TRITON=1
SECTIONS=${*:-checks said mfu said512 fastfood mnist}
LOGS=${OUT:-/tmp}
step() {  # step NAME SECONDS COMMAND...: run with a hang guard, print and keep its output
    local name=$1 limit=$2
    shift 2
    echo "==== $name (at most ${limit} s)"
    timeout "$limit" "$@" 2>&1 | tee "$LOGS/gpu_$name.txt"
}
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name())"
python3 -c "import triton; print('triton', triton.__version__)" || echo "triton: NOT importable (torch path only)"

# The limits only guard against a hang (e.g. a kernel that never finishes compiling); most
# important first. mfu alone takes up to 9 minutes; the others 1-2 each.
for section in $SECTIONS; do
    case $section in
    checks) step checks 120 python3 benchmarks/gpu_checks.py ;;
    # The SAID step against full fine-tuning (the goal), kernels on and off, and profiles
    # (by GPU time and by CPU time: the step is partly launch-bound at 32 x 128).
    said) step said_step 150 python3 benchmarks/bench_subspace_step.py --preset base --device cuda \
        --repeat 10 --batch 32 --compare-triton --profile --no-memory ;;
    said512) step said_step_512 100 python3 benchmarks/bench_subspace_step.py --preset base \
        --device cuda --repeat 5 --batch 32 --seq 512 --compare-triton --no-memory --profile ;;
    # RoBERTa-base's D and block length (d = 1000 -> LL = 1024), with a launch-settings sweep.
    fastfood) step fastfood 150 python3 benchmarks/bench_fastfood.py --device cuda --repeat 5 \
        --D 124647938 --d 1000 --compare-triton --sweep ;;
    mnist)
        step mnist 45 python3 benchmarks/bench_li_mnist.py --device cuda --repeat 200
        INTDIM_TRITON=0 step mnist_torch 45 python3 benchmarks/bench_li_mnist.py --device cuda --repeat 200
        ;;
    # MFU variants (bench_pretrain_mfu.py; BENCHMARKS.md "Model FLOPs utilisation"): one process
    # measures them in this order (all levers first), skips any that would end past --budget-s
    # (compile time counts; each prints its own line as it finishes). No omegaconf needed.
    # Session 4 measured compile+nomask+lossc+b64 (32.4%), +b128 (33.3%), cudagraphs (32.5%) and
    # the padding mask kept (30.9%); a third of that step was memory-bound fused kernels on an
    # fp32 residual stream. Next: precision=bf16-master (a bf16 model, fp32 masters: fairseq's
    # recipe) against the autocast reference in the same process, then its other levers.
    # Last, if the budget allows: max-autotune, whose Triton GEMM templates can take the bias,
    # GELU, dropout and residual add into the matmul's epilogue (minutes of compile).
    # --profile: each variant's kernels by kind after its timed steps (a few seconds each).
    mfu) step mfu 540 python3 benchmarks/bench_pretrain_mfu.py --budget-s 500 --profile --variants \
        compile+nomask+lossc+b64+master,compile+nomask+lossc+b64,compile+nomask+lossc+b64+master+flash,compile+nomask+lossc+b128+master+flash,compile+lossc+b64+master,autotune+nomask+lossc+b64+master ;;
    # Where the best variant's GPU time goes (kernels by kind, then the top 25).
    mfuprof) step mfu_profile 150 python3 benchmarks/bench_pretrain_mfu.py --profile --variants \
        compile+nomask+lossc+b64+master ;;
    *) echo "unknown section $section (checks said mfu mfuprof said512 fastfood mnist)"; exit 2 ;;
    esac
done
