"""Fixtures of the probe tests: a tiny checkpoint and marker tasks (see tiny_fixtures.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_fixtures import save_tiny_checkpoint, write_marker_task


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    # Tiny models on 2 shared cores: extra threads only add contention (15x slower here).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("run") / "checkpoints" / "checkpoint_100")


@pytest.fixture(scope="session")
def sst2_dir(tmp_path_factory) -> Path:
    return write_marker_task(tmp_path_factory.mktemp("glue") / "SST-2", "sst2")


@pytest.fixture(scope="session")
def mrpc_dir(tmp_path_factory) -> Path:
    return write_marker_task(tmp_path_factory.mktemp("glue") / "MRPC", "mrpc")
