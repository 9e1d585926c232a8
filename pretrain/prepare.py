"""`intdim prepare`: a pretraining config's tokenizer and binarised corpus, as a step of its own.

    intdim prepare CONFIG [key=value ...]            here, on every core (data.workers): `run`
    intdim prepare CONFIG --executor slurm --cluster PROFILE --parts N [key=value ...]
        slurm/launch.py submits the jobs below: a tokenizer job, then a job array over N parts
        of the corpus's files (each on every core of its node), then a merge job

Both write to the data cache under the keys pretraining computes (pretrain/shards.py), so
`intdim pretrain` with the same config finds the shards and starts training at once: its GPUs
are allocated only once the data is ready. Everything resumes: a finished tokenizer, part or
merge is not redone, and the shards are the same bytes however many parts or workers made them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from intdim.config import load_config
from pretrain.config import PretrainConfig
from pretrain.data import Corpus, resolve_corpus
from pretrain.shards import (
    FileRange,
    binarize,
    default_workers,
    encode_part,
    merge_parts,
    shards_dir,
)
from pretrain.tokenizer import build_tokenizer


def prepare_data(cfg: PretrainConfig):
    """(tokenizer, shards directory): built here, on every core, or found in the cache."""
    corpus = resolve_corpus(cfg.data)
    fp = corpus.fingerprint()
    tokenizer = _build_tokenizer(cfg, corpus, fp)
    return tokenizer, binarize(corpus, tokenizer, cfg.data, fp)


def _build_tokenizer(cfg: PretrainConfig, corpus: Corpus, fp: str):
    return build_tokenizer(
        cfg.tokenizer, corpus.lines, fp, Path(cfg.data.cache_dir), cfg.data.tokens_per_sample,
        corpus.nbytes(),
    )  # fmt: skip


# -- the jobs (module-level functions: submitit pickles them by name) ---------------------------
def _load(config: str, overrides: Sequence[str]) -> tuple[PretrainConfig, Corpus, str]:
    cfg = load_config(PretrainConfig, config, list(overrides))
    corpus = resolve_corpus(cfg.data)
    return cfg, corpus, corpus.fingerprint()


def tokenizer_job(config: str, overrides: Sequence[str]) -> str:
    cfg, corpus, fp = _load(config, overrides)
    _build_tokenizer(cfg, corpus, fp)
    return "tokenizer ready"


def binarize_job(config: str, overrides: Sequence[str]) -> str:
    """The whole corpus on one node (a streamed hub corpus has no files to split)."""
    cfg, corpus, fp = _load(config, overrides)
    return str(binarize(corpus, _build_tokenizer(cfg, corpus, fp), cfg.data, fp))


def part_job(config: str, overrides: Sequence[str], plan: str, part: int,
             chunks: Sequence[FileRange]) -> str:  # fmt: skip
    cfg, corpus, fp = _load(config, overrides)
    tokenizer = _build_tokenizer(cfg, corpus, fp)
    workers = cfg.data.workers or default_workers()
    out = shards_dir(fp, tokenizer, cfg.data)
    return str(encode_part(plan, part, chunks, tokenizer, out, workers))


def merge_job(config: str, overrides: Sequence[str], plan: str, n_parts: int) -> str:
    cfg, corpus, fp = _load(config, overrides)
    tokenizer = _build_tokenizer(cfg, corpus, fp)
    out = shards_dir(fp, tokenizer, cfg.data)
    return str(merge_parts(plan, n_parts, tokenizer, cfg.data, out))


# -- the command ---------------------------------------------------------------------------------
def plan_key(groups: Sequence[Sequence[FileRange]]) -> str:
    """Names a split of the corpus into parts: parts of another split are never merged with
    these (a rerun with another --parts starts its own)."""
    spec = json.dumps([[[c.path, c.start, c.end] for c in g] for g in groups])
    return hashlib.sha256(spec.encode()).hexdigest()[:12]


def run(config: str, overrides: Sequence[str] = ()) -> int:
    """`intdim prepare CONFIG` in this process."""
    cfg = load_config(PretrainConfig, config, list(overrides))
    _, shards = prepare_data(cfg)
    print(f"corpus prepared: {describe(shards)}", flush=True)
    return 0


def describe(shards: Path) -> str:
    index = json.loads((shards / "index.json").read_text())
    tokens = sum(m["tokens"] for split in index["splits"].values() for m in split)
    docs = index["documents"]
    return (
        f"{tokens:,} tokens, {docs['train']:,} train and {docs['valid']:,} valid documents "
        f"in {shards}"
    )
