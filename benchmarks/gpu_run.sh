#!/usr/bin/env bash
# Everything measured on a lent GPU, in one go (device time is scarce):
#   bash benchmarks/gpu_run.sh
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=.
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name())"
python3 benchmarks/gpu_checks.py
python3 benchmarks/bench_fastfood.py --device cuda --repeat 5
python3 benchmarks/bench_subspace_step.py --preset base --device cuda --repeat 10 --batch 32
python3 benchmarks/bench_li_mnist.py --device cuda --repeat 200
