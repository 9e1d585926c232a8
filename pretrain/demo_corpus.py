"""A small synthetic corpus, generated on the spot, so a demo or a test needs no download.

Sentences come from a tiny grammar with agreement rules, so a masked LM has something to learn
(the loss falls well below uniform within a few dozen updates). Output is in fairseq's raw layout:
one sentence per line, documents separated by a blank line.
"""

from __future__ import annotations

import random
from pathlib import Path

from intdim.io import atomic_write_text

_SUBJECTS = {
    "sg": ["the cat", "a dog", "the teacher", "my friend", "the old man", "a small bird"],
    "pl": ["the cats", "two dogs", "the teachers", "my friends", "the children", "many birds"],
}
_VERBS = {
    "sg": ["eats", "sees", "likes", "finds", "watches", "follows"],
    "pl": ["eat", "see", "like", "find", "watch", "follow"],
}
_OBJECTS = ["the apple", "a red ball", "the river", "some bread", "the green house", "a letter"]
_PLACES = ["in the park", "at home", "near the school", "by the sea", "after dinner", "every day"]


def sentence(rng: random.Random) -> str:
    number = rng.choice(("sg", "pl"))
    words = [rng.choice(_SUBJECTS[number]), rng.choice(_VERBS[number]), rng.choice(_OBJECTS)]
    if rng.random() < 0.6:
        words.append(rng.choice(_PLACES))
    return " ".join(words).capitalize() + "."


def demo_text(n_documents: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    docs = []
    for _ in range(n_documents):
        docs.append("\n".join(sentence(rng) for _ in range(rng.randint(2, 12))))
    return "\n\n".join(docs) + "\n"


def write_demo_corpus(path: str | Path, n_documents: int = 400, seed: int = 0) -> Path:
    path = Path(path)
    atomic_write_text(path, demo_text(n_documents, seed))
    return path
