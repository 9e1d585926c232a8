"""The Triton Fastfood kernels, run by Triton's interpreter on CPU tensors (no GPU needed).

They are checked against dense math (the Sylvester H, the permutation as a gather) and against
the pure-torch FastfoodProjection methods, and through the projection and the SAID/DID backward
with the kernels switched on for CPU tensors. Rows are few: the interpreter is slow.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import warnings

import pytest
import torch

triton = pytest.importorskip("triton")
tl = pytest.importorskip("triton.language")

from intdim import projection as projection_mod  # noqa: E402
from intdim.hadamard import hadamard_matrix  # noqa: E402
from intdim.projection import FastfoodProjection, build_projection  # noqa: E402
from intdim.subspace import SubspaceConfig, wrap  # noqa: E402
from tests.conftest import tiny_roberta  # noqa: E402
from tests.intdim.test_subspace import Small, assert_mse_gradient_matches_dense  # noqa: E402

KERNELS = projection_mod.__file__.replace("projection.py", "kernels/triton_fastfood.py")

# Every block shape the kernels take (tiny models get blocks below 1024): see `small_blocks`.
DEFAULT_MIN_BLOCK = FastfoodProjection.MIN_BLOCK
pytestmark = pytest.mark.usefixtures("small_blocks")


@contextlib.contextmanager
def _interpreting():
    """TRITON_INTERPRET=1 while kernels are defined: triton.jit reads it then."""
    old = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        yield
    finally:
        if old is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = old


with _interpreting():

    @triton.jit
    def _tf32_square(x_ptr, out_ptr, N: tl.constexpr):
        i = tl.arange(0, N)[:, None] * N + tl.arange(0, N)[None, :]
        x = tl.load(x_ptr + i)
        tl.store(out_ptr + i, tl.dot(x, x, input_precision="tf32"))


@pytest.fixture(scope="module")
def tf():
    """A private copy of intdim.kernels.triton_fastfood whose kernels run in the interpreter.

    triton.jit reads TRITON_INTERPRET when a kernel is defined, so the copy is loaded with it
    set; the real module (compiled kernels on a GPU machine) is left alone.
    """
    with _interpreting():
        spec = importlib.util.spec_from_file_location("_triton_fastfood_interpreted", KERNELS)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    return mod


@pytest.fixture(autouse=True)
def tf32_like_a_gpu(monkeypatch):
    """The interpreter computes every tl.dot in float32, whatever input_precision says; make TF32
    dots round their inputs to 10 mantissa bits as tensor cores do, so the split dots
    (INTDIM_TRITON_DOT=split) are tested for exactness and not just for their algebra."""
    from triton.runtime import interpreter

    dot = interpreter.InterpreterBuilder.create_dot

    def create_dot(self, a, b, d, input_precision, *args):
        if str(input_precision).rsplit(".", 1)[-1] == "TF32":
            a = interpreter.TensorHandle(interpreter._round_f32_to_tf32(a.data), a.dtype)
            b = interpreter.TensorHandle(interpreter._round_f32_to_tf32(b.data), b.dtype)
        return dot(self, a, b, d, input_precision, *args)

    monkeypatch.setattr(interpreter.InterpreterBuilder, "create_dot", create_dot)


@pytest.fixture(params=["ieee", "split"])
def dot_mode(request, monkeypatch):
    """Both ways of doing the Hadamard products inside the kernels (see _times_h)."""
    monkeypatch.setenv("INTDIM_TRITON_DOT", request.param)
    return request.param


@pytest.fixture
def on_cpu(tf, monkeypatch):
    """FastfoodProjection uses the (interpreted) kernels for CPU tensors too."""
    monkeypatch.setattr(projection_mod, "_triton_kernels", lambda: tf)
    monkeypatch.setattr(
        FastfoodProjection, "_use_triton", lambda self, device: tf.supports(self.block)
    )
    return tf


def make(LL: int, index_dtype: torch.dtype, monkeypatch, blocks: float = 3.5, seed: int = 0):
    """A Fastfood projection with blocks of LL, a truncated last block, and the given indices."""
    # int16 indices are what models of >= 2^24 parameters get; pretend this one is that big.
    monkeypatch.setattr(projection_mod, "SMALL_MODEL", 0 if index_dtype == torch.int16 else 1 << 40)
    D = int(blocks * LL) | 1  # odd: never a multiple of LL
    p = build_projection("fastfood", D, LL // 2 + 1, seed=seed)
    assert p.block == LL and p.perm.dtype == index_dtype and p.D % LL
    return p


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def dense_forward(p, prep, b0, b1):
    """scale * H prep[perm_i] per row, float64."""
    H = hadamard_matrix(p.block, torch.float64)
    return p.scale * prep.double()[p.perm[b0:b1].long()] @ H


def dense_transpose(p, g, b0, b1):
    """t_i[k] = (scale * H g_i)[inv_i[k]], float64."""
    H = hadamard_matrix(p.block, torch.float64)
    v = p.scale * g.double() @ H
    return torch.gather(v, 1, p.inv[b0:b1].long())


LENGTHS = [2, 16, 1024, 4096]
INDEX = [torch.int16, torch.int32]


@pytest.mark.parametrize("index_dtype", INDEX, ids=["int16", "int32"])
@pytest.mark.parametrize("LL", LENGTHS)
@pytest.mark.parametrize("with_add", [False, True], ids=["plain", "add"])
def test_forward_rows(tf, dot_mode, monkeypatch, LL, index_dtype, with_add):
    p = make(LL, index_dtype, monkeypatch)
    prep = p.prepare(torch.randn(p.d))
    b0, b1 = 1, p.n_blocks  # a chunk that starts inside the table and ends with the short block
    n = (b1 - b0) * LL
    add = torch.randn(n) if with_add else None
    out = torch.full((n,), float("nan"))
    res = tf.forward_rows(prep, p.perm[b0:b1], p.scale, out=out, add=add)
    assert res.shape == (b1 - b0, LL) and res.data_ptr() == out.data_ptr()
    expected = dense_forward(p, prep, b0, b1)
    if with_add:
        expected = expected + add.double().view(b1 - b0, LL)
    assert rel_err(res, expected) < 1e-6
    torch.testing.assert_close(res, p.forward_rows(prep, b0, b1, add=add), rtol=1e-5, atol=1e-6)


def test_forward_rows_add_may_alias_out(tf, monkeypatch):
    p = make(1024, torch.int16, monkeypatch)
    prep = p.prepare(torch.randn(p.d))
    theta0 = torch.randn(p.n_blocks * 1024)
    buf = theta0.clone()
    tf.forward_rows(prep, p.perm, p.scale, out=buf, add=buf)
    expected = dense_forward(p, prep, 0, p.n_blocks) + theta0.double().view(-1, 1024)
    assert rel_err(buf.view(-1, 1024), expected) < 1e-6


@pytest.mark.parametrize("index_dtype", INDEX, ids=["int16", "int32"])
@pytest.mark.parametrize("LL", LENGTHS)
def test_transpose_rows(tf, dot_mode, monkeypatch, LL, index_dtype):
    p = make(LL, index_dtype, monkeypatch)
    b0, b1 = 1, p.n_blocks
    g = torch.randn(b1 - b0, LL)
    g[-1, p.D - (b1 - 1) * LL :] = 0  # the truncated block's gradient is zero-padded
    res = tf.transpose_rows(g, p.perm[b0:b1], p.scale)
    assert rel_err(res, dense_transpose(p, g, b0, b1)) < 1e-6
    torch.testing.assert_close(res, p.transpose_rows(g, b0, b1), rtol=1e-5, atol=1e-6)
    out = torch.full(((b1 - b0) * LL,), float("nan"))
    assert tf.transpose_rows(g, p.perm[b0:b1], p.scale, out=out).data_ptr() == out.data_ptr()
    torch.testing.assert_close(out.view_as(res), res, rtol=0, atol=0)


@pytest.fixture(params=[None, 2], ids=["one-run-per-program", "two-programs"])
def programs(request, tf, monkeypatch):
    """Two programs: each loops over many rows (the scratch row is reused), the last one short."""
    if request.param is not None:
        monkeypatch.setattr(tf, "PROGRAMS", request.param)
    return request.param


def reduced(fn, g, weight, prep) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(acc, dots) from a transpose_reduce-like fn(g, acc, weight, prep, dots), acc from zero."""
    acc = torch.zeros(g.shape[1])
    dots = None if prep is None else torch.full((g.shape[0],), float("nan"))
    fn(g, acc, weight, prep, dots)
    return acc, dots


@pytest.mark.parametrize("LL,rows", [(2, 300), (16, 40), (1024, 7), (4096, 3)])
@pytest.mark.parametrize("method", ["did", "said"])
def test_transpose_reduce_equals_the_unfused_computation(tf, dot_mode, programs, LL, rows, method):
    p = build_projection("fastfood", rows * LL, max(1, LL // 2 + 1), seed=1)
    assert p.block == LL
    g = torch.randn(rows, LL)
    if method == "said":
        weight = torch.randn(rows)
        prep = p.prepare(torch.randn(p.d))
    else:
        weight = prep = None

    def kernel(g, acc, weight, prep, dots):
        tf.transpose_reduce(g, p.perm, p.scale, acc, weight, prep, dots)

    acc, dots = reduced(kernel, g, weight, prep)
    t = dense_transpose(p, g, 0, rows)
    w = torch.ones(rows, dtype=torch.float64) if weight is None else weight.double()
    assert rel_err(acc, w @ t) < 1e-5
    # FastfoodProjection's CPU path (compiled CPU kernel or torch), accumulating the same way
    ref_acc, ref_dots = reduced(
        lambda g, acc, weight, prep, dots: p.transpose_reduce(g, 0, rows, acc, weight, prep, dots),
        g,
        weight,
        prep,
    )
    torch.testing.assert_close(acc, ref_acc, rtol=1e-4, atol=1e-5)
    if method == "said":
        assert rel_err(dots, t @ prep.double()) < 1e-5
        # A dot can cancel to far below its terms (|t| |prep| ~ 30x it): float32 rounding of
        # either path scales with the terms, not with the result.
        terms = t.abs() @ prep.double().abs()
        assert ((dots.double() - ref_dots.double()).abs() <= 1e-6 * terms).all()
    again = reduced(kernel, g, weight, prep)
    assert torch.equal(again[0], acc)  # no atomics: the same bits every run
    start = torch.randn(LL)
    acc2 = start.clone()
    tf.transpose_reduce(g, p.perm, p.scale, acc2, weight)
    torch.testing.assert_close(acc2, start + reduced(kernel, g, weight, None)[0])  # acc +=


@pytest.mark.parametrize("index_dtype", INDEX, ids=["int16", "int32"])
@pytest.mark.parametrize("LL", [16, 1024])
def test_adjoint_identity_through_the_projection(on_cpu, dot_mode, monkeypatch, LL, index_dtype):
    """<P x, g> = <x, P^T g>, with P x and P^T g (autograd through Projection.forward) both
    computed by the kernels; and both against dense math."""
    p = make(LL, index_dtype, monkeypatch, blocks=4.25)
    assert p._use_triton(torch.device("cpu"))  # the on_cpu fixture
    gen = torch.Generator().manual_seed(LL)
    x = torch.randn(p.d, generator=gen, requires_grad=True)
    g = torch.randn(p.D, generator=gen)
    px = p(x)
    px.backward(g)
    lhs = (px.double() * g.double()).sum()
    rhs = (x.detach().double() * x.grad.double()).sum()
    # Both sides carry float32 rounding of order eps * |Px| |g| (the sum's terms cancel, so a
    # bound relative to the sum itself is too tight for some draws: seen once at 1.5x in CI).
    # The torch path's worst over 300 draws was 7.9e-9 |Px| |g|; one wrong element moves it by
    # ~|Px_i g_i| ~ |Px| |g| / D, over 2e-4 |Px| |g| for these D.
    assert abs(lhs - rhs) <= 1e-7 * px.double().norm() * g.double().norm()
    n = p.n_blocks
    expected = dense_forward(p, p.prepare(x.detach()), 0, n).reshape(-1)[: p.D]
    assert rel_err(px, expected) < 1e-6
    rows = torch.cat([g, g.new_zeros(n * LL - p.D)]).view(n, LL)
    expected = p.finish(dense_transpose(p, rows, 0, n).sum(0).float())  # finish: torch FWHT
    assert rel_err(x.grad, expected) < 1e-5
    if LL <= 16:  # P column by column (one kernel launch per column: small d only)
        M = p.materialize()
        assert rel_err(px, M @ x.detach().double()) < 1e-5
        assert rel_err(x.grad, M.T @ g.double()) < 1e-5


def test_tf32_emulation_is_on():
    """Guards tf32_like_a_gpu: a plain TF32 dot of float32 data must lose precision here."""
    x = torch.randn(16, 16)
    out = torch.empty(16, 16)
    _tf32_square[(1,)](x, out, N=16)
    assert rel_err(out, x.double() @ x.double()) > 1e-5


def test_projection_falls_back_to_torch(tf, monkeypatch):
    p = build_projection("fastfood", 5000, 300, seed=0)
    assert not p._use_triton(torch.device("cpu"))  # CPU tensors keep the torch path
    assert tf.supports(1) and tf.supports(1 << 13)
    assert not tf.supports(1 << 14) and not tf.supports(24)  # d > 8192: torch path on CUDA too
    monkeypatch.delenv("INTDIM_TRITON", raising=False)
    assert tf.available()  # on by default (checked on an H100)
    monkeypatch.setenv("INTDIM_TRITON", "0")
    assert not tf.available()
    monkeypatch.setenv("INTDIM_TRITON", "1")
    assert tf.available()
    # On CUDA the kernels are used only once their self-check passed on that GPU.
    monkeypatch.setattr(projection_mod, "_triton_kernels", lambda: tf)
    p = build_projection("fastfood", 5000, 300, seed=0)
    for verdict in (True, False):
        monkeypatch.setattr(tf, "self_check", lambda device, LL, v=verdict: v)
        assert p._use_triton(torch.device("cuda")) is verdict


@pytest.mark.parametrize("LL", [16, 1024])
def test_self_check_passes_for_the_kernels(tf, monkeypatch, LL):
    monkeypatch.setattr(tf, "_CHECKED", {})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tf.self_check(torch.device("cpu"), LL)
    assert tf._CHECKED == {("cpu", LL, False): True}


@pytest.mark.parametrize("fault", ["wrong", "raises"])
def test_self_check_rejects_a_broken_kernel_with_one_warning(tf, monkeypatch, fault):
    monkeypatch.setattr(tf, "_CHECKED", {})
    real = tf.forward_rows

    def broken(prep, perm, scale, out=None, add=None):
        if fault == "raises":
            raise RuntimeError("PTX compilation failed\nmore detail")
        res = real(prep, perm, scale, out, add)
        res[1, 5] += 1e-3  # one element of one row off
        return res

    monkeypatch.setattr(tf, "forward_rows", broken)
    with pytest.warns(RuntimeWarning, match="using the torch path") as record:
        assert not tf.self_check(torch.device("cpu"), 64)
        assert not tf.self_check(torch.device("cpu"), 64)  # checked once: no second warning
    assert len(record) == 1
    detail = "PTX compilation failed" if fault == "raises" else "computed wrong results"
    assert detail in str(record[0].message)


@pytest.mark.parametrize("method", ["did", "said"])
def test_subspace_gradient_with_kernels(on_cpu, chunk_rows, method):
    """The fused backward (mixed rows included: blocks of 64 straddle the tensors) against a dense
    P built column by column."""
    torch.manual_seed(0)
    sub = wrap(Small(), SubspaceConfig(d=40, method=method, seed=4))
    with torch.no_grad():
        sub.theta_d.normal_(0, 0.5)
    assert_mse_gradient_matches_dense(sub, torch.randn(6, 20), torch.randn(6, 3))


@pytest.mark.parametrize("method", ["did", "said"])
def test_roberta_step_same_with_and_without_kernels(tf, monkeypatch, batch, method):
    """theta and grad theta_d of a wrapped RoBERTa: kernels (LL = 512, two dot factors) against
    the torch path."""

    def run():
        sub = wrap(tiny_roberta(), SubspaceConfig(d=300, method=method, seed=0))
        with torch.no_grad():
            sub.theta_d.normal_(0, 1.0)
        theta = {k: v.detach().clone() for k, v in sub.parameters_for_forward().items()}
        sub(**batch).loss.backward()
        return theta, sub.theta_d.grad.clone()

    theta_ref, grad_ref = run()
    monkeypatch.setattr(projection_mod, "_triton_kernels", lambda: tf)
    monkeypatch.setattr(FastfoodProjection, "_use_triton", lambda self, device: True)
    theta, grad = run()
    for k, v in theta_ref.items():
        torch.testing.assert_close(theta[k], v, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-4, atol=1e-6)


def test_kernels_keep_P_as_well_conditioned_as_a_dense_gaussian_P(on_cpu, monkeypatch):
    """P^T P through the kernels (P e_j forward, P^T (P e_j) by autograd through the projection)
    at the default block size, held to a dense Gaussian P of the same shape. The wrapped-model
    version, on the other paths, is in tests/intdim/test_projection.py."""
    from tests.intdim.test_projection import dense_singular_range, singular_range

    monkeypatch.setattr(FastfoodProjection, "MIN_BLOCK", DEFAULT_MIN_BLOCK)
    D, d = 9_100, 150  # 8 blocks of 1024 and a truncated one
    p = build_projection("fastfood", D, d, seed=3)
    assert p.block == 1024
    gram = torch.empty(d, d, dtype=torch.float64)
    for j in range(d):
        x = torch.zeros(d)
        x[j] = 1.0
        x.requires_grad_()
        y = p(x)
        (y * y.detach()).sum().backward()
        gram[:, j] = x.grad.double()
    lo, hi = singular_range(gram)
    dense_lo, dense_hi = dense_singular_range(D, d, seed=3)
    assert dense_lo <= lo and hi <= dense_hi, (lo, hi, dense_lo, dense_hi)
