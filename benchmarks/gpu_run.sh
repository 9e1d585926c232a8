#!/usr/bin/env bash
# Everything measured on a lent GPU, in one go (device time is scarce):
#   bash benchmarks/gpu_run.sh
# The Fastfood projection uses the fused Triton kernels on CUDA when triton imports
# (intdim/kernels/triton_fastfood.py); each comparison below times them against the torch path
# (INTDIM_TRITON=0) in the same run, so no second session is needed for the baseline.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=.
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name())"
python3 -c "import triton; print('triton', triton.__version__)" || echo "triton: NOT importable (torch path only)"
python3 benchmarks/gpu_checks.py
# RoBERTa-base's block length (d = 1000 -> LL = 1024), with a launch-settings sweep; then the
# d = 4096 row of BENCHMARKS.md.
python3 benchmarks/bench_fastfood.py --device cuda --repeat 5 --D 124647938 --d 1000 --compare-triton --sweep
python3 benchmarks/bench_fastfood.py --device cuda --repeat 5 --compare-triton
python3 benchmarks/bench_subspace_step.py --preset base --device cuda --repeat 10 --batch 32 --compare-triton
python3 benchmarks/bench_li_mnist.py --device cuda --repeat 200
INTDIM_TRITON=0 python3 benchmarks/bench_li_mnist.py --device cuda --repeat 200
