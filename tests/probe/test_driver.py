from pathlib import Path

import pytest

import probe.driver as driver
from intdim.config import load_config
from intdim.errors import UserError
from probe.config import ProbeConfig
from probe.driver import make_env, run_search, run_specs, search_all
from probe.finetune import load_model
from probe.records import read_records
from probe.search import RunSpec, SearchKey

TINY = Path(__file__).resolve().parents[2] / "configs" / "probe" / "tiny.yaml"


def tiny_cfg(sst2_dir, *overrides):
    return load_config(
        ProbeConfig,
        TINY,
        ["tasks=[sst2]", f"data_dirs.sst2={sst2_dir}", "finetune.progress=false", *overrides],
    )


class CountingFinetune:
    """Wraps the real trainer; counts runs and can simulate a kill after N of them."""

    def __init__(self, monkeypatch, kill_after=None):
        self.real = driver.finetune
        self.calls = []
        self.kill_after = kill_after
        monkeypatch.setattr(driver, "finetune", self)

    def __call__(self, spec, *args, **kw):
        if self.kill_after is not None and len(self.calls) >= self.kill_after:
            raise KeyboardInterrupt
        self.calls.append(spec.run_id)
        return self.real(spec, *args, **kw)


def search(cfg, ckpt, out):
    env = make_env(cfg, str(ckpt), "checkpoint_100", "sst2")
    return run_search(SearchKey("checkpoint_100", "sst2", "said"), cfg.search, env, out, log=None)


def test_search_finds_d90_and_a_rerun_runs_nothing(tiny_ckpt, sst2_dir, tmp_path, monkeypatch):
    cfg = tiny_cfg(sst2_dir)
    counter = CountingFinetune(monkeypatch)
    result = search(cfg, tiny_ckpt, tmp_path)
    assert result.status == "done" and result.lo < result.hi == result.d90
    assert result.hi / result.lo <= cfg.search.ratio
    records = read_records(tmp_path)
    assert len(records) == len(counter.calls) == len(set(counter.calls))
    full = [r for r in records if r.method == "full"]
    assert len(full) == 1 and full[0].majority_baseline == pytest.approx(0.47)
    assert all(r.train_value is not None and r.config["settings"] for r in records)
    n_params = sum(p.numel() for p in load_model(str(tiny_ckpt), 2).parameters())
    assert all(r.config["num_parameters"] == n_params for r in records)  # for Figure 3
    # the subspace runs were given the threshold and stopped early when they reached it
    said = [r for r in records if r.method == "said"]
    assert all(r.stop_at == pytest.approx(result.threshold) for r in said)
    assert any(r.steps < 100 and r.eval_value >= r.stop_at for r in said)

    again = search(cfg, tiny_ckpt, tmp_path)
    assert again == result and len(counter.calls) == len(records)  # zero new runs


def test_killed_search_resumes_to_the_same_records(tiny_ckpt, sst2_dir, tmp_path, monkeypatch):
    cfg = tiny_cfg(sst2_dir)
    whole = search(cfg, tiny_ckpt, tmp_path / "whole")
    n = len(read_records(tmp_path / "whole"))

    counter = CountingFinetune(monkeypatch, kill_after=3)
    with pytest.raises(KeyboardInterrupt):
        search(cfg, tiny_ckpt, tmp_path / "killed")
    assert len(read_records(tmp_path / "killed")) == 3  # the interrupted run left no record
    counter.kill_after = None
    resumed = search(cfg, tiny_ckpt, tmp_path / "killed")
    assert resumed == whole and len(counter.calls) == n
    ids = {r.run_id for r in read_records(tmp_path / "killed")}
    assert ids == {r.run_id for r in read_records(tmp_path / "whole")}


def test_a_raising_run_becomes_a_failed_record(tiny_ckpt, sst2_dir, tmp_path, monkeypatch):
    def boom(*args, **kw):
        raise RuntimeError("CUDA out of memory\nmore detail")

    monkeypatch.setattr(driver, "finetune", boom)
    env = make_env(tiny_cfg(sst2_dir), str(tiny_ckpt), "checkpoint_100", "sst2")
    spec = RunSpec("checkpoint_100", "sst2", "said", 50, 0.01, 0, 0.9)
    [rec] = run_specs([spec], env, tmp_path)
    assert rec.status == "failed" and rec.error.startswith("RuntimeError: CUDA out of memory at ")
    assert read_records(tmp_path) == [rec]
    # one spec -> one record: a retried job finds the record and does not run again
    monkeypatch.setattr(driver, "finetune", lambda *a, **k: pytest.fail("ran twice"))
    assert run_specs([spec], env, tmp_path) == [rec]


def test_unbeatable_majority_is_not_computable(tiny_ckpt, tmp_path):
    # train 60% label 0, eval all label 0: the majority class scores 1.0 and cannot be beaten
    folder = tmp_path / "SST-2"
    folder.mkdir()
    train = [f"w{i % 7} w{i % 5}\t{int(i % 5 < 2)}" for i in range(50)]
    (folder / "train.tsv").write_text("sentence\tlabel\n" + "\n".join(train) + "\n")
    (folder / "dev.tsv").write_text("sentence\tlabel\n" + "w1 w2\t0\nw3\t0\n")
    cfg = tiny_cfg(folder)
    result = search(cfg, tiny_ckpt, tmp_path / "out")
    assert result.status == "not_computable" and "majority class (1.0000)" in result.reason
    assert [r.method for r in read_records(tmp_path / "out")] == ["full"]


def test_other_settings_in_the_same_out_are_refused(tiny_ckpt, sst2_dir, tmp_path):
    cfg = tiny_cfg(sst2_dir, "search.d_max=64", "search.ratio=8")
    search_all(cfg, str(tiny_ckpt), "checkpoint_100", tmp_path, log=lambda _: None)
    changed = tiny_cfg(sst2_dir, "search.d_max=64", "finetune.max_steps=50")
    with pytest.raises(UserError, match=r"other settings \(finetune.max_steps: 100 then, 50 now\)"):
        search_all(changed, str(tiny_ckpt), "checkpoint_100", tmp_path, log=lambda _: None)
    # what does not change a measurement is fine
    fine = tiny_cfg(sst2_dir, "search.d_max=64", "search.ratio=8", "finetune.eval_batch_size=7")
    search_all(fine, str(tiny_ckpt), "checkpoint_100", tmp_path, log=lambda _: None)


def test_d_max_beyond_the_model_is_refused_before_any_run(tiny_ckpt, sst2_dir, tmp_path):
    cfg = tiny_cfg(sst2_dir, "search.d_max=10000000")
    with pytest.raises(UserError, match="exceeds the model's"):
        search_all(cfg, str(tiny_ckpt), "checkpoint_100", tmp_path, log=lambda _: None)
    assert read_records(tmp_path) == []


def test_nan_loss_gives_an_unstable_record(sst2_dir, tmp_path):
    from tiny_fixtures import save_tiny_checkpoint

    ckpt = save_tiny_checkpoint(tmp_path / "poisoned", pretrain_steps=0, poison=True)
    env = make_env(tiny_cfg(sst2_dir), str(ckpt), "poisoned", "sst2")
    specs = [RunSpec("poisoned", "sst2", "full", None, 1e-3, 0),
             RunSpec("poisoned", "sst2", "said", 50, 0.01, 0, 0.9)]  # fmt: skip
    records = run_specs(specs, env, tmp_path)
    assert [r.status for r in records] == ["unstable", "unstable"]
    assert all(r.eval_value is None and r.steps == 1 and r.error is None for r in records)
    assert records[0].majority_baseline == pytest.approx(0.47)  # full runs always carry it
    assert read_records(tmp_path) == sorted(records, key=lambda r: r.method)
