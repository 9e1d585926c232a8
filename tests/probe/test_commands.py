"""`intdim d90`, `intdim probe`, `intdim status` through the real argument parser."""

import json
import os
import re
from pathlib import Path

import pytest

from intdim.cli import main
from intdim.config import load_config
from probe.config import ProbeConfig
from probe.records import read_records

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "probe"
TINY = str(CONFIGS / "tiny.yaml")
QUIET = "finetune.progress=false"


def d90_args(ckpt, data_dir, out, *extra):
    return ["d90", "--model", str(ckpt), "--task", "sst2", "--data-dir", str(data_dir),
            "--out", str(out), "--config", TINY, *extra, QUIET]  # fmt: skip


def test_d90_end_to_end_prints_one_result_line_and_resumes(tiny_ckpt, sst2_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(d90_args(tiny_ckpt, sst2_dir, out, "--max-train-examples", "150")) == 0
    stdout = capsys.readouterr().out.strip().splitlines()
    assert len(stdout) == 1
    m = re.fullmatch(r"d90 sst2 said: (\d+) \(bracket (\d+)-(\d+)\)", stdout[0])
    assert m and m[1] == m[3] and int(m[2]) < int(m[3])
    records = read_records(out)
    assert {r.checkpoint for r in records} == {"checkpoint_100"}
    assert records[0].config["max_train_examples"] == 150

    # rerun after the fact: same answer, nothing re-run
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "records").iterdir()}
    assert main(d90_args(tiny_ckpt, sst2_dir, out, "--max-train-examples", "150")) == 0
    assert capsys.readouterr().out.strip().splitlines() == stdout
    assert {p: p.stat().st_mtime_ns for p in (out / "records").iterdir()} == mtimes

    assert main(["status", str(out), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    said = next(r for r in rows if r["method"] == "said")
    keys = {"checkpoint", "task", "method", "full_metric", "threshold", "d90", "lo", "hi",
            "status", "runs"}  # fmt: skip
    assert keys <= set(said) and said["status"] == "done" and said["d90"] == int(m[1])
    assert said["lo"] == int(m[2]) and said["runs"]["ok"] == len(records) - 1
    assert main(["status", str(out)]) == 0
    table = capsys.readouterr().out
    assert "checkpoint_100  sst2  said" in table
    # a pretraining RUN_DIR works too: the watcher's records are under RUN_DIR/probe
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "probe").symlink_to(out, target_is_directory=True)
    assert main(["status", str(run_dir)]) == 0
    assert capsys.readouterr().out == table


def test_probe_runs_every_task_into_the_run_dirs_probe_folder(tiny_ckpt, tmp_path, capsys):
    # own copy of the checkpoint's run dir so the default out (RUN/probe) is private to the test
    from tiny_fixtures import save_tiny_checkpoint, write_marker_task

    ckpt = save_tiny_checkpoint(tmp_path / "run" / "checkpoints" / "checkpoint_7")
    sst2 = write_marker_task(tmp_path / "SST-2", "sst2", n_train=100, n_eval=60)
    mrpc = write_marker_task(tmp_path / "MRPC", "mrpc", n_train=100, n_eval=60)
    args = ["probe", "--checkpoint", str(ckpt), "--config", TINY, f"data_dirs.sst2={sst2}",
            f"data_dirs.mrpc={mrpc}", "search.d_max=200", "search.ratio=4", QUIET]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert re.search(r"^d90 sst2 said: ", out, re.M) and re.search(r"^d90 mrpc said: ", out, re.M)
    records = read_records(tmp_path / "run" / "probe")
    assert {r.task for r in records} == {"sst2", "mrpc"}
    mrpc_full = next(r for r in records if r.task == "mrpc" and r.method == "full")
    assert set(mrpc_full.eval_metrics) == {"accuracy", "f1"}
    assert "checkpoint_7  mrpc  full" in out and "checkpoint_7  sst2  said" in out


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize(
    "extra,match",
    [
        (["finetune.max_stepz=3"], "max_stepz"),
        (["finetune.subspace_max_steps=ten"], "subspace_max_steps"),
        (["search.k=["], "bad override value"),
        (["search.ratio=1"], "ratio must be > 1"),
        (["nokey"], "not of the form key=value"),
        (["--d-max", "99999999"], "exceeds the model's"),
        (["--search", str(CONFIGS / "search.yaml")], "d_max = 4,000,000 exceeds"),
    ],
)
def test_d90_bad_input_exits_2_with_one_error_line(
    tiny_ckpt, sst2_dir, tmp_path, capsys, extra, match
):
    assert main(d90_args(tiny_ckpt, sst2_dir, tmp_path / "out", *extra)) == 2
    assert re.search(match, one_error_line(capsys))
    assert not (tmp_path / "out" / "records").exists()  # nothing ran


def test_unknown_task_missing_data_and_missing_model(tiny_ckpt, sst2_dir, tmp_path, capsys):
    base = ["d90", "--out", str(tmp_path / "o"), QUIET]
    assert main([*base, "--model", str(tiny_ckpt), "--task", "nosuchtask"]) == 2
    assert "unknown task 'nosuchtask'" in one_error_line(capsys)

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([*base, "--model", str(tiny_ckpt), "--task", "sst2", "--data-dir", str(empty)]) == 2
    assert "train.tsv does not exist" in one_error_line(capsys)

    missing = tmp_path / "no_model"
    assert (
        main([*base, "--model", str(missing), "--task", "sst2", "--data-dir", str(sst2_dir)]) == 2
    )
    assert f"model {missing} does not exist" in one_error_line(capsys)

    assert main(["status", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in one_error_line(capsys)
    assert main(["probe", "--checkpoint", str(missing), "--config", TINY]) == 2
    assert "checkpoint directory" in one_error_line(capsys)


def test_bad_cli_flag_is_an_argparse_error():
    with pytest.raises(SystemExit) as e:
        main(["d90", "--model", "m", "--task", "t", "--out", "o", "--max-train-examples", "0"])
    assert e.value.code == 2


def test_shipped_probe_configs_load_and_say_how_to_run_them():
    for path in sorted(CONFIGS.glob("*.yaml")):
        assert path.read_text().startswith("# intdim "), path
    paper = load_config(ProbeConfig, CONFIGS / "paper.yaml")
    assert paper.tasks == ["mrpc", "qqp", "yelp_polarity", "sst2", "mnli", "anli"]
    assert paper.methods == ["said"] and (paper.search.d_min, paper.search.d_max) == (
        100,
        4_000_000,
    )
    tiny = load_config(ProbeConfig, CONFIGS / "tiny.yaml")
    assert len(tiny.tasks) == 2 and tiny.search.d_max <= 2000


# ----------------------------------------------------------------------------- models and --out


def damaged_copy(ckpt, tmp_path, damage: str):
    import shutil

    copy = shutil.copytree(ckpt, tmp_path / "run" / "checkpoints" / "checkpoint_3")
    weights = copy / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\x07junk" * 99)
    return copy


@pytest.mark.parametrize("damage", ["truncated", "garbled"])
def test_a_damaged_model_safetensors_is_one_line(tiny_ckpt, sst2_dir, tmp_path, capsys, damage):
    ckpt = damaged_copy(tiny_ckpt, tmp_path, damage)
    assert main(d90_args(ckpt, sst2_dir, tmp_path / "out")) == 2
    assert "model.safetensors is damaged" in one_error_line(capsys)
    args = ["probe", "--checkpoint", str(ckpt), "--config", TINY, f"data_dirs.sst2={sst2_dir}"]
    assert main(args) == 2
    assert "model.safetensors is damaged" in one_error_line(capsys)
    assert not (tmp_path / "out").exists() and not (tmp_path / "run" / "probe").exists()


@pytest.mark.parametrize("model", ["./no/such/dir", "runs/x/checkpoints/checkpoint_5", "~/nope_x"])
def test_a_local_path_that_does_not_exist_is_not_taken_for_a_hub_id(
    sst2_dir, tmp_path, capsys, monkeypatch, model
):
    import huggingface_hub

    def no_hub(*a, **k):
        raise AssertionError("the hub was asked about a local path")

    monkeypatch.setattr(huggingface_hub, "model_info", no_hub)
    assert main(d90_args(model, sst2_dir, tmp_path / "out")) == 2
    assert f"model {model} does not exist" in one_error_line(capsys)


def test_a_pretraining_run_dir_as_model_says_which_checkpoint_to_pass(tmp_path, sst2_dir, capsys):
    run = tmp_path / "run"
    for n in (20, 100, 9):
        (run / "checkpoints" / f"checkpoint_{n}").mkdir(parents=True)
    assert main(d90_args(run, sst2_dir, tmp_path / "out")) == 2
    line = one_error_line(capsys)
    assert "is a pretraining run directory" in line and "checkpoints/checkpoint_100" in line
    assert f"intdim watch {run}" in line


def test_a_hub_id_offline_and_not_cached_fails_at_once(sst2_dir, tmp_path, capsys, monkeypatch):
    import time

    import huggingface_hub
    import huggingface_hub.constants

    model = "intdim-tests/no-such-model"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    start = time.monotonic()
    assert main(d90_args(model, sst2_dir, tmp_path / "out")) == 2
    line = one_error_line(capsys)
    assert "not in the local Hugging Face cache" in line and "HF_HUB_OFFLINE=1" in line

    def unreachable(*a, **k):
        raise ConnectionError("[Errno -2] Name or service not known")

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "model_info", unreachable)
    assert main(d90_args(model, sst2_dir, tmp_path / "out")) == 2
    line = one_error_line(capsys)
    assert "not in the local Hugging Face cache and the hub cannot be reached" in line
    assert "HF_HUB_OFFLINE=1" in line
    assert time.monotonic() - start < 10  # no retry loop


def test_an_unwritable_out_fails_before_any_training(tiny_ckpt, sst2_dir, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    for out, says in ((blocker, "is a file"), (blocker / "out", "cannot be created")):
        assert main(d90_args(tiny_ckpt, sst2_dir, out)) == 2
        assert re.search(f"--out .*{says}", one_error_line(capsys))
        assert main(d90_args(tiny_ckpt, sst2_dir, tmp_path / "ok", f"out={out}")) == 2
        assert says in one_error_line(capsys)
        args = ["probe", "--checkpoint", str(tiny_ckpt), "--config", TINY, f"out={out}", QUIET]
        assert main(args) == 2
        assert says in one_error_line(capsys)
    assert not (tmp_path / "ok").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_out_fails_before_any_training(tiny_ckpt, sst2_dir, tmp_path, capsys):
    out = tmp_path / "ro"
    out.mkdir(mode=0o555)
    assert main(d90_args(tiny_ckpt, sst2_dir, out)) == 2
    assert "is not writable" in one_error_line(capsys)
    assert not (out / "records").exists()
