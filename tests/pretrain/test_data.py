"""Corpus reading, binarisation, caching, packing and the training order."""

from __future__ import annotations

import json

import numpy as np
import pytest

from intdim.errors import UserError
from pretrain.config import DataConfig, TokenizerConfig
from pretrain.data import BlockStream, PackedBlocks, binarize, pack_complete, resolve_corpus
from pretrain.tokenizer import build_tokenizer


def _prepared(corpus, cache_dir, **data):
    cfg = DataConfig(corpus=str(corpus), cache_dir=str(cache_dir), valid_fraction=0.05, **data)
    c = resolve_corpus(cfg)
    fp = c.fingerprint()
    tok = build_tokenizer(TokenizerConfig(vocab_size=300), c.lines, fp, cache_dir, 64)
    return cfg, c, tok, binarize(c, tok, cfg, fp)


def test_pack_complete_keeps_every_token_once_and_fills_blocks():
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 40, size=500)
    sizes[[7, 100, 333]] = [95, 200, 64]  # longer than a block: cut into pieces
    block = 63
    blocks = pack_complete(sizes, block)
    # Contiguous, non-overlapping, covering [0, total): nothing lost or duplicated.
    assert blocks[0, 0] == 0 and blocks[-1, 1] == sizes.sum()
    assert np.array_equal(blocks[1:, 0], blocks[:-1, 1])
    lengths = blocks[:, 1] - blocks[:, 0]
    assert lengths.max() <= block and lengths.min() > 0
    # Blocks end only on sentence boundaries, except inside an over-long sentence.
    ends = set(np.cumsum(sizes).tolist())
    long_spans = []
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    for s, n in zip(starts, sizes, strict=True):
        if n > block:
            long_spans.append((s, s + n))
    for _, b in blocks:
        assert b in ends or any(a < b < e for a, e in long_spans)
    # Greedy fill: a block of whole sentences is closed only when the next sentence does not fit.
    sent_at = {int(s): int(n) for s, n in zip(starts, sizes, strict=True)}
    for a, b in blocks[:-1]:
        if a in sent_at and b in sent_at and sent_at[b] <= block:
            assert (b - a) + sent_at[b] > block


def test_shards_round_trip_the_token_stream(corpus, cache_dir):
    cfg, c, tok, root = _prepared(corpus, cache_dir)
    index = json.loads((root / "index.json").read_text())
    assert index["dtype"] == "uint16"  # 300 tokens fit
    blocks = PackedBlocks(root, "train", 64, tok.bos_token_id)
    stream = np.concatenate([blocks[i][1:] for i in range(len(blocks))])
    assert all(blocks[i][0] == tok.bos_token_id for i in range(len(blocks)))
    assert max(len(blocks[i]) for i in range(len(blocks))) <= 64
    # Re-encode the train documents the same way: sentence + </s>, a lone </s> per document.
    valid_docs = index["documents"]["valid"]
    assert valid_docs > 0 and index["documents"]["train"] > 0
    expected_total = sum(m["tokens"] for m in index["splits"]["train"])
    assert len(stream) == expected_total == blocks.n_tokens
    first_doc = next(c.documents())
    ids = tok(first_doc, add_special_tokens=False)["input_ids"]
    want = [t for s in ids for t in (*s, tok.eos_token_id)] + [tok.eos_token_id]
    valid = PackedBlocks(root, "valid", 64, tok.bos_token_id)
    train_prefix = stream[: len(want)].tolist()
    valid_prefix = np.concatenate([valid[i][1:] for i in range(len(valid))])[: len(want)].tolist()
    assert want in (train_prefix, valid_prefix)


def test_binarised_corpus_is_cached_and_reused(corpus, cache_dir, monkeypatch):
    _, _, _, root = _prepared(corpus, cache_dir)
    import pretrain.shards as shards

    def boom(*a, **k):
        raise AssertionError("the cached shards should have been reused")

    monkeypatch.setattr(shards, "SplitWriter", boom)
    _, _, _, again = _prepared(corpus, cache_dir)
    assert again == root


def test_directory_and_glob_corpora(tmp_path, corpus):
    d = tmp_path / "texts"
    d.mkdir()
    (d / "a.txt").write_text("one line.\nsecond line.\n\nnew doc.\n")
    (d / "b.txt").write_text("other doc.\n")
    by_dir = resolve_corpus(DataConfig(corpus=str(d)))
    assert [len(doc) for doc in by_dir.documents()] == [2, 1, 1]
    by_glob = resolve_corpus(DataConfig(corpus=f"{d}/*.txt,{corpus}"))
    assert len(by_glob.files) == 3


@pytest.mark.parametrize(
    "spec, message",
    [("{tmp}/missing.txt", "does not exist"), ("{tmp}/empty.txt", "is empty"),
     ("{tmp}/none*.txt", "matches no file"), ("", "not set")],
)  # fmt: skip
def test_bad_corpus_is_a_user_error(tmp_path, spec, message):
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(UserError, match=message):
        resolve_corpus(DataConfig(corpus=spec.format(tmp=tmp_path)))


def test_block_stream_is_a_permutation_per_epoch_and_resumes_exactly():
    s = BlockStream(10, seed=3)
    first = s.take(25)
    epoch0 = [i for e, i in first if e == 0]
    assert sorted(epoch0) == list(range(10)) and [e for e, _ in first[20:]] == [2] * 5
    resumed = BlockStream(10, seed=3, consumed=7)
    assert resumed.take(18) == first[7:]


def test_sentencepiece_tokenizer_trains_and_reloads(corpus, tmp_path):
    from transformers import AutoTokenizer

    c = resolve_corpus(DataConfig(corpus=str(corpus)))
    cfg = TokenizerConfig(kind="sentencepiece", vocab_size=120)
    tok = build_tokenizer(cfg, c.lines, c.fingerprint(), tmp_path, 64)
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id) == (0, 1, 2)
    again = AutoTokenizer.from_pretrained(next((tmp_path / "tokenizers").iterdir()))
    text = "The cat eats the apple."
    assert again(text)["input_ids"] == tok(text)["input_ids"]
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]).strip() == text
