"""Corpus -> token shards -> packed blocks -> the order blocks are trained in.

1. A corpus is raw text in fairseq's layout (one sentence per line, documents separated by blank
   lines) from files, directories or globs, or a hub dataset read through `datasets` (one row, one
   document). `corpus_fingerprint` identifies it cheaply (paths, sizes, mtimes) for the cache.
2. `binarize` (pretrain/shards.py) tokenises every sentence once, on every core, appends </s> to
   each (a document boundary adds one more lone </s>, as fairseq's preprocessing does with the
   blank line) and writes the ids to memory-mapped shards (uint16 when the vocabulary fits) with
   an index. Documents go to the train or validation split by a seeded hash of their index. The
   result is cached under a hash of corpus, tokenizer and these settings, and reused across runs.
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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from intdim.errors import UserError
from intdim.io import atomic_write_json
from pretrain.config import DataConfig
from pretrain.shards import binarize, split_documents, token_dtype

__all__ = ["BlockStream", "Corpus", "PackedBlocks", "binarize", "pack_complete",
           "resolve_corpus", "token_dtype"]  # fmt: skip

log = logging.getLogger(__name__)

_GLOB_CHARS = set("*?[")


# -- 1. corpus -----------------------------------------------------------------------------------
@dataclass
class Corpus:
    files: list[Path]
    hub: tuple[str, str | None] | None = None
    hf_split: str = "train"
    text_field: str = "text"
    cache_dir: str = ""  # where a hub corpus's last known revision is kept (for offline reruns)

    def documents(self) -> Iterator[list[str]]:
        """Each document as its list of non-empty lines (sentences). A hub corpus is streamed,
        row by row: never downloaded or held whole."""
        if self.hub is not None:
            for row in self._hub_rows():
                if self.text_field not in row:
                    raise UserError(
                        f"dataset {self.hub[0]!r} has no column {self.text_field!r}; set "
                        f"data.text_field to one of: {', '.join(row)}"
                    )
                lines = [s for s in str(row[self.text_field]).splitlines() if s.strip()]
                if lines:
                    yield lines
            return
        for path in self.files:
            with open(path, encoding="utf-8", errors="replace") as f:
                yield from split_documents(f)

    def lines(self) -> Iterator[str]:
        for doc in self.documents():
            yield from doc

    def nbytes(self) -> int | None:
        """The corpus's size in bytes, when known without reading it (for ETAs)."""
        return None if self.hub is not None else sum(p.stat().st_size for p in self.files)

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        if self.hub is not None:
            h.update(f"hub:{self.hub}:{self.hf_split}:{self.text_field}:".encode())
            h.update(self._hub_revision().encode())
        for p in self.files:
            st = p.stat()
            h.update(f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns};".encode())
        return h.hexdigest()[:16]

    def _hub_revision(self) -> str:
        """What identifies a hub corpus's content: its files' sizes and mtimes for a local
        dataset directory, else the hub's commit of the dataset. Offline (a cluster's compute
        nodes often are), the commit seen last, which `intdim prepare` recorded."""
        assert self.hub is not None
        name = self.hub[0]
        if Path(name).exists():
            root = Path(name)
            files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
            stats = [(p.relative_to(root.parent), p.stat()) for p in files]
            return ";".join(f"{p}:{st.st_size}:{st.st_mtime_ns}" for p, st in stats)
        memo = (
            Path(self.cache_dir or ".")
            / "hub_revisions"
            / (hashlib.sha256(repr(self.hub).encode()).hexdigest()[:16] + ".json")
        )
        try:
            from huggingface_hub import HfApi

            sha = HfApi().dataset_info(name).sha or ""
        except Exception as e:
            if memo.is_file():
                return json.loads(memo.read_text())["sha"]
            raise UserError(
                f"cannot look up dataset {name!r} on the hub ({str(e).splitlines()[0][:120]}); "
                "run `intdim prepare` once where the hub is reachable, or use local text files"
            ) from None
        memo.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(memo, {"dataset": name, "subset": self.hub[1], "sha": sha})
        return sha

    def _hub_rows(self):
        assert self.hub is not None
        try:
            import datasets
        except ImportError:
            raise UserError("a hub corpus needs the `datasets` package; pip install it") from None
        name, subset = self.hub
        try:
            return datasets.load_dataset(name, subset, split=self.hf_split, streaming=True)
        except Exception as e:
            raise UserError(
                f"cannot load dataset {name!r}: {str(e).splitlines()[0]}; check the name, or use "
                "local text files"
            ) from None


def resolve_corpus(cfg: DataConfig) -> Corpus:
    spec = cfg.corpus.strip()
    if not spec:
        raise UserError("data.corpus is not set; pass data.corpus=PATH (a file, directory or glob)")
    if spec.startswith("hf:"):
        name, _, subset = spec[3:].partition(":")
        return Corpus([], (name, subset or None), cfg.hf_split, cfg.text_field, cfg.cache_dir)
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


# -- 2. binarised shards: pretrain/shards.py (on every core) -----------------------------------


# -- 3. packing ----------------------------------------------------------------------------------
def pack_complete(sizes: np.ndarray, block: int) -> np.ndarray:
    """(start, end) token offsets of blocks of whole sentences, greedily filled up to `block`.

    Greedy packing is sequential (where a block starts depends on the previous one), but where a
    block that starts at sentence i ends does not: one vectorised searchsorted gives it for every
    i, and the Python loop then hops block to block (tens of sentences per hop) instead of
    visiting every sentence."""
    sizes = np.asarray(sizes, dtype=np.int64)
    n = len(sizes)
    if n == 0:
        return np.zeros((0, 2), dtype=np.int64)
    # int32 offsets when a shard's tokens allow (they do below 2^31): searchsorted runs ~2.5x
    # faster on half the bytes.
    small = int(sizes.sum()) + block < np.iinfo(np.int32).max
    ends = np.zeros(n + 1, dtype=np.int32 if small else np.int64)
    np.cumsum(sizes, out=ends[1:])
    # nxt[i]: the most sentences i.. that fit a block (the block is i..nxt[i]-1); == i when
    # sentence i alone is longer than a block.
    nxt = np.searchsorted(ends, ends[:-1] + ends.dtype.type(block), side="right") - 1
    starts: list[int] = []  # the sentence each block starts at
    long: list[int] = []  # sentences longer than a block
    i = 0
    while i < n:
        j = int(nxt[i])
        if j == i:
            long.append(i)
            j = i + 1
        else:
            starts.append(i)
        i = j
    s = np.asarray(starts, dtype=np.int64)
    parts = [np.column_stack([ends[s], ends[nxt[s]]]).astype(np.int64)]
    for i in long:  # an over-long sentence: cut into block-sized pieces
        a = np.arange(ends[i], ends[i + 1], block, dtype=np.int64)
        parts.append(np.column_stack([a, np.minimum(a + block, int(ends[i + 1]))]))
    out = np.concatenate(parts)
    return out[np.argsort(out[:, 0], kind="stable")] if long else out


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
