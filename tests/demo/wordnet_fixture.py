"""A small WordNet dict directory in the real data.* format (wndb(5)), written by the tests.

Enough synsets for every demo task class: 4 parts of speech (nouns in 7 lexicographer files),
`per_class` synsets each (twice that for the others), every one with a distinct definition and
an example sentence that holds one of its lemmas.
"""

from __future__ import annotations

from pathlib import Path

from demo.wordnet import LEXNAMES

LICENSE = "  1 This software and database is being provided to you, the LICENSEE, by  \n"
_WORDS = [
    "red",
    "green",
    "blue",
    "small",
    "large",
    "quiet",
    "loud",
    "early",
    "late",
    "bright",
    "dark",
    "warm",
    "cold",
    "soft",
]


def _line(offset: int, lexname: str, ss_type: str, lemmas: list[str], gloss: str) -> str:
    words = " ".join(f"{lemma} 0" for lemma in lemmas)
    return (
        f"{offset:08d} {LEXNAMES.index(lexname):02d} {ss_type} {len(lemmas):02x} {words} "
        f"000 | {gloss}  \n"
    )


def write_wordnet(root: Path, per_class: int = 12) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    files = {"noun": [], "verb": [], "adj": [], "adv": []}
    offset = 1000
    topics = ("animal", "artifact", "body", "food", "person", "plant", "act")
    for t in topics:
        for i in range(per_class):
            w = _WORDS[i % len(_WORDS)]
            gloss = f'a {w} kind of {t} that is number {i} here; "the {t} {i} was {w}"'
            files["noun"].append(_line(offset, f"noun.{t}", "n", [f"{t}_{i}", f"{t}{i}"], gloss))
            offset += 100
    for i in range(per_class * 2):
        w = _WORDS[i % len(_WORDS)]
        files["verb"].append(
            _line(
                offset,
                "verb.motion",
                "v",
                [f"move_{i}"],
                f'to move in a {w} way number {i}; "they Move {i} today"',
            )  # fmt: skip
        )
        offset += 100
        ss_type = "s" if i % 3 == 0 else "a"
        files["adj"].append(
            _line(
                offset,
                "adj.all",
                ss_type,
                [f"tall_{i}(a)"],
                f'having a {w} size of degree {i}; "a tall {i} tree"',
            )  # fmt: skip
        )
        offset += 100
        files["adv"].append(
            _line(
                offset,
                "adv.all",
                "r",
                [f"fast_{i}"],
                f'in a {w} manner of speed {i} now; "go fast {i}"',
            )
        )
        offset += 100
    for kind, lines in files.items():
        (root / f"data.{kind}").write_text(LICENSE + "".join(lines), encoding="utf-8")
    return root
