"""A flat buffer that is handed out again only when nothing else still holds it.

theta (D floats) is rebuilt every training step. Allocating it afresh costs more than filling it on
CPU: glibc returns large blocks to the OS, so every new 500 MB buffer page-faults on first touch
(measured: 0.13 s for 125M floats against 0.03 s to copy them). Reusing the previous step's buffer
is safe exactly when no tensor shares its storage any more: after backward the autograd graph has
released the saved views. We check the storage's reference count; if anything (a live graph, a
tensor the user kept) still holds it, a new buffer is allocated and the old one is left alone.
"""

from __future__ import annotations

import torch


def _sole_owner(t: torch.Tensor) -> bool:
    try:
        # Our tensor plus the temporary storage object made by this call.
        return torch._C._storage_Use_Count(t.untyped_storage()._cdata) <= 2
    except (AttributeError, RuntimeError):  # private API gone: never reuse
        return False


class ReusableBuffer:
    def __init__(self) -> None:
        self._buf: torch.Tensor | None = None

    def get(self, numel: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        b = self._buf
        self._buf = None  # drop our reference before testing or allocating anew
        same = b is not None and (b.numel(), b.dtype, b.device) == (numel, dtype, device)
        if same and _sole_owner(b):
            self._buf = b
            return b
        del b
        self._buf = torch.empty(numel, dtype=dtype, device=device)
        return self._buf

    def clear(self) -> None:
        self._buf = None
