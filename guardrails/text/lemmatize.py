"""Noun lemmatisation for the blocklist's second pass, without NLTK's data loader.

With WordNet's plain files (``index.noun`` + ``noun.exc``, from a folder or from ``wordnet.zip``) the
result equals ``nltk.stem.WordNetLemmatizer().lemmatize(word)`` (default ``pos="n"``): candidates are the
word plus its exception-list forms (if it is listed) or the outputs of the noun detachment rules
applied once, filtered by WordNet's noun lemmas, shortest wins. Reading the two files ourselves avoids
NLTK's ``punkt_tab``/``wordnet`` downloads and its refusal of symlinked data files.

Without WordNet files a data-free fallback is used: the same detachment rules plus a small table of
irregular plurals, but a candidate is only taken when it is itself a blocklist word ("blocklist-aware";
otherwise the word is kept as is). The blocklist-aware choice is also applied *before* the WordNet
lookup, so slang plurals that WordNet does not know are still reduced to a listed entry. Both are
strictly more blocking than plain NLTK.
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
# Extra rules used only by the data-free fallback (WordNet lists these words in noun.exc instead).
_FALLBACK_RULES: tuple[tuple[str, str], ...] = (("ves", "fe"), ("es", ""))
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

WORDNET_FILES = ("index.noun", "noun.exc")


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
                for wanted in WORDNET_FILES:
                    member = next((n for n in names if n == wanted or n.endswith("/" + wanted)), None)
                    if member is not None:
                        texts[wanted] = zf.read(member).decode("utf-8", errors="replace")
        except (OSError, zipfile.BadZipFile) as exc:
            raise WordNetError(f"{path}: cannot read WordNet zip ({exc})") from None
    else:
        for wanted in WORDNET_FILES:
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


class NounLemmatizer:
    """Plural → singular for nouns (see the module docstring for the two modes)."""

    def __init__(
        self,
        lemmas: Iterable[str] | None = None,
        exceptions: Mapping[str, tuple[str, ...]] | None = None,
        source: str = "rules (no WordNet files)",
    ):
        self.lemmas: frozenset[str] | None = frozenset(lemmas) if lemmas is not None else None
        self.exceptions: dict[str, tuple[str, ...]] = dict(exceptions or {})
        self.source = source

    @classmethod
    def from_wordnet(cls, path: Path) -> NounLemmatizer:
        """Build from a WordNet folder or zip (see :func:`find_wordnet`)."""
        texts = _read_wordnet_texts(path)
        lemmas = set()
        for line in texts["index.noun"].splitlines():
            if not line or line.startswith(" "):  # licence header lines start with spaces
                continue
            lemmas.add(line.split(" ", 1)[0])
        exceptions: dict[str, tuple[str, ...]] = {}
        for line in texts["noun.exc"].splitlines():
            terms = line.split()
            if len(terms) >= 2:
                exceptions[terms[0]] = tuple(terms[1:])  # last line wins on duplicates, as in NLTK
        if not lemmas:
            raise WordNetError(f"{path}: index.noun holds no lemmas")
        return cls(lemmas, exceptions, source=f"WordNet ({path})")

    @classmethod
    def rules_only(cls) -> NounLemmatizer:
        """The data-free fallback."""
        return cls(None, _FALLBACK_IRREGULAR)

    @property
    def has_dictionary(self) -> bool:
        return self.lemmas is not None

    def candidates(self, word: str) -> list[str]:
        """``word`` followed by its exception forms, or else the rule outputs (de-duplicated)."""
        if word in self.exceptions:
            forms = [word, *self.exceptions[word]]
        else:
            rules = NOUN_RULES if self.has_dictionary else NOUN_RULES + _FALLBACK_RULES
            forms = [word] + [
                word[: -len(old)] + new for old, new in rules if word.endswith(old) and len(word) > len(old)
            ]
        return list(dict.fromkeys(forms))

    def lemmatize(self, word: str, known: Container[str] = ()) -> str:
        """Lemma of ``word``; a candidate found in ``known`` (the blocklist words) is preferred."""
        forms = self.candidates(word)
        if word not in known:
            for form in forms[1:]:
                if form in known:
                    return form
        if self.lemmas is None:
            return word
        found = [f for f in forms if f in self.lemmas]
        return min(found, key=len) if found else word
