"""MasterWeights (precision=bf16-master): a bf16 model stepped through fp32 masters."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from intdim.config import load_config
from intdim.errors import UserError
from pretrain.config import PretrainConfig
from pretrain.precision import ALIGN, MasterWeights


class Tied(nn.Module):
    """An embedding tied to an output layer (as RoBERTa's decoder), plus a layer that a batch may
    not use."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(11, 6)
        self.mid = nn.Linear(6, 6)
        self.out = nn.Linear(6, 11)
        self.out.weight = self.emb.weight
        self.unused = nn.Linear(6, 6)

    def forward(self, ids):
        return self.out(torch.tanh(self.mid(self.emb(ids))))


def _fresh():
    torch.manual_seed(0)
    model = Tied()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    return model, before


def test_the_model_runs_bf16_views_of_one_buffer_and_the_masters_hold_the_fp32_values():
    model, before = _fresh()
    objects = [p for p in model.parameters()]
    master = MasterWeights(model)
    assert [p for p in model.parameters()] == objects  # the same Parameter objects
    assert model.out.weight is model.emb.weight  # still tied
    assert master.names == list(before)  # the tied weight once
    base = master.model_flat.data_ptr()
    for name, p, m in zip(master.names, master.model_params, master.params, strict=True):
        assert p.dtype == torch.bfloat16 and m.dtype == torch.float32
        assert torch.equal(m, before[name])  # exactly the fp32 values
        assert torch.equal(p, before[name].bfloat16())
        assert p.untyped_storage().data_ptr() == base
        assert (p.data_ptr() - base) % (ALIGN * 2) == 0


def test_gradients_are_summed_in_fp32_across_micro_batches():
    """1 + 2^-10 is not a bf16 number (8 significant bits): summing the two micro-batches'
    gradients in bf16 would give 1."""
    model, _ = _fresh()
    master = MasterWeights(model)
    w = model.mid.bias
    for c in (1.0, 2.0**-10):
        (w.float().sum() * c).backward()
        assert w.grad.dtype == torch.bfloat16
        master.accumulate()
        assert w.grad is None
    master.prepare_step()
    i = master.names.index("mid.bias")
    assert torch.equal(master.params[i].grad, torch.full((6,), 1.0 + 2.0**-10))


@pytest.fixture(params=["eager", "compiled"])
def flat_passes(request, monkeypatch):
    """Both ways the flat-buffer passes run: eager (CPU) and compiled (as on a GPU)."""
    from pretrain import precision

    if request.param == "compiled":
        monkeypatch.setattr(precision, "COMPILED_FLAT_DEVICES", ("cuda", "cpu"))
        monkeypatch.setattr(precision, "_compiled", {})
        torch._dynamo.reset()
    yield request.param
    if request.param == "compiled":
        assert precision._compiled  # a compiled pass ran
        torch._dynamo.reset()


def test_full_and_partial_micro_batches_accumulate_the_exact_fp32_sum(flat_passes):
    """A micro-batch that gives every parameter a gradient goes through the one-kernel path (a
    bf16 staging buffer added at once), one that leaves some out through per-tensor adds; both
    must give each gradient's exact fp32 sum and leave the alignment gaps at zero."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))  # 5*7 etc.: not aligned
    master = MasterWeights(model)
    expected = [torch.zeros_like(m) for m in master.params]
    for k, freeze_last in enumerate((False, False, True)):
        x = torch.randn(4, 5, dtype=torch.bfloat16) * (10.0**k)
        out = model[1](model[0](x))
        out = out.detach() if freeze_last else out
        (model[2](out).float() ** 2).sum().backward()
        got = [p.grad for p in master.model_params]
        assert (None in got) == freeze_last
        for e, g in zip(expected, got, strict=True):
            if g is not None:
                e += g.float()
        master.accumulate()
        assert all(p.grad is None for p in master.model_params)
    master.prepare_step()
    for e, m in zip(expected, master.params, strict=True):
        assert torch.equal(m.grad, e)
    mask = torch.zeros_like(master.grad_flat, dtype=torch.bool)
    for g in master._grads:
        off = g.data_ptr() - master.grad_flat.data_ptr()
        mask[off // 4 : off // 4 + g.numel()] = True
    assert not master.grad_flat[~mask].any()  # the gaps between tensors stay zero
    assert master._staging is not None  # the one-kernel path ran (for the first two)


def test_a_step_updates_the_masters_rounds_them_into_the_model_and_clears_the_gradients(
    flat_passes,
):
    model, before = _fresh()
    master = MasterWeights(model)
    opt = torch.optim.AdamW(master.params, lr=1e-3, weight_decay=0.1)
    for _ in range(2):  # two micro-batches
        model(torch.tensor([[1, 2, 3], [4, 5, 6]])).float().logsumexp(-1).sum().backward()
        master.accumulate()
    master.prepare_step()
    opt.step()
    master.after_step()
    by_name = dict(zip(master.names, master.params, strict=True))
    for name, p in zip(master.names, master.model_params, strict=True):
        m = by_name[name]
        assert torch.equal(p, m.detach().bfloat16())
        # No gradient for `unused`: AdamW leaves it (weight decay alone would have moved it).
        assert torch.equal(m, before[name]) == name.startswith("unused.")
    assert not master.grad_flat.any()
    assert all(m.grad is not None and m.grad.data_ptr() >= master.grad_flat.data_ptr()
               for m in master.params)  # fmt: skip
    # The next update's gradients land in the buffer again.
    model(torch.tensor([[1, 2]])).float().sum().backward()
    master.accumulate()
    assert master.grad_flat.any()


def test_a_parameter_moved_out_of_the_buffer_stops_the_step_with_a_clear_error():
    model, _ = _fresh()
    master = MasterWeights(model)
    model.mid.weight.data = model.mid.weight.data.clone()  # as .to(other device) would
    with pytest.raises(RuntimeError, match=r"mid\.weight.*build MasterWeights after moving"):
        master.after_step()


def test_fp32_model_is_a_cpu_copy_with_the_masters_and_the_ties():
    model, _ = _fresh()
    master = MasterWeights(model)
    with torch.no_grad():
        for m in master.params:
            m.add_(1e-4)  # off the bf16 grid
    copy = master.fp32_model(model)
    assert copy.out.weight is copy.emb.weight
    for name, m in zip(master.names, master.params, strict=True):
        got = copy.get_parameter(name)
        assert got.dtype == torch.float32 and torch.equal(got, m.detach())
    assert model.mid.weight.dtype == torch.bfloat16  # the training model is untouched


def test_bf16_master_with_a_subspace_is_refused_at_start_up():
    with pytest.raises(UserError, match="bf16-master trains the full model") as err:
        load_config(PretrainConfig, None, ["precision=bf16-master", "subspace.d=100"])
    assert "\n" not in str(err.value)


def test_a_flat_pass_that_fails_to_compile_runs_eagerly_with_a_warning(monkeypatch, caplog):
    from pretrain import precision

    monkeypatch.setattr(precision, "COMPILED_FLAT_DEVICES", ("cpu",))
    monkeypatch.setattr(precision, "_compiled", {})
    monkeypatch.setattr(precision, "_eager_only", set())

    def no_compiler(fn, **kwargs):
        def fail(*args):
            raise RuntimeError("Failed to find C compiler")

        return fail

    monkeypatch.setattr(torch, "compile", no_compiler)
    acc = torch.zeros(300)
    x = torch.randn(300).bfloat16()
    with caplog.at_level("WARNING", logger="pretrain.precision"):
        precision._flat_pass(precision._add_into, acc, x)
        precision._flat_pass(precision._add_into, acc, x)
    assert torch.equal(acc, 2 * x.float())
    assert precision._add_into in precision._eager_only
    assert [r.getMessage() for r in caplog.records].count(
        "bf16-master: compiling _add_into failed (RuntimeError: Failed to find C compiler); "
        "it runs eagerly"
    ) == 1
