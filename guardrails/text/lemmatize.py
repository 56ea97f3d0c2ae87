"""Noun lemmatisation for the blocklist's second pass, without NLTK's data loader.

With WordNet's plain files (``index.noun`` + ``noun.exc``, from a folder or from ``wordnet.zip``) the
result equals ``nltk.stem.WordNetLemmatizer().lemmatize(word)`` (default ``pos="n"``): candidates are the
word plus its exception-list forms (if it is listed) or the outputs of the noun detachment rules
applied once, filtered by WordNet's noun lemmas, shortest wins. Reading the files ourselves avoids
NLTK's ``punkt_tab``/``wordnet`` downloads and its refusal of symlinked data files.

Whenever WordNet knows the word, its answer is used as it is (the reference behaviour): "lens" stays
"lens" and "heroines" becomes "heroine", even though "len" and "heroin" are blocklist words. A word is
known when the noun lookup finds a lemma or when WordNet lists it under any part of speech (verb, adjective,
adverb: index files and exception lists, with morphy's detachment rules), so "assess" or "penetrates" are
not treated as plurals either.

Only for words WordNet does not know (slang, invented or obfuscated words), and for every word when no
WordNet files are present, the data-free fallback applies: the noun detachment rules (plus ``ves→fe``)
and a small table of irregular plurals, where a candidate is taken only when it is itself a blocklist word
("blocklist-aware"; otherwise the word is kept as is) and only when the word is that candidate's regular
plural spelling (no ``es→""``: "stripes" is not the plural of "strip"; a word ending in "ss" is not a plural).
Without WordNet a short table of common words that only look like plurals of built-in list words
("lens", "penetrates") is kept unchanged as well. The result differs from plain NLTK (by blocking more) only
for words WordNet does not know.
"""

from __future__ import annotations

import zipfile
from collections.abc import Container, Iterable, Mapping
from pathlib import Path

# WordNet's noun detachment rules (suffix, replacement), as used by morphy.
NOUN_RULES: tuple[tuple[str, str], ...] = (
    ("s", ""),
    ("ses", "s"),
    ("ves", "f"),
    ("xes", "x"),
    ("zes", "z"),
    ("ches", "ch"),
    ("shes", "sh"),
    ("men", "man"),
    ("ies", "y"),
)
# morphy's rules for the other parts of speech: only used to tell whether WordNet knows a word at all.
VERB_RULES: tuple[tuple[str, str], ...] = (
    ("s", ""),
    ("ies", "y"),
    ("es", "e"),
    ("es", ""),
    ("ed", "e"),
    ("ed", ""),
    ("ing", "e"),
    ("ing", ""),
)
ADJ_RULES: tuple[tuple[str, str], ...] = (("er", ""), ("est", ""), ("er", "e"), ("est", "e"))
# Extra rule used only by the fallback (WordNet lists these words in noun.exc instead). There is
# deliberately no ``es→""``: it turns "stripes", "spices", "spaces", "heroines" into "strip", "spic",
# "spac", "heroin" (the regular plurals of those end in "s" or "es" after s/x/z/ch/sh, which other rules cover).
_FALLBACK_RULES: tuple[tuple[str, str], ...] = (("ves", "fe"),)
_FALLBACK_IRREGULAR: dict[str, tuple[str, ...]] = {
    "children": ("child",),
    "women": ("woman",),
    "men": ("man",),
    "people": ("person",),
    "feet": ("foot",),
    "teeth": ("tooth",),
    "geese": ("goose",),
    "mice": ("mouse",),
    "lice": ("louse",),
    "oxen": ("ox",),
    "dice": ("die",),
    "knives": ("knife",),
    "wives": ("wife",),
    "lives": ("life",),
}

# Common words that the fallback rules would reduce to a word of better_profanity's built-in list although
# they are no plural of it ("lens" → "len", "penetrates" → "penetrate"); found by running the fallback over an
# English word list. Only consulted when no WordNet files are present (WordNet knows all of them).
_FALLBACK_KEEP = frozenset({"lens", "cummings", "erects", "niggles", "penetrates", "menstruates"})

WORDNET_FILES = ("index.noun", "noun.exc")
# Read when present (every WordNet release has them): they tell whether WordNet knows a non-noun word.
OTHER_POS_FILES: dict[str, tuple[str, str, tuple[tuple[str, str], ...]]] = {
    "verb": ("index.verb", "verb.exc", VERB_RULES),
    "adj": ("index.adj", "adj.exc", ADJ_RULES),
    "adv": ("index.adv", "adv.exc", ()),
}
_OPTIONAL_FILES = tuple(name for index, exc, _rules in OTHER_POS_FILES.values() for name in (index, exc))


class WordNetError(ValueError):
    """WordNet files were found but are unreadable or incomplete."""


def find_wordnet(root: Path) -> Path | None:
    """Locate WordNet under ``root``: an ``nltk_data`` folder, a ``wordnet`` folder, or ``wordnet.zip``.

    Returns the folder holding ``index.noun`` or the zip file, or ``None`` when nothing is there.
    """
    root = Path(root)
    candidates = [
        root / "corpora" / "wordnet",
        root / "corpora" / "wordnet.zip",
        root / "wordnet",
        root / "wordnet.zip",
        root,
    ]
    for cand in candidates:
        if cand.is_dir() and (cand / "index.noun").is_file():
            return cand
        if cand.is_file() and cand.suffix == ".zip":
            return cand
    return None


def _read_wordnet_texts(path: Path) -> dict[str, str]:
    path = Path(path)
    texts: dict[str, str] = {}
    if path.is_file():
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
                for wanted in WORDNET_FILES + _OPTIONAL_FILES:
                    member = next((n for n in names if n == wanted or n.endswith("/" + wanted)), None)
                    if member is not None:
                        texts[wanted] = zf.read(member).decode("utf-8", errors="replace")
        except (OSError, zipfile.BadZipFile) as exc:
            raise WordNetError(f"{path}: cannot read WordNet zip ({exc})") from None
    else:
        for wanted in WORDNET_FILES + _OPTIONAL_FILES:
            file = path / wanted
            if file.is_file():
                try:
                    texts[wanted] = file.read_text(encoding="utf-8", errors="replace")
                except OSError as exc:
                    raise WordNetError(f"{file}: cannot read ({exc})") from None
    missing = [w for w in WORDNET_FILES if w not in texts]
    if missing:
        raise WordNetError(f"{path}: WordNet is incomplete, missing {', '.join(missing)}")
    return texts


def _index_lemmas(text: str) -> set[str]:
    """The lemma column of a WordNet ``index.*`` file (licence header lines start with spaces)."""
    return {line.split(" ", 1)[0] for line in text.splitlines() if line and not line.startswith(" ")}


def _exception_map(text: str) -> dict[str, tuple[str, ...]]:
    """``*.exc`` lines ``form base...``; the last line wins on duplicate forms, as in NLTK."""
    exceptions: dict[str, tuple[str, ...]] = {}
    for line in text.splitlines():
        terms = line.split()
        if len(terms) >= 2:
            exceptions[terms[0]] = tuple(terms[1:])
    return exceptions


def _detach(word: str, rules: Iterable[tuple[str, str]], whole: bool = True) -> list[str]:
    """Each rule applied once; ``whole=True`` also rewrites a word that is just the suffix ("xes" → "x"), as
    morphy does."""
    return [word[: -len(old)] + new for old, new in rules if word.endswith(old) and (whole or len(word) > len(old))]


def _is_regular_plural(word: str, stem: str) -> bool:
    """Whether ``word`` is spelled like the regular plural of ``stem`` (for the fallback's candidates)."""
    if word == stem + "s":
        # "assess" is not "asses" + s; the plural of a word ending in s/x/z/ch/sh or consonant+y is different
        return not stem.endswith(("s", "x", "z", "ch", "sh")) and not (
            len(stem) > 1 and stem.endswith("y") and stem[-2] not in "aeiou"
        )
    return True  # the other rules spell out the ending they remove (ses, ves, xes, ches, men, ies, ...)


class NounLemmatizer:
    """Plural → singular for nouns (see the module docstring for the two modes)."""

    def __init__(
        self,
        lemmas: Iterable[str] | None = None,
        exceptions: Mapping[str, tuple[str, ...]] | None = None,
        source: str = "rules (no WordNet files)",
        other_pos: Mapping[str, tuple[Iterable[str], Mapping[str, tuple[str, ...]]]] | None = None,
    ):
        self.lemmas: frozenset[str] | None = frozenset(lemmas) if lemmas is not None else None
        self.exceptions: dict[str, tuple[str, ...]] = dict(exceptions or {})
        self.source = source
        # Verb/adjective/adverb lemmas and exception lists: only to tell whether WordNet knows a word.
        self.other_pos: dict[str, tuple[frozenset[str], dict[str, tuple[str, ...]]]] = {
            pos: (frozenset(lem), dict(exc)) for pos, (lem, exc) in (other_pos or {}).items()
        }

    @classmethod
    def from_wordnet(cls, path: Path) -> NounLemmatizer:
        """Build from a WordNet folder or zip (see :func:`find_wordnet`)."""
        texts = _read_wordnet_texts(path)
        lemmas = _index_lemmas(texts["index.noun"])
        if not lemmas:
            raise WordNetError(f"{path}: index.noun holds no lemmas")
        other_pos = {
            pos: (_index_lemmas(texts.get(index, "")), _exception_map(texts.get(exc, "")))
            for pos, (index, exc, _rules) in OTHER_POS_FILES.items()
        }
        return cls(lemmas, _exception_map(texts["noun.exc"]), source=f"WordNet ({path})", other_pos=other_pos)

    @classmethod
    def rules_only(cls) -> NounLemmatizer:
        """The data-free fallback."""
        return cls(None, _FALLBACK_IRREGULAR)

    @property
    def has_dictionary(self) -> bool:
        return self.lemmas is not None

    def candidates(self, word: str) -> list[str]:
        """``word`` followed by its exception forms, or else the noun rule outputs (de-duplicated).

        These are the forms WordNet's noun lookup considers (as in NLTK's morphy).
        """
        if word in self.exceptions:
            forms = [word, *self.exceptions[word]]
        else:
            forms = [word, *_detach(word, NOUN_RULES)]
        return list(dict.fromkeys(forms))

    def fallback_candidates(self, word: str) -> list[str]:
        """The forms the blocklist-aware fallback may reduce an unknown ``word`` to (without ``word``)."""
        if word in _FALLBACK_IRREGULAR:
            return list(_FALLBACK_IRREGULAR[word])
        if word in self.exceptions:
            return [f for f in self.exceptions[word] if f != word]
        forms = [f for f in _detach(word, NOUN_RULES + _FALLBACK_RULES, whole=False) if _is_regular_plural(word, f)]
        return list(dict.fromkeys(forms))

    def wordnet_lemma(self, word: str) -> str | None:
        """WordNet's noun lemma of ``word`` (NLTK's answer), or ``None`` without WordNet or when none is found."""
        if self.lemmas is None:
            return None
        found = [f for f in self.candidates(word) if f in self.lemmas]
        return min(found, key=len) if found else None

    def knows(self, word: str) -> bool:
        """Whether WordNet knows ``word`` as any part of speech (always ``False`` without WordNet files)."""
        if self.lemmas is None:
            return False
        if self.wordnet_lemma(word) is not None:
            return True
        for pos, (_index, _exc, rules) in OTHER_POS_FILES.items():
            lemmas, exceptions = self.other_pos.get(pos, (frozenset(), {}))
            if word in exceptions or any(f in lemmas for f in (word, *_detach(word, rules))):
                return True
        return False

    def lemmatize(self, word: str, known: Container[str] = ()) -> str:
        """Lemma of ``word``: WordNet's answer when WordNet knows the word; otherwise a fallback candidate
        found in ``known`` (the blocklist words), else ``word`` itself."""
        lemma = self.wordnet_lemma(word)
        if lemma is not None:
            return lemma
        if self.knows(word) or word in known or (self.lemmas is None and word in _FALLBACK_KEEP):
            return word
        for form in self.fallback_candidates(word):
            if form in known:
                return form
        return word
