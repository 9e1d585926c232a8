import pytest
import torch
from torch import nn
from torch.func import functional_call

from intdim.errors import UserError
from intdim.subspace import SubspaceConfig, layer_of, wrap
from tests.conftest import tiny_bert, tiny_roberta


class Small(nn.Module):
    """D = 20*7 + 7 + 7*3 + 3 = 171 (not a power of two), with tensors smaller than d."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(20, 7), nn.Tanh())
        self.out = nn.Linear(7, 3)

    def forward(self, x):
        return self.out(self.body(x))


def reference_thetas(sub):
    """{name: theta0 + lambda * (P x) piece} in float64, from a dense P built column by column."""
    groups = _groups(sub)
    n = sub.config.d - sub.m
    lam = 1 + sub.theta_d.detach()[n:].double()
    delta = sub.projection.materialize() @ sub.theta_d.detach()[:n].double()
    params = dict(sub.base.named_parameters())
    thetas, pos = {}, 0
    for i, name in enumerate(sub.param_names):
        p = params[name]
        s = lam[groups[i]] if sub.m else 1.0
        thetas[name] = p.detach().double() + s * delta[pos : pos + p.numel()].view(p.shape)
        pos += p.numel()
    return thetas


def reference_grad(sub, loss_of_thetas):
    """dL/dtheta_d from a dense P built column by column and plain autograd on theta_D.

    `loss_of_thetas(thetas)` runs the unwrapped model with {name: theta} and returns the loss.
    """
    groups = _groups(sub)
    M = sub.projection.materialize()  # (D, d - m), float64
    n = sub.config.d - sub.m
    lam = 1 + sub.theta_d.detach()[n:].double()
    delta = M @ sub.theta_d.detach()[:n].double()
    params = dict(sub.base.named_parameters())
    thetas, scales, spans, pos = {}, [], [], 0
    for i, name in enumerate(sub.param_names):
        p = params[name]
        s = lam[groups[i]] if sub.m else torch.tensor(1.0, dtype=torch.float64)
        piece = delta[pos : pos + p.numel()].view(p.shape)
        thetas[name] = (p.detach().double() + s * piece).float().requires_grad_()
        scales.append(s.expand(p.numel()))
        spans.append((pos, p.numel()))
        pos += p.numel()
    grads = torch.autograd.grad(loss_of_thetas(thetas), list(thetas.values()), allow_unused=True)
    g = torch.cat(
        [
            (gr if gr is not None else torch.zeros_like(t)).reshape(-1).double()
            for gr, t in zip(grads, thetas.values(), strict=True)
        ]
    )
    expected = M.T @ (torch.cat(scales) * g)
    if not sub.m:
        return expected
    glam = torch.zeros(sub.m, dtype=torch.float64)
    for i, (a, k) in enumerate(spans):
        glam[groups[i]] += (g[a : a + k] * delta[a : a + k]).sum()
    return torch.cat([expected, glam])


def assert_mse_gradient_matches_dense(sub, inputs, target):
    """sub's grad theta_d for a mean squared error against `reference_grad` (dense P)."""
    ((sub(inputs) - target) ** 2).mean().backward()
    expected = reference_grad(
        sub, lambda th: ((functional_call(sub.base, th, (inputs,)) - target) ** 2).mean()
    )
    torch.testing.assert_close(sub.theta_d.grad.double(), expected, rtol=2e-4, atol=1e-6)


def _groups(sub):
    keys = (
        sub.param_names
        if sub.config.lambda_per == "tensor"
        else [layer_of(n) for n in sub.param_names]
    )
    return [sub.layers.index(k) for k in keys] if sub.m else [0] * len(keys)


@pytest.mark.usefixtures("kernel_path", "small_blocks")
@pytest.mark.parametrize("projection", ["fastfood", "dense", "sparse"])
@pytest.mark.parametrize(
    "method,lambda_per", [("did", "layer"), ("said", "layer"), ("said", "tensor")]
)
def test_gradient_is_P_transpose_times_theta_gradient(projection, method, lambda_per, chunk_rows):
    torch.manual_seed(0)
    model = Small()
    # d=40 > 7 and > 3: several tensors are smaller than d; fastfood blocks of 64 straddle them.
    cfg = SubspaceConfig(d=40, method=method, projection=projection, lambda_per=lambda_per, seed=4)
    sub = wrap(model, cfg)
    with torch.no_grad():
        sub.theta_d.normal_(0, 0.5)  # away from 0 so lambda and x both matter
    assert_mse_gradient_matches_dense(sub, torch.randn(6, 20), torch.randn(6, 3))


@pytest.mark.usefixtures("kernel_path", "small_blocks")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize(
    "method,lambda_per", [("did", "layer"), ("said", "layer"), ("said", "tensor")]
)
def test_theta_is_theta0_plus_lambda_P_x(method, lambda_per, dtype, chunk_rows):
    """Every parameter the model runs with, against a dense P: per-layer lambdas, blocks shared
    by two layers (Fastfood blocks of 64 straddle Small's tensors), several chunks."""
    torch.manual_seed(0)
    model = Small().to(dtype)
    cfg = SubspaceConfig(d=40, method=method, lambda_per=lambda_per, seed=4)
    sub = wrap(model, cfg).to(dtype)
    with torch.no_grad():
        sub.theta_d.normal_(0, 0.5)
    got = sub.parameters_for_forward()
    for name, expected in reference_thetas(sub).items():
        assert got[name].dtype == dtype
        # P x is computed in float32 for every dtype (then added to theta0 and rounded once).
        torch.testing.assert_close(got[name].double(), expected, rtol=1e-6, atol=1e-6, msg=name)


def test_base_weights_share_one_buffer_and_changes_to_them_are_seen():
    torch.manual_seed(0)
    model = Small()
    sub = wrap(model, SubspaceConfig(d=40, method="said", seed=4))
    storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    assert len(storages) == 1  # theta0 + lambda P x is one operation per chunk
    x = torch.randn(5, 20)
    # In place (the buffer itself), then re-pointed to new storage: theta0 follows both.
    with torch.no_grad():
        model.body[0].weight.mul_(2)
    torch.testing.assert_close(sub(x), model(x))
    model.out.weight.data = torch.randn(3, 7)
    torch.testing.assert_close(sub(x), model(x))
    assert len({p.untyped_storage().data_ptr() for p in model.parameters()}) == 1


@pytest.mark.parametrize("method", ["did", "said"])
@pytest.mark.parametrize("make", [tiny_roberta, tiny_bert], ids=["roberta", "bert"])
def test_hf_models_identity_at_zero_and_gradients(make, method, batch):
    model = make()
    ref = model(**batch)
    sub = wrap(model, SubspaceConfig(d=300, method=method, seed=0))
    model_after_seeding = model(**batch)  # wrap re-draws the head from the seed
    out = sub(**batch)
    assert torch.equal(out.logits, model_after_seeding.logits)
    assert ref.logits.shape == out.logits.shape
    out.loss.backward()
    assert sub.theta_d.grad is not None and sub.theta_d.grad[: 300 - sub.m].abs().sum() > 0
    assert sum(p.numel() for p in sub.parameters()) == 300


def test_roberta_gradient_matches_reference(batch):
    model = tiny_roberta()
    sub = wrap(model, SubspaceConfig(d=64, method="said", seed=1))
    with torch.no_grad():
        sub.theta_d.normal_(0, 1.0)
    sub(**batch).loss.backward()
    expected = reference_grad(sub, lambda th: functional_call(model, th, (), dict(batch)).loss)
    torch.testing.assert_close(sub.theta_d.grad.double(), expected, rtol=1e-3, atol=1e-6)


def test_said_layers_for_roberta_and_bert():
    r = wrap(tiny_roberta(), SubspaceConfig(d=100, method="said"))
    assert r.layers == [
        "roberta.embeddings",
        "roberta.encoder.layer.0",
        "roberta.encoder.layer.1",
        "classifier.dense",
        "classifier.out_proj",
    ]
    b = wrap(tiny_bert(), SubspaceConfig(d=100, method="said"))
    assert b.layers == [
        "bert.embeddings",
        "bert.encoder.layer.0",
        "bert.encoder.layer.1",
        "bert.pooler",
        "classifier",
    ]
    t = wrap(tiny_bert(), SubspaceConfig(d=100, method="said", lambda_per="tensor"))
    assert t.m == len(t.param_names) == len(list(tiny_bert().parameters()))


def test_layer_rule_on_any_module_tree():
    assert layer_of("0.weight") == "0"
    assert layer_of("blocks.3.attn.qkv.weight") == "blocks.3"
    assert layer_of("fc1.weight") == "fc1"
    assert layer_of("encoder.norm.final.bias") == "encoder.norm"
    assert layer_of("scale") == "scale"


@pytest.mark.parametrize("method", ["did", "said"])
def test_exact_trainable_counts(method):
    sub = wrap(Small(), SubspaceConfig(d=25, method=method))
    assert [n for n, _ in sub.named_parameters()] == ["theta_d"]
    assert sub.theta_d.numel() == 25
    assert sub.layers == (["body.0", "out"] if method == "said" else [])
    assert sub.m == len(sub.layers)
    assert list(sub.state_dict()) == ["theta_d"]


def test_head_direct_reports_extra_parameters(batch):
    model = tiny_roberta()
    head_numel = sum(p.numel() for n, p in model.named_parameters() if n.startswith("classifier"))
    sub = wrap(model, SubspaceConfig(d=50, method="did", head="direct"))
    assert sub.extra_trainable == head_numel
    assert sum(p.numel() for p in sub.parameters()) == 50 + head_numel
    assert all(not n.startswith("classifier") for n in sub.param_names)
    out = sub(**batch)
    assert torch.equal(out.logits, model(**batch).logits)
    out.loss.backward()
    assert all(p.grad is not None for p in sub.head_params)


def test_said_learns_from_the_start():
    torch.manual_seed(0)
    model = Small()
    sub = wrap(model, SubspaceConfig(d=30, method="said", seed=0))
    x, y = torch.randn(64, 20), torch.randint(0, 3, (64,))
    opt = torch.optim.Adam(sub.parameters(), lr=0.05)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(sub(x), y)
        loss.backward()
        losses.append(loss.item())
        opt.step()
    assert losses[-1] < 0.8 * losses[0]
    lam = sub.theta_d.detach()[30 - sub.m :]
    assert lam.abs().sum() > 0  # the lambdas moved too


def test_eval_mode_caches_theta_until_theta_d_changes():
    torch.manual_seed(0)
    sub = wrap(Small(), SubspaceConfig(d=10, method="did"))
    x = torch.randn(3, 20)
    with torch.no_grad():
        a = sub(x)
        first = sub._cache[1]
        b = sub(x)
        assert sub._cache[1] is first and torch.equal(a, b)
        sub.theta_d.add_(0.5)
        c = sub(x)
        assert sub._cache[1] is not first and not torch.equal(a, c)
    # and the cached no-grad result equals the differentiable one
    torch.testing.assert_close(sub(x), c)


def test_eval_cache_sees_updates_that_do_not_bump_the_version_counter():
    torch.manual_seed(0)
    sub = wrap(Small(), SubspaceConfig(d=10, method="did"))
    x = torch.randn(3, 20)
    with torch.no_grad():
        before = sub(x)
        version = sub.theta_d._version
        sub.theta_d.data.add_(1.0)  # behind autograd's back, as fused optimizers update
        assert sub.theta_d._version == version
        after = sub(x)
    assert not torch.equal(before, after)
    torch.testing.assert_close(after, sub(x))  # and it equals the differentiable path


def test_double_moves_base_but_not_projection_state():
    torch.manual_seed(0)
    model = Small()
    sub = wrap(model, SubspaceConfig(d=10, method="said")).double()
    assert next(model.parameters()).dtype == torch.float64
    assert sub.theta_d.dtype == torch.float64
    assert sub.projection.perm.dtype == torch.int32
    x = torch.randn(3, 20, dtype=torch.float64)
    assert torch.equal(sub(x), model(x))


def test_train_and_eval_are_forwarded():
    model = tiny_roberta()
    sub = wrap(model, SubspaceConfig(d=20, method="did"))
    sub.train()
    assert model.training and all(m.training for m in model.modules())
    sub.eval()
    assert not model.training


def test_same_seed_same_outputs_whatever_the_global_seed():
    outs = []
    for global_seed in (0, 999):
        torch.manual_seed(0)
        model = Small()
        torch.manual_seed(global_seed)
        sub = wrap(model, SubspaceConfig(d=12, method="said", seed=5))
        with torch.no_grad():
            sub.theta_d.copy_(torch.linspace(-1, 1, 12))
        outs.append(sub(torch.ones(2, 20)))
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"d": 0}, "d must be an integer >= 1"),
        ({"d": -3}, "d must be an integer >= 1"),
        ({"method": "lora"}, "unknown subspace method 'lora'"),
        ({"projection": "gaussian"}, "unknown projection 'gaussian'"),
        ({"lambda_per": "block"}, "unknown lambda_per"),
        ({"head": "frozen"}, "unknown head mode"),
        ({"seed": -1}, "seed must be an integer >= 0"),
    ],
)
def test_bad_configs_give_one_clear_error(kwargs, match):
    with pytest.raises(UserError, match=match):
        SubspaceConfig(**kwargs)


def test_d_larger_than_D_is_an_error():
    with pytest.raises(UserError, match=r"d=1000 exceeds the number of parameters D=171"):
        wrap(Small(), SubspaceConfig(d=1000, method="did"))


def test_said_needs_d_above_m():
    with pytest.raises(UserError, match="SAID needs d > m"):
        wrap(Small(), SubspaceConfig(d=4, method="said", lambda_per="tensor"))


def test_head_direct_without_a_head_is_an_error():
    with pytest.raises(UserError, match="no classification head"):
        wrap(Small(), SubspaceConfig(d=10, head="direct"))


def test_head_prefixes_select_the_head_of_any_module():
    sub = wrap(Small(), SubspaceConfig(d=10, method="did", head="direct", head_prefixes=["out"]))
    assert sub.extra_trainable == 7 * 3 + 3
    with pytest.raises(UserError, match="match no parameter"):
        wrap(Small(), SubspaceConfig(d=10, head_prefixes=["nope"]))


def test_theta_is_built_in_float32_inside_autocast():
    torch.manual_seed(0)
    sub = wrap(Small(), SubspaceConfig(d=40, method="said"))
    with torch.no_grad():
        sub.theta_d.normal_()
    plain = {k: v.clone() for k, v in sub.parameters_for_forward().items()}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = sub.parameters_for_forward()
    for name, t in plain.items():
        assert torch.equal(inside[name], t), name


class WithUnused(Small):
    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.randn(50))  # the loss never depends on it


@pytest.mark.usefixtures("kernel_path", "small_blocks")
@pytest.mark.parametrize("method", ["did", "said"])
def test_parameters_without_gradient_contribute_nothing(method, chunk_rows):
    torch.manual_seed(0)
    sub = wrap(WithUnused(), SubspaceConfig(d=30, method=method, seed=2))
    with torch.no_grad():
        sub.theta_d.normal_(0, 0.5)
    assert_mse_gradient_matches_dense(sub, torch.randn(5, 20), torch.randn(5, 3))


def test_parameter_views_follow_the_buffer_they_are_cut_from():
    plan = wrap(Small(), SubspaceConfig(d=40, method="said", seed=4))._plan
    big = torch.arange(plan.padded + 5, dtype=torch.float32)
    views = plan.views(big[5:])  # a buffer that does not start at its storage's start
    for v, p, a in zip(views, plan.params, plan.offsets, strict=False):
        assert v.shape == p.shape and v.is_contiguous()
        assert torch.equal(v.reshape(-1), big[5 + a : 5 + a + p.numel()])
