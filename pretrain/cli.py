"""`intdim pretrain CONFIG [key=value ...]`: load the config, run the stage, print where it went.

Returns 0 when training finished (RUN_DIR/DONE written), 3 when a signal stopped it after writing
a checkpoint (run the same command to resume)."""

from __future__ import annotations

from pretrain.config import PretrainConfig


def run(config_path: str, overrides: list[str]) -> int:
    from intdim.config import load_config
    from pretrain.train import main

    cfg = load_config(PretrainConfig, config_path, overrides)
    run_dir = main(cfg)
    if (run_dir / "DONE").is_file():
        print(f"pretraining finished: checkpoints in {run_dir / 'checkpoints'}")
        return 0
    print(f"pretraining stopped before the end; rerun the same command to resume from {run_dir}")
    return 3
