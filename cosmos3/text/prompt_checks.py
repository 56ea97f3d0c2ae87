"""Checks on the user's prompt text before anything runs: not empty (unless asked for), valid Unicode.

An empty prompt is almost always a wiring mistake (a bypassed node upstream passes an empty string, a shell
variable was unset), and the model still produces a video from it without a word; so every entry point refuses
it unless the caller opts in. Each front end says where the prompt should come from (``where``).
"""

from __future__ import annotations

from typing import Any

from .prompting import PromptError

LIBRARY_HINT = (
    "pass the text to generate, or allow_empty_prompt=True to generate from an empty prompt on purpose"
)


class EmptyPromptError(PromptError):
    """The prompt is empty or whitespace only and the caller did not allow that."""


def check_prompt_text(
    prompt: Any, *, allow_empty: bool = False, what: str = "prompt", where: str = LIBRARY_HINT
) -> str:
    """Return ``prompt`` when it is usable text; else raise naming ``what`` and, for an empty one, ``where``.

    ``TypeError`` for a non-string, :class:`PromptError` for text that is not valid Unicode (lone surrogates,
    e.g. undecodable bytes of a command line), :class:`EmptyPromptError` for empty/whitespace-only text unless
    ``allow_empty``.
    """
    if not isinstance(prompt, str):
        raise TypeError(f"{what} must be a string, got {type(prompt).__name__}")
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError as exc:
        char = ord(prompt[exc.start])
        shown = f"byte 0x{char - 0xDC00:02x}" if 0xDC80 <= char <= 0xDCFF else f"U+{char:04X}"  # surrogateescape
        raise PromptError(
            f"the {what} is not valid UTF-8 text: character {exc.start} is an undecodable {shown}; "
            "save or pass the text as UTF-8"
        ) from None
    if not allow_empty and not prompt.strip():
        raise EmptyPromptError(f"the {what} is empty: {where}")
    return prompt


def check_negative_text(negative_prompt: Any) -> str | None:
    """The negative prompt may be empty or ``None`` (the default); it must still be valid text."""
    if negative_prompt is None:
        return None
    return check_prompt_text(negative_prompt, allow_empty=True, what="negative prompt")
