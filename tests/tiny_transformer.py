"""Fixture builders for tiny Cosmos3 transformers (shared by transformer and later pipeline tests).

* :func:`tiny_config` — small diffusers ``Cosmos3OmniTransformer`` configs (Qwen-style and Edge-style);
* :func:`build_reference` — the diffusers model with random, non-trivial weights;
* :func:`save_folder` — ``save_pretrained`` layout (optionally sharded);
* :func:`write_single_file` — one ``.safetensors`` with diffusers keys or original cosmos-framework keys;
* :func:`reference_velocity` — one diffusers forward packed exactly like ``Cosmos3OmniPipeline`` does.

diffusers is the test oracle only; the library never imports it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

# head_dim 128 with the real [24, 20, 20] interleave; q_dim (256) != hidden (128) like Super.
QWEN_128 = dict(
    hidden_size=128, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=128,
    intermediate_size=192, vocab_size=320, rope_axes_dim=[24, 20, 20],
)
# Smaller heads, 3 layers, GQA 4:2, non-default sections.
QWEN_SMALL = dict(
    hidden_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
    intermediate_size=96, vocab_size=200, rope_axes_dim=[8, 4, 4],
)
# Edge: relu² MLP, Nemotron norms, no text q/k norm, generator-side text key norm, eps 1e-5, theta 1e8.
EDGE_128 = dict(
    hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=128,
    intermediate_size=160, vocab_size=300, rope_axes_dim=[24, 20, 20], hidden_act="relu2",
    qk_norm_for_text=False, use_und_k_norm_for_gen=True, rms_norm_eps=1e-5, rope_theta=1e8,
)
CONFIGS = {"qwen128": QWEN_128, "qwen_small": QWEN_SMALL, "edge128": EDGE_128}


def tiny_config(name: str = "qwen128", **overrides: Any) -> dict[str, Any]:
    """A diffusers ``Cosmos3OmniTransformer`` kwargs dict (copy) with optional overrides."""
    return {**CONFIGS[name], **overrides}


def build_reference(config: dict[str, Any], seed: int = 0, std: float = 0.05):
    """Diffusers model (fp32) with random weights: linears/embeddings N(0, std), norms 1 + N(0, 0.1)."""
    from diffusers import Cosmos3OmniTransformer

    model = Cosmos3OmniTransformer(**config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            owner = name.split(".")[-2] if "." in name else name
            if "norm" in owner and param.dim() == 1:
                param.copy_(1.0 + 0.1 * noise)
            elif name.startswith("embed_tokens"):
                param.copy_(noise)
            else:
                param.copy_(std * noise)
    return model.eval()


def save_folder(model, folder: Path, max_shard_size: str | int | None = None) -> Path:
    """``save_pretrained`` into ``folder`` (sharded with an index json when ``max_shard_size`` is small)."""
    kwargs = {"safe_serialization": True}
    if max_shard_size is not None:
        kwargs["max_shard_size"] = max_shard_size
    model.save_pretrained(str(folder), **kwargs)
    return Path(folder)


def edit_config(folder: Path, **changes: Any) -> dict[str, Any]:
    """Rewrite ``folder/config.json`` with ``changes`` (a value of ``None`` with key ``_drop_X`` removes X)."""
    path = Path(folder) / "config.json"
    config = json.loads(path.read_text())
    for key, value in changes.items():
        if key.startswith("_drop_"):
            config.pop(key[len("_drop_"):], None)
        else:
            config[key] = value
    path.write_text(json.dumps(config, indent=2))
    return config


# ---------------------------------------------------------------------------------------------- single files

_TO_ORIGINAL_ATTN = {
    "add_q_proj": "q_proj_moe_gen", "add_k_proj": "k_proj_moe_gen", "add_v_proj": "v_proj_moe_gen",
    "to_add_out": "o_proj_moe_gen", "norm_added_q": "q_norm_moe_gen", "norm_added_k": "k_norm_moe_gen",
    "to_q": "q_proj", "to_k": "k_proj", "to_v": "v_proj", "to_out": "o_proj", "norm_q": "q_norm", "norm_k": "k_norm",
}
_TO_ORIGINAL_HEADS = {
    "proj_in": "vae2llm", "proj_out": "llm2vae", "audio_proj_in": "sound2llm", "audio_proj_out": "llm2sound",
    "audio_modality_embed": "sound_modality_embed", "action_proj_in": "action2llm", "action_proj_out": "llm2action",
}


def original_key(key: str, style: str = "framework") -> str:
    """Diffusers key -> cosmos-framework key.

    ``style="framework"``: ``language_model.model.*`` / ``language_model.lm_head``;
    ``style="hf"``: ``model.language_model.*`` / top-level ``lm_head`` (Qwen3-VL HF naming).
    """
    body_prefix, head_prefix = ("language_model.model.", "language_model.") if style == "framework" else (
        "model.language_model.", ""
    )
    parts = key.split(".")
    if parts[0] == "layers":
        if parts[2] == "self_attn":
            parts[3] = _TO_ORIGINAL_ATTN.get(parts[3], parts[3])
        return body_prefix + ".".join(parts)
    if parts[0] in ("embed_tokens", "norm", "norm_moe_gen"):
        return body_prefix + key
    if parts[0] == "lm_head":
        return head_prefix + key
    if parts[0] == "time_embedder":
        return "time_embedder.mlp." + {"linear_1": "0", "linear_2": "2"}[parts[1]] + "." + ".".join(parts[2:])
    if parts[0] in _TO_ORIGINAL_HEADS:
        return ".".join([_TO_ORIGINAL_HEADS[parts[0]], *parts[1:]])
    return key


def write_single_file(
    model,
    path: Path,
    layout: str = "diffusers",
    style: str = "framework",
    prefix: str = "",
    vision_keys: bool = False,
    dtype: torch.dtype | None = None,
) -> Path:
    """Save ``model``'s weights as one ``.safetensors`` file.

    ``layout``: ``"diffusers"`` keys or ``"original"`` cosmos-framework keys (see :func:`original_key`);
    ``prefix`` is prepended to every key (e.g. ``"net."``); ``vision_keys`` adds a few ``model.visual.*``
    tensors that a loader must drop.
    """
    tensors: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        name = key if layout == "diffusers" else original_key(key, style)
        value = value.detach().contiguous()
        tensors[prefix + name] = value.to(dtype) if dtype is not None else value.clone()
    if vision_keys:
        tensors[prefix + "model.visual.patch_embed.proj.weight"] = torch.randn(8, 3, 2, 2)
        tensors[prefix + "model.visual.blocks.0.attn.qkv.weight"] = torch.randn(24, 8)
    save_file(tensors, str(path))
    return Path(path)


def write_random_checkpoint(
    config: dict[str, Any], path: Path, dtype: torch.dtype = torch.float32, seed: int = 0
) -> int:
    """Write random weights with diffusers keys for ``config`` without building a model; returns their bytes.

    Fast path for big fixtures (memory tests): norms are 1, everything else N(0, 0.02).
    """
    from accelerate import init_empty_weights
    from diffusers import Cosmos3OmniTransformer

    with init_empty_weights():
        meta = Cosmos3OmniTransformer(**config)
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for key, value in meta.state_dict().items():
        if value.dim() == 1 and "norm" in key:
            tensors[key] = torch.ones(value.shape, dtype=dtype)
        else:
            tensors[key] = (0.02 * torch.randn(value.shape, generator=generator)).to(dtype)
    save_file(tensors, str(path))
    return sum(t.numel() * t.element_size() for t in tensors.values())


# ---------------------------------------------------------------------------------------------- oracle


def pack_reference_inputs(
    model,
    input_ids: torch.Tensor,
    latents: torch.Tensor,
    timestep: int | float,
    fps: float = 24.0,
    condition_frames: tuple[int, ...] = (),
) -> tuple[dict, int, int]:
    """The ``[text ; vision]`` part of a diffusers forward, packed like ``Cosmos3OmniPipeline``: ``(forward kwargs,
    temporal offset of the generated modalities, sequence length so far)``. ``latents`` [1, C, T, h, w]."""
    from diffusers.pipelines.cosmos.pipeline_cosmos3_omni import (
        get_3d_mrope_ids_text_tokens,
        get_3d_mrope_ids_vae_tokens,
    )

    cfg = model.config
    ids = input_ids.reshape(-1).long()
    und_len = ids.shape[0]
    text_ids, next_offset = get_3d_mrope_ids_text_tokens(
        num_tokens=und_len, temporal_offset=0, use_float_positions=cfg.enable_fps_modulation
    )
    offset = next_offset + cfg.unified_3d_mrope_temporal_modality_margin
    _, _, frames, height, width = latents.shape
    p = cfg.latent_patch_size
    rows, cols = math.ceil(height / p), math.ceil(width / p)
    per_frame = rows * cols
    num_vision = frames * per_frame
    noisy = torch.tensor([f for f in range(frames) if f not in set(condition_frames)], dtype=torch.long)
    mse = [und_len + f * per_frame + j for f in noisy.tolist() for j in range(per_frame)]
    vision_ids, _ = get_3d_mrope_ids_vae_tokens(
        grid_t=frames, grid_h=rows, grid_w=cols, temporal_offset=offset,
        reset_spatial_indices=cfg.unified_3d_mrope_reset_spatial_ids,
        fps=fps if cfg.enable_fps_modulation else None, base_fps=float(cfg.base_fps), temporal_compression_factor=4,
    )
    kwargs = dict(
        input_ids=ids,
        text_indexes=torch.arange(und_len),
        position_ids=torch.cat([text_ids, vision_ids], dim=1),
        und_len=und_len,
        vision_tokens=[latents.to(model.proj_in.weight.dtype)],
        vision_token_shapes=[(frames, rows, cols)],
        vision_sequence_indexes=torch.arange(und_len, und_len + num_vision),
        vision_mse_loss_indexes=torch.tensor(mse, dtype=torch.long),
        vision_timesteps=torch.full((len(noisy) * per_frame,), timestep),
        vision_noisy_frame_indexes=[noisy],
    )
    return kwargs, offset, und_len + num_vision


def reference_velocity(
    model,
    input_ids: torch.Tensor,
    latents: torch.Tensor,
    timestep: int | float,
    fps: float = 24.0,
    condition_frames: tuple[int, ...] = (),
) -> torch.Tensor:
    """One diffusers forward on the packed ``[text ; vision]`` sequence, built like ``Cosmos3OmniPipeline``.

    ``latents`` [1, C, T, h, w]; returns the vision velocity [1, C, T, h, w] (zeros at conditioning frames).
    """
    kwargs, _, length = pack_reference_inputs(model, input_ids, latents, timestep, fps, condition_frames)
    with torch.no_grad():
        preds, _, _ = model(**kwargs, sequence_length=length, return_dict=False)
    return preds[0]
