"""Text tokenizer of a Cosmos3 checkpoint (``text_tokenizer/``) and prompt → token ids.

Every prompt becomes ``apply_chat_template([system?], user=text, add_generation_prompt=True)`` followed
by the tokenizer's eos id and ``<|vision_start|>`` (the generation tower's start marker). For Qwen with
no system prompt that is ``<|im_start|>user\\n{text}<|im_end|>\\n<|im_start|>assistant\\n`` + 151645 + 151652.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import Cosmos3Error
from ..geometry import Geometry
from .prompting import FormattedPrompts, format_prompts

VISION_START_TOKEN = "<|vision_start|>"
MAX_PROMPT_TOKENS = 4096
TOKENIZER_SUBFOLDER = "text_tokenizer"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json")


class TokenizerError(Cosmos3Error):
    """The checkpoint's tokenizer is missing, unusable or incompatible with the transformer."""


class PromptTooLongError(TokenizerError):
    """A formatted prompt exceeds :data:`MAX_PROMPT_TOKENS`."""


class PromptTokenizer:
    """A Hugging Face tokenizer plus the two special ids Cosmos3 appends to every prompt."""

    def __init__(self, tokenizer: Any, *, vocab_size: int | None = None, max_tokens: int = MAX_PROMPT_TOKENS):
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.vocab_size = vocab_size
        n_tokens = len(tokenizer)
        if vocab_size is not None and n_tokens > vocab_size:
            raise TokenizerError(
                f"tokenizer has {n_tokens} tokens but the transformer's embedding has only {vocab_size} rows "
                "(wrong text_tokenizer/ for this checkpoint?)"
            )
        eos = tokenizer.eos_token_id
        if eos is None:
            raise TokenizerError("tokenizer defines no eos token; Cosmos3 appends it after every prompt")
        vocab = tokenizer.get_vocab()
        if VISION_START_TOKEN not in vocab:
            raise TokenizerError(f"tokenizer has no {VISION_START_TOKEN} token; it is not a Cosmos3 text tokenizer")
        self.eos_token_id = int(eos)
        self.vision_start_token_id = int(vocab[VISION_START_TOKEN])
        if vocab_size is not None:
            for name, tid in (("eos", self.eos_token_id), (VISION_START_TOKEN, self.vision_start_token_id)):
                if not 0 <= tid < vocab_size:
                    raise TokenizerError(f"{name} id {tid} is outside the embedding range [0, {vocab_size})")
        if getattr(tokenizer, "chat_template", None) is None:
            raise TokenizerError("tokenizer has no chat template; Cosmos3 prompts are chat-formatted")

    def encode(self, text: str, system_prompt: str | None = None, *, what: str = "prompt") -> list[int]:
        """Chat-template ids of one user message (+ optional system message) + eos + ``<|vision_start|>``."""
        messages = []
        if system_prompt is not None:
            messages.append({"role": "system", "content": system_prompt})
        messages.append({"role": "user", "content": text})
        out = self.tokenizer.apply_chat_template(
            messages, tokenize=True, add_generation_prompt=True, add_vision_id=False, return_dict=True
        )
        ids = out["input_ids"] if isinstance(out, Mapping) or hasattr(out, "keys") else out  # BatchEncoding or list
        ids = [int(i) for i in ids] + [self.eos_token_id, self.vision_start_token_id]
        if len(ids) > self.max_tokens:
            raise PromptTooLongError(
                f"the {what} is {len(ids)} tokens after formatting; the limit is {self.max_tokens} "
                "(shorten it, or for the negative prompt pass a shorter one)"
            )
        return ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)


def resolve_tokenizer_dir(path: str | Path) -> Path:
    """``path`` itself if it holds tokenizer files, else ``path/text_tokenizer``; error naming both otherwise."""
    root = Path(path)
    sub = root / TOKENIZER_SUBFOLDER
    for candidate in (sub, root):
        if candidate.is_dir() and any((candidate / f).is_file() for f in _TOKENIZER_FILES):
            return candidate
    raise TokenizerError(
        f"no text tokenizer found: expected {sub} (or {root}) to contain one of {', '.join(_TOKENIZER_FILES)}"
    )


def load_text_tokenizer(
    path: str | Path, *, vocab_size: int | None = None, max_tokens: int = MAX_PROMPT_TOKENS
) -> PromptTokenizer:
    """Load ``text_tokenizer/`` of a checkpoint (or that folder) with local files only.

    ``vocab_size`` is the transformer's embedding size (config ``vocab_size``); a larger tokenizer is an error.
    """
    folder = resolve_tokenizer_dir(path)
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # transformers raises many types for broken folders
        raise TokenizerError(f"could not load the tokenizer in {folder}: {exc}") from exc
    return PromptTokenizer(tok, vocab_size=vocab_size, max_tokens=max_tokens)


@dataclass(frozen=True)
class TokenizedPrompts:
    """Token ids for the conditional and unconditional passes and the texts they came from."""

    cond_ids: list[int]
    uncond_ids: list[int]
    cond_text: str
    uncond_text: str
    system_prompt: str | None
    style: str

    @property
    def ids(self) -> tuple[list[int], list[int]]:
        return self.cond_ids, self.uncond_ids


def tokenize_prompts(
    tokenizer: PromptTokenizer,
    prompt: str,
    negative_prompt: str | None = None,
    *,
    geometry: Geometry,
    style: str = "framework",
    **format_options: Any,
) -> TokenizedPrompts:
    """Format (``cosmos3.text.prompting.format_prompts``; extra options pass through) and tokenize both prompts."""
    formatted: FormattedPrompts = format_prompts(
        prompt, negative_prompt, geometry=geometry, style=style, **format_options
    )
    cond = tokenizer.encode(formatted.text, formatted.system_prompt, what="prompt")
    uncond = tokenizer.encode(formatted.negative_text, formatted.system_prompt, what="negative prompt")
    return TokenizedPrompts(
        cond, uncond, formatted.text, formatted.negative_text, formatted.system_prompt, formatted.style
    )
