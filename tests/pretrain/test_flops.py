"""The model-FLOP count behind the MFU the trainer logs (and the MFU benchmark reports)."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
import torch
from transformers import RobertaForMaskedLM

from pretrain.config import ModelConfig
from pretrain.flops import FlopCount, peak_tflops
from pretrain.model import build_config
from pretrain.train import main
from tests.pretrain.conftest import tiny_config


class _Tok(SimpleNamespace):
    def __len__(self) -> int:
        return self.vocab


def test_roberta_base_counts_its_layers_and_its_head_apart():
    tok = _Tok(vocab=50265, pad_token_id=1, bos_token_id=0, eos_token_id=2)
    with torch.device("meta"):  # the count needs shapes only
        model = RobertaForMaskedLM(build_config(ModelConfig(preset="roberta_base"), tok, 512))
    c = FlopCount.of(model)
    h, f = 768, 3072
    per_layer = 4 * h * h + 4 * h + 2 * h * f + f + h + 2 * 2 * h  # QKVO, FFN, two LayerNorms
    assert c == FlopCount(encoder=12 * per_layer, head=h * h + 50265 * h, layers=12, hidden=h)
    assert c.encoder == 85_054_464  # RoBERTa-base's 124.6M less embeddings and LM head
    # A 64 x 512 step with 15% scored: layers, attention products, head at the scored rows only.
    tokens, scored = 64 * 512, 4915
    assert c.per_step(tokens, scored, 512) == pytest.approx(
        6 * 85_054_464 * tokens + 12 * 12 * h * 512 * tokens + 6 * c.head * scored, rel=1e-12
    )


@pytest.mark.parametrize("name, peak", [
    ("NVIDIA H100 80GB HBM3", 989.0),
    ("NVIDIA H100 PCIe", 756.0),
    ("NVIDIA H200", 989.0),
    ("NVIDIA A100-SXM4-80GB", 312.0),
    ("Tesla T4", None),
])  # fmt: skip
def test_peak_comes_from_the_gpu_name_unless_configured(monkeypatch, name, peak):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    assert peak_tflops(torch.device("cuda", 0)) == peak
    assert peak_tflops(torch.device("cuda", 0), configured=123.0) == 123.0
    assert peak_tflops(torch.device("cpu")) is None


def test_the_log_shows_mfu_only_with_a_peak(tmp_path, corpus, cache_dir, capsys):
    common = dict(max_updates=4, save_interval_updates=4, save_initial_checkpoint=False,
                  log_interval=2)  # fmt: skip
    main(tiny_config(tmp_path / "cpu", corpus, cache_dir, **common))
    assert "MFU" not in capsys.readouterr().out  # a CPU has no known peak
    main(tiny_config(tmp_path / "peak", corpus, cache_dir, **common, peak_tflops=1e-6))
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("update ")]
    assert len(lines) == 2
    model = RobertaForMaskedLM.from_pretrained(tmp_path / "peak/checkpoints/checkpoint_4")
    count, seq = FlopCount.of(model), 64  # the tiny config's blocks
    # Per token: the layers and attention at every token, the head at ~15% of them.
    low, high = (count.per_step(1, share, seq) for share in (0.12, 0.18))
    for line in lines:  # MFU x peak = model FLOP/s = tokens/s x FLOPs per token
        tok_s = float(re.search(r"tokens/s ([\d,]+)", line)[1].replace(",", ""))
        mfu = float(re.search(r"MFU ([\d.]+)%", line)[1]) / 100
        assert low < mfu * 1e-6 * 1e12 / tok_s < high, line
