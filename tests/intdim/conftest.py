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
