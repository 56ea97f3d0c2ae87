"""Text normalisation applied before any keyword matching.

The goal is that what the user *sees* is what gets matched: compatibility forms (full-width letters,
ligatures) are folded, accents are dropped, invisible characters are removed and whitespace is
collapsed. Only then is the text reduced to ASCII (the keyword lists are ASCII); every remaining run of
non-ASCII characters becomes one space (the LLM judge, which is multilingual, sees the original text).
"""

from __future__ import annotations

import re
import unicodedata

# Characters with no visible width that can be slipped into a word to split it for a matcher:
# soft hyphen, zero-width space/joiners, LRM/RLM, bidi embeddings/overrides, word joiner, invisible
# operators, bidi isolates, and the BOM / zero-width no-break space.
_INVISIBLE = re.compile("[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
_WHITESPACE = re.compile(r"\s+")
_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def normalize_unicode(text: str) -> str:
    """Fold compatibility forms and accents, drop invisible/control characters, collapse whitespace."""
    # Invisible and control characters (NUL included: the blocklist uses it as its censor sentinel)
    # are removed, not spaced, so "bad<ZWSP>word" reads as the "badword" the user sees.
    text = _CONTROL.sub("", _INVISIBLE.sub("", text))
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = unicodedata.normalize("NFKC", text)
    return _WHITESPACE.sub(" ", text).strip()


def to_ascii(text: str) -> str:
    """Replace every run of non-ASCII characters with one space and collapse whitespace."""
    return _WHITESPACE.sub(" ", _NON_ASCII_RUN.sub(" ", text)).strip()


def normalize_for_matching(text: str) -> str:
    """:func:`normalize_unicode` then :func:`to_ascii` — the form every keyword pass sees."""
    return to_ascii(normalize_unicode(text))
