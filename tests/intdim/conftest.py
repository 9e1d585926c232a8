"""Fixtures for the core's tests."""

from __future__ import annotations

import pytest

from intdim.kernels import cpu as cpu_kernels


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
