"""The compiled CPU kernels (intdim/kernels) against dense maths and the pure-torch path."""

import ctypes
import multiprocessing as mp
import warnings

import pytest
import torch
from torch import nn

from intdim import SubspaceConfig, wrap
from intdim.hadamard import fwht, hadamard_matrix
from intdim.kernels import cpu as cpu_kernels
from intdim.projection import build_projection
from tests.conftest import tiny_roberta

needs_native = pytest.mark.skipif(
    not cpu_kernels.available(), reason="native CPU kernels unavailable (no C compiler)"
)


def test_kernels_build_wherever_there_is_a_compiler():
    # Every other native test skips when the kernels are unavailable; this one makes a broken
    # kernel (a compile error, or a wrong transform caught by the self-check) fail the suite.
    if cpu_kernels._compiler() is None or not cpu_kernels.enabled():
        pytest.skip("no C compiler here: the pure-torch path is what runs")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the fallback's warning would say why
        assert cpu_kernels.library() is not None


def dense_rows(x: torch.Tensor) -> torch.Tensor:
    """x @ H_n in float64, by the dense matrix (small n) or the float64 torch path (large n)."""
    n = x.shape[-1]
    if n <= 4096:
        return x.double() @ hadamard_matrix(n, torch.float64)
    return fwht(x.double())  # float64 never takes the native path


@needs_native
@pytest.mark.parametrize("n", [1, 2, 4, 8, 16, 32, 64, 1024, 4096, 8192, 1 << 15])
def test_fwht_rows_equal_the_hadamard_matrix(n):
    # 8192 and 2^15 exceed the kernel's sub-block (4096): the cache-blocked stages run too.
    x = torch.randn(5, n)
    out = torch.empty_like(x)
    cpu_kernels.fwht_rows(x, out, 1.0, None)
    expected = dense_rows(x)
    err = (out.double() - expected).abs().max() / expected.abs().max()
    assert err < 1e-6


@needs_native
@pytest.mark.parametrize("n", [2, 1024])
def test_fwht_rows_scale_add_and_aliasing(n):
    x, add = torch.randn(3, n), torch.randn(3, n)
    expected = (0.25 * dense_rows(x) + add.double()).float()
    out = torch.empty_like(x)
    cpu_kernels.fwht_rows(x, out, 0.25, add)
    torch.testing.assert_close(out, expected)
    y = x.clone()
    cpu_kernels.fwht_rows(y, y, 0.25, add)  # in place
    torch.testing.assert_close(y, expected)
    a = add.clone()
    cpu_kernels.fwht_rows(x, a, 0.25, a)  # add aliasing out
    torch.testing.assert_close(a, expected)


@needs_native
@pytest.mark.parametrize("index_dtype", [torch.int16, torch.int32])
@pytest.mark.parametrize("n", [8, 1024])
def test_forward_rows_gather_then_transform(index_dtype, n):
    rows = 9
    prep = torch.randn(n)
    perm = torch.stack([torch.randperm(n) for _ in range(rows)]).to(index_dtype)
    add = torch.randn(rows * n)
    out = torch.empty(rows * n)
    cpu_kernels.forward_rows(prep, perm, 0.5, out, add)
    expected = 0.5 * dense_rows(prep[perm.long()]) + add.double().view(rows, n)
    torch.testing.assert_close(out.view(rows, n).double(), expected, rtol=1e-5, atol=1e-5)


@needs_native
@pytest.mark.parametrize("index_dtype", [torch.int16, torch.int32])
def test_transpose_rows_outputs_sums_and_dots(index_dtype):
    # 150 rows: more than the kernel's float run of 64 rows, so partial sums are flushed twice.
    rows, n = 150, 64
    g = torch.randn(rows, n)
    inv = torch.stack([torch.randperm(n) for _ in range(rows)]).to(index_dtype)
    weight, prep = torch.randn(rows), torch.randn(n)
    t = 0.5 * torch.gather(dense_rows(g), 1, inv.long())  # t_r = (s H g_r)[inv_r]
    out, dots = torch.empty(rows * n), torch.empty(rows)
    acc = torch.ones(n)  # accumulated into, not overwritten
    cpu_kernels.transpose_rows(g, inv, 0.5, out=out, acc=acc, weight=weight, prep=prep, dots=dots)
    torch.testing.assert_close(out.view(rows, n).double(), t, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(acc.double(), 1 + weight.double() @ t, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(dots.double(), t @ prep.double(), rtol=1e-5, atol=1e-4)
    plain = torch.zeros(n)
    cpu_kernels.transpose_rows(g, inv, 0.5, acc=plain)  # no weight: every row counts once
    torch.testing.assert_close(plain.double(), t.sum(0), rtol=1e-5, atol=1e-4)


@needs_native
def test_rows_split_across_threads_give_the_same_result():
    rows, n = 512, 1024  # 2^19 elements: above PARALLEL_ELEMS, so 2 threads split the rows
    g = torch.randn(rows, n)
    inv = torch.stack([torch.randperm(n) for _ in range(rows)]).int()
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            assert len(cpu_kernels._spans(rows, n)) == threads
            acc, out = torch.zeros(n), torch.empty(rows * n)
            cpu_kernels.transpose_rows(g, inv, 1.0, out=out, acc=acc)
            results.append((acc, out))
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=0, atol=0)
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-6, atol=1e-4)


_FORK_ARGS: dict = {}


def _threaded_call_in_child(queue) -> None:
    # Only the kernel runs here: torch's own multi-threaded ops can hang in a forked child
    # (OpenMP is not fork-safe), which is not what this test is about.
    a = _FORK_ARGS
    queue.put(len(cpu_kernels._spans(*a["inv"].shape)))
    cpu_kernels.transpose_rows(a["g"], a["inv"], 1.0, acc=a["acc"])
    queue.put(float(a["acc"][0]))


@needs_native
def test_threaded_calls_work_in_a_forked_child():
    # The parent's thread pool exists before the fork, but its threads do not in the child.
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        rows, n = 512, 1024
        inv = torch.arange(n, dtype=torch.int32).repeat(rows, 1)
        _FORK_ARGS.update(g=torch.ones(rows, n), inv=inv, acc=torch.zeros(n))
        cpu_kernels.transpose_rows(_FORK_ARGS["g"], inv, 1.0, acc=torch.zeros(n))  # makes the pool
        ctx = mp.get_context("fork")
        queue = ctx.SimpleQueue()
        child = ctx.Process(target=_threaded_call_in_child, args=(queue,))
        child.start()
        child.join(timeout=60)
    finally:
        torch.set_num_threads(before)
        _FORK_ARGS.clear()
    if child.is_alive():
        child.kill()
        pytest.fail("a threaded kernel call hung in a forked child")
    assert child.exitcode == 0
    assert queue.get() == 2  # the child really split the rows across threads
    assert queue.get() == rows * n  # H of a row of ones is n at index 0; summed over the rows


@needs_native
@pytest.mark.usefixtures("small_blocks")
@pytest.mark.parametrize("method", ["did", "said"])
def test_subspace_model_is_the_same_on_both_paths(method, batch):
    # d = 300 gives blocks of 512 that straddle tensors and SAID layers (its "mixed" rows).
    outs = []
    for off in (False, True):
        sub = wrap(tiny_roberta(), SubspaceConfig(d=300, method=method, seed=3))
        with torch.no_grad():
            sub.theta_d.normal_(0, 0.3, generator=torch.Generator().manual_seed(0))
        with cpu_kernels.disabled() if off else _nothing():
            out = sub(**batch)
            out.loss.backward()
        outs.append((out.logits.detach(), sub.theta_d.grad.clone()))
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(outs[0][1], outs[1][1], rtol=1e-4, atol=1e-6)


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


@needs_native
def test_mnist_sized_projection_matches_the_torch_path():
    # Li et al.'s network size: 195 blocks of 1024 and a truncated last block.
    p = build_projection("fastfood", 199_210, 750, seed=0)
    x, g = torch.randn(750), torch.randn(199_210)
    xr = x.clone().requires_grad_()
    y = p(xr)
    (y * g).sum().backward()
    with cpu_kernels.disabled():
        xt = x.clone().requires_grad_()
        yt = p(xt)
        (yt * g).sum().backward()
    torch.testing.assert_close(y, yt, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(xr.grad, xt.grad, rtol=1e-4, atol=1e-5)


def test_disabled_by_environment(monkeypatch):
    monkeypatch.setenv("INTDIM_NATIVE", "0")
    assert not cpu_kernels.usable(torch.zeros(4))
    x = torch.randn(2, 64)
    torch.testing.assert_close(fwht(x).double(), dense_rows(x), rtol=1e-5, atol=1e-4)


@pytest.fixture
def fresh_build(tmp_path, monkeypatch):
    """Build into an empty cache directory; the normal library is restored afterwards."""
    monkeypatch.setenv("INTDIM_CACHE_DIR", str(tmp_path))
    cpu_kernels.reset()
    yield tmp_path
    cpu_kernels.reset()


def test_no_compiler_warns_once_and_falls_back(fresh_build, monkeypatch):
    monkeypatch.setenv("CC", "no-such-compiler-intdim")
    with pytest.warns(RuntimeWarning, match="native CPU kernels unavailable.*no C compiler"):
        assert cpu_kernels.library() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cpu_kernels.library() is None  # decided once: no second warning
    assert not cpu_kernels.usable(torch.zeros(3))
    x = torch.randn(3, 32)
    torch.testing.assert_close(fwht(x).double(), dense_rows(x), rtol=1e-5, atol=1e-4)
    assert list(fresh_build.iterdir()) == []  # nothing half-written left behind


def test_a_failing_compiler_falls_back(fresh_build, monkeypatch):
    monkeypatch.setenv("CC", "false")  # exits 1 whatever it is given
    with pytest.warns(RuntimeWarning, match="native CPU kernels unavailable.*failed"):
        assert cpu_kernels.library() is None
    assert list(fresh_build.iterdir()) == []


@needs_native
def test_the_build_is_cached(fresh_build):
    assert cpu_kernels.library() is not None
    built = list(fresh_build.glob("*.so"))
    assert len(built) == 1 and not list(fresh_build.glob("*.tmp"))
    stamp = built[0].stat().st_mtime_ns
    cpu_kernels.reset()
    assert cpu_kernels.library() is not None
    assert list(fresh_build.glob("*.so")) == built and built[0].stat().st_mtime_ns == stamp


@needs_native
def test_an_unwritable_cache_dir_falls_back_to_the_temp_dir(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")  # the cache dir would have to be created inside a file
    monkeypatch.setenv("INTDIM_CACHE_DIR", str(blocker / "intdim"))
    monkeypatch.setattr(cpu_kernels.tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    cpu_kernels.reset()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert cpu_kernels.library() is not None
    finally:
        cpu_kernels.reset()
    assert len(list((tmp_path / "tmp").glob("intdim-*/fastfood_cpu-*.so"))) == 1


def test_self_check_rejects_a_wrong_transform():
    class Broken:  # a "kernel" that copies x instead of transforming it
        def ff_fwht_rows(self, x, out, rows, n, scale, add):
            ctypes.memmove(out, x, rows * n * 4)
            return 0

    with pytest.raises(RuntimeError, match="is wrong"):
        cpu_kernels._self_check(Broken())


@needs_native
def test_wrappers_refuse_non_float32():
    with pytest.raises(ValueError, match="float32"):
        cpu_kernels.fwht_rows(torch.zeros(2, 4, dtype=torch.float64), torch.zeros(2, 4), 1.0, None)
    with pytest.raises(ValueError, match="int16 or int32"):  # the C code reads 2- or 4-byte indices
        cpu_kernels.transpose_rows(torch.zeros(2, 4), torch.zeros(2, 4, dtype=torch.int64), 1.0)


def test_model_still_trains_on_the_torch_path():
    # The fallback is a complete implementation, not only a reference: a DID step lowers the loss.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 2))
    x, y = torch.randn(64, 10), torch.randint(0, 2, (64,))
    with cpu_kernels.disabled():
        sub = wrap(model, SubspaceConfig(d=20, method="did", seed=0))
        opt = torch.optim.SGD(sub.parameters(), lr=0.5)
        first = None
        for _ in range(30):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(sub(x), y)
            first = loss.item() if first is None else first
            loss.backward()
            opt.step()
    assert loss.item() < first
