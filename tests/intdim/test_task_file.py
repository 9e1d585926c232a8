import pytest
import torch

from intdim import SubspaceConfig, UserError, load_task, wrap
from tests.conftest import tiny_roberta


def tuned(model, cfg, seed=0):
    sub = wrap(model, cfg)
    with torch.no_grad():
        sub.theta_d.copy_(torch.randn(cfg.d, generator=torch.Generator().manual_seed(seed)))
    return sub


def test_round_trip_is_bit_identical_under_another_global_seed(tmp_path, batch):
    sub = tuned(tiny_roberta(seed=0), SubspaceConfig(d=200, method="said", seed=3))
    expected = sub(**batch).logits
    path = tmp_path / "mrpc.task"
    sub.save_task(path)
    assert path.stat().st_size < 4096
    torch.manual_seed(12345)  # a different global seed: the head is re-drawn from the task seed
    fresh = tiny_roberta(seed=0)
    # a fresh copy has a differently initialised head unless seeded the same way
    torch.manual_seed(777)
    fresh.classifier.dense.weight.data.normal_()
    same = load_task(fresh, path)
    assert torch.equal(same(**batch).logits, expected)
    assert torch.equal(same.theta_d, sub.theta_d)


def test_head_trained_directly_round_trips(tmp_path, batch):
    sub = tuned(tiny_roberta(), SubspaceConfig(d=50, method="did", head="direct"))
    with torch.no_grad():
        for p in sub.head_params:
            p.add_(0.1)
    expected = sub(**batch).logits
    sub.save_task(tmp_path / "t.task")
    same = load_task(tiny_roberta(), tmp_path / "t.task")
    assert torch.equal(same(**batch).logits, expected)


def test_different_base_weights_are_a_clear_error(tmp_path):
    sub = tuned(tiny_roberta(seed=0), SubspaceConfig(d=20, method="did"))
    sub.save_task(tmp_path / "t.task")
    other = tiny_roberta(seed=1)  # different body weights
    with pytest.raises(UserError, match="different base weights"):
        load_task(other, tmp_path / "t.task")


def test_a_model_of_another_size_is_a_clear_error(tmp_path):
    sub = tuned(tiny_roberta(), SubspaceConfig(d=20, method="did"))
    sub.save_task(tmp_path / "t.task")
    with pytest.raises(UserError, match="D="):
        load_task(tiny_roberta(num_labels=3), tmp_path / "t.task")


def test_not_a_task_file(tmp_path):
    bad = tmp_path / "bad.task"
    bad.write_bytes(b"not safetensors at all")
    with pytest.raises(UserError, match="not an intdim task file"):
        load_task(tiny_roberta(), bad)
    with pytest.raises(UserError, match="does not exist"):
        load_task(tiny_roberta(), tmp_path / "missing.task")


def test_save_is_atomic_and_leaves_no_temporary(tmp_path):
    sub = tuned(tiny_roberta(), SubspaceConfig(d=20, method="did"))
    sub.save_task(tmp_path / "t.task")
    sub.save_task(tmp_path / "t.task")  # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.task"]


def _rewrite_metadata(path, **changes):
    """The same task file with some metadata changed (None: removed), as an older intdim wrote."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open API
    for k, v in changes.items():
        if v is None:
            meta.pop(k, None)
        else:
            meta[k] = v
    save_file(tensors, str(path), metadata=meta)


def test_a_task_tuned_through_the_old_fastfood_is_refused(tmp_path):
    sub = tuned(tiny_roberta(), SubspaceConfig(d=20, method="said"))
    path = tmp_path / "old.task"
    sub.save_task(path)
    # format 1 (before the projection was recorded): its Fastfood had Gaussian G
    _rewrite_metadata(path, format="intdim-task/1", projection=None)
    with pytest.raises(UserError, match="'fastfood/1'.*'fastfood/2'.*different subspace"):
        load_task(tiny_roberta(), path)
    # a file that names a construction this intdim does not build is refused the same way
    _rewrite_metadata(path, format="intdim-task/2", projection="fastfood/3")
    with pytest.raises(UserError, match="'fastfood/3'.*tune the task again"):
        load_task(tiny_roberta(), path)


def test_a_format_1_dense_task_still_loads(tmp_path, batch):
    """Format 1's dense projection is the one built today: same seed, same P, same outputs."""
    sub = tuned(tiny_roberta(), SubspaceConfig(d=20, method="did", projection="dense"))
    expected = sub(**batch).logits
    path = tmp_path / "dense.task"
    sub.save_task(path)
    _rewrite_metadata(path, format="intdim-task/1", projection=None)
    assert torch.equal(load_task(tiny_roberta(), path)(**batch).logits, expected)
