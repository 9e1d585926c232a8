#!/usr/bin/env bash
# On a lent GPU: the pretrain stage (bf16, CUDA) writes checkpoints, and the probe stage measures
# d90 on one of them with bf16 autocast, through the real commands. Needs omegaconf's wheel in
# .whl/ (the GPU image lacks it):  bash benchmarks/gpu_pipeline_check.sh
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:. PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
R=/tmp/gpu-run
python3 -m intdim.cli pretrain configs/pretrain/tiny.yaml run_dir=$R device=cuda precision=bf16 \
    max_updates=60 save_interval_updates=30 tensorboard=false 2>&1 | grep -v "it/s\]" | tail -4
python3 - <<'PY'
from pathlib import Path
from tests.probe.tiny_fixtures import write_marker_task
write_marker_task(Path("/tmp/gpu-sst2"), "sst2"); write_marker_task(Path("/tmp/gpu-mrpc"), "mrpc")
PY
python3 -m intdim.cli probe --checkpoint $R/checkpoints/checkpoint_60 --config configs/probe/tiny.yaml \
    data_dirs.sst2=/tmp/gpu-sst2 data_dirs.mrpc=/tmp/gpu-mrpc finetune.device=cuda \
    finetune.precision=bf16 2>&1 | grep -v "step/s\]" | tail -6
python3 -m intdim.cli status $R
