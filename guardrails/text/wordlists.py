"""Reading the keyword list folders of the guardrail release (``blocklist/{custom,whitelist,exact_match}``)."""

from __future__ import annotations

from pathlib import Path


class WordListError(ValueError):
    """A word-list file exists but cannot be read as UTF-8 text."""


def list_files(folder: Path) -> list[Path]:
    """Regular, non-hidden files directly inside ``folder`` (sorted; empty when it does not exist)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def read_word_file(path: Path) -> list[str]:
    """One entry per line, stripped; blank lines and lines starting with ``#`` are skipped.

    (An entry starting with ``#`` could never match: ``#`` is not a word character for the matcher.)
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise WordListError(f"{path}: word list is not UTF-8 text ({exc})") from None
    except OSError as exc:
        raise WordListError(f"{path}: cannot read word list ({exc})") from None
    words = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            words.append(line)
    return words


def read_word_folder(folder: Path) -> list[str]:
    """All entries of all files in ``folder``, de-duplicated in first-seen order."""
    seen: dict[str, None] = {}
    for file in list_files(folder):
        for word in read_word_file(file):
            seen.setdefault(word, None)
    return list(seen)
