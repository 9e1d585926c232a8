"""Corpus -> token shards -> packed blocks -> the order blocks are trained in.

1. A corpus is raw text in fairseq's layout (one sentence per line, documents separated by blank
   lines) from files, directories or globs, or a hub dataset read through `datasets` (one row, one
   document). `corpus_fingerprint` identifies it cheaply (paths, sizes, mtimes) for the cache.
2. `binarize` tokenises every sentence once, appends </s> to each (a document boundary adds one
   more lone </s>, as fairseq's preprocessing does with the blank line) and writes the ids to
   memory-mapped shards (uint16 when the vocabulary fits) with an index. Documents go to the
   train or validation split by a seeded hash of their index. The result is cached under a hash of
   corpus, tokenizer and these settings, and reused across runs.
3. `pack_complete` is fairseq's `--sample-break-mode complete`: whole sentences are packed greedily
   into blocks of tokens_per_sample - 1 tokens (<s> is prepended to each block), so no block
   splits a sentence and nothing is padded except the short tail of a block. A sentence longer than
   a block is cut into block-sized pieces (fairseq would emit an over-long block that the model
   cannot take); no token is lost or duplicated.
4. `BlockStream` fixes the training order: epoch e visits blocks in a permutation seeded by
   (seed, e). Its whole state is one integer, the number of blocks consumed, which is what a
   checkpoint stores to resume at the exact next batch.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from intdim.errors import UserError
from intdim.io import atomic_write_json
from pretrain.config import DataConfig

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_GLOB_CHARS = set("*?[")
_SPLIT_SEED = 0  # the validation split does not move with the training seed


# -- 1. corpus -----------------------------------------------------------------------------------
@dataclass
class Corpus:
    files: list[Path]
    hub: tuple[str, str | None] | None = None
    hf_split: str = "train"
    text_field: str = "text"

    def documents(self) -> Iterator[list[str]]:
        """Each document as its list of non-empty lines (sentences)."""
        if self.hub is not None:
            for row in self._hub_rows():
                text = row[self.text_field]
                lines = [s for s in str(text).splitlines() if s.strip()]
                if lines:
                    yield lines
            return
        for path in self.files:
            doc: list[str] = []
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    line = line.rstrip("\n")
                    if line.strip():
                        doc.append(line)
                    elif doc:
                        yield doc
                        doc = []
            if doc:
                yield doc

    def lines(self) -> Iterator[str]:
        for doc in self.documents():
            yield from doc

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        if self.hub is not None:
            ds = self._hub_rows()
            h.update(f"hub:{self.hub}:{self.hf_split}:{self.text_field}:".encode())
            h.update(str(getattr(ds, "_fingerprint", len(ds))).encode())
        for p in self.files:
            st = p.stat()
            h.update(f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns};".encode())
        return h.hexdigest()[:16]

    def _hub_rows(self):
        assert self.hub is not None
        try:
            import datasets
        except ImportError:
            raise UserError("a hub corpus needs the `datasets` package; pip install it") from None
        name, subset = self.hub
        try:
            ds = datasets.load_dataset(name, subset, split=self.hf_split)
        except Exception as e:
            raise UserError(
                f"cannot load dataset {name!r}: {str(e).splitlines()[0]}; check the name, or use "
                "local text files"
            ) from None
        if self.text_field not in ds.column_names:
            raise UserError(
                f"dataset {name!r} has no column {self.text_field!r}; set data.text_field to one "
                f"of: {', '.join(ds.column_names)}"
            )
        return ds


def resolve_corpus(cfg: DataConfig) -> Corpus:
    spec = cfg.corpus.strip()
    if not spec:
        raise UserError("data.corpus is not set; pass data.corpus=PATH (a file, directory or glob)")
    if spec.startswith("hf:"):
        name, _, subset = spec[3:].partition(":")
        return Corpus([], (name, subset or None), cfg.hf_split, cfg.text_field)
    if spec == "demo":
        from pretrain.demo_corpus import write_demo_corpus

        path = Path(cfg.cache_dir) / "demo" / f"demo_{cfg.demo_documents}.txt"
        if not path.is_file():
            write_demo_corpus(path, cfg.demo_documents)
        return Corpus([path])
    files: list[Path] = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        if _GLOB_CHARS & set(part):
            hits = sorted(Path(p) for p in glob.glob(part, recursive=True))
            found = [p for p in hits if p.is_file()]
            if not found:
                raise UserError(f"corpus glob {part!r} matches no file")
            files += found
        elif Path(part).is_dir():
            found = sorted(
                p
                for p in Path(part).rglob("*")
                if p.is_file() and not any(s.startswith(".") for s in p.parts)
            )
            if not found:
                raise UserError(f"corpus directory {part} contains no files")
            files += found
        elif Path(part).is_file():
            files.append(Path(part))
        else:
            raise UserError(f"corpus path {part} does not exist; pass a file, directory or glob")
    if all(p.stat().st_size == 0 for p in files):
        raise UserError(f"corpus {spec} is empty; it must contain text")
    return Corpus(files)


# -- 2. binarised shards -------------------------------------------------------------------------
def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.int32)


def _is_valid_doc(index: int, fraction: float) -> bool:
    if fraction <= 0:
        return False
    h = hashlib.blake2b(f"{_SPLIT_SEED}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") / 2**64 < fraction


class _ShardWriter:
    """Appends sentences to shard files of at most `shard_tokens` tokens each."""

    def __init__(self, out: Path, dtype: np.dtype, shard_tokens: int) -> None:
        self.out, self.dtype, self.shard_tokens = out, dtype, shard_tokens
        self.shards: list[dict] = []
        self._f = None
        self._sizes: list[int] = []
        self._n = 0

    def add(self, ids: list[int]) -> None:
        if self._f is None or (self._n and self._n + len(ids) > self.shard_tokens):
            self._close_shard()
            name = f"shard_{len(self.shards):05d}"
            self._f = open(self.out / f"{name}.bin", "wb")  # noqa: SIM115  closed in _close_shard
            self.shards.append({"name": name})
        self._f.write(np.asarray(ids, dtype=self.dtype).tobytes())
        self._sizes.append(len(ids))
        self._n += len(ids)

    def _close_shard(self) -> None:
        if self._f is None:
            return
        self._f.close()
        meta = self.shards[-1]
        np.save(self.out / f"{meta['name']}.sizes.npy", np.asarray(self._sizes, dtype=np.int32))
        meta.update(tokens=self._n, sentences=len(self._sizes))
        self._f, self._sizes, self._n = None, [], 0

    def close(self) -> list[dict]:
        self._close_shard()
        return self.shards


def shards_key(corpus_fp: str, tokenizer, cfg: DataConfig) -> str:
    tok_files = json.dumps(tokenizer.get_vocab(), sort_keys=True)
    spec = f"{FORMAT_VERSION}:{corpus_fp}:{tok_files}:{cfg.valid_fraction}:{cfg.shard_tokens}"
    return hashlib.sha256(spec.encode()).hexdigest()[:16]


def binarize(corpus: Corpus, tokenizer, cfg: DataConfig, corpus_fp: str) -> Path:
    """Tokenise the corpus into cached shards; return the directory holding both splits."""
    out = Path(cfg.cache_dir) / "shards" / shards_key(corpus_fp, tokenizer, cfg)
    if (out / "index.json").is_file():
        log.info("reusing binarised corpus %s", out)
        return out
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    dtype = token_dtype(len(tokenizer))
    writers = {}
    for split in ("train", "valid"):
        (tmp / split).mkdir(parents=True)
        writers[split] = _ShardWriter(tmp / split, dtype, cfg.shard_tokens)
    eos = tokenizer.eos_token_id
    docs = {"train": 0, "valid": 0}
    for i, doc in enumerate(corpus.documents()):
        split = "valid" if _is_valid_doc(i, cfg.valid_fraction) else "train"
        docs[split] += 1
        encoded = tokenizer(doc, add_special_tokens=False)["input_ids"]
        for ids in encoded:
            writers[split].add(list(ids) + [eos])
        writers[split].add([eos])  # the document boundary (fairseq's encoded blank line)
    index = {
        "format": FORMAT_VERSION,
        "dtype": dtype.name,
        "vocab_size": len(tokenizer),
        "documents": docs,
        "splits": {s: w.close() for s, w in writers.items()},
    }
    if docs["train"] == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(f"corpus {cfg.corpus} holds no text to train on; it must contain text")
    atomic_write_json(tmp / "index.json", index)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(tmp, out)
    except OSError:  # another rank or run finished the same shards first
        shutil.rmtree(tmp, ignore_errors=True)
    return out


# -- 3. packing ----------------------------------------------------------------------------------
def pack_complete(sizes: np.ndarray, block: int) -> np.ndarray:
    """(start, end) token offsets of blocks of whole sentences, greedily filled up to `block`."""
    out: list[tuple[int, int]] = []
    start = pos = 0
    for size in sizes.tolist():
        if size > block:  # an over-long sentence: close the open block, cut it into pieces
            if pos > start:
                out.append((start, pos))
            for a in range(pos, pos + size, block):
                out.append((a, min(a + block, pos + size)))
            pos += size
            start = pos
            continue
        if pos + size - start > block:
            out.append((start, pos))
            start = pos
        pos += size
    if pos > start:
        out.append((start, pos))
    return np.asarray(out, dtype=np.int64).reshape(-1, 2)


class PackedBlocks:
    """One split's blocks over memory-mapped shards; item i is <s> + the block's tokens."""

    def __init__(self, root: Path, split: str, tokens_per_sample: int, bos: int) -> None:
        index = json.loads((root / "index.json").read_text())
        self.bos = bos
        self.arrays: list[np.memmap] = []
        parts = []
        for meta in index["splits"][split]:
            if meta["tokens"] == 0:
                continue
            arr = np.memmap(root / split / f"{meta['name']}.bin", dtype=index["dtype"], mode="r")
            sizes = np.load(root / split / f"{meta['name']}.sizes.npy")
            blocks = pack_complete(sizes, tokens_per_sample - 1)
            self.arrays.append(arr)
            parts.append(np.column_stack([np.full(len(blocks), len(self.arrays) - 1), blocks]))
        self.blocks = np.concatenate(parts) if parts else np.zeros((0, 3), dtype=np.int64)
        self.n_tokens = int(sum(m["tokens"] for m in index["splits"][split]))

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, i: int) -> np.ndarray:
        shard, a, b = self.blocks[i]
        out = np.empty(b - a + 1, dtype=np.int64)
        out[0] = self.bos
        out[1:] = self.arrays[shard][a:b]
        return out


# -- 4. order ------------------------------------------------------------------------------------
class BlockStream:
    """The global training order: epoch-wise seeded permutations of the block indices."""

    def __init__(self, n_blocks: int, seed: int, consumed: int = 0) -> None:
        if n_blocks == 0:
            raise UserError("the training split has no blocks; the corpus is too small")
        self.n, self.seed, self.consumed = n_blocks, seed, consumed
        self._perm: tuple[int, np.ndarray] | None = None

    def _order(self, epoch: int) -> np.ndarray:
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n))
        return self._perm[1]

    def take(self, k: int) -> list[tuple[int, int]]:
        """The next k (epoch, block index) pairs; the epoch also seeds each block's masking."""
        out = []
        for j in range(self.consumed, self.consumed + k):
            epoch = j // self.n
            out.append((epoch, int(self._order(epoch)[j % self.n])))
        self.consumed += k
        return out


def iter_blocks(blocks: PackedBlocks, ids: Iterable[int]) -> list[np.ndarray]:
    return [blocks[i] for i in ids]
