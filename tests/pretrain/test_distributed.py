"""The process-group set-up: which backend carries which tensors."""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed.distributed_c10d import BackendConfig

from pretrain import distributed
from tests.pretrain.conftest import free_port, join_or_fail


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
    monkeypatch.setattr(distributed, "new_wait_group", lambda world: f"gloo group of {world}")
    info = distributed.setup("auto")
    assert (info.rank, info.world, info.device) == (1, 2, torch.device("cuda", 1))
    assert info.wait_group == "gloo group of 2"
    assert seen == {"device": 1, "backend": "cpu:gloo,cuda:nccl"}


def _wait_worker(rank, port, out_dir, rank0_ok):
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank))
    # A default group that gives up after 2 s, as NCCL's after 10 min: rank 0's 4 s of
    # "preparing the data" outlast it. The store meeting the two processes waits longer, so a slow
    # start of either process (a loaded machine) cannot fail the test.
    store = dist.TCPStore("127.0.0.1", port, 2, rank == 0, timeout=timedelta(seconds=60))
    dist.init_process_group("gloo", store=store, rank=rank, world_size=2,
                            timeout=timedelta(seconds=2))  # fmt: skip
    info = distributed.setup("cpu")
    if rank == 0:
        time.sleep(4)
    result = distributed.wait_for_main(info, ok=rank0_ok or rank != 0)
    (out_dir / f"rank{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


@pytest.mark.parametrize("rank0_ok", [True, False])
def test_the_others_wait_out_a_long_preparation_and_hear_if_it_failed(tmp_path, rank0_ok):
    workers = mp.spawn(_wait_worker, args=(free_port(), tmp_path, rank0_ok), nprocs=2, join=False)
    join_or_fail(workers, 120, "wait_for_main")
    assert [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)] == [
        rank0_ok, rank0_ok]  # fmt: skip
