"""Small shared helpers for the benchmark scripts: timing and a description of the machine."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator

import torch

from intdim.machine import cpu_name


def machine() -> str:
    s = f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}"
    s += f", {torch.get_num_threads()} threads"
    if torch.cuda.is_available():
        s += f", GPU {torch.cuda.get_device_name()}"
    return s


def sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def best_time(fn: Callable[[], object], repeat: int = 5, warmup: int = 1, device="cpu") -> float:
    """Best wall time of `repeat` calls after `warmup` calls (seconds)."""
    for _ in range(warmup):
        fn()
    sync(device)
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return best


def interleaved(fns: dict[str, Callable[[], object]], repeat: int = 5, device="cpu") -> dict:
    """Best time of each function, measured in alternation so machine noise hits all alike."""
    for fn in fns.values():
        fn()
    sync(device)
    best = {k: float("inf") for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            sync(device)
            best[k] = min(best[k], time.perf_counter() - t)
    return best


def on_torch_path(fn: Callable[[], object]) -> Callable[[], object]:
    """`fn` with intdim's compiled CPU kernels turned off: the pure-torch path, for comparison."""
    from intdim.kernels import cpu as cpu_kernels

    def run():
        with cpu_kernels.disabled():
            return fn()

    return run


def native_on_cpu(device: torch.device | str) -> bool:
    """Whether intdim's compiled CPU kernels run here (so a torch-path column is worth timing)."""
    from intdim.kernels import cpu as cpu_kernels

    return torch.device(device).type == "cpu" and cpu_kernels.available()


@contextlib.contextmanager
def env(**values: str) -> Iterator[None]:
    """Environment variables set inside the block, e.g. env(INTDIM_TRITON="0"): the Fastfood
    projection reads INTDIM_TRITON (kernels on/off) and INTDIM_TRITON_DOT at every call."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                del os.environ[k]
            else:
                os.environ[k] = v


def with_env(fn: Callable[[], object], **values: str) -> Callable[[], None]:
    """fn, run with env(**values)."""

    def run() -> None:
        with env(**values):
            fn()

    return run
