"""The shipped pretraining configs load, and the paper's keeps the paper's run."""

from __future__ import annotations

from pathlib import Path

import pytest

from intdim.config import load_config
from intdim.errors import UserError
from pretrain.config import PretrainConfig
from pretrain.train import _update_freq

CONFIGS = Path(__file__).resolve().parents[2] / "configs/pretrain"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    load_config(PretrainConfig, path, ["data.corpus=demo"])


def test_paper_config_is_the_papers_run_with_the_fastest_measured_step():
    cfg = load_config(PretrainConfig, CONFIGS / "roberta_base_paper.yaml", ["data.corpus=x"])
    # Aghajanyan et al. 5.1: 200k updates of ~1k sequences of 512 tokens, a checkpoint per 10k.
    assert (cfg.max_updates, cfg.save_interval_updates, cfg.save_initial_checkpoint) == (
        200_000, 10_000, True)  # fmt: skip
    assert (cfg.optim.global_batch_size, cfg.data.tokens_per_sample) == (1024, 512)
    assert cfg.model.preset == "roberta_base" and cfg.objective.name == "mlm"
    assert cfg.model.pad_vocab_to_multiple_of == 128  # 50,265 -> 50,304 rows
    assert (cfg.precision, cfg.compile, cfg.compile_loss, cfg.static_shapes) == (
        "bf16-master", True, True, True)  # fmt: skip
    assert (cfg.dropout_bitmask, cfg.padded_attention) == (True, "segments")  # session 8, H200
    # The global batch stays 1024 however many GPUs run it, through accumulation.
    assert {w: _update_freq(cfg, w) for w in (1, 2, 8, 16)} == {1: 16, 2: 8, 8: 2, 16: 1}
    with pytest.raises(UserError, match="not a multiple of batch_size x world"):
        _update_freq(cfg, 3)
