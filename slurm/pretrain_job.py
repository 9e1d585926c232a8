"""Pretraining as a submitit job that survives timeouts, preemption and `scontrol requeue`.

Every task of the job (nodes x GPUs per node) runs `PretrainJob()(config, overrides)`; the
trainer finds its rank and the rendezvous in SLURM's environment (pretrain/distributed.py) and
resumes from the newest checkpoint of its run directory, so running the same call again is how
a job continues.

Signals, and who requeues:
- SIGUSR2 (SLURM's warning before the time limit, `--signal=USR2@90` from submitit): the trainer
  writes a checkpoint and returns; then this job hands the signal to submitit's handler, which
  calls `checkpoint()` (same arguments) and requeues the job with `scontrol requeue`.
- SIGTERM (preemption, `scontrol requeue`, `scancel`): the trainer writes a checkpoint and
  returns; SLURM itself requeues the job when that is what the SIGTERM was for.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path

import submitit


class PretrainJob(submitit.helpers.Checkpointable):
    def __call__(self, config: str, overrides: Sequence[str]) -> str:
        from intdim.config import load_config
        from pretrain import train
        from pretrain.config import PretrainConfig

        cfg = load_config(PretrainConfig, config, list(overrides))
        run, stop = None, None
        try:
            run = train.setup(cfg)
            train.run_training(run)
            stop = run.stop_signal
        finally:
            train.cleanup(run)
        if stop == signal.SIGUSR2 and "SLURM_JOB_ID" in os.environ:
            # The trainer put submitit's handler back when it returned: let it requeue us.
            os.kill(os.getpid(), signal.SIGUSR2)
            time.sleep(30)  # the handler exits this process
        done = (Path(cfg.run_dir) / "DONE").is_file()
        return "finished" if done else f"stopped by {signal.Signals(stop).name if stop else '?'}"
