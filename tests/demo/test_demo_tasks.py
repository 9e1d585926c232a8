"""The demo's tasks, built from synsets (demo/tasks.py) and read back through probe.tasks.

Named test_demo_tasks.py: test modules share one namespace, and tests/probe has test_tasks.py.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
from wordnet_fixture import write_wordnet

from demo.tasks import (
    TASK_BUILDERS,
    definition_or_example_task,
    example_pos_task,
    write_tasks,
)
from demo.wordnet import POS_NAMES, read_synsets
from probe.tasks import load_examples, load_task_spec


@pytest.fixture(scope="module")
def synsets(tmp_path_factory):
    return read_synsets(write_wordnet(tmp_path_factory.mktemp("wn") / "dict", per_class=30))


def _rows(folder, split):
    return [json.loads(x) for x in (folder / f"{split}.jsonl").read_text().splitlines()]


def test_every_task_loads_through_its_task_file_with_balanced_labels(synsets, tmp_path):
    dirs = write_tasks(synsets, tmp_path, n_train=60, n_eval=24)
    assert (
        set(dirs) == set(TASK_BUILDERS) == {"wordnet_example", "wordnet_pos", "wordnet_example_pos"}
    )
    for name, folder in dirs.items():
        spec = load_task_spec(name)  # configs/tasks/<name>.yaml
        data = load_examples(spec, folder)
        counts = Counter(ex.label for ex in data.train)
        assert len(counts) == spec.num_labels, name
        assert max(counts.values()) - min(counts.values()) <= 1, (name, counts)


def test_no_eval_example_shares_a_synset_with_a_train_example(synsets, tmp_path):
    dirs = write_tasks(synsets, tmp_path, n_train=200, n_eval=200)
    train_defs = set()
    for name in TASK_BUILDERS:
        train_defs |= {r["text"] for r in _rows(dirs[name], "train")}
    for name in TASK_BUILDERS:
        assert train_defs.isdisjoint(r["text"] for r in _rows(dirs[name], "eval"))


def test_same_seed_same_bytes_other_seed_other_data(synsets, tmp_path):
    a = write_tasks(synsets, tmp_path / "a", n_train=40, n_eval=20, seed=0)
    b = write_tasks(synsets, tmp_path / "b", n_train=40, n_eval=20, seed=0)
    c = write_tasks(synsets, tmp_path / "c", n_train=40, n_eval=20, seed=1)
    for name in a:
        for split in ("train.jsonl", "eval.jsonl"):
            assert (a[name] / split).read_bytes() == (b[name] / split).read_bytes()
    assert (a["wordnet_pos"] / "train.jsonl").read_bytes() != (
        c["wordnet_pos"] / "train.jsonl"
    ).read_bytes()


def test_pos_task_texts_are_definitions_without_the_word(synsets, tmp_path):
    dirs = write_tasks(synsets, tmp_path, n_train=40, n_eval=20)
    by_def = {s.definition: s for s in synsets}
    for r in _rows(dirs["wordnet_pos"], "train"):
        syn = by_def[r["text"]]
        assert POS_NAMES[syn.pos] == r["label"]


def test_example_pos_gives_an_example_of_a_synset_of_that_part_of_speech(synsets):
    import random

    rows = example_pos_task(synsets, 400, random.Random(0))
    assert Counter(r["label"] for r in rows) == {name: 60 for name in POS_NAMES.values()}
    by_example = {e: s for s in synsets for e in s.examples}
    for r in rows:
        assert POS_NAMES[by_example[r["text"]].pos] == r["label"]


def test_example_task_alternates_definitions_and_examples_of_synsets(synsets):
    import random

    rows = definition_or_example_task(synsets, 100, random.Random(0))
    assert Counter(r["label"] for r in rows) == {"definition": 50, "example": 50}
    definitions = {s.definition for s in synsets}
    examples = {e for s in synsets for e in s.examples}
    for r in rows:
        assert r["text"] in (definitions if r["label"] == "definition" else examples)
