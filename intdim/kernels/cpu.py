"""Native CPU kernels for Fastfood block rows (fastfood_cpu.c), built on first use.

Why native code: on the CPU the pure-torch transform runs as small dense matmuls (see
intdim/hadamard.py), compute-bound at ~36 flops per element for 1024-long rows, while a butterfly
needs 10 additions per element and a row stays in L1 from the gather to the store. For Li et al.'s
MNIST network the transform was ~40% of a DID step; the kernel makes it ~5x faster (BENCHMARKS.md).

How: the C source is compiled with the system C compiler (`$CC`, else `cc`) into a per-user cache
(`$INTDIM_CACHE_DIR`, else `$XDG_CACHE_HOME/intdim`, else `~/.cache/intdim`; the temp dir if that
cannot be written), keyed by the source, the compiler and the CPU's feature flags (so a shared home
directory on a cluster with mixed nodes keeps one build per CPU type), written under a temporary
name and renamed into place (concurrent first uses on many nodes are safe). It is loaded with ctypes
(which releases the GIL during calls) and checked against the Hadamard matrix before first use.
Nothing here is required: with no compiler, a failed build or a failed check, one warning is printed
and the pure-torch path runs (slower, same results up to float32 rounding). `INTDIM_NATIVE=0` turns
the kernels off.

Rows are independent, so big calls are split across `torch.get_num_threads()` threads, each with
its own accumulators, summed in a fixed order (results depend on the thread count, not on timing).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

SOURCE = Path(__file__).with_name("fastfood_cpu.c")
FLAGS = ["-O3", "-std=c11", "-ffp-contract=off", "-fPIC", "-shared"]
# Below this many elements a call runs on the calling thread: splitting costs more than it saves.
PARALLEL_ELEMS = 1 << 18

_lock = threading.Lock()
# "lib": the CDLL (None if unavailable) once decided; "pool": (pid, size, ThreadPoolExecutor);
# "off": set inside disabled().
_state: dict[str, Any] = {}


def enabled() -> bool:
    if _state.get("off"):
        return False
    return os.environ.get("INTDIM_NATIVE", "1").strip().lower() not in ("0", "false", "no", "off")


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Run the pure-torch path inside this block (benchmarks and tests compare the two)."""
    before = _state.get("off", False)
    _state["off"] = True
    try:
        yield
    finally:
        _state["off"] = before


def cache_dir() -> Path:
    explicit = os.environ.get("INTDIM_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "intdim"


def _cpu_signature() -> str:
    """The CPU's feature flags (what -march=native compiles for), or the platform if unknown."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.machine() + platform.processor()


def _compiler() -> str | None:
    cc = os.environ.get("CC", "cc")
    return shutil.which(cc)


def _build(cc: str) -> Path:
    """Compile the kernels (once per source, compiler and CPU type) and return the library."""
    version = subprocess.run(
        [cc, "--version"], capture_output=True, text=True, timeout=30
    ).stdout.splitlines()[:1]
    key = hashlib.sha256()
    for part in (SOURCE.read_bytes(), repr(version).encode(), repr(FLAGS).encode()):
        key.update(part)
    key.update(_cpu_signature().encode())
    name = f"fastfood_cpu-{key.hexdigest()[:16]}.so"
    for folder in (cache_dir(), Path(tempfile.gettempdir()) / f"intdim-{os.getuid()}"):
        if (folder / name).exists():
            return folder / name
        try:  # a read-only home (some clusters' compute nodes): build in the temp dir instead
            folder.mkdir(parents=True, exist_ok=True)
            if os.access(folder, os.W_OK):
                break
        except OSError:
            continue
    else:
        raise RuntimeError(f"no writable cache directory (tried {cache_dir()} and the temp dir)")
    target = folder / name
    errors = []
    # -march=native first (AVX-512/AVX2 vectors); plain flags if this compiler or CPU refuses it.
    for extra in (["-march=native"], []):
        fd, tmp = tempfile.mkstemp(prefix=target.stem, suffix=".so.tmp", dir=target.parent)
        os.close(fd)
        try:  # nothing half-written stays behind, whatever happens to the compiler
            cmd = [cc, *FLAGS, *extra, str(SOURCE), "-o", tmp]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            if proc.returncode == 0:
                os.chmod(tmp, 0o755)
                os.replace(tmp, target)
                return target
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        errors.append(proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"])
    raise RuntimeError(f"{cc} failed: {errors[-1][0]}")


def _bind(lib: ctypes.CDLL) -> None:
    p, i64, f32, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float, ctypes.c_int
    lib.ff_fwht_rows.argtypes = [p, p, i64, i64, f32, p]
    lib.ff_forward_rows.argtypes = [p, p, i32, i64, i64, f32, p, p]
    lib.ff_transpose_rows.argtypes = [p, p, i32, i64, i64, f32, p, p, p, p, p]
    lib.ff_diag_fwht_diag.argtypes = [p, i64, p, i64, p, i64, p]
    for f in (lib.ff_fwht_rows, lib.ff_forward_rows, lib.ff_transpose_rows, lib.ff_diag_fwht_diag):
        f.restype = ctypes.c_int


def _self_check(lib: ctypes.CDLL) -> None:
    """The kernel applied to the identity must give the Hadamard matrix (a miscompile guard)."""
    for n in (8, 64, 8192):
        rows = min(n, 64)
        x = torch.zeros(rows, n)
        x[torch.arange(rows), torch.arange(rows)] = 1.0
        out = torch.empty_like(x)
        if lib.ff_fwht_rows(x.data_ptr(), out.data_ptr(), rows, n, 1.0, None) != 0:
            raise RuntimeError("out of memory in the self-check")
        i = torch.arange(rows).unsqueeze(1)
        j = torch.arange(n).unsqueeze(0)
        bits = i & j
        parity = torch.zeros_like(bits)
        while bool(bits.any()):
            parity ^= bits & 1
            bits = bits >> 1
        if not torch.equal(out, 1.0 - 2.0 * parity.float()):
            raise RuntimeError(f"the compiled transform of length {n} is wrong")


def library() -> ctypes.CDLL | None:
    """The loaded kernels, or None (disabled, or unavailable: warned once)."""
    if not enabled():
        return None
    if "lib" in _state:
        return _state["lib"]  # type: ignore[return-value]
    with _lock:
        if "lib" not in _state:
            lib = None
            try:
                cc = _compiler()
                if cc is None:
                    raise RuntimeError("no C compiler (set CC or install gcc/clang)")
                lib = ctypes.CDLL(str(_build(cc)))
                _bind(lib)
                _self_check(lib)
            except Exception as e:  # noqa: BLE001 - any failure means: use the torch path
                lib = None
                warnings.warn(
                    f"intdim: native CPU kernels unavailable ({e}); using the slower pure-torch "
                    "path (set INTDIM_NATIVE=0 to silence this)",
                    RuntimeWarning,
                    stacklevel=2,
                )
            _state["lib"] = lib
    return _state["lib"]  # type: ignore[return-value]


def available() -> bool:
    return library() is not None


def usable(*tensors: torch.Tensor | None) -> bool:
    """True when the kernels are available and every given tensor is a contiguous CPU tensor."""
    if not enabled():
        return False
    for t in tensors:
        if t is not None and (t.device.type != "cpu" or not t.is_contiguous()):
            return False
    return available()


def reset() -> None:
    """Forget the loaded library (tests: rebuild, or re-read INTDIM_NATIVE)."""
    with _lock:
        _state.pop("lib", None)


def _ptr(t: torch.Tensor | None, offset: int = 0) -> int | None:
    return None if t is None else t.data_ptr() + offset * t.element_size()


def _check(rc: int) -> None:
    if rc != 0:
        raise MemoryError("intdim native kernel: could not allocate a work buffer")


def _spans(rows: int, n: int) -> list[tuple[int, int]]:
    threads = torch.get_num_threads()
    if threads <= 1 or rows < 2 or rows * n < PARALLEL_ELEMS:
        return [(0, rows)]
    k = min(threads, rows)
    edges = [rows * i // k for i in range(k + 1)]
    return [(a, b) for a, b in zip(edges, edges[1:], strict=False) if b > a]


def _run(jobs) -> None:
    if len(jobs) == 1:
        jobs[0]()
        return
    # A pool made before a fork has no threads in the child (it would wait forever): one pool
    # per process, big enough for this call.
    pid, size, pool = _state.get("pool", (None, 0, None))
    if pid != os.getpid() or size < len(jobs):
        pool = ThreadPoolExecutor(len(jobs), thread_name_prefix="intdim-ff")
        _state["pool"] = (os.getpid(), len(jobs), pool)
    for f in [pool.submit(j) for j in jobs]:
        f.result()


def _f32(*tensors: torch.Tensor | None) -> None:
    for t in tensors:
        if t is not None and (t.dtype != torch.float32 or not t.is_contiguous()):
            raise ValueError("native kernels take contiguous float32 tensors")


def _index(t: torch.Tensor) -> None:
    if t.dim() != 2 or t.dtype not in (torch.int16, torch.int32) or not t.is_contiguous():
        raise ValueError("native kernels take a contiguous 2-D int16 or int32 index")


def diag_fwht_diag(
    x: torch.Tensor, pre: torch.Tensor, n: int, post: torch.Tensor, n_out: int
) -> torch.Tensor:
    """post[:n_out] * (H pad(pre[:len(x)] * x, n))[:n_out], a new tensor (Fastfood's two ends)."""
    lib = library()
    _f32(x, pre, post)
    out = torch.empty(n_out, dtype=torch.float32)
    _check(lib.ff_diag_fwht_diag(_ptr(x), x.numel(), _ptr(pre), n, _ptr(post), n_out, _ptr(out)))
    return out


def fwht_rows(x: torch.Tensor, out: torch.Tensor, scale: float, add: torch.Tensor | None) -> None:
    """out = scale * x @ H_n (+ add), rows of x (rows, n); out may alias x, add may alias out."""
    lib = library()
    _f32(x, out, add)
    rows, n = x.shape
    _run(
        [
            lambda a=a, b=b: _check(
                lib.ff_fwht_rows(
                    _ptr(x, a * n), _ptr(out, a * n), b - a, n, scale, _ptr(add, a * n)
                )
            )
            for a, b in _spans(rows, n)
        ]
    )


def forward_rows(
    prep: torch.Tensor,
    perm: torch.Tensor,
    scale: float,
    out: torch.Tensor,
    add: torch.Tensor | None = None,
) -> None:
    """out[r] = scale * H prep[perm[r]] (+ add[r]) for perm (rows, n) int16/int32."""
    lib = library()
    _f32(prep, out, add)
    _index(perm)
    rows, n = perm.shape
    ib = perm.element_size()
    _run(
        [
            lambda a=a, b=b: _check(
                lib.ff_forward_rows(
                    _ptr(prep),
                    _ptr(perm, a * n),
                    ib,
                    b - a,
                    n,
                    scale,
                    _ptr(add, a * n),
                    _ptr(out, a * n),
                )  # fmt: skip
            )
            for a, b in _spans(rows, n)
        ]
    )


def transpose_rows(
    g: torch.Tensor,
    inv: torch.Tensor,
    scale: float,
    out: torch.Tensor | None = None,
    acc: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    prep: torch.Tensor | None = None,
    dots: torch.Tensor | None = None,
) -> None:
    """t_r = (scale * H g[r])[inv[r]]; then out[r] = t_r, acc += sum_r weight[r] t_r and
    dots[r] = <t_r, prep>, each only if given."""
    lib = library()
    _f32(g, out, acc, weight, prep, dots)
    _index(inv)
    rows, n = inv.shape
    ib = inv.element_size()
    spans = _spans(rows, n)
    partial = [acc] if len(spans) == 1 or acc is None else [torch.zeros_like(acc) for _ in spans]

    def job(k: int, a: int, b: int) -> None:
        _check(
            lib.ff_transpose_rows(
                _ptr(g, a * n),
                _ptr(inv, a * n),
                ib,
                b - a,
                n,
                scale,
                _ptr(out, a * n),
                _ptr(partial[k] if acc is not None else None),
                _ptr(weight, a),
                _ptr(prep),
                _ptr(dots, a),
            )  # fmt: skip
        )

    _run([lambda k=k, a=a, b=b: job(k, a, b) for k, (a, b) in enumerate(spans)])
    if acc is not None and len(spans) > 1:
        for p in partial:
            acc += p
