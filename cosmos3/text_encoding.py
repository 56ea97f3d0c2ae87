"""Prompt -> cached text-tower K/V, once per generation (cond and uncond each get their own cache)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch

from .tokenizer import PromptTokenizer, tokenize_prompts
from .transformer import Cosmos3Transformer, TextKVCache


@dataclass
class EncodedPrompt:
    """Text K/V caches for classifier-free guidance plus the metadata the prompt templates used.

    ``cond``/``uncond``: :class:`TextKVCache` (``uncond`` is ``None`` when no negative pass was encoded,
    e.g. guidance 1.0). The size fields record what the templates announced to the model; sampling a
    different size with this prompt is an error (the video would silently disagree with its prompt).
    """

    cond: TextKVCache
    uncond: TextKVCache | None
    num_frames: int
    height: int
    width: int
    fps: float
    style: str
    cond_text: str
    uncond_text: str | None
    system_prompt: str | None = None

    @property
    def mode(self) -> str:
        return "image" if self.num_frames == 1 else "video"

    @property
    def nbytes(self) -> int:
        return self.cond.nbytes + (self.uncond.nbytes if self.uncond is not None else 0)

    def to(self, device: torch.device | str) -> "EncodedPrompt":
        """A copy with both caches on ``device``."""
        return replace(
            self,
            cond=self.cond.to(device),
            uncond=self.uncond.to(device) if self.uncond is not None else None,
        )

    def check_matches(self, num_frames: int, height: int, width: int, fps: float | None = None) -> None:
        """Raise ``ValueError`` naming both values when sampling settings differ from the encoded ones."""
        problems = []
        if num_frames != self.num_frames:
            problems.append(f"frames {self.num_frames} (encode) vs {num_frames} (sampler)")
        if (height, width) != (self.height, self.width):
            problems.append(f"size {self.width}x{self.height} (encode) vs {width}x{height} (sampler)")
        if fps is not None and self.num_frames > 1 and not math.isclose(fps, self.fps):
            problems.append(f"fps {self.fps:g} (encode) vs {fps:g} (sampler)")
        if problems:
            raise ValueError(
                "the prompt was encoded for a different video than the one being sampled: "
                + "; ".join(problems)
                + ". The prompt templates tell the model the duration and resolution, so encode the prompt "
                "with the sampler's frames/size/fps."
            )


def encode_prompt(
    transformer: Cosmos3Transformer,
    tokenizer: PromptTokenizer,
    prompt: str,
    negative_prompt: str | None = None,
    *,
    num_frames: int,
    height: int,
    width: int,
    fps: float = 24.0,
    prompt_style: str = "framework",
    use_system_prompt: bool | None = None,
    with_negative: bool = True,
    offload_device: torch.device | str | None = "cpu",
    **format_options: Any,
) -> EncodedPrompt:
    """Tokenize (templates per ``prompt_style``) and run the text tower for the prompt and the negative.

    The caches are moved to ``offload_device`` (default CPU; ``None`` keeps them where they were computed).
    """
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a string, got {type(prompt).__name__}")
    if negative_prompt is not None and not isinstance(negative_prompt, str):
        raise TypeError(f"negative_prompt must be a string or None, got {type(negative_prompt).__name__}")
    if use_system_prompt is not None:
        format_options["use_system_prompt"] = use_system_prompt
    tokens = tokenize_prompts(
        tokenizer, prompt, negative_prompt, num_frames=num_frames, height=height, width=width, fps=fps,
        style=prompt_style, **format_options,
    )

    def run(ids: list[int]) -> TextKVCache:
        cache = transformer.encode_text(torch.tensor(ids, dtype=torch.long))
        return cache.to(offload_device) if offload_device is not None else cache

    return EncodedPrompt(
        cond=run(tokens.cond_ids),
        uncond=run(tokens.uncond_ids) if with_negative else None,
        num_frames=num_frames,
        height=height,
        width=width,
        fps=float(fps),
        style=tokens.style,
        cond_text=tokens.cond_text,
        uncond_text=tokens.uncond_text if with_negative else None,
        system_prompt=tokens.system_prompt,
    )
