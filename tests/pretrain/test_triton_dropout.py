"""The Triton keep-bits kernel (pretrain/kernels/triton_dropout.py), run by Triton's interpreter
on CPU tensors: bit for bit the Philox4x32-10 draw its doc describes, checked against the
module's NumPy reference, which reproduces Random123's published answers."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import torch

from pretrain.kernels import triton_dropout
from pretrain.kernels.triton_dropout import philox4x32_10, reference_keep_bits


@pytest.mark.parametrize("counter, key, words", [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
])  # fmt: skip
def test_reference_philox_gives_random123s_known_answers(counter, key, words):
    got = philox4x32_10(np.array([counter], dtype=np.uint32), key)
    assert tuple(int(w) for w in got[0]) == words


@pytest.fixture(scope="module")
def interpreted():
    """A private copy of the kernel module whose kernels run in Triton's interpreter (triton.jit
    reads TRITON_INTERPRET when a kernel is defined); the real module is left alone. Without
    triton (the README's test install) these tests skip; CI installs it and runs them."""
    pytest.importorskip("triton")
    old = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        spec = importlib.util.spec_from_file_location(
            "_triton_dropout_interpreted", triton_dropout.__file__
        )
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        if old is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = old
    return mod


@pytest.mark.parametrize("seed, nbytes, threshold", [
    (0x0123456789ABCDEF, 2 * triton_dropout.BLOCK + 357, 6554),  # a partial last program
    (7, 100, 40000),
    (1 << 61, 64, 0),  # keeps everything
])  # fmt: skip
def test_kernel_bits_are_the_philox_draw_bit_for_bit(interpreted, seed, nbytes, threshold):
    got = interpreted.keep_bits(torch.tensor([seed], dtype=torch.int64), nbytes, threshold)
    assert got.dtype == torch.uint8 and got.shape == (nbytes,)
    np.testing.assert_array_equal(got.numpy(), reference_keep_bits(seed, nbytes, threshold))
    if threshold == 0:
        assert (got == 255).all()


def test_kernel_keeps_with_the_threshold_probability(interpreted):
    nbytes, threshold = 4 * triton_dropout.BLOCK, 6554
    bits = interpreted.keep_bits(torch.tensor([12345], dtype=torch.int64), nbytes, threshold)
    keep = ((bits[:, None] >> torch.arange(8, dtype=torch.uint8)) & 1).double()
    q = 1 - threshold / 65536
    sigma = (q * (1 - q) / keep.numel()) ** 0.5
    assert abs(keep.mean().item() - q) < 5 * sigma
    other = interpreted.keep_bits(torch.tensor([12346], dtype=torch.int64), nbytes, threshold)
    assert (bits != other).float().mean() > 0.1  # another seed, another draw


def test_kernel_compiles_for_a_hopper_gpu():
    """Triton compiles the kernel down to a cubin for sm_90 (H100/H200) without a GPU: the
    interpreter above checks its arithmetic, this its types and lowering for the real target."""
    pytest.importorskip("triton")
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    source = ASTSource(
        fn=triton_dropout._keep_bits_kernel,
        signature={"seed_ptr": "*i64", "out_ptr": "*u8", "nbytes": "i32", "threshold": "i32",
                   "BLOCK": "constexpr"},
        constexprs={"BLOCK": triton_dropout.BLOCK},
    )  # fmt: skip
    kernel = triton.compile(source, target=GPUTarget("cuda", 90, 32))
    assert kernel.asm["cubin"] and "mul.hi.u32" in kernel.asm["ptx"]  # Philox's multiplies
