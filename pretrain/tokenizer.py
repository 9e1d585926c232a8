"""The tokenizer: trained on the corpus (byte-level BPE as RoBERTa, or a sentencepiece-style
unigram model) or an existing Hugging Face tokenizer, always returned as a transformers tokenizer
that `AutoTokenizer.from_pretrained` can reload from a checkpoint.

Trained tokenizers use RoBERTa's special-token ids (<s>=0, <pad>=1, </s>=2, <unk>=3; <mask> last)
and are cached under the data cache by a hash of the corpus fingerprint and the tokenizer config,
so a rerun or a second run on the same corpus does not retrain.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from intdim.errors import UserError
from pretrain.config import TokenizerConfig

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
# Byte-level BPE must at least hold the 256 byte symbols and the special tokens.
MIN_BPE_VOCAB = 256 + len(SPECIALS)
MIN_UNIGRAM_VOCAB = 64


def tokenizer_key(cfg: TokenizerConfig, corpus_fingerprint: str) -> str:
    spec = json.dumps(
        {
            "kind": cfg.kind,
            "vocab_size": cfg.vocab_size,
            "min_frequency": cfg.min_frequency,
            "name_or_path": cfg.name_or_path,
            "corpus": corpus_fingerprint if cfg.kind != "pretrained" else "",
        },
        sort_keys=True,
    )
    return hashlib.sha256(spec.encode()).hexdigest()[:16]


def check_vocab_size(cfg: TokenizerConfig) -> None:
    floor = MIN_BPE_VOCAB if cfg.kind == "bpe" else MIN_UNIGRAM_VOCAB
    if cfg.kind != "pretrained" and cfg.vocab_size < floor:
        raise UserError(
            f"tokenizer.vocab_size={cfg.vocab_size} is too small for a {cfg.kind} tokenizer; "
            f"use at least {floor}"
        )


def tokenizer_dir(cfg: TokenizerConfig, corpus_fingerprint: str, cache_dir: Path) -> Path:
    """Where the tokenizer of this corpus and config is cached."""
    return cache_dir / "tokenizers" / tokenizer_key(cfg, corpus_fingerprint)


def cached_tokenizer(cfg: TokenizerConfig, corpus_fingerprint: str, cache_dir: Path):
    """The tokenizer `build_tokenizer` would return, if it is in the cache; else None."""
    from transformers import AutoTokenizer

    out = tokenizer_dir(cfg, corpus_fingerprint, cache_dir)
    if not (out / "tokenizer_config.json").is_file():
        return None
    return AutoTokenizer.from_pretrained(str(out))


def build_tokenizer(
    cfg: TokenizerConfig,
    texts: Callable[[], Iterable[str]],
    corpus_fingerprint: str,
    cache_dir: Path,
    max_length: int,
    total_bytes: int | None = None,
):
    """Load the cached tokenizer for this corpus, or train (or fetch) and cache it. Training
    shows a bar over the corpus's `total_bytes` (rate and ETA) while it reads the text."""
    from transformers import AutoTokenizer

    check_vocab_size(cfg)
    out = tokenizer_dir(cfg, corpus_fingerprint, cache_dir)
    if not (out / "tokenizer_config.json").is_file():
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tok = _make(cfg, lambda: _progress(texts(), total_bytes), max_length)
        tok.save_pretrained(tmp)
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(tmp, out)
        except OSError:  # another process cached the same tokenizer first
            shutil.rmtree(tmp, ignore_errors=True)
    tok = AutoTokenizer.from_pretrained(str(out))
    _check_specials(tok, cfg)
    return tok


def _make(cfg: TokenizerConfig, texts: Callable[[], Iterable[str]], max_length: int):
    if cfg.kind == "pretrained":
        from transformers import AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(cfg.name_or_path)
        except Exception as e:
            raise UserError(
                f"cannot load tokenizer {cfg.name_or_path!r}: {str(e).splitlines()[0]}; "
                "pass a local tokenizer directory"
            ) from None
        tok.model_max_length = max_length
        return tok
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if cfg.kind == "bpe":
        backend = Tokenizer(models.BPE())
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=cfg.vocab_size,
            min_frequency=cfg.min_frequency,
            special_tokens=SPECIALS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
    else:  # sentencepiece-style unigram with the metaspace (U+2581) word marker
        backend = Tokenizer(models.Unigram())
        backend.pre_tokenizer = pre_tokenizers.Metaspace()
        backend.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(
            vocab_size=cfg.vocab_size, special_tokens=SPECIALS, unk_token="<unk>"
        )
    backend.train_from_iterator(_nonempty(texts()), trainer=trainer)
    backend.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        mask_token="<mask>",
        cls_token="<s>",
        sep_token="</s>",
        model_max_length=max_length,
    )


def _progress(lines: Iterable[str], total_bytes: int | None) -> Iterator[str]:
    """The lines, counted in bytes on a bar. The trainer then computes its merges (or pieces)
    with its own bar."""
    from tqdm.auto import tqdm

    with tqdm(total=total_bytes, unit="B", unit_scale=True, desc="tokenizer: read corpus",
              dynamic_ncols=True, mininterval=2.0) as bar:  # fmt: skip
        n = 0
        for line in lines:
            n += len(line) + 1  # characters: near enough to bytes for an ETA, and cheap
            if n >= 1 << 20:
                bar.update(n)
                n = 0
            yield line
        bar.update(n)


def _nonempty(lines: Iterable[str]) -> Iterator[str]:
    return (line for line in lines if line.strip())


def _check_specials(tok, cfg: TokenizerConfig) -> None:
    missing = [
        name
        for name in ("bos_token_id", "eos_token_id", "pad_token_id", "mask_token_id")
        if getattr(tok, name, None) is None
    ]
    if missing:
        raise UserError(
            f"tokenizer {cfg.name_or_path or cfg.kind!r} lacks {', '.join(missing)}; "
            "a masked LM needs <s>, </s>, <pad> and <mask> tokens"
        )
