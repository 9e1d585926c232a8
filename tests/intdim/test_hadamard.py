import pytest
import torch

from intdim.hadamard import fwht, fwht_, hadamard_matrix


@pytest.mark.parametrize("n", [1, 2, 4, 8, 16, 32, 64, 128, 512, 1024, 2048, 4096, 8192, 1 << 15])
def test_equals_dense_hadamard(n):
    x = torch.randn(3, n, dtype=torch.float64)
    expected = x @ hadamard_matrix(n, torch.float64)
    torch.testing.assert_close(fwht(x), expected, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("bits", [4, 6])
def test_every_digit_size_gives_the_same_transform(bits, monkeypatch):
    from intdim import hadamard

    monkeypatch.setitem(hadamard._RADIX_BITS, "cpu", bits)
    for n in (2, 64, 128, 4096, 1 << 13):
        x = torch.randn(3, n, dtype=torch.float64)
        torch.testing.assert_close(fwht(x), x @ hadamard_matrix(n, torch.float64))


def test_batched_leading_dims_and_float32():
    x = torch.randn(2, 3, 256)
    expected = (x.double() @ hadamard_matrix(256, torch.float64)).float()
    out = fwht(x)
    assert out.shape == x.shape and out.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-4)


def test_dense_matrix_is_orthogonal_up_to_n():
    h = hadamard_matrix(64, torch.float64)
    torch.testing.assert_close(h @ h, 64 * torch.eye(64, dtype=torch.float64))


def test_largest_supported_length_is_an_involution_up_to_n():
    n = 1 << 22  # d up to 4M needs it
    x = torch.randn(n, dtype=torch.float64)
    back = fwht_(fwht_(x)) / n
    torch.testing.assert_close(back, x, rtol=1e-9, atol=1e-9)
    # and its first entry is the plain sum (row 0 of H is all ones)
    assert fwht_(x)[0].item() == pytest.approx(x.sum().item(), rel=1e-9)


def test_bfloat16_accumulates_in_float32():
    x = torch.randn(4, 4096)
    xb = x.bfloat16()
    out = fwht(xb)
    assert out.dtype == torch.bfloat16
    # Accumulating in float32 then rounding once gives the float32 result of the bf16 input,
    # rounded: the error is one bf16 rounding, not log2(n) of them.
    expected = fwht(xb.float()).bfloat16()
    assert torch.equal(out, expected)


def test_backward_is_the_same_unnormalised_transform():
    x = torch.randn(5, 128, dtype=torch.float64, requires_grad=True)
    g = torch.randn(5, 128, dtype=torch.float64)
    (fwht(x) * g).sum().backward()
    # No 1/sqrt(n) factor: the gradient is H g exactly.
    torch.testing.assert_close(x.grad, g @ hadamard_matrix(128, torch.float64))


def test_gradcheck():
    x = torch.randn(2, 32, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fwht, (x,))


@pytest.mark.parametrize("n", [3, 6, 100])
def test_rejects_non_power_of_two(n):
    with pytest.raises(ValueError, match="power of two"):
        fwht(torch.randn(2, n))


def test_rejects_integer_input():
    with pytest.raises(TypeError, match="floating"):
        fwht(torch.ones(4, dtype=torch.int64))


@pytest.mark.parametrize("n", [2, 16, 1024, 4096, 1 << 15])
@pytest.mark.parametrize("rows", [1, 7])
def test_scale_and_add_are_fused_into_the_transform(n, rows):
    x = torch.randn(rows, n, dtype=torch.float64)
    add = torch.randn(rows, n, dtype=torch.float64)
    expected = 0.25 * x @ hadamard_matrix(n, torch.float64) + add
    torch.testing.assert_close(fwht_(x, scale=0.25, add=add), expected)
    out = x.clone()
    fwht_(out, out=out, scale=0.25, add=add)  # in place
    torch.testing.assert_close(out, expected)
    fwht_(x, out=add, scale=0.25, add=add)  # `add` aliasing `out`
    torch.testing.assert_close(add, expected)
