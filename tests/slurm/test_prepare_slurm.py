"""`intdim prepare --executor slurm --parts 2` on the dev cluster: a tokenizer job, a job array
over the corpus's files and a merge job give the shards one process gives, byte for byte."""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dev_cluster import REPO, SlurmCluster

from pretrain.demo_corpus import write_demo_corpus

pytestmark = pytest.mark.slurm


def _prepare(cache: Path, corpus: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "intdim.cli", "prepare", str(REPO / "configs/pretrain/tiny.yaml"),
           f"data.corpus={corpus}", f"data.cache_dir={cache}", "tokenizer.vocab_size=300",
           "data.shard_tokens=2048", "data.valid_fraction=0.1", *extra]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=cache.parent, env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip


def test_prepare_as_slurm_jobs_gives_the_shards_of_one_process(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    corpus = tmp_path / "corpus"
    for k in range(3):  # three files: parts are made of whole chunks, and a chunk is <= a file
        write_demo_corpus(corpus / f"part{k}.txt", n_documents=60 + 20 * k)
    here = _prepare(tmp_path / "here", corpus)
    assert here.returncode == 0, here.stderr[-3000:]
    jobs = _prepare(tmp_path / "jobs", corpus, "--executor", "slurm", "--cluster",
                    str(REPO / "configs/cluster/dev.yaml"), "--parts", "2")  # fmt: skip
    assert jobs.returncode == 0, jobs.stderr[-3000:]
    assert "corpus: 2 part(s) through slurm" in jobs.stdout
    (a,) = (tmp_path / "here" / "shards").iterdir()
    (b,) = (tmp_path / "jobs" / "shards").iterdir()
    assert a.name == b.name  # the key pretraining computes
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert len([f for f in files if f.suffix == ".bin"]) > 2
    assert all(filecmp.cmp(a / f, b / f, shallow=False) for f in files if f.suffix != ".json")
    logs = list((tmp_path / "jobs" / "jobs" / "prepare").glob("*_log.out"))
    assert len(logs) >= 4  # tokenizer, two parts, merge: each its own job
