"""`intdim demo` end to end, shrunk: a fixture WordNet, a 2-update pretraining, tiny searches.

The same code path as the real demo: a local-executor pretraining job, the watcher submitting
one local job per probe run, the figures and the summary; then a rerun that finds it all done.
"""

from __future__ import annotations

import json

import pytest
from wordnet_fixture import write_wordnet

from demo.pipeline import prepare_data, run_demo
from intdim.cli import main as cli
from intdim.errors import UserError
from probe.records import read_records

TINY_PRETRAIN = [
    "max_updates=2",
    "save_interval_updates=2",
    "log_interval=1",
    "data.tokens_per_sample=16",
    "tokenizer.vocab_size=300",
    "model.num_layers=1",
    "model.hidden_size=16",
    "model.num_heads=2",
    "model.ffn_size=32",
    "optim.batch_size=4",
    "optim.warmup_updates=1",
]
TINY_PROBE = [
    "max_train_examples=40",
    "max_eval_examples=20",
    "search.d_min=8",
    "search.d_max=32",
    "search.ratio=4",
    "search.lrs=[0.05]",
    "finetune.full_max_steps=4",
    "finetune.subspace_max_steps=4",
    "finetune.eval_every=2",
    "finetune.batch_size=8",
    "finetune.max_seq_len=16",
    "finetune.train_metric_examples=10",
]


def test_demo_runs_end_to_end_then_resumes_with_nothing_to_do(tmp_path, capsys):
    wn = write_wordnet(tmp_path / "dict", per_class=30)
    run = tmp_path / "run"
    kwargs = dict(
        wordnet=str(wn),
        poll_seconds=0.5,
        pretrain_overrides=TINY_PRETRAIN,
        probe_overrides=TINY_PROBE,
    )
    assert run_demo(str(run), **kwargs) == 0
    out = capsys.readouterr().out
    records = read_records(run / "probe")
    keys = {(r.checkpoint, r.task) for r in records}
    tasks = {"wordnet_example", "wordnet_pos", "wordnet_example_pos"}
    assert keys == {(c, t) for c in ("checkpoint_0", "checkpoint_2") for t in tasks}
    assert all(r.status != "failed" for r in records), [r.error for r in records]
    summary = (run / "summary.md").read_text()
    assert summary in out
    assert "| wordnet_pos |" in summary and "Finding: " in summary
    assert (run / "DONE").is_file() and (run / "data" / "manifest.json").is_file()

    before = sorted(p.name for p in (run / "probe" / "records").iterdir())
    assert run_demo(str(run), **kwargs) == 0  # a rerun: everything is there, nothing runs again
    assert sorted(p.name for p in (run / "probe" / "records").iterdir()) == before


def test_demo_data_is_written_once_and_a_foreign_run_dir_is_refused(tmp_path):
    wn = write_wordnet(tmp_path / "dict", per_class=10)
    data = prepare_data(tmp_path / "run", str(wn))
    stamp = data.corpus.stat().st_mtime_ns
    assert prepare_data(tmp_path / "run", str(wn)).corpus.stat().st_mtime_ns == stamp
    manifest = tmp_path / "run" / "data" / "manifest.json"
    manifest.write_text(json.dumps({"format": 0, "seed": 0}))
    with pytest.raises(UserError, match="holds demo data made by another version"):
        prepare_data(tmp_path / "run", str(wn))


def test_demo_without_wordnet_is_one_clear_error(tmp_path, capsys):
    code = cli(["demo", "--run-dir", str(tmp_path / "run"), "--wordnet", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "does not hold WordNet's data.noun" in err
    assert not (tmp_path / "run" / "data" / "manifest.json").exists()


def test_a_pretraining_job_that_keeps_failing_stops_the_demo_with_its_error(tmp_path):
    wn = write_wordnet(tmp_path / "dict", per_class=10)
    # valid as a config, but the job fails building the model: 16 tokens need 18 positions
    broken = [*TINY_PRETRAIN, "model.max_positions=10"]
    with pytest.raises(UserError, match=r"pretraining stopped 3 times without finishing, last: "):
        run_demo(
            str(tmp_path / "run"),
            wordnet=str(wn),
            poll_seconds=0.2,
            pretrain_overrides=broken,
            probe_overrides=TINY_PROBE,
        )


def test_ctrl_c_then_rerun_finishes_without_failures_or_used_retries(tmp_path):
    """Ctrl-C reaches the whole foreground process group (the demo and its jobs); the rerun
    resumes pretraining, resubmits the interrupted runs, and counts no failure against them."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from probe.journal import Journal

    wn = write_wordnet(tmp_path / "dict", per_class=30)
    run = tmp_path / "run"
    kwargs = dict(
        wordnet=str(wn),
        poll_seconds=0.5,
        pretrain_overrides=[*TINY_PRETRAIN, "max_updates=4"],
        probe_overrides=TINY_PROBE,
    )
    # A terminal's Ctrl-C: SIGINT raises KeyboardInterrupt. (A shell's background job inherits
    # SIGINT ignored, and so would this process: CI may well run under one.)
    code = (
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
        f"from demo.pipeline import run_demo; run_demo({str(run)!r}, **{kwargs!r})"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "probe" / "records").is_dir():
        time.sleep(0.2)
    assert proc.poll() is None, "the demo ended before the first record"
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=60) != 0
    assert not (run / "summary.md").exists()

    assert run_demo(str(run), **kwargs) == 0
    records = read_records(run / "probe")
    assert {r.checkpoint for r in records} == {"checkpoint_0", "checkpoint_2", "checkpoint_4"}
    assert all(r.status == "ok" for r in records)
    journal = Journal(run / "probe")
    assert all(entry.failures == 0 for entry in journal.entries.values())
