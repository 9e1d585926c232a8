"""Fixtures for the core's tests."""

from __future__ import annotations

import pytest

from intdim.kernels import cpu as cpu_kernels
from intdim.projection import Projection


@pytest.fixture(params=["native", "torch"])
def kernel_path(request):
    """Run a test on the compiled CPU kernels and again on the pure-torch reference path."""
    if request.param == "torch":
        with cpu_kernels.disabled():
            yield request.param
        return
    if not cpu_kernels.available():
        pytest.skip("native CPU kernels unavailable here (no C compiler)")
    yield request.param


@pytest.fixture(params=[None, 1], ids=["default-chunks", "one-block-chunks"])
def chunk_rows(request, monkeypatch):
    """Chunks as the device gives them, then one block per chunk (every chunk boundary path)."""
    if request.param is not None:
        monkeypatch.setattr(Projection, "rows_per_chunk", lambda self: request.param)
    return request.param


@pytest.fixture
def small_blocks(monkeypatch):
    """Fastfood blocks of 2^ceil(log2 d), without the 1024 floor: the block machinery's tests
    (chunks, blocks straddling tensors and SAID layers, truncated last blocks, the kernels' small
    block shapes) need many small blocks in models small enough to check against a dense P."""
    from intdim.projection import FastfoodProjection

    monkeypatch.setattr(FastfoodProjection, "MIN_BLOCK", 1)
