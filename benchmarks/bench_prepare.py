"""Corpus preparation: tokenizer training and binarisation (tokens/s) with 1 worker and with every
core, the one-process binarisation of before beside them, and packing; the estimate for the
paper's corpus from the measured rate.

    python benchmarks/bench_prepare.py [--corpus FILE_OR_DIR] [--copies 6] [--workers 1 2]

Default corpus: WordNet's glosses as the demo writes them (11.5 MB), `--copies` times in
separate files (the issue's 69 MB). Every binarisation here starts from an empty shard cache
(the tokenizer is trained once and shared), and each checks that its shards are byte-identical
to the one-process binarisation's (`git show REV:pretrain/data.py`, run in this process).
"""

from __future__ import annotations

import argparse
import filecmp
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine  # noqa: E402
from pretrain import shards  # noqa: E402
from pretrain.config import DataConfig, TokenizerConfig  # noqa: E402
from pretrain.data import pack_complete, resolve_corpus  # noqa: E402
from pretrain.tokenizer import build_tokenizer  # noqa: E402

PAPER_TOKENS = 4e9  # BookCorpus + Wikipedia, 16 GB: ~4B tokens (the figure)


def _old_module(rev: str):
    src = subprocess.run(["git", "show", f"{rev}:pretrain/data.py"], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    path = Path(tempfile.mkdtemp()) / "old_data.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("old_data", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["old_data"] = mod
    spec.loader.exec_module(mod)
    return mod


def _default_corpus(root: Path, copies: int) -> Path:
    from demo.wordnet import corpus_text, find_wordnet, read_synsets

    text = corpus_text(read_synsets(find_wordnet()))
    root.mkdir(parents=True, exist_ok=True)
    for k in range(copies):
        (root / f"wordnet_{k}.txt").write_text(text)
    return root


def _cpu(since) -> float:
    """CPU seconds of this process and its finished children since `since` (os.times())."""
    now = os.times()
    return sum(getattr(now, k) - getattr(since, k)
               for k in ("user", "system", "children_user", "children_system"))  # fmt: skip


def _same(a: Path, b: Path) -> bool:
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.suffix != ".json")
    other = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file() and p.suffix != ".json")
    return files == other and all(filecmp.cmp(a / f, b / f, shallow=False) for f in files)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", help="a file or directory (default: WordNet's glosses)")
    ap.add_argument("--copies", type=int, default=6)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, shards.default_workers()])
    ap.add_argument("--vocab-size", type=int, default=8000)
    ap.add_argument(
        "--old-rev",
        default="abc6699",
        help="a revision with the one-process binarisation (default: the last one)",
    )
    ap.add_argument("--work", default=None, help="scratch directory (default: a temporary one)")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_prepare_"))
    corpus_path = Path(args.corpus or _default_corpus(work / "corpus", args.copies))
    cache = work / "cache"
    cfg = DataConfig(corpus=str(corpus_path), cache_dir=str(cache))
    corpus = resolve_corpus(cfg)
    fp = corpus.fingerprint()
    nbytes = corpus.nbytes()
    print(f"machine: {machine()}; corpus {corpus_path}: {nbytes / 1e6:.1f} MB in "
          f"{len(corpus.files)} file(s)")  # fmt: skip
    shutil.rmtree(cache, ignore_errors=True)
    t = time.perf_counter()
    tok = build_tokenizer(TokenizerConfig(kind="bpe", vocab_size=args.vocab_size), corpus.lines,
                          fp, cache, 512, nbytes)  # fmt: skip
    print(f"tokenizer (byte-level BPE, {args.vocab_size} tokens): {time.perf_counter() - t:.1f} s")

    old = _old_module(args.old_rev)
    ref_cfg = DataConfig(corpus=str(corpus_path), cache_dir=str(work / "old"))
    t, c0 = time.perf_counter(), os.times()
    ref = old.binarize(corpus, tok, ref_cfg, fp)
    t_old, cpu_old = time.perf_counter() - t, _cpu(c0)
    index = json.loads((ref / "index.json").read_text())
    tokens = sum(m["tokens"] for split in index["splits"].values() for m in split)
    print(f"binarise, one process ({args.old_rev}): {t_old:6.1f} s  {tokens / t_old / 1e6:5.2f}M "
          f"tokens/s  ({tokens / 1e6:.1f}M tokens; {cpu_old:.1f} CPU s: the tokenizer's own "
          f"threads)")  # fmt: skip
    rates, per_cpu = {}, {}
    for w in args.workers:
        shutil.rmtree(cache / "shards", ignore_errors=True)
        t, c0 = time.perf_counter(), os.times()
        got = shards.binarize(corpus, tok, cfg, fp, workers=w)
        dt, cpu = time.perf_counter() - t, _cpu(c0)
        rates[w] = tokens / dt
        per_cpu[w] = tokens / cpu
        print(f"binarise, workers={w}: {dt:6.1f} s  {rates[w] / 1e6:5.2f}M tokens/s  "
              f"x{t_old / dt:.2f} the one-process  ({cpu:.1f} CPU s, {per_cpu[w] / 1e6:.2f}M "
              f"tokens per CPU s)  identical: {_same(ref, got)}")  # fmt: skip

    sizes = np.random.default_rng(0).integers(1, 60, size=5_000_000)
    t = time.perf_counter()
    old.pack_complete(sizes, 511)
    t_old_pack = time.perf_counter() - t
    t = time.perf_counter()
    pack_complete(sizes, 511)
    t_pack = time.perf_counter() - t
    print(f"pack 5M sentences into 511-token blocks: {t_old_pack:.2f} s sentence by sentence, "
          f"{t_pack:.2f} s now (x{t_old_pack / t_pack:.1f})")  # fmt: skip

    # A worker runs one thread, so its rate is tokens per CPU second; the writer (this process)
    # costs little. The estimate: every core a worker at the rate measured with the most workers.
    w_max = max(rates)
    efficiency = rates[w_max] / (w_max * per_cpu[w_max])
    print(
        f"with {w_max} workers: {per_cpu[w_max] / 1e6:.2f}M tokens per worker CPU s, "
        f"{efficiency:.0%} of {w_max} cores busy over the wall time (start-up, the tail)"
    )
    for cores in (16, 32):
        est = PAPER_TOKENS / (per_cpu[w_max] * cores * efficiency)
        print(f"estimate, the paper's ~4B tokens on {cores} cores at that rate and efficiency: "
              f"{est / 60:.0f} min")  # fmt: skip
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
