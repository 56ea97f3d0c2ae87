"""Keyword blocklist: better_profanity matching (own instance), a lemmatised pass, exact/fuzzy phrases.

Passes, in order (the first hit blocks):

1. ``raw`` — the normalised prompt through better_profanity (leetspeak variants, adjacent words
   concatenated). Hits are detected with a NUL sentinel as censor character; NUL is removed from the
   input first, so asterisks in the prompt (Markdown ``**bold**``, ``5 * 3``) can never look like a hit.
2. ``lemmatised`` — the prompt lower-cased, split into word tokens (punctuation and surrounding
   asterisks/quotes stripped), each noun-lemmatised (plural → singular), joined, and matched again.
3. ``exact`` — every ``exact_match`` entry as a whole word/phrase (``\\b…\\b``) in the lower-cased prompt.
4. ``fuzzy`` — entries of at least ``min_chars`` characters compared with same-length word windows;
   a window matches when ``SequenceMatcher.ratio() >= (len(entry) - letter_count) / len(entry)``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from difflib import SequenceMatcher

from better_profanity import Profanity
from better_profanity.utils import get_complete_path_of_file, read_wordlist

from ..report import CheckResult
from .lemmatize import NounLemmatizer
from .normalize import normalize_for_matching

SENTINEL = "\x00"
_TOKEN = re.compile(r"[a-z0-9@$*]+")
_WS = re.compile(r"\s+")


def builtin_words() -> list[str]:
    """better_profanity's shipped word list (read from the installed package, offline)."""
    return list(read_wordlist(get_complete_path_of_file("profanity_wordlist.txt")))


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens; punctuation splits words, surrounding asterisks are dropped."""
    tokens = (t.strip("*") for t in _TOKEN.findall(text.lower()))
    return [t for t in tokens if t]


class BlocklistMatch:
    """Which pass matched and a display form of the prompt (censored parts shown as ``****``)."""

    def __init__(self, kind: str, shown: str):
        self.kind = kind
        self.shown = shown

    def __repr__(self) -> str:
        return f"BlocklistMatch({self.kind!r}, {self.shown!r})"


class BlocklistChecker:
    """Keyword matching against word lists given as plain Python sequences (see module docstring)."""

    name = "blocklist"

    def __init__(
        self,
        words: Sequence[str],
        whitelist: Iterable[str] = (),
        exact_match: Iterable[str] = (),
        lemmatizer: NounLemmatizer | None = None,
        partial_match_min_chars: int = 6,
        partial_match_letter_count: float = 0.4,
        description: str = "",
    ):
        words = [w.strip() for w in words if w and w.strip()]
        if not words:
            raise ValueError("blocklist: the word list is empty (better_profanity would silently use its own list)")
        if partial_match_min_chars < 1:
            raise ValueError(f"blocklist: partial_match_min_chars must be >= 1, got {partial_match_min_chars}")
        if partial_match_letter_count < 0:
            raise ValueError(f"blocklist: partial_match_letter_count must be >= 0, got {partial_match_letter_count}")
        self.word_count = len(set(w.lower() for w in words))
        whitelist = [w.strip() for w in whitelist if w and w.strip()]
        # Our own instance: better_profanity's module-level `profanity` object is shared process-wide.
        self._profanity = Profanity(words=words)
        if whitelist:
            self._profanity.load_censor_words(custom_words=words, whitelist_words=list(whitelist))
        white = {w.lower() for w in whitelist}
        # Words a lemma candidate may be reduced to: each entry and each word of multi-word entries.
        known: set[str] = set()
        for w in words:
            lw = normalize_for_matching(w).lower()
            if lw in white:
                continue
            known.add(lw)
            known.update(lw.split())
        self._known = frozenset(known)
        self.lemmatizer = lemmatizer or NounLemmatizer.rules_only()
        self.min_chars = partial_match_min_chars
        self.letter_count = partial_match_letter_count
        self.description = description
        entries = []
        for e in exact_match:
            ne = _WS.sub(" ", normalize_for_matching(e).lower()).strip()
            if ne and ne not in entries:
                entries.append(ne)
        self._exact = [(e, re.compile(r"\b" + re.escape(e) + r"\b")) for e in entries]
        self._fuzzy = [e for e in entries if len(e) >= self.min_chars]

    # -- passes --------------------------------------------------------------------------------------
    def _censor(self, text: str) -> str | None:
        out = self._profanity.censor(text, censor_char=SENTINEL)
        return out.replace(SENTINEL, "*") if SENTINEL in out else None

    def lemmatized_text(self, text: str) -> str:
        """The lemmatised form of an already normalised text (what pass 2 matches)."""
        return " ".join(self.lemmatizer.lemmatize(t, self._known) for t in tokenize(text))

    def _fuzzy_hit(self, prompt: str) -> str | None:
        words = prompt.split()
        for entry in self._fuzzy:
            n = len(entry.split())
            threshold = (len(entry) - self.letter_count) / len(entry)
            for i in range(0, max(len(words) - n + 1, 0)):
                window = " ".join(words[i : i + n])
                sm = SequenceMatcher(None, window, entry)
                if sm.real_quick_ratio() < threshold or sm.quick_ratio() < threshold:
                    continue
                if sm.ratio() >= threshold:
                    return window
        return None

    def find(self, text: str) -> BlocklistMatch | None:
        """The first match in ``text`` (any pass), or ``None``."""
        norm = normalize_for_matching(text)
        if not norm:
            return None
        shown = self._censor(norm)
        if shown is not None:
            return BlocklistMatch("raw", shown)
        lemma_text = self.lemmatized_text(norm)
        shown = self._censor(lemma_text) if lemma_text else None
        if shown is not None:
            return BlocklistMatch("lemmatised", shown)
        lower = _WS.sub(" ", norm.lower())
        for _entry, pattern in self._exact:
            m = pattern.search(lower)
            if m:
                return BlocklistMatch("exact", lower[: m.start()] + "****" + lower[m.end() :])
        window = self._fuzzy_hit(lower)
        if window is not None:
            return BlocklistMatch("fuzzy", lower.replace(window, "****", 1))
        return None

    def is_safe(self, text: str) -> bool:
        return self.find(text) is None

    def check(self, text: str) -> CheckResult:
        """Run every pass; ``block`` with the matching pass and the censored prompt, else ``pass``."""
        start = time.perf_counter()
        match = self.find(text)
        seconds = time.perf_counter() - start
        if match is None:
            return CheckResult(self.name, "pass", self._summary(), seconds)
        return CheckResult(self.name, "block", f"matched in the {match.kind} pass: {_clip(match.shown)!r}", seconds)

    def _summary(self) -> str:
        parts = [f"{self.word_count} words"]
        if self.description:
            parts.append(self.description)
        parts.append(f"{len(self._exact)} exact-match entries")
        parts.append(f"lemmatiser: {self.lemmatizer.source}")
        return ", ".join(parts)


def _clip(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
