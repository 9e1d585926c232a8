import dataclasses
from pathlib import Path

import pytest

import probe.driver as driver
import probe.encode as encode
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
    model = load_model(str(tiny_ckpt), 2)
    n_params = sum(p.numel() for p in model.base_model.parameters())  # the body, no head
    assert n_params < sum(p.numel() for p in model.parameters())
    assert all(r.config["num_parameters"] == n_params for r in records)  # for Figure 3
    # the search's runs were given the threshold and stopped early when they reached it
    said = [r for r in records if r.method == "said" and r.stop_at is not None]
    assert all(r.stop_at == pytest.approx(result.threshold) for r in said)
    assert any(r.steps < 100 and r.eval_value >= r.stop_at for r in said)
    # and the d90 run was trained again to its budget, for Figures 4-5
    [final] = [r for r in records if r.method == "said" and r.stop_at is None]
    assert result.final == final and final.d == result.d90 and final.steps == 100

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
    # the same search and the same final run (its wall time and finish time aside)
    assert dataclasses.replace(resumed, final=None) == dataclasses.replace(whole, final=None)
    assert resumed.final.run_id == whole.final.run_id
    assert resumed.final.eval_metrics == whole.final.eval_metrics
    assert len(counter.calls) == n
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
    changed = tiny_cfg(sst2_dir, "search.d_max=64", "finetune.subspace_max_steps=50")
    with pytest.raises(
        UserError, match=r"other settings \(finetune.subspace_max_steps: 100 then, 50 now\)"
    ):
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


# ----------------------------------------------------------------------------- what a record is


def _quick(sst2_dir, *more):
    """A search of two points at most: enough records to test what a second command does."""
    return tiny_cfg(sst2_dir, "search.d_min=8", "search.d_max=64", "search.ratio=8", *more)


def test_another_models_checkpoint_of_the_same_name_is_refused(sst2_dir, tmp_path):
    """Two pretraining runs both have a checkpoint_100: their records must not answer for each
    other in one --out (the id is the directory's name)."""
    from tiny_fixtures import save_tiny_checkpoint

    a = save_tiny_checkpoint(tmp_path / "runA" / "checkpoints" / "checkpoint_100", seed=0)
    b = save_tiny_checkpoint(tmp_path / "runB" / "checkpoints" / "checkpoint_100", seed=1)
    out = tmp_path / "out"
    search_all(_quick(sst2_dir), str(a), "checkpoint_100", out, log=lambda _: None)
    n = len(read_records(out))
    with pytest.raises(UserError, match="made from other weights .*use another --out"):
        search_all(_quick(sst2_dir), str(b), "checkpoint_100", out, log=lambda _: None)
    assert len(read_records(out)) == n  # refused before anything ran
    # a copy of the same weights elsewhere is the same model: its records are reused
    import shutil

    copy = shutil.copytree(a, tmp_path / "copy" / "checkpoint_100")
    search_all(_quick(sst2_dir), str(copy), "checkpoint_100", out, log=lambda _: None)
    assert len(read_records(out)) == n


def test_changed_data_in_the_same_out_is_refused(tiny_ckpt, tmp_path):
    from tiny_fixtures import write_marker_task

    data = write_marker_task(tmp_path / "SST-2", "sst2")
    out = tmp_path / "out"
    search_all(_quick(data), str(tiny_ckpt), "checkpoint_100", out, log=lambda _: None)
    lines = (data / "train.tsv").read_text().splitlines()
    (data / "train.tsv").write_text("\n".join(lines[:-39]) + "\n")  # 39 rows removed
    encode.encoded_task.cache_clear()
    with pytest.raises(UserError, match="made from other examples"):
        search_all(_quick(data), str(tiny_ckpt), "checkpoint_100", out, log=lambda _: None)


def test_records_of_an_older_intdim_are_refused(tiny_ckpt, sst2_dir, tmp_path):
    """Records without the model's and data's fingerprints (intdim 0.1, whose Fastfood was also
    another projection) cannot be trusted to be this measurement."""
    import json

    out = tmp_path / "out"
    search_all(_quick(sst2_dir), str(tiny_ckpt), "checkpoint_100", out, log=lambda _: None)
    path = next((out / "records").glob("*.json"))
    obj = json.loads(path.read_text())
    del obj["config"]["identity"]
    obj["software"]["intdim"] = "0.1.0"
    path.write_text(json.dumps(obj))
    with pytest.raises(UserError, match="made by intdim 0.1.0, which did not record"):
        search_all(_quick(sst2_dir), str(tiny_ckpt), "checkpoint_100", out, log=lambda _: None)


def test_a_failed_run_is_retried_when_the_command_runs_again(
    tiny_ckpt, sst2_dir, tmp_path, monkeypatch
):
    real = driver.finetune

    def broken(spec, *a, **k):
        if spec.method != "full":
            raise RuntimeError("device cuda asked for but no GPU")
        return real(spec, *a, **k)

    monkeypatch.setattr(driver, "finetune", broken)
    out = tmp_path / "out"
    [(_, _, first)] = search_all(_quick(sst2_dir), str(tiny_ckpt), "checkpoint_100", out,
                                 log=lambda _: None)  # fmt: skip
    assert first.status == "failed" and "run the command again" in first.reason
    failed = [r for r in read_records(out) if r.status == "failed"]
    assert len(failed) == 2  # both LRs of the first point; then the search stopped
    # the cause is fixed: the same command retries them (once) and finishes
    monkeypatch.setattr(driver, "finetune", real)
    [(_, _, second)] = search_all(_quick(sst2_dir), str(tiny_ckpt), "checkpoint_100", out,
                                  log=lambda _: None)  # fmt: skip
    assert second.status == "done"
    assert all(r.status != "failed" for r in read_records(out))
    kept = sorted(p.name.split(".")[0] for p in (out / "failed").glob("*.json"))
    assert kept == sorted(r.run_id for r in failed)  # the failures' records are kept aside


def test_a_run_that_fails_again_is_not_retried_in_a_loop(
    tiny_ckpt, sst2_dir, tmp_path, monkeypatch
):
    calls = []

    def broken(spec, *a, **k):
        calls.append(spec.run_id)
        raise RuntimeError("always")

    monkeypatch.setattr(driver, "finetune", broken)
    out = tmp_path / "out"
    for expected in (1, 2):
        [(_, _, r)] = search_all(_quick(sst2_dir), str(tiny_ckpt), "checkpoint_100", out,
                                 log=lambda _: None)  # fmt: skip
        assert r.status == "failed" and len(calls) == expected  # the full run, once per command


def test_said_d_min_at_or_below_its_lambdas_is_refused_before_any_run(
    tiny_ckpt, sst2_dir, tmp_path
):
    cfg = tiny_cfg(sst2_dir, "search.d_min=5")  # the tiny RoBERTa has m = 5 SAID layers
    with pytest.raises(UserError, match=r"d_min = 5 leaves SAID no projected .* m = 5"):
        search_all(cfg, str(tiny_ckpt), "checkpoint_100", tmp_path, log=lambda _: None)
    assert read_records(tmp_path) == []


def test_result_line_of_a_d90_at_d_min_is_a_bound_not_a_bracket():
    from probe.driver import result_line
    from probe.search import SearchResult

    done = SearchResult("done", d90=8, lo=None, hi=8, reason="d_min = 8 already reaches")
    assert result_line("rte", "said", done) == "d90 rte said: <= 8 (d_min = 8 already reaches)"
    bracket = SearchResult("done", d90=946, lo=447, hi=946)
    assert result_line("rte", "said", bracket) == "d90 rte said: 946 (bracket 447-946)"
