"""torch.compile of a wrapped HF model: theta is built eagerly (a graph break by design), the
model itself is compiled, and outputs and gradients match eager mode."""

import torch

from intdim import SubspaceConfig, wrap
from tests.conftest import tiny_roberta


def test_compiled_wrapper_matches_eager(batch):
    sub = wrap(tiny_roberta(), SubspaceConfig(d=64, method="said", seed=0))
    with torch.no_grad():
        sub.theta_d.normal_()
    eager = sub(**batch)
    eager.loss.backward()
    eager_grad = sub.theta_d.grad.clone()
    sub.theta_d.grad = None
    compiled = torch.compile(sub)
    out = compiled(**batch)
    out.loss.backward()
    torch.testing.assert_close(out.logits, eager.logits, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sub.theta_d.grad, eager_grad, rtol=1e-4, atol=1e-7)
