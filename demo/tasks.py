"""The demo's three downstream tasks, built from WordNet's synsets, from easy to hard.

    write_tasks(synsets, out_dir, n_train=2000, n_eval=500, seed=0)
    # out_dir/<task>/train.jsonl and eval.jsonl, read through configs/tasks/wordnet_*.yaml

- `wordnet_example` (easy): is this text a definition ("a member of the genus Canis") or an
  example sentence ("the dog barked all night")? 2 balanced classes.
- `wordnet_pos` (medium): which part of speech does this definition define? The definition
  alone ("move fast by using one's feet" -> verb); 4 balanced classes.
- `wordnet_example_pos` (hard): which part of speech is the word this example sentence
  illustrates? The sentence alone, the word unmarked ("the dog barked all night" -> noun,
  "they barked orders" -> verb); 4 balanced classes.

Synsets are split into train and eval pools by a seeded hash of their offset before any task is
drawn, so no eval example of any task shares a synset with a train example of any task.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from pathlib import Path

from demo.wordnet import POS_NAMES, Synset
from intdim.io import atomic_write_text

Example = dict  # {"text": ..., "label": ...}, one line of a task's jsonl


def _pool(syn: Synset, seed: int, eval_share: float) -> str:
    h = hashlib.sha256(f"{seed}:{syn.offset}:{syn.pos}".encode()).digest()
    return "eval" if int.from_bytes(h[:8], "big") / 2**64 < eval_share else "train"


def _balanced(
    groups: dict[str, list[Synset]],
    n: int,
    rng: random.Random,
    text: Callable[[Synset], str] = lambda s: s.definition,
) -> list[Example]:
    """n examples drawn evenly from every group (as many as the smallest group allows)."""
    per = min(n // len(groups), *(len(g) for g in groups.values()))
    out = []
    for label, group in groups.items():
        out += [{"text": text(s), "label": label} for s in rng.sample(group, per)]
    rng.shuffle(out)
    return out


def pos_task(synsets: list[Synset], n: int, rng: random.Random) -> list[Example]:
    groups = {name: [s for s in synsets if s.pos == p] for p, name in POS_NAMES.items()}
    return _balanced(groups, n, rng)


def example_pos_task(synsets: list[Synset], n: int, rng: random.Random) -> list[Example]:
    """One example sentence per synset drawn, labelled with the synset's part of speech."""
    groups = {
        name: [s for s in synsets if s.pos == p and s.examples] for p, name in POS_NAMES.items()
    }
    return _balanced(groups, n, rng, text=lambda s: rng.choice(s.examples))


def definition_or_example_task(synsets: list[Synset], n: int, rng: random.Random) -> list[Example]:
    """Synsets with examples; every other one gives its definition, the rest an example."""
    with_examples = [s for s in synsets if s.examples]
    out = []
    for i, syn in enumerate(rng.sample(with_examples, min(n, len(with_examples)))):
        if i % 2 == 0:
            out.append({"text": syn.definition, "label": "definition"})
        else:
            out.append({"text": rng.choice(syn.examples), "label": "example"})
    rng.shuffle(out)
    return out


TASK_BUILDERS: dict[str, Callable[[list[Synset], int, random.Random], list[Example]]] = {
    "wordnet_example": definition_or_example_task,
    "wordnet_pos": pos_task,
    "wordnet_example_pos": example_pos_task,
}


def write_tasks(
    synsets: list[Synset],
    out_dir: str | Path,
    n_train: int = 2000,
    n_eval: int = 500,
    seed: int = 0,
    eval_share: float = 0.2,
) -> dict[str, Path]:
    """Every task's train.jsonl and eval.jsonl under out_dir/<task>/. Deterministic in `seed`."""
    pools: dict[str, list[Synset]] = {"train": [], "eval": []}
    for syn in synsets:
        pools[_pool(syn, seed, eval_share)].append(syn)
    dirs = {}
    for name, build in TASK_BUILDERS.items():
        folder = Path(out_dir) / name
        for split, n in (("train", n_train), ("eval", n_eval)):
            rng = random.Random(f"{seed}:{name}:{split}")
            rows = build(pools[split], n, rng)
            text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
            atomic_write_text(folder / f"{split}.jsonl", text)
        dirs[name] = folder
    return dirs
