import math

import pytest
import torch

from intdim.errors import UserError
from intdim.hadamard import hadamard_matrix
from intdim.projection import FastfoodProjection, build_projection

KINDS = ["fastfood", "dense", "sparse"]


def fastfood_from_definition(p: FastfoodProjection) -> torch.Tensor:
    """P built from the documented formula with dense matrices: s * H Pi_i G H B, stacked."""
    LL = p.block
    H = hadamard_matrix(LL, torch.float64)
    shared = torch.diag(p.G.double()) @ H @ torch.diag(p.B.double())
    blocks = []
    for i in range(p.n_blocks):
        perm = torch.eye(LL, dtype=torch.float64)[p.perm[i].long()]  # (Pi y)_j = y[perm[j]]
        blocks.append(H @ perm @ shared)
    full = torch.cat(blocks, 0)[: p.D, : p.d]
    return full * p.scale


@pytest.mark.usefixtures("kernel_path")
@pytest.mark.parametrize("D,d", [(1000, 37), (700, 700), (5000, 300), (4096, 64)])
def test_fastfood_matches_its_definition(D, d):
    p = build_projection("fastfood", D, d, seed=3)
    torch.testing.assert_close(p.materialize(), fastfood_from_definition(p), rtol=1e-5, atol=1e-6)


@pytest.mark.usefixtures("kernel_path")
@pytest.mark.parametrize("kind", KINDS)
def test_forward_and_gradient_match_the_dense_matrix(kind):
    D, d = 3001, 45  # D not a power of two, several blocks for fastfood
    p = build_projection(kind, D, d, seed=0)
    M = p.materialize()
    x = torch.randn(d, requires_grad=True)
    g = torch.randn(D)
    out = p(x)
    torch.testing.assert_close(out.double(), M @ x.detach().double(), rtol=1e-4, atol=1e-6)
    (out * g).sum().backward()
    torch.testing.assert_close(x.grad.double(), M.T @ g.double(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_columns_have_unit_norm_for_large_D(kind):
    D, d = 100_003, 40
    p = build_projection(kind, D, d, seed=1)
    norms = p.materialize().norm(dim=0)
    assert torch.all((norms - 1).abs() < 0.05), norms


def test_fastfood_columns_are_exactly_unit_when_blocks_divide_D():
    p = build_projection("fastfood", 4096, 64, seed=5)
    torch.testing.assert_close(
        p.materialize().norm(dim=0), torch.ones(64, dtype=torch.float64), rtol=1e-6, atol=1e-6
    )


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_P_whatever_the_global_seed(kind):
    torch.manual_seed(0)
    a = build_projection(kind, 2000, 30, seed=11)
    torch.manual_seed(12345)
    torch.rand(100)
    b = build_projection(kind, 2000, 30, seed=11)
    c = build_projection(kind, 2000, 30, seed=12)
    x = torch.randn(30)
    assert torch.equal(a(x), b(x))
    assert not torch.allclose(a(x), c(x))


def test_fastfood_state_is_compact(monkeypatch):
    from intdim import projection

    monkeypatch.setattr(projection, "SMALL_MODEL", 100_000)  # pretend 200k parameters is big
    p = build_projection("fastfood", 200_000, 1000, seed=0)
    assert p.perm.dtype == torch.int16  # LL = 1024 <= 2^15
    blocks = p.n_blocks * p.block
    # two int16 index tables per parameter (rounded up to whole blocks) plus B and G
    assert p.state_bytes() == 4 * blocks + 8 * p.block
    big = build_projection("fastfood", 170_000, 40_000, seed=0)
    assert big.perm.dtype == torch.int32 and big.block == 65536
    monkeypatch.setattr(projection, "SMALL_MODEL", 1 << 24)
    small = build_projection("fastfood", 200_000, 1000, seed=0)
    assert small.perm.dtype == torch.int32  # small models keep int32 (no conversion per use)
    assert torch.equal(small.perm.long(), p.perm.long())  # the same P either way


def test_fastfood_keeps_its_dtype_when_moved():
    p = build_projection("fastfood", 500, 20, seed=0)
    p.double()
    assert p.perm.dtype == torch.int32 and p.G.dtype == torch.float32


@pytest.mark.parametrize("kind", KINDS)
def test_bad_dimensions(kind):
    with pytest.raises(UserError, match="d must be >= 1"):
        build_projection(kind, 100, 0, seed=0)
    with pytest.raises(UserError, match="exceeds the number of parameters"):
        build_projection(kind, 100, 101, seed=0)


def test_unknown_projection():
    with pytest.raises(UserError, match="unknown projection 'gaussian'.*dense, fastfood, sparse"):
        build_projection("gaussian", 100, 10, seed=0)


def test_dense_refuses_huge_matrices():
    with pytest.raises(UserError, match="fastfood"):
        build_projection("dense", 10**8, 1000, seed=0)


def test_fastfood_scale_matches_li_et_al():
    p = build_projection("fastfood", 9000, 100, seed=2)
    assert p.scale == pytest.approx(1 / (p.G.double().norm().item() * math.sqrt(9000)))
