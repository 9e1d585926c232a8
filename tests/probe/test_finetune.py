import math
from types import SimpleNamespace

import pytest
import torch
from tiny_fixtures import save_tiny_checkpoint

from intdim.errors import UserError
from probe.encode import DataKey, encoded_task
from probe.finetune import FinetuneConfig, evaluate, finetune, warmup_linear
from probe.search import RunSpec

FT = FinetuneConfig(
    batch_size=16,
    full_epochs=None,
    full_max_steps=60,
    subspace_epochs=None,
    subspace_max_steps=60,
    weight_decay=0.0,
    eval_every=10,
    max_seq_len=32,
    progress=False,
)


def key(ckpt, task, folder, **kw):
    return DataKey(str(ckpt), task, str(folder), max_seq_len=32, **kw)


def spec(method="full", d=None, lr=1e-3, stop_at=None, task="sst2"):
    return RunSpec("ckpt", task, method, d, lr, 0, stop_at)


def test_full_run_learns_the_marker_and_reports_train_metric(tiny_ckpt, sst2_dir):
    task = encoded_task(key(tiny_ckpt, "sst2", sst2_dir))
    out = finetune(spec(), str(tiny_ckpt), task, FT)
    assert out.status == "ok" and out.stopped == "budget" and out.steps == 60
    assert out.eval_metrics["accuracy"] > task.data.majority_baseline + 0.2
    assert set(out.train_metrics) == {"accuracy"} and out.train_metrics["accuracy"] > 0.7
    assert out.best_step % 10 == 0 and 0 < out.best_step <= 60


def test_mrpc_reports_f1_as_well(tiny_ckpt, mrpc_dir):
    task = encoded_task(key(tiny_ckpt, "mrpc", mrpc_dir))
    out = finetune(spec(task="mrpc"), str(tiny_ckpt), task, FT)
    assert list(out.eval_metrics) == ["accuracy", "f1"] and list(out.train_metrics) == [
        "accuracy",
        "f1",
    ]

    class AlwaysPositive(torch.nn.Module):
        def forward(self, input_ids, **_):
            return SimpleNamespace(logits=torch.tensor([[0.0, 1.0]]).expand(len(input_ids), 2))

    # F1 of class 1 when everything is predicted positive: 2p / (1 + p), p the positive share
    p = sum(task.eval_labels) / len(task.eval_labels)
    got = evaluate(AlwaysPositive(), task, FT, torch.device("cpu"), None)
    assert got["accuracy"] == pytest.approx(p) and got["f1"] == pytest.approx(2 * p / (1 + p))


def test_stop_at_threshold_ends_the_run_at_the_first_evaluation_reaching_it(tiny_ckpt, sst2_dir):
    task = encoded_task(key(tiny_ckpt, "sst2", sst2_dir))
    whole = finetune(spec("said", 200, 1e-1), str(tiny_ckpt), task, FT)
    stopped = finetune(spec("said", 200, 1e-1, stop_at=0.9), str(tiny_ckpt), task, FT)
    assert whole.steps == 60 and whole.eval_metrics["accuracy"] >= 0.9
    assert stopped.stopped == "stop_at" and stopped.steps < 60
    assert stopped.eval_metrics["accuracy"] >= 0.9 and stopped.steps == stopped.best_step


def test_patience_stops_a_full_run_that_does_not_improve(tiny_ckpt, sst2_dir):
    task = encoded_task(key(tiny_ckpt, "sst2", sst2_dir))
    cfg = FinetuneConfig(**{**FT.__dict__, "patience": 2, "full_max_steps": 100})
    # lr far too small: the metric never moves, so two evaluations end the run
    out = finetune(spec("full", None, 1e-9), str(tiny_ckpt), task, cfg)
    assert out.stopped == "patience" and out.steps == 30 and out.best_step == 10


def test_patience_never_stops_a_subspace_run(tiny_ckpt, sst2_dir):
    """A subspace run stopped for patience might have reached the threshold later: it would
    change whether its d reaches. It trains to its budget (or to the threshold)."""
    task = encoded_task(key(tiny_ckpt, "sst2", sst2_dir))
    cfg = FinetuneConfig(**{**FT.__dict__, "patience": 1, "subspace_max_steps": 40})
    out = finetune(spec("said", 20, 1e-7), str(tiny_ckpt), task, cfg)
    assert out.stopped == "budget" and out.steps == 40


def test_full_and_subspace_runs_have_their_own_budgets(tiny_ckpt, sst2_dir):
    task = encoded_task(key(tiny_ckpt, "sst2", sst2_dir))
    cfg = FinetuneConfig(**{**FT.__dict__, "full_max_steps": 20, "subspace_max_steps": 30})
    assert finetune(spec("full"), str(tiny_ckpt), task, cfg).steps == 20
    assert finetune(spec("said", 20, 1e-2), str(tiny_ckpt), task, cfg).steps == 30


@pytest.mark.parametrize("method,d", [("full", None), ("said", 50), ("did", 50)])
def test_nan_loss_is_unstable_not_a_crash(tmp_path, sst2_dir, method, d):
    ckpt = save_tiny_checkpoint(tmp_path / "poisoned", pretrain_steps=0, poison=True)
    task = encoded_task(key(ckpt, "sst2", sst2_dir))
    out = finetune(spec(method, d), str(ckpt), task, FT)
    assert out.status == "unstable" and out.steps == 1 and out.eval_metrics == {}


def test_same_seed_same_result_and_tokenized_once(tiny_ckpt, sst2_dir):
    k = key(tiny_ckpt, "sst2", sst2_dir, max_train=120)
    before = encoded_task.cache_info()
    a = finetune(spec("said", 40, 3e-2), str(tiny_ckpt), encoded_task(k), FT)
    b = finetune(spec("said", 40, 3e-2), str(tiny_ckpt), encoded_task(k), FT)
    after = encoded_task.cache_info()
    assert after.misses - before.misses == 1 and after.hits - before.hits == 1
    assert a.eval_metrics == b.eval_metrics and a.train_metrics == b.train_metrics


def test_dynamic_padding_pads_each_batch_to_its_longest_row(tiny_ckpt, sst2_dir):
    task = encoded_task(key(tiny_ckpt, "sst2", sst2_dir))
    rows = [{"input_ids": [0, 5, 2]}, {"input_ids": [0, 5, 6, 7, 2]}]
    batch = task.collate(rows, [1, 0])
    assert batch["input_ids"].tolist() == [[0, 5, 2, 1, 1], [0, 5, 6, 7, 2]]  # pad id 1
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch["labels"].tolist() == [1, 0]
    # evaluation batches go in length order and remember where each row came from
    for positions, b in task.eval_batches(8):
        lengths = [len(task.eval[p]["input_ids"]) for p in positions]
        assert lengths == sorted(lengths) and b["input_ids"].shape[1] == max(lengths)


def test_train_metric_subsample_is_bounded(tiny_ckpt, sst2_dir):
    task = encoded_task(key(tiny_ckpt, "sst2", sst2_dir, train_metric_examples=50))
    assert len(task.train_metric_idx) == 50 and len(task.train) == 200


def test_warmup_then_linear_decay_to_zero():
    f = warmup_linear(total=100, warmup=10)
    assert f(0) < f(5) < f(9) <= 1.0
    assert f(10) == 1.0 and math.isclose(f(55), 0.5) and f(100) == 0.0


def test_planned_steps_takes_the_smaller_budget_of_the_runs_kind():
    cfg = FinetuneConfig(full_max_steps=1000, full_epochs=2, batch_size=10)
    assert cfg.planned_steps(100, "full") == 20
    assert FinetuneConfig(full_max_steps=5, full_epochs=2, batch_size=10).planned_steps(100) == 5
    cfg = FinetuneConfig(full_max_steps=None, full_epochs=0.5, batch_size=10)
    assert cfg.planned_steps(95, "full") == 5
    # the defaults scale with the task: 10 epochs of full fine-tuning, 20 of subspace training
    assert FinetuneConfig(batch_size=32).planned_steps(3668, "full") == 1150  # MRPC
    assert FinetuneConfig(batch_size=32).planned_steps(3668, "said") == 2300
    assert FinetuneConfig(batch_size=32).planned_steps(200, "did") == 140


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"full_max_steps": None, "full_epochs": None}, "full_epochs, full_max_steps or both"),
        ({"subspace_max_steps": None, "subspace_epochs": None}, "subspace_epochs"),
        ({"subspace_max_steps": 0}, "subspace_max_steps must be >= 1"),
        ({"warmup_ratio": 1.0}, "warmup_ratio"),
        ({"device": "tpu"}, "device"),
        ({"precision": "fp8"}, "precision"),
        ({"patience": 0}, "patience"),
    ],
)
def test_config_validation(kw, match):
    with pytest.raises(UserError, match=match):
        FinetuneConfig(**kw)


def test_bf16_autocast_trains_on_cpu_when_asked(tiny_ckpt, sst2_dir):
    # The GPU default; on CPU it must at least run and keep the fp32 master weights.
    task = encoded_task(key(tiny_ckpt, "sst2", sst2_dir))
    cfg = FinetuneConfig(**{**FT.__dict__, "precision": "bf16", "full_max_steps": 20})
    out = finetune(spec(), str(tiny_ckpt), task, cfg)
    assert out.status == "ok" and torch.get_default_dtype() == torch.float32


def test_a_damaged_model_file_is_one_line_inside_jobs_too(tmp_path):
    """load_model (what every run and watch job calls) reports a truncated weights file as one
    line; the CLI checks it up front too (probe.encode.check_model_dir)."""
    from probe.finetune import load_model

    ckpt = save_tiny_checkpoint(tmp_path / "ckpt")
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(UserError, match="cannot load a model from"):
        load_model(str(ckpt), 2)
