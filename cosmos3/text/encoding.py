"""Prompt -> cached text-tower K/V, once per generation (cond and uncond each get their own cache)."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from ..geometry import Geometry
from ..model.transformer import Cosmos3Transformer, TextKVCache
from .prompt_checks import check_negative_text, check_prompt_text
from .tokenizer import PromptTokenizer, tokenize_prompts


@dataclass
class EncodedPrompt:
    """Text K/V caches for classifier-free guidance plus the metadata the prompt templates used.

    ``cond``/``uncond``: :class:`TextKVCache` (``uncond`` is ``None`` when no negative pass was encoded,
    e.g. guidance 1.0). ``geometry`` records what the templates announced to the model (frames, size, fps);
    sampling another clip with this prompt is an error (the video would silently disagree with its prompt).
    """

    cond: TextKVCache
    uncond: TextKVCache | None
    geometry: Geometry
    style: str
    cond_text: str
    uncond_text: str | None
    system_prompt: str | None = None

    @property
    def mode(self) -> str:
        return "image" if self.geometry.is_image else "video"

    @property
    def nbytes(self) -> int:
        return self.cond.nbytes + (self.uncond.nbytes if self.uncond is not None else 0)

    def to(self, device: torch.device | str) -> EncodedPrompt:
        """A copy with both caches on ``device``."""
        return replace(
            self,
            cond=self.cond.to(device),
            uncond=self.uncond.to(device) if self.uncond is not None else None,
        )

    def check_matches(self, geometry: Geometry) -> None:
        """Raise ``ValueError`` naming both values when the sampled clip differs from the encoded one."""
        if self.geometry.same_clip(geometry):
            return
        mine, other = self.geometry, geometry
        problems = []
        if other.frames != mine.frames:
            problems.append(f"frames {mine.frames} (encode) vs {other.frames} (sampler)")
        if other.size != mine.size:
            problems.append(f"size {mine.width}x{mine.height} (encode) vs {other.width}x{other.height} (sampler)")
        if not mine.is_image and not math.isclose(other.fps, mine.fps):
            problems.append(f"fps {mine.fps:g} (encode) vs {other.fps:g} (sampler)")
        raise ValueError(
            "the prompt was encoded for a different video than the one being sampled: "
            + "; ".join(problems)
            + ". The prompt templates tell the model the duration and resolution, so encode the prompt "
            "with the sampler's frames/size/fps."
        )


class PromptKVCache:
    """Least-recently-used store of text K/V caches keyed by the exact token ids (``max_entries`` prompts).

    With it, re-running a prompt (or the same negative prompt with a new positive one) needs no text tower:
    the tower is brought back only for ids it has not seen. Holds the caches where they were stored.
    """

    def __init__(self, max_entries: int = 4):
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise ValueError(f"PromptKVCache max_entries must be an integer >= 1, got {max_entries!r}")
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[int, ...], TextKVCache] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, ids: tuple[int, ...]) -> TextKVCache | None:
        cache = self._entries.get(ids)
        if cache is None:
            self.misses += 1
            return None
        self._entries.move_to_end(ids)
        self.hits += 1
        return cache

    def put(self, ids: tuple[int, ...], cache: TextKVCache) -> None:
        self._entries[ids] = cache
        self._entries.move_to_end(ids)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return sum(c.nbytes for c in self._entries.values())


def encode_prompt(
    transformer: Cosmos3Transformer,
    tokenizer: PromptTokenizer,
    prompt: str,
    negative_prompt: str | None = None,
    *,
    geometry: Geometry,
    prompt_style: str = "framework",
    use_system_prompt: bool | None = None,
    with_negative: bool = True,
    offload_device: torch.device | str | None = "cpu",
    encoder: Callable[[torch.Tensor], TextKVCache] | None = None,
    kv_cache: PromptKVCache | None = None,
    allow_empty_prompt: bool = False,
    **format_options: Any,
) -> EncodedPrompt:
    """Tokenize (templates per ``prompt_style``, announcing ``geometry``) and run the text tower for the prompt and
    the negative.

    The caches are moved to ``offload_device`` (default CPU; ``None`` keeps them where they were computed).
    ``encoder`` replaces ``transformer.encode_text`` (e.g. :meth:`cosmos3.runtime.offload.TextTowerResidency.encode`,
    which brings an evicted text tower back first); ``kv_cache`` (:class:`PromptKVCache`) skips the text
    tower for token ids encoded before. An empty or whitespace-only ``prompt`` is refused
    (:class:`~cosmos3.text.prompt_checks.EmptyPromptError`) unless ``allow_empty_prompt``; the negative may be empty.
    """
    check_prompt_text(prompt, allow_empty=allow_empty_prompt)
    check_negative_text(negative_prompt)
    if use_system_prompt is not None:
        format_options["use_system_prompt"] = use_system_prompt
    tokens = tokenize_prompts(
        tokenizer, prompt, negative_prompt, geometry=geometry, style=prompt_style, **format_options
    )

    def run(ids: list[int]) -> TextKVCache:
        key = tuple(ids)
        cache = kv_cache.get(key) if kv_cache is not None else None
        if cache is None:
            encode = encoder if encoder is not None else transformer.encode_text
            cache = encode(torch.tensor(ids, dtype=torch.long))
            if offload_device is not None:
                cache = cache.to(offload_device)
            if kv_cache is not None:
                kv_cache.put(key, cache)
        elif offload_device is not None:
            cache = cache.to(offload_device)
        return cache

    return EncodedPrompt(
        cond=run(tokens.cond_ids),
        uncond=run(tokens.uncond_ids) if with_negative else None,
        geometry=geometry,
        style=tokens.style,
        cond_text=tokens.cond_text,
        uncond_text=tokens.uncond_text if with_negative else None,
        system_prompt=tokens.system_prompt,
    )
