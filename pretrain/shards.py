"""Corpus -> token shards on every core: step 2 of pretrain/data.py's pipeline.

The shards are defined by the one-process reading of the corpus (`Corpus.documents`): documents
in order, document i in the validation split iff a seeded hash of i says so, each sentence's ids
plus </s>, one more lone </s> per document (fairseq's encoded blank line), appended to the split's
shard files, a new shard when the next sentence would overflow `shard_tokens`. Parallelism must
not change a byte of that (caches and resumes are keyed on it), so:

- The corpus is cut into chunks at document boundaries: byte ranges of its files ending just
  after a blank line (`plan_chunks`; a chunk never splits a line, so decoding and universal
  newlines read the same), or batches of rows of a streamed hub corpus.
- Workers encode chunks independently (`encode_chunk`): tokens, sentence sizes, and where each
  document ends. Tokenisation of one sentence does not depend on its neighbours.
- One writer takes the chunks in corpus order, numbers the documents globally, splits them by
  the same hash and appends them through the same shard-rolling rule (`ShardWriter`).

On one node, `binarize` does this with a process pool (`data.workers`). Across nodes,
`intdim prepare --parts N` (pretrain/prepare.py) runs `encode_part` for N contiguous groups of
chunks as a job array and `merge_parts` as the writer.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import multiprocessing
import os
import shutil
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from intdim.errors import UserError
from intdim.io import atomic_write_json

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
CHUNK_BYTES = 8 << 20  # text per task: large enough to amortise a task, small for balance
HUB_CHUNK_CHARS = 4 << 20  # the same for rows of a streamed hub corpus
_SPLIT_SEED = 0  # the validation split does not move with the training seed
_TOKENIZE_BATCH = 1024  # sentences per tokenizer call


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.int32)


def is_valid_doc(index: int, fraction: float) -> bool:
    if fraction <= 0:
        return False
    h = hashlib.blake2b(f"{_SPLIT_SEED}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") / 2**64 < fraction


def default_workers() -> int:
    """Every core this process may run on (a SLURM allocation's, not the whole node's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# -- chunks --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FileRange:
    """Bytes [start, end) of one corpus file, starting and ending at a document boundary."""

    path: str
    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start


def _is_blank(line: bytes) -> bool:
    return not line.decode("utf-8", errors="replace").strip()


def _boundary_after(f, pos: int, size: int) -> int:
    """The first offset >= pos that follows a blank line (a document boundary), or size."""
    f.seek(pos)
    if pos > 0:
        f.readline()  # the rest of the line pos falls in
    while True:
        line = f.readline()
        if not line:
            return size
        if _is_blank(line):
            return f.tell()


def plan_chunks(files: Sequence[Path], chunk_bytes: int | None = None) -> list[FileRange]:
    """Each file cut into ranges of about chunk_bytes (default CHUNK_BYTES), each ending just
    after a blank line (or at the file's end), in corpus order. A file without blank lines is
    one range."""
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    out = []
    for path in files:
        size = path.stat().st_size
        start = 0
        with open(path, "rb") as f:
            while start < size:
                end = size
                if size - start > chunk_bytes:
                    end = _boundary_after(f, start + chunk_bytes, size)
                out.append(FileRange(str(path), start, end))
                start = end
    return out


def read_range(r: FileRange) -> Iterator[list[str]]:
    """The documents of a range, exactly as `Corpus.documents` reads them from the whole file."""
    with open(r.path, "rb") as f:
        f.seek(r.start)
        data = f.read(r.size)
    # A TextIOWrapper, like open(): the same decoding and the same universal newlines.
    yield from split_documents(
        io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="replace")
    )


def split_documents(lines: Iterable[str]) -> Iterator[list[str]]:
    """fairseq's raw layout: runs of non-blank lines are documents, blank lines separate them.
    The one definition: `Corpus.documents` reads whole files with it, `read_range` chunks."""
    doc: list[str] = []
    for line in lines:
        line = line.rstrip("\n")
        if line.strip():
            doc.append(line)
        elif doc:
            yield doc
            doc = []
    if doc:
        yield doc


def hub_chunks(documents: Iterable[list[str]], chars: int | None = None) -> Iterator[list]:
    """Batches of documents of about `chars` characters (default HUB_CHUNK_CHARS), pulled
    lazily from a stream."""
    chars = chars or HUB_CHUNK_CHARS
    batch: list[list[str]] = []
    n = 0
    for doc in documents:
        batch.append(doc)
        n += sum(len(s) for s in doc)
        if n >= chars:
            yield batch
            batch, n = [], 0
    if batch:
        yield batch


# -- encoding ------------------------------------------------------------------------------------
@dataclass
class EncodedChunk:
    """A chunk's token stream: every sentence's ids + </s>, a lone </s> after each document.
    `sizes` has one entry per sentence (the lone </s> counts as one); document j is sentences
    doc_ends[j-1]:doc_ends[j]. `nbytes`: the text it came from, for progress."""

    tokens: np.ndarray
    sizes: np.ndarray  # int32
    doc_ends: np.ndarray  # int64
    nbytes: int = 0


def _ids_of(tokenizer):
    """sentences -> their ids without special tokens, as `tokenizer(...)["input_ids"]` gives
    them. A fast tokenizer's backend is asked directly, without offsets (1.5x faster per core
    than through transformers' wrapper; tests hold the shards to the wrapper's)."""
    backend = getattr(tokenizer, "backend_tokenizer", None) if tokenizer.is_fast else None
    if backend is None:
        return lambda batch: tokenizer(batch, add_special_tokens=False)["input_ids"]
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
    return lambda batch: [e.ids for e in encode(batch, add_special_tokens=False)]


def encode_documents(docs: Sequence[list[str]], tokenizer, dtype: np.dtype) -> EncodedChunk:
    eos = tokenizer.eos_token_id
    sentences = [s for doc in docs for s in doc]
    ids_of = _ids_of(tokenizer)
    ids: list[list[int]] = []
    for i in range(0, len(sentences), _TOKENIZE_BATCH):
        ids += ids_of(sentences[i : i + _TOKENIZE_BATCH])
    flat: list[int] = []
    sizes: list[int] = []
    doc_ends: list[int] = []
    k = 0
    for doc in docs:
        for _ in doc:
            flat += ids[k]
            flat.append(eos)
            sizes.append(len(ids[k]) + 1)
            k += 1
        flat.append(eos)  # the document boundary
        sizes.append(1)
        doc_ends.append(len(sizes))
    return EncodedChunk(
        np.asarray(flat, dtype=dtype),
        np.asarray(sizes, dtype=np.int32),
        np.asarray(doc_ends, dtype=np.int64),
    )


def encode_chunk(chunk: FileRange | list, tokenizer, dtype: np.dtype) -> EncodedChunk:
    if isinstance(chunk, FileRange):
        out = encode_documents(list(read_range(chunk)), tokenizer, dtype)
        out.nbytes = chunk.size
    else:
        out = encode_documents(chunk, tokenizer, dtype)
        out.nbytes = sum(len(s.encode("utf-8")) + 1 for doc in chunk for s in doc)
    return out


_WORKER: dict = {}


def _worker_init(tokenizer, dtype: str) -> None:
    # One process per core already: the tokenizer's own threads would only oversubscribe.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _WORKER.update(tokenizer=tokenizer, dtype=np.dtype(dtype))


def _worker_encode(chunk) -> EncodedChunk:
    return encode_chunk(chunk, _WORKER["tokenizer"], _WORKER["dtype"])


def encode_all(
    chunks: Iterable, tokenizer, dtype: np.dtype, workers: int
) -> Iterator[EncodedChunk]:
    """Encoded chunks in input order, `workers` processes at a time. At most 2 x workers chunks
    are in flight, so a streamed corpus is never read whole into memory."""
    if workers <= 1:
        for chunk in chunks:
            yield encode_chunk(chunk, tokenizer, dtype)
        return
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: the caller may hold threads (torch, a process group) that fork would copy
    # in an undefined state. A worker that dies raises BrokenProcessPool here (a Pool would hang).
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_worker_init, initargs=(tokenizer, dtype.name)
    ) as pool:
        pending: deque = deque()
        for chunk in chunks:
            pending.append(pool.submit(_worker_encode, chunk))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


# -- writing -------------------------------------------------------------------------------------
class ShardWriter:
    """Appends sentences to shard files of at most `shard_tokens` tokens each: a shard is closed
    before a sentence that would overflow it (a sentence longer than a shard gets one alone)."""

    def __init__(self, out: Path, shard_tokens: int) -> None:
        self.out, self.shard_tokens = out, shard_tokens
        self.shards: list[dict] = []
        self._f = None
        self._sizes: list[np.ndarray] = []
        self._n = 0

    def add(self, tokens: np.ndarray, sizes: np.ndarray) -> None:
        """Append sentences: `tokens` is their concatenation, `sizes` their lengths."""
        ends = np.cumsum(sizes, dtype=np.int64)
        i = 0  # sentences written
        while i < len(sizes):
            base = ends[i - 1] if i else 0
            if self._f is None or (self._n and self._n + int(sizes[i]) > self.shard_tokens):
                self._open()
            # Sentences i..j-1 fit in what is left of this shard (at least sentence i does).
            room = self.shard_tokens - self._n
            j = int(np.searchsorted(ends, base + room, side="right"))
            j = max(j, i + 1)
            self._f.write(tokens[base : ends[j - 1]].tobytes())
            self._sizes.append(np.asarray(sizes[i:j], dtype=np.int32))
            self._n += int(ends[j - 1] - base)
            i = j

    def _open(self) -> None:
        self._close_shard()
        name = f"shard_{len(self.shards):05d}"
        self._f = open(self.out / f"{name}.bin", "wb")  # noqa: SIM115  closed in _close_shard
        self.shards.append({"name": name})

    def _close_shard(self) -> None:
        if self._f is None:
            return
        self._f.close()
        meta = self.shards[-1]
        sizes = np.concatenate(self._sizes) if self._sizes else np.zeros(0, np.int32)
        np.save(self.out / f"{meta['name']}.sizes.npy", sizes.astype(np.int32))
        meta.update(tokens=self._n, sentences=len(sizes))
        self._f, self._sizes, self._n = None, [], 0

    def close(self) -> list[dict]:
        self._close_shard()
        return self.shards


class SplitWriter:
    """Both splits' shards under a temporary directory; documents numbered in corpus order."""

    def __init__(self, tmp: Path, cfg, vocab_size: int) -> None:
        self.tmp, self.cfg = tmp, cfg
        self.dtype = token_dtype(vocab_size)
        self.vocab_size = vocab_size
        self.writers = {}
        for split in ("train", "valid"):
            (tmp / split).mkdir(parents=True)
            self.writers[split] = ShardWriter(tmp / split, cfg.shard_tokens)
        self.docs = {"train": 0, "valid": 0}
        self.tokens = 0

    def add(self, chunk: EncodedChunk) -> None:
        """Append a chunk's documents, each to its split; runs of same-split documents at once."""
        first = self.docs["train"] + self.docs["valid"]
        fraction = self.cfg.valid_fraction
        valid = [is_valid_doc(first + j, fraction) for j in range(len(chunk.doc_ends))]
        sent_ends = chunk.doc_ends
        tok_ends = np.concatenate([[0], np.cumsum(chunk.sizes, dtype=np.int64)])
        j = 0
        while j < len(valid):
            k = j
            while k < len(valid) and valid[k] == valid[j]:
                k += 1
            s0 = int(sent_ends[j - 1]) if j else 0
            s1 = int(sent_ends[k - 1])
            split = "valid" if valid[j] else "train"
            self.writers[split].add(chunk.tokens[tok_ends[s0] : tok_ends[s1]], chunk.sizes[s0:s1])
            self.docs[split] += k - j
            j = k
        self.tokens += len(chunk.tokens)

    def finish(self, out: Path) -> Path:
        """Write the index and move the shards into place (atomic; a concurrent twin wins)."""
        index = {
            "format": FORMAT_VERSION,
            "dtype": self.dtype.name,
            "vocab_size": self.vocab_size,
            "documents": self.docs,
            "splits": {s: w.close() for s, w in self.writers.items()},
        }
        if self.docs["train"] == 0:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise UserError(
                f"corpus {self.cfg.corpus} holds no text to train on; it must contain text"
            )
        atomic_write_json(self.tmp / "index.json", index)
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(self.tmp, out)
        except OSError:  # another rank or run finished the same shards first
            shutil.rmtree(self.tmp, ignore_errors=True)
        return out


def shards_key(corpus_fp: str, tokenizer, cfg) -> str:
    tok_files = json.dumps(tokenizer.get_vocab(), sort_keys=True)
    spec = f"{FORMAT_VERSION}:{corpus_fp}:{tok_files}:{cfg.valid_fraction}:{cfg.shard_tokens}"
    return hashlib.sha256(spec.encode()).hexdigest()[:16]


def shards_dir(corpus_fp: str, tokenizer, cfg) -> Path:
    return Path(cfg.cache_dir) / "shards" / shards_key(corpus_fp, tokenizer, cfg)


def _tmp_dir(out: Path) -> Path:
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    return tmp


def corpus_chunks(corpus) -> tuple[Iterable, int | None]:
    """The corpus's chunks in order, and its size in bytes when known (for the ETA)."""
    if corpus.hub is not None:
        return hub_chunks(corpus.documents()), None
    chunks = plan_chunks(corpus.files)
    return chunks, sum(c.size for c in chunks)


def binarize(corpus, tokenizer, cfg, corpus_fp: str, workers: int | None = None) -> Path:
    """Tokenise the corpus into cached shards on `workers` processes (default: cfg.workers, else
    every core); return the directory holding both splits. Reuses finished shards."""
    from tqdm.auto import tqdm

    out = shards_dir(corpus_fp, tokenizer, cfg)
    if (out / "index.json").is_file():
        log.info("reusing binarised corpus %s", out)
        return out
    workers = workers or cfg.workers or default_workers()
    chunks, total = corpus_chunks(corpus)
    if isinstance(chunks, list):
        workers = min(workers, len(chunks))  # a small corpus is not worth a pool
    tmp = _tmp_dir(out)
    writer = SplitWriter(tmp, cfg, len(tokenizer))
    bar = tqdm(total=total, unit="B", unit_scale=True, desc="binarise", dynamic_ncols=True,
               mininterval=2.0)  # fmt: skip
    try:
        for enc in encode_all(chunks, tokenizer, writer.dtype, workers):
            writer.add(enc)
            bar.update(enc.nbytes)
            bar.set_postfix(tokens=f"{writer.tokens / 1e6:.1f}M", refresh=False)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        bar.close()
    log.info("binarised %d tokens with %d worker(s) into %s", writer.tokens, workers, out)
    return writer.finish(out)


# -- across nodes: parts, then one merge ---------------------------------------------------------
def parts_dir(out: Path, plan: str) -> Path:
    """Where the parts of one split of the corpus (`plan`) are encoded before the merge."""
    return out.with_name(f".{out.name}.parts") / plan


def split_parts(chunks: Sequence[FileRange], n: int) -> list[list[FileRange]]:
    """n contiguous groups of chunks of about equal bytes (fewer when there are fewer chunks)."""
    n = max(1, min(n, len(chunks)))
    total = sum(c.size for c in chunks)
    groups: list[list[FileRange]] = [[] for _ in range(n)]
    acc = 0
    for c in chunks:
        groups[min(n - 1, acc * n // max(total, 1))].append(c)
        acc += c.size
    return [g for g in groups if g]


def encode_part(
    plan: str, part: int, chunks: Sequence[FileRange], tokenizer, out: Path, workers: int
) -> Path:
    """Encode one part's chunks (on every core of this node) into PARTS/part_<k>: its token
    stream, sentence sizes and document ends, as `merge_parts` reads them. Idempotent."""
    dest = parts_dir(out, plan) / f"part_{part:05d}"
    if (dest / "done.json").is_file():
        return dest
    dtype = token_dtype(len(tokenizer))
    workers = max(1, min(workers, len(chunks)))
    tmp = _tmp_dir(dest)
    tmp.mkdir(parents=True)
    sizes, doc_ends, n_tok, n_sent, nbytes = [], [], 0, 0, 0
    with open(tmp / "tokens.bin", "wb") as f:
        for enc in encode_all(chunks, tokenizer, dtype, workers):
            f.write(enc.tokens.tobytes())
            sizes.append(enc.sizes)
            doc_ends.append(enc.doc_ends + n_sent)
            n_tok += len(enc.tokens)
            n_sent += len(enc.sizes)
            nbytes += enc.nbytes
    np.save(tmp / "sizes.npy", np.concatenate(sizes) if sizes else np.zeros(0, np.int32))
    np.save(tmp / "doc_ends.npy", np.concatenate(doc_ends) if doc_ends else np.zeros(0, np.int64))
    atomic_write_json(tmp / "done.json", {"tokens": n_tok, "bytes": nbytes, "dtype": dtype.name})
    shutil.rmtree(dest, ignore_errors=True)
    os.rename(tmp, dest)
    return dest


def merge_parts(plan: str, n_parts: int, tokenizer, cfg, out: Path) -> Path:
    """The shards of the whole corpus from its encoded parts, in order; then the parts go."""
    if (out / "index.json").is_file():
        return out
    root = parts_dir(out, plan)
    missing = [k for k in range(n_parts) if not (root / f"part_{k:05d}" / "done.json").is_file()]
    if missing:
        raise UserError(
            f"parts {missing[:5]} of {n_parts} under {root} are not encoded; run `intdim prepare` "
            "again to encode them"
        )
    tmp = _tmp_dir(out)
    writer = SplitWriter(tmp, cfg, len(tokenizer))
    for k in range(n_parts):
        d = root / f"part_{k:05d}"
        if (d / "tokens.bin").stat().st_size == 0:  # nothing to map (a part of blank lines)
            continue
        tokens = np.memmap(d / "tokens.bin", dtype=writer.dtype, mode="r")
        enc = EncodedChunk(tokens, np.load(d / "sizes.npy"), np.load(d / "doc_ends.npy"))
        writer.add(enc)
    done = writer.finish(out)
    shutil.rmtree(root.parent, ignore_errors=True)  # every plan's parts: the shards exist now
    return done
