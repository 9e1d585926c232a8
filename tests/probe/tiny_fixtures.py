"""Tiny checkpoints and tasks for the probe tests, all built in the test (nothing downloaded).

The task is learnable by construction: label 1 exactly when a marker word appears (for pairs: in
the second sentence), so full fine-tuning beats the majority class and a d90 exists.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
    PreTrainedTokenizerFast,
    RobertaConfig,
    RobertaForMaskedLM,
    RobertaForSequenceClassification,
)

MARKER = "zebra"
WORDS = [f"w{i}" for i in range(40)]
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]


def save_tiny_checkpoint(
    path: Path, seed: int = 0, pretrain_steps: int = 45, poison: bool = False
) -> Path:
    """A RoBERTa MLM checkpoint (hidden 32, 2 layers) with a WordLevel tokenizer, in the
    layout `from_pretrained` reads.

    "Pretraining" is a few steps of marker classification, whose head is then dropped: the
    body starts to encode the marker, so small subspaces can find it (a randomly initialised
    body needs full fine-tuning). 45 steps leave it half learned: d90 lands inside a small
    range rather than at its bottom. `poison`: a NaN weight, so every loss is NaN."""
    vocab = {t: i for i, t in enumerate(SPECIALS + WORDS + [MARKER])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        cls_token="<s>",
        sep_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    torch.manual_seed(seed)
    cfg = RobertaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    model = RobertaForMaskedLM(cfg)
    if pretrain_steps:
        _pretrain(model, fast, cfg, pretrain_steps, seed)
    if poison:
        with torch.no_grad():
            model.roberta.embeddings.word_embeddings.weight[:, 0] = float("nan")
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return path


def _pretrain(model, tokenizer, cfg, steps: int, seed: int) -> None:
    clf = RobertaForSequenceClassification(cfg)
    clf.roberta.load_state_dict(model.roberta.state_dict())
    rng = random.Random(seed + 1)
    opt = torch.optim.AdamW(clf.parameters(), lr=1e-3)
    clf.train()
    for _ in range(steps):
        labels = [rng.random() < 0.5 for _ in range(16)]
        enc = tokenizer([_sentence(rng, y) for y in labels], padding=True, return_tensors="pt")
        clf(**enc, labels=torch.tensor(labels, dtype=torch.long)).loss.backward()
        opt.step()
        opt.zero_grad()
    model.roberta.load_state_dict(clf.roberta.state_dict())


def _sentence(rng: random.Random, marked: bool, marker: str = MARKER) -> str:
    words = rng.choices([w for w in WORDS if w != marker], k=rng.randint(4, 8))
    if marked:
        words.insert(rng.randrange(len(words) + 1), marker)
    return " ".join(words)


def write_marker_task(
    folder: Path, task: str, n_train: int = 200, n_eval: int = 100, seed=0, marker: str = MARKER
) -> Path:
    """GLUE-layout train.tsv/dev.tsv for sst2 (one sentence) or mrpc (pairs, F1 reported)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train.tsv", n_train), ("dev.tsv", n_eval)):
        if task == "sst2":
            rows = ["sentence\tlabel"]
            for _ in range(n):
                y = rng.random() < 0.5
                rows.append(f"{_sentence(rng, y, marker)}\t{int(y)}")
        elif task == "mrpc":
            rows = ["Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"]
            for i in range(n):
                y = rng.random() < 0.5
                a, b = _sentence(rng, False, marker), _sentence(rng, y, marker)
                rows.append(f"{int(y)}\t{i}\t{i}\t{a}\t{b}")
        else:
            raise ValueError(task)
        (folder / name).write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder
