"""Shared fixtures: a demo corpus written by the tests, and small configs around it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from intdim.config import load_config
from pretrain.config import PretrainConfig
from pretrain.demo_corpus import write_demo_corpus

REPO = Path(__file__).resolve().parents[2]


def tiny_roberta_mlm(
    dropout: float = 0.0, attention_dropout: float = 0.0, layers: int = 2, max_len: int = 40
):
    """A small transformers RobertaForMaskedLM (60 ids, pad 1; 32 wide, 4 heads, FFN 64; SDPA
    attention) for blocks of up to `max_len` tokens, its init drawn from seed 0."""
    import torch
    from transformers import RobertaConfig, RobertaForMaskedLM

    config = RobertaConfig(
        vocab_size=60, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
        intermediate_size=64, hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=attention_dropout, max_position_embeddings=max_len + 2,
        type_vocab_size=1, pad_token_id=1, attn_implementation="sdpa",
    )  # fmt: skip
    torch.manual_seed(0)
    return RobertaForMaskedLM(config)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    return write_demo_corpus(tmp_path_factory.mktemp("corpus") / "demo.txt", n_documents=160)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    # Shared by the session so the tokenizer is trained and the corpus binarised once.
    return tmp_path_factory.mktemp("cache")


def tiny_overrides(run_dir: Path, corpus: Path, cache_dir: Path, **extra) -> list[str]:
    values = {
        "run_dir": str(run_dir),
        "data.corpus": str(corpus),
        "data.cache_dir": str(cache_dir),
        "data.tokens_per_sample": 64,
        "data.valid_fraction": 0.05,
        "data.max_valid_blocks": 8,
        "tokenizer.vocab_size": 300,
        "optim.batch_size": 4,
        "optim.warmup_updates": 5,
        "log_interval": 10,
        "num_threads": 1,
        "tensorboard": False,
        "device": "cpu",
        **extra,
    }
    return [f"{k}={v}" for k, v in values.items()]


def tiny_config(run_dir, corpus, cache_dir, **extra) -> PretrainConfig:
    return load_config(
        PretrainConfig,
        REPO / "configs/pretrain/tiny.yaml",
        tiny_overrides(run_dir, corpus, cache_dir, **extra),
    )


def run_cli(overrides: list[str], env_extra: dict | None = None) -> subprocess.CompletedProcess:
    """`intdim pretrain configs/pretrain/tiny.yaml ...` in a child process (it may be killed)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env_extra or {})}
    code = "import sys; from pretrain.cli import run; sys.exit(run(sys.argv[1], sys.argv[2:]))"
    return subprocess.run(
        [sys.executable, "-c", code, str(REPO / "configs/pretrain/tiny.yaml"), *overrides],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def train_losses(run_dir: Path) -> dict[int, float]:
    """update -> loss, from the run's train_log.jsonl."""
    lines = (run_dir / "train_log.jsonl").read_text().splitlines()
    return {d["update"]: d["loss"] for d in map(json.loads, lines)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def join_or_fail(workers, seconds: float, what: str) -> None:
    """Join mp.spawn(..., join=False)'s processes; a collective reached by one process only hangs
    for ever, so after `seconds` kill them and fail the test instead."""
    deadline = time.monotonic() + seconds
    while not workers.join(timeout=2):
        if time.monotonic() > deadline:
            for p in workers.processes:
                p.kill()
            pytest.fail(f"{what} hung")
