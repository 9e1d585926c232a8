"""The process-group set-up: which backend carries which tensors."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from torch.distributed.distributed_c10d import BackendConfig

from pretrain import distributed


@pytest.mark.parametrize("use_cuda, expected", [
    (True, {"cpu": "gloo", "cuda": "nccl"}),
    (False, {"cpu": "gloo"}),
])  # fmt: skip
def test_host_tensors_go_over_gloo_even_on_gpus(use_cuda, expected):
    # The trainer all-reduces CPU tensors (each update's target count, the stop flag) on GPU runs
    # too: NCCL alone refuses them, so a plain "nccl" group would fail at the first update.
    mapping = BackendConfig(distributed.backend(use_cuda)).get_device_backend_map()
    assert {k: str(v) for k, v in mapping.items() if k in expected} == expected


def test_setup_on_gpus_starts_the_mixed_backend(monkeypatch):
    seen = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: seen.setdefault("device", i))
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda b, **kw: seen.setdefault("backend", b))
    info = distributed.setup("auto")
    assert (info.rank, info.world, info.device) == (1, 2, torch.device("cuda", 1))
    assert seen == {"device": 1, "backend": "cpu:gloo,cuda:nccl"}
