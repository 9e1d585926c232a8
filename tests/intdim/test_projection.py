import math

import pytest
import torch

from intdim.errors import UserError
from intdim.hadamard import hadamard_matrix
from intdim.projection import FastfoodProjection, build_projection
from intdim.subspace import SubspaceConfig, wrap

KINDS = ["fastfood", "dense", "sparse"]


def fastfood_from_definition(p: FastfoodProjection) -> torch.Tensor:
    """P built from the documented formula with dense matrices: s * H Pi_i G H B, stacked."""
    LL = p.block
    H = hadamard_matrix(LL, torch.float64)
    # G H B, only the first d columns (x is zero-padded to LL)
    shared = (p.G.double()[:, None] * H[:, : p.d]) * p.B.double()[None, : p.d]
    blocks = []
    for i in range(p.n_blocks):
        # Pi as a permutation matrix, (Pi y)_j = y[perm[j]]: Pi Y = Y[perm]
        blocks.append(H @ shared[p.perm[i].long()])
    full = torch.cat(blocks, 0)[: p.D]
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


# -- conditioning: P's columns as a d90 search sees them ------------------------------------------
#
# Unit column norms do not make a good P: a direction with a small singular value moves the model
# slowly, so fewer subspaces reach the threshold in a fixed budget and d90 is biased upward (the
# old Fastfood, Gaussian G shared by all blocks: singular values 0.04 .. 2.6 for Li et al.'s MNIST
# network, d90 1500 instead of 750). These tests hold the Fastfood P to a dense Gaussian P of the
# same shape, on P materialised through the public API (the wrapped model's theta, its gradient).


def flat_theta(sub) -> torch.Tensor:
    merged = sub.merged_state_dict()
    return torch.cat([merged[n].reshape(-1).double() for n in sub.param_names])


def gram_through_the_model(sub) -> torch.Tensor:
    """P^T P ((d-m) x (d-m), float64) of a wrapped model, one column at a time: P e_j is theta -
    theta0 at theta_d = e_j (the forward path), and P^T (P e_j) is the gradient of
    <theta, P e_j> with respect to theta_d there (the transpose path). With theta_d's last m
    coordinates 0, SAID's lambdas are 1, so both are P itself."""
    n = sub.config.d - sub.m
    with torch.no_grad():
        sub.theta_d.zero_()
    theta0 = [t.reshape(-1) for t in sub.merged_state_dict().values()]
    gram = torch.empty(n, n, dtype=torch.float64)
    for j in range(n):
        with torch.no_grad():
            sub.theta_d.zero_()
            sub.theta_d[j] = 1.0
        sub.theta_d.grad = None
        thetas = [sub.parameters_for_forward()[name].reshape(-1) for name in sub.param_names]
        cols = [t.detach() - t0 for t, t0 in zip(thetas, theta0, strict=True)]
        sum((t * c).sum() for t, c in zip(thetas, cols, strict=True)).backward()
        gram[:, j] = sub.theta_d.grad[:n].double()
    return gram


def singular_range(gram: torch.Tensor) -> tuple[float, float]:
    ev = torch.linalg.eigvalsh((gram + gram.T) / 2).clamp_min(0).sqrt()
    return float(ev.min()), float(ev.max())


def dense_singular_range(D: int, d: int, seed: int) -> tuple[float, float]:
    """Extreme singular values of the dense Gaussian P (unit columns) of the same shape."""
    P = build_projection("dense", D, d, seed=seed).P[:D]
    gram = sum(c.double().T @ c.double() for c in P.split(20_000))
    return singular_range(gram)


class MnistFC(torch.nn.Sequential):
    """Li et al.'s MNIST network, 784-200-200-10: D = 199,210 = 194 blocks of 1024 + 570."""

    def __init__(self, width: int = 200):
        super().__init__(
            torch.nn.Linear(784, width),
            torch.nn.ReLU(),
            torch.nn.Linear(width, width),
            torch.nn.ReLU(),
            torch.nn.Linear(width, 10),
        )


def _few_blocks():
    # D = 9,100 (8 blocks of 1024 and a truncated one of 908), d = 1000 (not a power of two).
    return torch.nn.Sequential(torch.nn.Linear(90, 90), torch.nn.Tanh(), torch.nn.Linear(90, 10))


def _roberta():
    from tests.conftest import tiny_roberta

    return tiny_roberta()  # D = 22,818 with its classification head inside theta_D


SHAPES = {
    # name: (model, d, method); each has a truncated last block (no LL divides these D)
    "mnist-fc-did-750": (MnistFC, 750, "did"),
    "many-blocks-said-300": (lambda: MnistFC(width=40), 300, "said"),
    "few-blocks-did-1000": (_few_blocks, 1000, "did"),
    "roberta-head-said-200": (_roberta, 200, "said"),
}


@pytest.mark.usefixtures("kernel_path")
@pytest.mark.parametrize("shape", list(SHAPES))
def test_fastfood_is_as_well_conditioned_as_a_dense_gaussian_P(shape):
    make, d, method = SHAPES[shape]
    torch.manual_seed(0)
    sub = wrap(make(), SubspaceConfig(d=d, method=method, seed=3))
    assert sub.projection.D % sub.projection.block, "every shape here has a truncated last block"
    lo, hi = singular_range(gram_through_the_model(sub))
    dense_lo, dense_hi = dense_singular_range(sub.D, d - sub.m, seed=3)
    assert dense_lo <= lo and hi <= dense_hi, (lo, hi, dense_lo, dense_hi)


@pytest.mark.parametrize("d", [1, 10, 300])
def test_fastfood_columns_spread_like_a_dense_gaussian_Ps(d):
    """Each column's entries are spread like Gaussian entries: not constant (blocks of 2^ceil(log2
    d) made d = 1 the all-ones direction for every seed), no spikes (G = 1 would make column 0 one
    entry per block). Excess kurtosis 0 and the largest entry are a dense Gaussian P's."""
    D = 20_000
    z = build_projection("fastfood", D, d, seed=0).materialize() * math.sqrt(D)
    dense = build_projection("dense", D, d, seed=0).materialize() * math.sqrt(D)
    kurtosis = (z**4).mean(0) / (z**2).mean(0) ** 2 - 3
    assert kurtosis.abs().max() < 0.25  # a dense P's: 0.03 .. 0.13 for these shapes
    assert z.abs().max() < 1.3 * dense.abs().max()
