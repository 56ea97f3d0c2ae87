"""Load the Wan 2.2 VAE from a diffusers ``vae/`` folder or from an original-layout single file.

Accepted locations for :func:`load_vae`:

* a diffusers ``AutoencoderKLWan`` folder (``config.json`` + ``diffusion_pytorch_model.safetensors``, possibly
  sharded), or a model root holding such a ``vae/`` folder (the Cosmos3 repos);
* a single ``.safetensors`` file in the original Wan 2.2 key layout (ComfyUI's ``wan2.2_vae.safetensors``:
  ``encoder.downsamples.*``, ``decoder.upsamples.*``, ``conv1``/``conv2`` ...) or in the diffusers layout. A
  single file has no config: a ``config.json`` beside it is used if present, else the Wan 2.2 defaults.

Weights are assigned tensor by tensor into a model built on the meta device, so the weights never exist
twice. Every key problem (missing, unexpected, mis-shaped) is reported in one :class:`CheckpointKeyError`;
unreadable, truncated or non-safetensors files raise :class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ..files.json_files import read_json_object
from ..files.safetensors import (
    CheckpointError,
    CheckpointKeyError,
    SafetensorsReader,
    assign_tensor,
    check_keys,
    finish_loading,
    module_shapes,
    resolve_component,
)
from .config import WAN22_VAE_CONFIG, VAEConfigError, WanVAEConfig
from .model import WanVAE

DIFFUSERS_MARKER = "decoder.mid_block.resnets.0.norm1.gamma"
ORIGINAL_MARKER = "decoder.middle.0.residual.0.gamma"
WAN22_ORIGINAL_MARKER = "decoder.upsamples.0.upsamples.0.residual.2.weight"  # absent from Wan 2.1 files
_STRIPPABLE_PREFIXES = ("vae.", "first_stage_model.")
_FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)

# Original Wan names of the ResBlock members (an nn.Sequential upstream: norm, SiLU, conv, norm, SiLU,
# dropout, conv) and of the model-level parts.
_RESBLOCK_NAMES = {
    "norm1.gamma": "residual.0.gamma",
    "conv1.weight": "residual.2.weight",
    "conv1.bias": "residual.2.bias",
    "norm2.gamma": "residual.3.gamma",
    "conv2.weight": "residual.6.weight",
    "conv2.bias": "residual.6.bias",
    "conv_shortcut.weight": "shortcut.weight",
    "conv_shortcut.bias": "shortcut.bias",
}
_TOP_NAMES = {"quant_conv": "conv1", "post_quant_conv": "conv2"}
_PART_NAMES = {"conv_in": "conv1", "norm_out": "head.0", "conv_out": "head.2"}
_MID_NAMES = {"resnets.0": "middle.0", "attentions.0": "middle.1", "resnets.1": "middle.2"}
_BLOCK_RE = re.compile(r"^(down|up)_blocks\.(\d+)\.(resnets\.(\d+)|downsampler|upsampler)\.(.+)$")


def original_key(key: str, num_res_blocks: int) -> str:
    """Map one of our (diffusers-layout) parameter names to the original Wan 2.2 name."""
    top, _, rest = key.partition(".")
    if top in _TOP_NAMES:
        return f"{_TOP_NAMES[top]}.{rest}"
    if top not in ("encoder", "decoder"):
        raise KeyError(f"no original-layout name for {key!r}")
    part, _, leaf = rest.partition(".")
    if part in _PART_NAMES:
        return f"{top}.{_PART_NAMES[part]}.{leaf}"
    if part == "mid_block":
        head, leaf = ".".join(leaf.split(".")[:2]), ".".join(leaf.split(".")[2:])
        if head.startswith("resnets."):
            leaf = _RESBLOCK_NAMES[leaf]
        return f"{top}.{_MID_NAMES[head]}.{leaf}"
    m = _BLOCK_RE.match(rest)
    if m is None:
        raise KeyError(f"no original-layout name for {key!r}")
    kind, level, _, res_index, leaf = m.groups()
    outer = "downsamples" if kind == "down" else "upsamples"
    if res_index is not None:
        index, leaf = int(res_index), _RESBLOCK_NAMES[leaf]
    else:  # the resampler follows the ResBlocks: num_res_blocks of them down, num_res_blocks + 1 up
        index = num_res_blocks if kind == "down" else num_res_blocks + 1
    return f"{top}.{outer}.{level}.{outer}.{index}.{leaf}"


def original_key_map(model: WanVAE) -> dict[str, str]:
    """``{our name: original Wan 2.2 name}`` for every parameter of ``model``."""
    return {k: original_key(k, model.config.num_res_blocks) for k in module_shapes(model)}


def detect_layout(keys: set[str], source: str) -> tuple[str, str]:
    """Return ``(layout, prefix)`` with layout ``"diffusers"`` or ``"original"``; refuse Wan 2.1 / unknown files."""
    for prefix in ("", *_STRIPPABLE_PREFIXES):
        if prefix + DIFFUSERS_MARKER in keys:
            return "diffusers", prefix
        if prefix + ORIGINAL_MARKER in keys:
            if prefix + WAN22_ORIGINAL_MARKER not in keys:
                raise CheckpointError(
                    f"{source}: this looks like the 16-channel Wan 2.1 VAE (no "
                    f"'{WAN22_ORIGINAL_MARKER}'); Cosmos3 needs the 48-channel Wan 2.2 VAE (wan2.2_vae.safetensors)"
                )
            return "original", prefix
    sample = ", ".join(sorted(keys)[:5]) or "no tensors"
    raise CheckpointError(
        f"{source}: not a Wan 2.2 VAE checkpoint (neither '{DIFFUSERS_MARKER}' nor '{ORIGINAL_MARKER}' found; "
        f"first keys: {sample})"
    )


def _describe_mismatch(post_quant_shape: tuple[int, ...] | None, z_dim: int) -> str | None:
    """The one-line summary of a key mismatch: the latent width says whether this is a Wan 2.2 VAE at all."""
    if post_quant_shape is None:
        return f"not a Wan 2.2 VAE: no 'post_quant_conv' tensor ({z_dim}-channel latent expected)"
    if post_quant_shape[0] != z_dim:
        return f"not a Wan 2.2 VAE: {z_dim}-channel latent expected, file has {post_quant_shape[0]}"
    return None


def _read_config(config_path: Path) -> WanVAEConfig:
    raw = read_json_object(config_path, CheckpointError, "VAE config")
    try:
        return WanVAEConfig.from_diffusers(raw, source=str(config_path))
    except VAEConfigError as exc:
        raise CheckpointError(str(exc)) from None


def resolve_vae_location(path: str | Path) -> tuple[list[Path], WanVAEConfig, str]:
    """Return ``(safetensors files, config, description)`` for a folder or single-file location."""
    return resolve_component(path, "vae", "diffusers VAE", _read_config, WAN22_VAE_CONFIG)


def load_vae(
    path: str | Path,
    dtype: torch.dtype = torch.bfloat16,
    device: torch.device | str = "cpu",
) -> WanVAE:
    """Load the Wan 2.2 VAE (see the module docstring for accepted locations) in ``dtype`` on ``device``.

    Raises :class:`CheckpointError` / :class:`CheckpointKeyError` for unusable checkpoints and ``TypeError``
    for a non-floating ``dtype``.
    """
    if dtype not in _FLOAT_DTYPES:
        raise TypeError(f"load_vae: dtype must be one of {', '.join(map(str, _FLOAT_DTYPES))}, got {dtype!r}")
    device = torch.device(device)
    files, config, source = resolve_vae_location(path)
    with SafetensorsReader(files) as reader:
        layout, prefix = detect_layout(set(reader), source)
        with torch.device("meta"):
            model = WanVAE(config)
        shapes = module_shapes(model)
        if layout == "original":
            names = {k: prefix + v for k, v in original_key_map(model).items()}
        else:
            names = {k: prefix + k for k in shapes}
        found = {k: info.shape for k, info in reader.items()}
        check_keys({names[k]: s for k, s in shapes.items()}, found, f"{source} ({layout} layout)",
                   summary=_describe_mismatch(found.get(names["post_quant_conv.weight"]), config.z_dim))
        bad_dtypes = [
            f"{names[k]} ({reader[names[k]].dtype})" for k in shapes if reader[names[k]].dtype not in _FLOAT_DTYPES
        ]
        if bad_dtypes:
            raise CheckpointKeyError(f"{source}: non-floating tensors: {', '.join(bad_dtypes)}")
        for key in shapes:
            tensor = reader.load(names[key]).to(device=device, dtype=dtype)
            assign_tensor(model, key, tensor)
    finish_loading(model, source)
    return model
