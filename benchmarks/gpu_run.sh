#!/usr/bin/env bash
# Everything measured on a lent GPU, in one go (device time is scarce):
#   bash benchmarks/gpu_run.sh
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=.
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name())"
python3 benchmarks/gpu_checks.py
python3 benchmarks/bench_fastfood.py --device cuda --repeat 5
python3 benchmarks/bench_subspace_step.py --preset base --device cuda --repeat 10 --batch 32 --profile
python3 benchmarks/bench_li_mnist.py --device cuda --repeat 200

# ---- MFU variants (bench_pretrain_mfu.py; BENCHMARKS.md "Model FLOPs utilisation") ----------
# About 4 minutes: one process measures the variants in this order (baselines first, then all
# levers together, then one lever off at a time), skips any that would end past 230 s (compile
# time counts; each variant prints its own line as it finishes), and is killed at 280 s at most.
# No omegaconf needed. More variants (cudagraphs+..., autotune+..., ...+b128, compile+varpos): see
# the bench's docstring.
timeout 280 python3 benchmarks/bench_pretrain_mfu.py --probe --budget-s 230 --variants \
    eager,eager+nomask,compile,compile+nomask+lossc+b64,compile+nomask,compile+nomask+lossc,autotune+nomask+lossc+b64
