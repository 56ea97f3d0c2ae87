"""Sound tokens in the generation stream: checks, embedding in, positions, reading the velocity out.

Sound-capable checkpoints (``sound_gen``) denoise a sound latent ``[1, sound_dim, T_s]`` next to the video. Its
``T_s`` tokens follow the video tokens in the generation stream (the packed sequence is
``[text ; video ; sound]``), each token being ``audio_proj_in(latent column) + audio_modality_embed`` plus the
step's timestep embedding (every sound frame is noisy). Their mRoPE positions start at the same temporal
offset as the video (the two are temporal siblings), one position per latent frame with spatial ids 0; with fps
modulation frame ``i`` sits at ``offset + i / sound_latent_fps * base_fps``. The velocity is
``audio_proj_out`` of the final (normed) hidden states of those tokens.
"""

from __future__ import annotations

import torch

from .config import TransformerConfig
from .rope import vision_position_ids


def check_sound_latents(sound: torch.Tensor, config: TransformerConfig) -> int:
    """``[1, sound_dim, T_s]`` float latents of a sound-capable model -> ``T_s``."""
    if not config.sound_gen:
        raise ValueError("velocity: this transformer has no sound stream (sound_gen is false); call it without sound")
    expected = f"[1, {config.sound_dim}, T_s]"
    if not isinstance(sound, torch.Tensor) or sound.dim() != 3 or not sound.is_floating_point():
        shape = tuple(sound.shape) if isinstance(sound, torch.Tensor) else type(sound).__name__
        raise ValueError(f"velocity: sound latents must be a float tensor {expected}, got {shape}")
    if sound.shape[0] != 1 or sound.shape[1] != config.sound_dim or sound.shape[2] < 1:
        raise ValueError(f"velocity: sound latents must be {expected} with T_s >= 1, got {tuple(sound.shape)}")
    return int(sound.shape[2])


def embed_sound(tower: torch.nn.Module, sound: torch.Tensor, t_emb: torch.Tensor) -> torch.Tensor:
    """``[1, sound_dim, T_s]`` latents -> ``[1, T_s, hidden]`` tokens: ``(proj_in(x) + modality) + t_emb``.

    ``t_emb``: ``[1, hidden]`` (shared) or ``[T_s, hidden]`` (per token), already in the activation dtype.
    """
    weight = tower.audio_proj_in.weight
    tokens = tower.audio_proj_in(sound[0].transpose(0, 1).to(device=weight.device, dtype=t_emb.dtype))
    tokens = tokens + tower.audio_modality_embed.to(tokens.dtype)
    return (tokens + t_emb).unsqueeze(0)


def sound_position_ids(sound_len: int, temporal_offset: int, config: TransformerConfig) -> torch.Tensor:
    """mRoPE positions ``[3, T_s]`` of the sound tokens (see the module docstring)."""
    return vision_position_ids(
        sound_len,
        1,
        1,
        temporal_offset=temporal_offset,
        fps=float(config.sound_latent_fps) if config.enable_fps_modulation else None,
        base_fps=config.base_fps,
        temporal_compression=1,
        reset_spatial=config.unified_3d_mrope_reset_spatial_ids,
    )


def read_sound(tower: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """Final hidden states of the sound tokens ``[B, T_s, hidden]`` -> velocity ``[B, sound_dim, T_s]``."""
    return tower.audio_proj_out(hidden).transpose(1, 2)
