"""Checks of what :class:`~cosmos3.model.transformer.Cosmos3Transformer` is given, with errors that name the call.

Each check returns the value in the form the model uses (token ids as int64, the latent shape, the noisy
frame indices, a plain-number timestep) or raises ``ValueError`` / ``TypeError`` saying what was expected.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from .config import TransformerConfig
from .text_kv import BatchedTextKV, TextKVCache

MAX_TIMESTEP = 1000.0

LatentShape = tuple[int, int, int, int]  # channels, frames, height, width
StepInputs = tuple[LatentShape, list[int], float]  # latent shape, noisy frame indices, timestep


def check_input_ids(input_ids: torch.Tensor, config: TransformerConfig) -> torch.Tensor:
    """Token ids ``[L]`` or ``[1, L]`` (any integer dtype, in the vocabulary) -> int64 ``[L]``."""
    if not isinstance(input_ids, torch.Tensor):
        input_ids = torch.as_tensor(input_ids)
    if input_ids.dim() == 2 and input_ids.shape[0] == 1:
        input_ids = input_ids[0]
    if input_ids.dim() != 1 or input_ids.numel() == 0:
        raise ValueError(
            f"encode_text: input_ids must be a non-empty 1-D tensor [L], got shape {tuple(input_ids.shape)}"
        )
    if input_ids.dtype.is_floating_point or input_ids.dtype == torch.bool:
        raise ValueError(f"encode_text: input_ids must be integer token ids, got {input_ids.dtype}")
    low, high = int(input_ids.min()), int(input_ids.max())
    if low < 0 or high >= config.vocab_size:
        raise ValueError(f"encode_text: token ids must be in [0, {config.vocab_size - 1}], got range [{low}, {high}]")
    return input_ids.long()


def check_step_inputs(
    config: TransformerConfig,
    latents: torch.Tensor,
    timestep: float | torch.Tensor,
    fps: float | None,
    condition_frames: Iterable[int],
) -> StepInputs:
    """Check the per-step arguments of ``velocity`` / ``velocity_batch`` -> (latent shape, noisy frames, timestep)."""
    shape = check_latents(latents, config)
    noisy = noisy_frames(condition_frames, shape[1])
    t_value = check_timestep(timestep)
    if fps is not None and not (
        isinstance(fps, (int, float)) and not isinstance(fps, bool) and math.isfinite(fps) and fps > 0
    ):
        raise ValueError(f"velocity: fps must be a positive number or None, got {fps!r}")
    return shape, noisy, t_value


def check_latents(latents: torch.Tensor, config: TransformerConfig) -> LatentShape:
    """``[1, C, T, h, w]`` float latents with ``C = latent_channel`` -> ``(C, T, h, w)``."""
    if not isinstance(latents, torch.Tensor) or latents.dim() != 5 or not latents.is_floating_point():
        shape = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
        expected = f"[1, {config.latent_channel}, T, h, w]"
        raise ValueError(f"velocity: latents must be a float tensor {expected}, got {shape}")
    batch, channels, frames, height, width = latents.shape
    if batch != 1 or channels != config.latent_channel or min(frames, height, width) < 1:
        raise ValueError(
            f"velocity: latents must be [1, {config.latent_channel}, T, h, w] with T, h, w >= 1, "
            f"got {tuple(latents.shape)}"
        )
    return channels, frames, height, width


def noisy_frames(condition_frames: Iterable[int], frames: int) -> list[int]:
    """Indices in ``range(frames)`` that are not conditioning frames (each of those must be in range)."""
    conditioned = set()
    for index in condition_frames:
        if isinstance(index, torch.Tensor):
            index = index.item()
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < frames:
            raise ValueError(f"velocity: condition frame {index!r} is not an integer in [0, {frames - 1}]")
        conditioned.add(index)
    return [f for f in range(frames) if f not in conditioned]


def check_timestep(timestep: float | torch.Tensor) -> float:
    """A number (or one-element tensor) in ``[0, 1000]`` -> that number (an int stays an int)."""
    if isinstance(timestep, torch.Tensor):
        if timestep.numel() != 1:
            raise ValueError(f"velocity: timestep must be a scalar, got shape {tuple(timestep.shape)}")
        timestep = timestep.item()
    if isinstance(timestep, bool) or not isinstance(timestep, (int, float)):
        # ValueError, like every other malformed timestep (callers catch ValueError).
        raise ValueError(f"velocity: timestep must be a number, got {type(timestep).__name__}")  # noqa: TRY004
    if not (math.isfinite(timestep) and 0 <= timestep <= MAX_TIMESTEP):
        raise ValueError(f"velocity: timestep {timestep!r} is outside [0, {MAX_TIMESTEP:g}]")
    return timestep


def check_cache(cache: TextKVCache, config: TransformerConfig) -> None:
    """``cache`` is a :class:`TextKVCache` with ``num_hidden_layers`` layers of ``[nkv, L, hd]``."""
    if not isinstance(cache, TextKVCache):
        raise TypeError(f"velocity: cache must be a TextKVCache from encode_text, got {type(cache).__name__}")
    _check_layers(cache, (config.num_key_value_heads, cache.text_len, config.head_dim), config, "velocity: cache")


def check_batched(text: BatchedTextKV, config: TransformerConfig) -> None:
    """``text`` is a :class:`BatchedTextKV` with ``num_hidden_layers`` layers of ``[B, nkv, Lmax, hd]``."""
    if not isinstance(text, BatchedTextKV):
        raise TypeError(f"velocity_batch: expected TextKVCache list or BatchedTextKV, got {type(text).__name__}")
    expected = (text.batch, config.num_key_value_heads, text.text_len, config.head_dim)
    _check_layers(text, expected, config, "velocity_batch: batched cache")


def _check_layers(
    kv: TextKVCache | BatchedTextKV, expected: tuple[int, ...], config: TransformerConfig, what: str
) -> None:
    """Every key and value of ``kv`` has shape ``expected`` and there is one per model layer."""
    if kv.num_layers != config.num_hidden_layers or any(tuple(t.shape) != expected for t in (*kv.keys, *kv.values)):
        raise ValueError(
            f"{what} does not fit this model (expected {config.num_hidden_layers} layers of {list(expected)}, "
            f"got {kv.num_layers} layers of {list(kv.keys[0].shape) if kv.keys else []})"
        )
