"""`intdim prepare`: the data step on its own, here or as jobs (tokenizer, parts, merge), landing
where pretraining looks for it."""

from __future__ import annotations

import filecmp
import logging

import pytest

from intdim.cli import main
from pretrain import prepare, shards
from pretrain.data import resolve_corpus
from tests.pretrain.conftest import REPO, tiny_config, tiny_overrides

CONFIG = str(REPO / "configs/pretrain/tiny.yaml")


def _tree(root):
    return {p.relative_to(root): p for p in root.rglob("*") if p.is_file()}


def test_prepare_here_then_pretraining_finds_the_shards(tmp_path, corpus, capsys, caplog):
    cache = tmp_path / "cache"
    overrides = tiny_overrides(tmp_path / "run", corpus, cache)
    assert main(["prepare", CONFIG, *overrides]) == 0
    assert "corpus prepared:" in capsys.readouterr().out
    with caplog.at_level(logging.INFO):
        prepare.prepare_data(tiny_config(tmp_path / "run", corpus, cache))
    assert "reusing binarised corpus" in caplog.text
    assert not (tmp_path / "run").exists()  # preparing makes no run directory


def test_prepare_as_jobs_over_parts_gives_the_same_shards(tmp_path, corpus, monkeypatch):
    here = tmp_path / "here"
    assert main(["prepare", CONFIG, *tiny_overrides(tmp_path / "r", corpus, here)]) == 0
    monkeypatch.setattr(shards, "CHUNK_BYTES", 3000)  # the debug executor runs in this process
    jobs = tmp_path / "jobs"
    argv = ["prepare", CONFIG, *tiny_overrides(tmp_path / "r", corpus, jobs)]
    assert main([*argv, "--executor", "debug", "--parts", "3"]) == 0
    cfg = tiny_config(tmp_path / "r", corpus, jobs)
    (a,) = (here / "shards").iterdir()
    (b,) = (jobs / "shards").iterdir()  # the same key, and no parts left behind
    assert a.name == b.name
    ta, tb = _tree(a), _tree(b)
    assert ta.keys() == tb.keys()
    assert all(filecmp.cmp(ta[k], tb[k], shallow=False) for k in ta if k.name != "index.json")
    assert main([*argv, "--executor", "debug", "--parts", "2"]) == 0  # done: nothing to redo
    assert resolve_corpus(cfg.data).files == [corpus]


def test_prepare_with_parts_and_no_executor_is_refused(tmp_path, corpus, capsys):
    argv = ["prepare", CONFIG, *tiny_overrides(tmp_path / "r", corpus, tmp_path / "c")]
    assert main([*argv, "--parts", "2"]) == 2
    assert "--parts splits the corpus over jobs: pass --executor" in capsys.readouterr().err
    assert not (tmp_path / "c" / "shards").exists()


@pytest.mark.parametrize("bad, message", [("data.workers=0", "data.workers must be >= 1")])
def test_bad_workers_is_one_line(tmp_path, corpus, capsys, bad, message):
    argv = ["prepare", CONFIG, *tiny_overrides(tmp_path / "r", corpus, tmp_path / "c"), bad]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
