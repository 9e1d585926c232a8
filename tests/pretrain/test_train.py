"""End to end on CPU: checkpoints, exact resume after SIGKILL, SIGTERM, DDP, other objectives."""

from __future__ import annotations

import json
import os

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from intdim.errors import UserError
from pretrain.checkpoint import complete_checkpoints
from pretrain.train import main
from tests.pretrain.conftest import (
    free_port,
    join_or_fail,
    run_cli,
    tiny_config,
    tiny_overrides,
    train_losses,
)


@pytest.fixture(scope="module", params=["fp32", "bf16-master"])
def precision(request) -> str:
    """The tests that take it run once with fp32 and once with a bf16 model trained through
    fp32 master weights (pretrain/precision.py; bf16 autocast is GPU-only, fp32 on CPU)."""
    return request.param


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, corpus, cache_dir, precision):
    """30 uninterrupted updates, a checkpoint every 10 (and the initialisation)."""
    run_dir = tmp_path_factory.mktemp("ref") / "run"
    main(tiny_config(run_dir, corpus, cache_dir, max_updates=30, save_interval_updates=10,
                     precision=precision))  # fmt: skip
    return run_dir


def test_tiny_run_writes_loadable_checkpoints(reference_run, precision):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    found = complete_checkpoints(reference_run)
    assert [u for u, _ in found] == [0, 10, 20, 30]
    assert (reference_run / "DONE").is_file()
    assert not list((reference_run / "checkpoints").glob(".*"))  # no temporary directories left
    for updates, path in found[1:]:
        model = AutoModelForMaskedLM.from_pretrained(path)
        assert model.dtype == torch.float32  # bf16-master saves its fp32 masters
        tok = AutoTokenizer.from_pretrained(path)
        ids = tok("The cat eats the apple.", return_tensors="pt")["input_ids"]
        assert model(ids).logits.shape[-1] == len(tok)
        info = json.loads((path / "checkpoint.json").read_text())
        assert info["updates"] == updates and info["tokens_seen"] > 0
        assert not any(k.startswith("_orig_mod") for k in load_file(path / "model.safetensors"))
        torch.load(path / "trainer_state.pt", weights_only=True)
    # Weights in every checkpoint, optimizer state only in the last two.
    assert [(p / "optimizer.pt").is_file() for _, p in found] == [False, False, True, True]
    w0 = load_file(found[0][1] / "model.safetensors")
    w30 = load_file(found[-1][1] / "model.safetensors")
    assert any(not torch.equal(w0[k], w30[k]) for k in w0)
    # What is saved is fp32 (for bf16-master: its masters, not the bf16 weights the model ran
    # with, none of which would be off bf16's grid).
    off_grid = sum(int((w != w.bfloat16().float()).sum()) for w in w30.values())
    assert off_grid > 0.5 * sum(w.numel() for w in w30.values())
    losses = train_losses(reference_run)
    assert sorted(losses) == list(range(1, 31))
    assert sum(losses[u] for u in range(26, 31)) < sum(losses[u] for u in range(1, 6)) - 2.5


def test_sigkill_then_resume_repeats_the_same_losses(tmp_path, corpus, cache_dir, reference_run,
                                                    precision):  # fmt: skip
    run_dir = tmp_path / "run"
    args = tiny_overrides(run_dir, corpus, cache_dir, max_updates=30, save_interval_updates=10,
                          precision=precision)  # fmt: skip
    killed = run_cli(args, {"INTDIM_PRETRAIN_FAULT": "SIGKILL@15"})
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert [u for u, _ in complete_checkpoints(run_dir)] == [0, 10]
    assert not (run_dir / "DONE").exists() and max(train_losses(run_dir)) == 15
    resumed = run_cli(args)  # the same command
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stderr
    assert train_losses(run_dir) == train_losses(reference_run)  # exact, float for float
    ref = load_file(reference_run / "checkpoints/checkpoint_30/model.safetensors")
    got = load_file(run_dir / "checkpoints/checkpoint_30/model.safetensors")
    assert all(torch.equal(ref[k], got[k]) for k in ref)


def test_sigterm_writes_a_checkpoint_and_exits_for_requeue(tmp_path, corpus, cache_dir):
    run_dir = tmp_path / "run"
    args = tiny_overrides(run_dir, corpus, cache_dir, max_updates=30, save_interval_updates=10)
    stopped = run_cli(args, {"INTDIM_PRETRAIN_FAULT": "SIGTERM@7"})
    assert stopped.returncode == 3, stopped.stderr[-2000:]
    assert [u for u, _ in complete_checkpoints(run_dir)] == [0, 7]
    assert (run_dir / "checkpoints/checkpoint_7/optimizer.pt").is_file()
    assert not (run_dir / "DONE").exists()


def _ddp_worker(rank, world, port, cfg):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))  # fmt: skip
    main(cfg)


def test_ddp_two_gloo_processes_match_one_process(tmp_path, corpus, cache_dir, precision):
    # bf16-master reduces its fp32 gradient buffer itself instead of DDP's bf16 gradients.
    common = dict(max_updates=3, save_interval_updates=3, save_initial_checkpoint=False,
                  precision=precision,
                  **{"model.dropout": 0.0, "model.attention_dropout": 0.0})  # fmt: skip
    one = tmp_path / "one"
    main(tiny_config(one, corpus, cache_dir, **common, **{"optim.batch_size": 2,
                                                          "optim.update_freq": 2}))  # fmt: skip
    two = tmp_path / "two"
    cfg = tiny_config(two, corpus, cache_dir, **common, **{"optim.batch_size": 2})
    workers = mp.spawn(_ddp_worker, args=(2, free_port(), cfg), nprocs=2, join=False)
    join_or_fail(workers, 300, "the two DDP processes")
    a, b = train_losses(one), train_losses(two)
    assert sorted(a) == sorted(b) == [1, 2, 3]
    assert all(abs(a[u] - b[u]) < 1e-5 for u in a)
    wa = load_file(one / "checkpoints/checkpoint_3/model.safetensors")
    wb = load_file(two / "checkpoints/checkpoint_3/model.safetensors")
    assert all(torch.allclose(wa[k], wb[k], atol=2e-6, rtol=0) for k in wa)
    assert (two / "checkpoints/checkpoint_3/rng_rank1.pt").is_file()


def test_clip_norm_clips_the_gradients_the_optimizer_steps(tmp_path, corpus, cache_dir, precision):
    """A tiny clip_norm shrinks every gradient until AdamW's eps dominates, so the weights barely
    move; with bf16-master the clipped gradients must be the fp32 masters' (the model's bf16
    gradients are gone by then)."""

    def moved(clip: float) -> float:
        run_dir = tmp_path / f"clip{clip}"
        main(tiny_config(run_dir, corpus, cache_dir, max_updates=3, save_interval_updates=3,
                         precision=precision, **{"optim.clip_norm": clip}))  # fmt: skip
        w0 = load_file(run_dir / "checkpoints/checkpoint_0/model.safetensors")
        w3 = load_file(run_dir / "checkpoints/checkpoint_3/model.safetensors")
        return max(float((w3[k] - w0[k]).abs().max()) for k in w0)

    assert moved(1e-9) < 0.01 * moved(0.0)


def test_an_update_is_queued_without_reading_anything_back(tmp_path, corpus, cache_dir,
                                                           precision, monkeypatch):  # fmt: skip
    """On a GPU, reading a value back waits for every queued kernel, and the host then builds the
    next batches with the GPU idle. So an update reads nothing from its tensors (host-side
    numbers are plain ints and CPU tensors), and its loss is read later, from PendingLoss."""
    from pretrain import train

    run = train.setup(tiny_config(tmp_path / "run", corpus, cache_dir, max_updates=2,
                                  precision=precision, **{"optim.update_freq": 2}))  # fmt: skip
    try:
        reads = []
        for name in ("item", "tolist", "__float__", "__bool__", "cpu", "numpy"):
            real = getattr(torch.Tensor, name)

            def spy(self, *a, _real=real, _name=name, **kw):
                reads.append((_name, tuple(self.shape), self.dtype))
                return _real(self, *a, **kw)

            monkeypatch.setattr(torch.Tensor, name, spy)
        pending, tokens = train.train_update(run)
        read_by_update = list(reads)
        monkeypatch.undo()
        assert read_by_update == [] and tokens > 0
        assert isinstance(pending, train.PendingLoss) and 0 < pending.value() < 20
    finally:
        train.cleanup(run)


def test_pending_loss_is_the_mean_over_the_scored_positions():
    from pretrain.train import PendingLoss

    assert PendingLoss(torch.tensor(12.0, dtype=torch.float64), 8.0).value() == 1.5
    assert PendingLoss(torch.tensor(0.0, dtype=torch.float64), 0.0).value() == 0.0


def test_span_objective_trains(tmp_path, corpus, cache_dir):
    run_dir = tmp_path / "span"
    main(tiny_config(run_dir, corpus, cache_dir, max_updates=20, save_interval_updates=20,
                     save_initial_checkpoint=False, **{"objective.name": "span"}))  # fmt: skip
    losses = train_losses(run_dir)
    assert sum(losses[u] for u in range(16, 21)) < sum(losses[u] for u in range(1, 6)) - 1.0


def test_subspace_pretraining_trains_theta_d_only(tmp_path, corpus, cache_dir):
    from transformers import AutoModelForMaskedLM

    run_dir = tmp_path / "sub"
    main(tiny_config(run_dir, corpus, cache_dir, max_updates=4, save_interval_updates=4,
                     **{"subspace.d": 500, "subspace.method": "said"}))  # fmt: skip
    theta = load_file(run_dir / "checkpoints/checkpoint_4/subspace.safetensors")["theta_d"]
    assert theta.shape == (500,) and theta.abs().sum() > 0
    opt = torch.load(run_dir / "checkpoints/checkpoint_4/optimizer.pt", weights_only=True)
    assert [s["exp_avg"].shape for s in opt["state"].values()] == [torch.Size([500])]
    w0 = load_file(run_dir / "checkpoints/checkpoint_0/model.safetensors")
    w4 = load_file(run_dir / "checkpoints/checkpoint_4/model.safetensors")
    assert any(not torch.equal(w0[k], w4[k]) for k in w0)
    AutoModelForMaskedLM.from_pretrained(run_dir / "checkpoints/checkpoint_4")


@pytest.mark.parametrize(
    "extra, message",
    [({"data.tokens_per_sample": 600}, "exceeds the model's 512 positions"),
     ({"tokenizer.vocab_size": 100}, "too small"),
     ({"data.corpus": "/nonexistent/corpus.txt"}, "does not exist")],
)  # fmt: skip
def test_bad_settings_fail_with_one_clear_line(tmp_path, corpus, cache_dir, extra, message):
    with pytest.raises(UserError, match=message) as err:
        main(tiny_config(tmp_path / "bad", corpus, cache_dir, **extra))
    assert "\n" not in str(err.value)


# -- bad input: one clear line, nothing half-written ---------------------------------------------
@pytest.fixture(scope="module")
def small_run(tmp_path_factory, corpus, cache_dir):
    """Two updates, checkpoints 0 and 2: what the resume tests copy and resume."""
    run_dir = tmp_path_factory.mktemp("small") / "run"
    main(tiny_config(run_dir, corpus, cache_dir, max_updates=2, save_interval_updates=2))
    return run_dir


def copy_run(small_run, tmp_path):
    import shutil

    return shutil.copytree(small_run, tmp_path / "run")


def test_checkpoint_files_get_the_umask_mode_not_0600(small_run):
    from intdim.io import FILE_MODE

    for path in (small_run / "checkpoints/checkpoint_2").iterdir():
        assert path.stat().st_mode & 0o777 == FILE_MODE, path.name  # model.safetensors was 0600


@pytest.mark.parametrize(
    "extra, named",
    [({"seed": 7}, ["seed: 1 then, 7 now"]),
     ({"optim.lr": 0.01}, ["optim.lr: 0.001 then, 0.01 now"]),
     ({"seed": 7, "optim.lr": 0.01, "objective.mask_prob": 0.2},
      ["seed:", "optim.lr:", "objective.mask_prob:", "allow_changed_settings=["]),
     ({"model.preset": "roberta_base"},
      ["model.preset: 'roberta_tiny' then, 'roberta_base' now"])],
)  # fmt: skip
def test_resuming_with_settings_that_change_the_run_is_refused(small_run, tmp_path, corpus,
                                                              cache_dir, extra, named):  # fmt: skip
    run_dir = copy_run(small_run, tmp_path)
    before = sorted(p.name for p in run_dir.rglob("*"))
    cfg = tiny_config(run_dir, corpus, cache_dir, max_updates=4, save_interval_updates=2, **extra)
    with pytest.raises(UserError) as err:
        main(cfg)
    line = str(err.value)
    assert "\n" not in line and "run_dir" in line, line
    assert all(n in line for n in named), line
    assert sorted(p.name for p in run_dir.rglob("*")) == before  # nothing trained or written


def test_allowed_changes_resume(small_run, tmp_path, corpus, cache_dir):
    run_dir = copy_run(small_run, tmp_path)
    # bookkeeping (max_updates, intervals, logging) may change; named keys may too
    main(tiny_config(run_dir, corpus, cache_dir, max_updates=3, save_interval_updates=3,
                     log_interval=1, allow_changed_settings="[optim.lr]",
                     **{"optim.lr": 0.002}))  # fmt: skip
    assert [u for u, _ in complete_checkpoints(run_dir)] == [0, 2, 3]
    log = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["update"] == 3
    assert log[-1]["lr"] == pytest.approx(0.002 * 2 / 5)  # the new LR (warmup 5), not the saved
    with pytest.raises(UserError, match="allow_changed_settings names 'optim.lrr'"):
        main(tiny_config(run_dir, corpus, cache_dir, allow_changed_settings="[optim.lrr]"))


def test_resuming_another_model_shape_is_one_line(small_run, tmp_path, corpus, cache_dir):
    run_dir = copy_run(small_run, tmp_path)
    cfg = tiny_config(run_dir, corpus, cache_dir, max_updates=4, save_interval_updates=2,
                      allow_changed_settings="[model]", **{"model.hidden_size": 32})  # fmt: skip
    with pytest.raises(UserError, match=r"checkpoint_2 does not fit the model .*size mismatch"):
        main(cfg)


@pytest.mark.parametrize("file", ["model.safetensors", "optimizer.pt", "trainer_state.pt"])
@pytest.mark.parametrize("damage", ["truncated", "garbled"])
def test_a_damaged_checkpoint_file_on_resume_is_one_line(small_run, tmp_path, corpus, cache_dir,
                                                         file, damage):  # fmt: skip
    run_dir = copy_run(small_run, tmp_path)
    path = run_dir / "checkpoints/checkpoint_2" / file
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\x07garbage" * 64)
    cfg = tiny_config(run_dir, corpus, cache_dir, max_updates=4, save_interval_updates=2)
    with pytest.raises(UserError) as err:
        main(cfg)
    line = str(err.value)
    assert "\n" not in line and f"{file} is damaged" in line and "checkpoint_2" in line, line


def test_a_run_dir_that_is_a_file_or_cannot_be_created(tmp_path, corpus, cache_dir):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    for run_dir, says in ((blocker, "is a file"), (blocker / "run", "cannot be created")):
        with pytest.raises(UserError, match=f"run_dir .*{says}") as err:
            main(tiny_config(run_dir, corpus, cache_dir))
        assert "\n" not in str(err.value)
    assert blocker.read_text() == "not a directory"


@pytest.mark.parametrize("text", ["", "\n\n   \n\n"])
def test_an_empty_corpus_leaves_no_run_dir_behind(tmp_path, cache_dir, text):
    empty = tmp_path / "empty.txt"
    empty.write_text(text)
    run_dir = tmp_path / "runs" / "run"
    with pytest.raises(UserError, match="empty|no text") as err:
        main(tiny_config(run_dir, empty, tmp_path / "cache"))
    assert "\n" not in str(err.value)
    assert not (tmp_path / "runs").exists()


def test_reusing_the_binarised_corpus_is_logged_only_when_it_was_there(tmp_path, corpus, caplog):
    import logging

    from pretrain import train

    caplog.set_level(logging.INFO)
    cache = tmp_path / "cache"  # fresh: this run writes the shards
    for run_dir, reused in ((tmp_path / "one", False), (tmp_path / "two", True)):
        caplog.clear()
        run = train.setup(tiny_config(run_dir, corpus, cache, max_updates=2))
        train.cleanup(run)
        assert ("reusing binarised corpus" in caplog.text) == reused, caplog.text
