"""Binarisation on every core: the same shards, byte for byte, as one process reading the corpus
in order; chunking at document boundaries; parts encoded apart and merged; hub corpora streamed."""

from __future__ import annotations

import filecmp
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from intdim.errors import UserError
from pretrain import shards
from pretrain.config import DataConfig, TokenizerConfig
from pretrain.data import pack_complete, resolve_corpus
from pretrain.tokenizer import build_tokenizer


# -- the reference: the one-process binarisation as it was before workers (kept frozen here) ----
def _reference_binarize(corpus, tokenizer, cfg, out: Path) -> None:
    dtype = shards.token_dtype(len(tokenizer))
    eos = tokenizer.eos_token_id
    state = {}
    for split in ("train", "valid"):
        (out / split).mkdir(parents=True)
        state[split] = {"shards": [], "f": None, "sizes": [], "n": 0}

    def close(st):
        if st["f"] is not None:
            st["f"].close()
            meta = st["shards"][-1]
            np.save(out / split_of[id(st)] / f"{meta['name']}.sizes.npy",
                    np.asarray(st["sizes"], dtype=np.int32))  # fmt: skip
            meta.update(tokens=st["n"], sentences=len(st["sizes"]))
            st["f"], st["sizes"], st["n"] = None, [], 0

    split_of = {id(st): s for s, st in state.items()}

    def add(split, ids):
        st = state[split]
        if st["f"] is None or (st["n"] and st["n"] + len(ids) > cfg.shard_tokens):
            close(st)
            name = f"shard_{len(st['shards']):05d}"
            st["f"] = open(out / split / f"{name}.bin", "wb")  # noqa: SIM115
            st["shards"].append({"name": name})
        st["f"].write(np.asarray(ids, dtype=dtype).tobytes())
        st["sizes"].append(len(ids))
        st["n"] += len(ids)

    docs = {"train": 0, "valid": 0}
    for i, doc in enumerate(corpus.documents()):
        h = hashlib.blake2b(f"0:{i}".encode(), digest_size=8).digest()
        split = "valid" if int.from_bytes(h, "little") / 2**64 < cfg.valid_fraction else "train"
        docs[split] += 1
        for ids in tokenizer(doc, add_special_tokens=False)["input_ids"]:
            add(split, list(ids) + [eos])
        add(split, [eos])
    for st in state.values():
        close(st)
    index = {"format": 1, "dtype": dtype.name, "vocab_size": len(tokenizer), "documents": docs,
             "splits": {s: st["shards"] for s, st in state.items()}}  # fmt: skip
    (out / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")


def _same_tree(a: Path, b: Path) -> None:
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for f in files:
        if f.name == "index.json":  # the same content; whitespace is the writer's business
            assert json.loads((a / f).read_text()) == json.loads((b / f).read_text())
        else:
            assert filecmp.cmp(a / f, b / f, shallow=False), f


@pytest.fixture(scope="module")
def awkward_corpus(tmp_path_factory, corpus) -> Path:
    """Files that test every way a document boundary can look: CRLF and lone CR line ends,
    whitespace-only lines, runs of blank lines, no final newline, invalid UTF-8, a file with
    no blank line at all, and an empty file."""
    d = tmp_path_factory.mktemp("awkward")
    text = corpus.read_text()
    (d / "a_plain.txt").write_text(text)
    (d / "b_crlf.txt").write_bytes(text.replace("\n", "\r\n").encode())
    mixed = text.replace("\n\n", "\n  \t \n\n\n", 7).replace("\n", "\r", 40)
    (d / "c_mixed.txt").write_bytes(mixed.encode() + b"\xff\xfe broken \xc3 bytes\nlast line")
    (d / "d_one_doc.txt").write_text(" ".join(text.split("\n")[:300]).replace(".", ".\n"))
    (d / "e_empty.txt").write_text("")
    return d


@pytest.fixture(scope="module", params=["bpe", "sentencepiece"])
def tokenizer(awkward_corpus, tmp_path_factory, request):
    c = resolve_corpus(DataConfig(corpus=str(awkward_corpus)))
    cache = tmp_path_factory.mktemp("tok")
    cfg = TokenizerConfig(kind=request.param, vocab_size=300)
    return build_tokenizer(cfg, c.lines, c.fingerprint(), cache, 64)


def test_chunks_end_at_document_boundaries_and_read_as_the_whole_file(awkward_corpus):
    c = resolve_corpus(DataConfig(corpus=str(awkward_corpus)))
    chunks = shards.plan_chunks(c.files, chunk_bytes=700)
    assert len(chunks) > 20
    for path in c.files:  # each file covered exactly, in order
        mine = [r for r in chunks if r.path == str(path)]
        assert [r.start for r in mine[1:]] == [r.end for r in mine[:-1]]
        assert (mine[0].start, mine[-1].end) == (0, path.stat().st_size) if mine else True
    one_doc = [r for r in chunks if r.path.endswith("d_one_doc.txt")]
    assert len(one_doc) == 1  # no blank line: no place to cut
    docs = [d for r in chunks for d in shards.read_range(r)]
    assert docs == list(c.documents())


@pytest.mark.parametrize("workers", [1, 2])
def test_shards_are_byte_identical_to_one_process_reading_in_order(
    awkward_corpus, tokenizer, tmp_path, monkeypatch, workers
):
    cfg = DataConfig(corpus=str(awkward_corpus), cache_dir=str(tmp_path / "cache"),
                     valid_fraction=0.2, shard_tokens=1024)  # fmt: skip
    c = resolve_corpus(cfg)
    monkeypatch.setattr(shards, "CHUNK_BYTES", 1500)  # many chunks, so the order is at stake
    got = shards.binarize(c, tokenizer, cfg, c.fingerprint(), workers=workers)
    ref = tmp_path / "ref"
    _reference_binarize(c, tokenizer, cfg, ref)
    index = json.loads((ref / "index.json").read_text())
    assert len(index["splits"]["train"]) > 3 and index["documents"]["valid"] > 0  # rolls, splits
    _same_tree(ref, got)


def test_parts_encoded_apart_then_merged_are_the_same_shards(awkward_corpus, tokenizer, tmp_path):
    cfg = DataConfig(corpus=str(awkward_corpus), cache_dir=str(tmp_path / "cache"),
                     valid_fraction=0.2, shard_tokens=1024)  # fmt: skip
    c = resolve_corpus(cfg)
    out = shards.shards_dir(c.fingerprint(), tokenizer, cfg)
    groups = shards.split_parts(shards.plan_chunks(c.files, chunk_bytes=2000), 3)
    assert len(groups) == 3
    for k in (2, 0, 1):  # parts finish in any order
        shards.encode_part("p", k, groups[k], tokenizer, out, workers=1)
    with pytest.raises(UserError, match="not encoded"):
        shards.merge_parts("p", 4, tokenizer, cfg, out)
    merged = shards.merge_parts("p", 3, tokenizer, cfg, out)
    assert not shards.parts_dir(out, "p").exists()  # the parts go once the shards exist
    ref = tmp_path / "ref"
    _reference_binarize(c, tokenizer, cfg, ref)
    _same_tree(ref, merged)


def test_pack_complete_is_the_greedy_sentence_by_sentence_packing():
    def greedy(sizes, block):
        out, start, pos = [], 0, 0
        for size in sizes.tolist():
            if size > block:
                if pos > start:
                    out.append((start, pos))
                out += [(a, min(a + block, pos + size)) for a in range(pos, pos + size, block)]
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

    rng = np.random.default_rng(1)
    for _ in range(200):
        block = int(rng.integers(1, 50))
        sizes = rng.integers(1, 70, size=int(rng.integers(0, 120)))
        assert np.array_equal(pack_complete(sizes, block), greedy(sizes, block))


def test_a_hub_corpus_is_streamed_and_gives_the_shards_its_text_files_give(
    tmp_path, corpus, tokenizer, monkeypatch
):
    datasets = pytest.importorskip("datasets")
    docs = corpus.read_text().split("\n\n")
    ds_dir = tmp_path / "hub_ds"
    ds_dir.mkdir()
    with open(ds_dir / "train.jsonl", "w") as f:
        for d in docs:
            f.write(json.dumps({"text": d, "id": 1}) + "\n")
    calls = []
    real = datasets.load_dataset

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", spy)
    monkeypatch.setattr(shards, "HUB_CHUNK_CHARS", 2000)
    cfg = DataConfig(corpus=f"hf:{ds_dir}", cache_dir=str(tmp_path / "c"), valid_fraction=0.2)
    hub = resolve_corpus(cfg)
    got = shards.binarize(hub, tokenizer, cfg, hub.fingerprint(), workers=1)
    assert calls and all(k.get("streaming") is True for k in calls)
    text_cfg = DataConfig(corpus=str(corpus), cache_dir=str(tmp_path / "t"), valid_fraction=0.2)
    text = resolve_corpus(text_cfg)
    _same_tree(shards.binarize(text, tokenizer, text_cfg, text.fingerprint(), workers=1), got)
    bad = DataConfig(corpus=f"hf:{ds_dir}", cache_dir=str(tmp_path / "c2"), text_field="body")
    with pytest.raises(UserError, match="no column 'body'.*text, id"):
        list(resolve_corpus(bad).documents())


def test_a_hub_corpus_is_keyed_by_its_commit_and_found_offline_after_one_online_look(
    tmp_path, monkeypatch
):
    import huggingface_hub

    answers = {"sha": "abc123", "online": True}

    class FakeApi:
        def dataset_info(self, name):
            if not answers["online"]:
                raise OSError("offline: cannot reach the hub")
            return type("Info", (), {"sha": answers["sha"]})()

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    cfg = DataConfig(corpus="hf:someone/books", cache_dir=str(tmp_path / "c"))
    online = resolve_corpus(cfg).fingerprint()
    answers["sha"] = "def456"  # a new commit of the dataset: a new key
    newer = resolve_corpus(cfg).fingerprint()
    assert newer != online
    answers["online"] = False  # offline: the commit seen last
    assert resolve_corpus(cfg).fingerprint() == newer
    never = DataConfig(corpus="hf:someone/other", cache_dir=str(tmp_path / "c"))
    with pytest.raises(UserError, match="cannot look up dataset 'someone/other'.*intdim prepare"):
        resolve_corpus(never).fingerprint()
