"""Load a Cosmos3 transformer from safetensors without ever holding two copies of the weights.

Accepted layouts:

* a diffusers ``transformer/`` folder (``config.json`` + one ``.safetensors`` or shards with a
  ``*.safetensors.index.json``), or the pipeline root that contains it;
* one ``.safetensors`` file with diffusers key names;
* one ``.safetensors`` file with the original cosmos-framework names (``language_model.model.*`` /
  ``model.language_model.*``, ``q_proj_moe_gen``, ``vae2llm``, ``time_embedder.mlp.0`` ...), optionally under a
  ``net.`` / ``model.diffusion_model.`` prefix. Vision-encoder tensors (``model.visual.*``) are dropped.

A single file carries no config: the architecture is inferred from tensor shapes and ``base_fps`` from the
file name (16 for Image2Video-4Step); ``config=`` overrides any field.

FP8: ``weight_storage="fp8_e4m3fn"`` stores the decoder-layer projections as scaled e4m3
(:mod:`cosmos3.model.fp8`), quantising bf16/fp32 checkpoints on load. NVIDIA ModelOpt FP8 checkpoints (F8_E4M3
weights with ``weight_scale`` / ``input_scale`` tensors, ``quantization_config`` in ``config.json``) load in any
storage mode: kept as fp8 (``"fp8_e4m3fn"`` or ``"auto"``) or dequantised to ``dtype`` (``"default"``).

Also GGUF files and int8/int4 storage (:mod:`cosmos3.model.quant`). The model is built on the meta device and
each tensor is mapped from the file (copy-on-write), converted and moved in turn: a tensor kept in the file's
dtype on the CPU stays file-backed (reclaimable), so anonymous host memory stays <= ~1x the kept weights.
``lm_head.weight``, the text tower's final ``norm.weight`` and the last text layer's query/output/MLP weights are
accepted (shape-checked) but never read: generation does not use them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import torch

from ..defaults import checkpoint_base_fps, checkpoint_kind_from_name
from ..files.json_files import read_json_object
from ..files.safetensors import (
    CheckpointError,
    CheckpointKeyError,
    SafetensorsReader,
    assign_tensor,
    check_keys,
    meta_leftovers,
    module_shapes,
)
from .config import EDGE_BACKBONE, ConfigError, TransformerConfig, load_config_source
from .fp8 import (
    FP8_DTYPE,
    Fp8Linear,
    check_weight_storage,
    dequantize_fp8,
    normalize_scale,
    quantize_fp8,
    swap_in_fp8_linears,
)
from .key_summary import describe_transformer_mismatch
from .layers import TextLayer, TextTower
from .quant.loader import assign_quant, plan_quant_modules
from .quant.sources import merged_config, open_weights
from .transformer import Cosmos3Transformer

ATTENTION_LEAVES = frozenset(
    {
        "to_q", "to_k", "to_v", "to_out", "norm_q", "norm_k", "k_norm_und_for_gen",
        "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out", "norm_added_q", "norm_added_k",
    }
)
FP32_PREFIXES = ("gen_tower.time_embedder.",)
# Quantisation side tensors: used ones (per weight) and ignored ones (KV-cache / output scales: K/V stay in
# the compute dtype here).
SCALE_SUFFIXES = (".weight_scale", ".input_scale")
IGNORED_SCALE_SUFFIXES = (".k_scale", ".v_scale", ".output_scale")
_FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)
SUPPORTED_QUANT_ALGOS = ("FP8",)

_OUTER_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "net.")
_LANGUAGE_PREFIXES = ("model.language_model.", "language_model.model.", "language_model.", "model.")
_VISION_PREFIXES = ("visual.", "vision_model.", "vision_tower.")
# Generation-side names first: they would otherwise be caught by the shorter text-side names.
_ATTENTION_RENAMES = {
    "q_proj_moe_gen": "add_q_proj",
    "k_proj_moe_gen": "add_k_proj",
    "v_proj_moe_gen": "add_v_proj",
    "o_proj_moe_gen": "to_add_out",
    "q_norm_moe_gen": "norm_added_q",
    "k_norm_moe_gen": "norm_added_k",
    "q_proj": "to_q",
    "k_proj": "to_k",
    "v_proj": "to_v",
    "o_proj": "to_out",
    "q_norm": "norm_q",
    "k_norm": "norm_k",
}
_HEAD_RENAMES = {
    "vae2llm": "proj_in",
    "llm2vae": "proj_out",
    "sound2llm": "audio_proj_in",
    "llm2sound": "audio_proj_out",
    "sound_modality_embed": "audio_modality_embed",
    "action2llm": "action_proj_in",
    "llm2action": "action_proj_out",
}
_TIME_MLP_RENAMES = {"0": "linear_1", "2": "linear_2"}
_LAYER_RE = re.compile(r"^layers\.(\d+)\.")


def load_transformer(
    path: str | Path,
    dtype: torch.dtype = torch.bfloat16,
    device: torch.device | str = "cpu",
    config: str | Path | Mapping[str, Any] | None = None,
    operations: ModuleType | SimpleNamespace | None = None,
    *,
    weight_storage: str | torch.dtype | None = None,
    text_tower_device: torch.device | str | None = None,
) -> Cosmos3Transformer:
    """Load a Cosmos3 transformer for inference.

    Args:
        path: diffusers ``transformer/`` folder (or the pipeline root holding it) or one ``.safetensors`` file.
        dtype: parameter/compute dtype (the timestep MLP stays fp32).
        device: where the weights end up.
        config: optional override: a dict, a ``config.json`` path or a folder with one; its fields replace
            the folder's config or the shape-inferred one.
        operations: ``Linear``/``Embedding`` provider (default ``torch.nn``); fp8-stored projections always
            use :class:`cosmos3.model.fp8.Fp8Linear`.
        weight_storage: ``None``/``"default"``: every weight in ``dtype`` (fp8 checkpoints are dequantised);
            ``"fp8_e4m3fn"`` (alias ``"fp8"``): decoder-layer projections in scaled e4m3, computed in ``dtype``;
            ``"auto"``: fp8 when the checkpoint's layer weights are fp8, else ``dtype``.
        text_tower_device: where the text tower's weights go (default ``device``), e.g. ``"cpu"`` so that only
            the generation tower ever occupies the GPU (see :class:`cosmos3.runtime.offload.TextTowerResidency`).

    Raises:
        CheckpointError: missing/corrupt/non-safetensors files; :class:`CheckpointKeyError` (a subclass) lists
            every missing, unexpected and mis-shaped tensor at once.
        ConfigError: unknown or inconsistent config fields.
    """
    return _load(path, dtype, device, config, operations, weight_storage, text_tower_device, only=None)


def load_text_tower(
    path: str | Path,
    dtype: torch.dtype = torch.bfloat16,
    device: torch.device | str = "cpu",
    config: str | Path | Mapping[str, Any] | None = None,
    operations: ModuleType | SimpleNamespace | None = None,
    *,
    weight_storage: str | torch.dtype | None = None,
) -> TextTower:
    """Load only the text tower (embedding + UND weights) of a checkpoint, e.g. to re-encode a new prompt
    after :meth:`~cosmos3.model.transformer.Cosmos3Transformer.drop_text_tower`. Same arguments as
    :func:`load_transformer`; the generation-tower tensors are validated but never read."""
    model = _load(path, dtype, device, config, operations, weight_storage, None, only="text_tower.")
    tower = model.text_tower
    assert tower is not None
    return tower


def _load(
    path: str | Path,
    dtype: torch.dtype,
    device: torch.device | str,
    config: str | Path | Mapping[str, Any] | None,
    operations: ModuleType | SimpleNamespace | None,
    weight_storage: str | torch.dtype | None,
    text_tower_device: torch.device | str | None,
    only: str | None,
) -> Cosmos3Transformer:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point or dtype in _FP8_DTYPES:
        raise ValueError(
            f"load_transformer: dtype must be a floating torch.dtype (fp32/fp16/bf16), got {dtype!r}; "
            "for fp8 weights pass weight_storage='fp8_e4m3fn'"
        )
    storage = check_weight_storage(weight_storage)
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    if path.is_dir() and (path / "transformer").is_dir() and not (path / "config.json").is_file():
        path = path / "transformer"
    reader = open_weights(path)
    with reader:
        names = checkpoint_name_map(reader.keys(), source=str(path))
        scales = _split_scales(names)
        shapes = {name: reader[src].shape for name, src in names.items()}
        cfg = _resolve_config(path, shapes, merged_config(reader, config))
        model = Cosmos3Transformer(cfg, operations=operations, device="meta", dtype=dtype)
        targets = {model_name: checkpoint_key(model_name) for model_name in module_shapes(model)}
        expected = {targets[n]: s for n, s in module_shapes(model).items()}
        expected.update(_unused_key_shapes(cfg, shapes))
        check_keys(expected, shapes, str(path), summary=describe_transformer_mismatch(expected, shapes))
        _check_scales(scales, names, reader, str(path))
        fp8_in_file = any(reader[names[key]].dtype in _FP8_DTYPES for key in targets.values())
        fp8_modules: set[str] = set()
        if storage == "fp8_e4m3fn" or (storage == "auto" and fp8_in_file):
            fp8_modules = set(swap_in_fp8_linears(model))
        quant_modules = plan_quant_modules(model, reader, names, storage)
        main_device = torch.device(device)
        text_device = torch.device(text_tower_device) if text_tower_device is not None else main_device
        for model_name, key in targets.items():
            if only is not None and not model_name.startswith(only):
                continue
            device = text_device if model_name.startswith("text_tower.") else main_device
            module_name, _, leaf = model_name.rpartition(".")
            if leaf == "weight" and module_name in quant_modules:
                assign_quant(model, module_name, reader, names[key], quant_modules[module_name], device)
                continue
            tensor = reader.load_mapped(names[key])
            stem = key[: -len(".weight")] if key.endswith(".weight") else None
            weight_scale = _load_scale(reader, scales, f"{stem}.weight_scale", tensor) if stem else None
            if module_name in fp8_modules and leaf == "weight":
                _assign_fp8(model, module_name, tensor, weight_scale, scales, reader, stem, device)
                continue
            target_dtype = torch.float32 if model_name.startswith(FP32_PREFIXES) else dtype
            if tensor.dtype in _FP8_DTYPES or weight_scale is not None:
                tensor = dequantize_fp8(tensor, weight_scale, target_dtype)
            tensor = tensor.to(dtype=target_dtype).to(device)
            assign_tensor(model, model_name, tensor)
            del tensor
    leftovers = [n for n in meta_leftovers(model) if only is None or n.startswith(only)]
    if leftovers:  # defensive: every parameter must have been assigned above
        raise CheckpointError(f"{path}: parameters were not loaded: {', '.join(leftovers)}")
    model.eval()
    model.requires_grad_(False)
    return model


# ---------------------------------------------------------------------------------------------- key names


def checkpoint_key(model_name: str) -> str:
    """Diffusers checkpoint key of a :class:`Cosmos3Transformer` parameter name.

    ``text_tower.layers.3.to_q.weight`` -> ``layers.3.self_attn.to_q.weight``;
    ``gen_tower.proj_in.weight`` -> ``proj_in.weight``; ``text_tower.embed_tokens.weight`` -> ``embed_tokens.weight``.
    """
    tower, _, rest = model_name.partition(".")
    if tower not in ("text_tower", "gen_tower"):
        raise KeyError(f"not a Cosmos3Transformer parameter name: {model_name!r}")
    parts = rest.split(".")
    if parts[0] == "layers" and parts[2] in ATTENTION_LEAVES:
        parts.insert(2, "self_attn")
    return ".".join(parts)


def normalize_key(key: str) -> str | None:
    """Map a checkpoint key (diffusers or cosmos-framework layout) to its diffusers name; ``None`` = drop it."""
    for prefix in _OUTER_PREFIXES:
        if key.startswith(prefix):
            key = key[len(prefix):]
            break
    for prefix in _LANGUAGE_PREFIXES:
        if key.startswith(prefix):
            key = key[len(prefix):]
            break
    if key.startswith(_VISION_PREFIXES):
        return None
    parts = key.split(".")
    if parts[0] == "layers" and len(parts) > 3 and parts[2] == "self_attn":
        parts[3] = _ATTENTION_RENAMES.get(parts[3], parts[3])
    elif parts[0] in _HEAD_RENAMES:
        parts[0] = _HEAD_RENAMES[parts[0]]
    elif parts[0] == "time_embedder" and len(parts) > 2 and parts[1] == "mlp" and parts[2] in _TIME_MLP_RENAMES:
        parts[1:3] = [_TIME_MLP_RENAMES[parts[2]]]
    return ".".join(parts)


def checkpoint_name_map(keys: Any, source: str) -> dict[str, str]:
    """``{diffusers name: key in the file}`` for every kept tensor; raises if two keys map to one name."""
    names: dict[str, str] = {}
    clashes: list[str] = []
    for key in keys:
        name = normalize_key(key)
        if name is None:
            continue
        if name in names:
            clashes.append(f"{names[name]!r} and {key!r} both map to {name!r}")
        names[name] = key
    if clashes:
        raise CheckpointKeyError(f"{source}: ambiguous checkpoint keys:\n  " + "\n  ".join(clashes))
    return names


def _split_scales(names: dict[str, str]) -> dict[str, str]:
    """Move quantisation side tensors out of ``names`` (in place); returns ``{diffusers name: file key}`` of the
    used ones (``*.weight_scale``, ``*.input_scale``). KV-cache/output scales are dropped."""
    scales: dict[str, str] = {}
    for name in list(names):
        if name.endswith(SCALE_SUFFIXES):
            scales[name] = names.pop(name)
        elif name.endswith(IGNORED_SCALE_SUFFIXES):
            names.pop(name)
    return scales


def _check_scales(scales: dict[str, str], names: dict[str, str], reader: SafetensorsReader, source: str) -> None:
    """Every scale must belong to a checkpoint weight and be a scalar or one value per output channel."""
    problems = []
    for name, key in sorted(scales.items()):
        stem = name.rpartition(".")[0]
        weight = names.get(f"{stem}.weight")
        if weight is None:
            problems.append(f"    {key}: no matching weight {stem}.weight")
            continue
        out_features = reader[weight].shape[0]
        numel = math.prod(reader[key].shape)
        if numel != 1 and not (name.endswith(".weight_scale") and numel == out_features):
            problems.append(
                f"    {key}: shape {list(reader[key].shape)}; expected a per-tensor scalar"
                + (
                    f" or [{out_features}] per output channel (block-scaled FP8 is not supported)"
                    if name.endswith(".weight_scale")
                    else ""
                )
            )
    if problems:
        raise CheckpointKeyError(f"{source}: unusable fp8 scale tensors:\n" + "\n".join(problems))


def _load_scale(
    reader: SafetensorsReader, scales: dict[str, str], name: str, weight: torch.Tensor
) -> torch.Tensor | None:
    key = scales.get(name)
    if key is None:
        return None
    return normalize_scale(reader.load_copy(key), weight.shape[0], key)


def _assign_fp8(
    model: Cosmos3Transformer,
    module_name: str,
    tensor: torch.Tensor,
    weight_scale: torch.Tensor | None,
    scales: dict[str, str],
    reader: SafetensorsReader,
    stem: str,
    device: torch.device,
) -> None:
    """Store one projection weight as scaled e4m3 (kept as is when the file already holds e4m3)."""
    module = model.get_submodule(module_name)
    assert isinstance(module, Fp8Linear)
    if tensor.dtype == FP8_DTYPE:
        w8, scale = tensor, weight_scale if weight_scale is not None else torch.ones((), dtype=torch.float32)
    else:  # bf16/fp32 (or e5m2) source: quantise per tensor
        w8, scale = quantize_fp8(dequantize_fp8(tensor, weight_scale, torch.float32))
    module.weight = torch.nn.Parameter(w8.to(device), requires_grad=False)
    module.weight_scale = scale.to(device)
    input_key = scales.get(f"{stem}.input_scale")
    if input_key is not None and tensor.dtype == FP8_DTYPE:
        module.input_scale = normalize_scale(reader.load_copy(input_key), 1, input_key).to(device)


def _unused_key_shapes(cfg: TransformerConfig, found: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """Checkpoint tensors that generation never reads (shape-checked when present, never loaded): the LM head,
    the text tower's final norm, and the last text layer's query/output/MLP weights (see ``TextLayer``)."""
    shapes = {"lm_head.weight": (cfg.vocab_size, cfg.hidden_size), "norm.weight": (cfg.hidden_size,)}
    last = cfg.num_hidden_layers - 1
    full = TextLayer(cfg, torch.nn, {"device": "meta"})
    kept = {name for name, _ in TextLayer(cfg, torch.nn, {"device": "meta"}, kv_only=True).named_parameters()}
    for name, param in full.named_parameters():
        if name not in kept:
            shapes[checkpoint_key(f"text_tower.layers.{last}.{name}")] = tuple(param.shape)
    return {k: v for k, v in shapes.items() if k in found}


# ---------------------------------------------------------------------------------------------- config


def _resolve_config(
    path: Path, shapes: Mapping[str, tuple[int, ...]], override: str | Path | Mapping[str, Any] | None
) -> TransformerConfig:
    extra = load_config_source(override) if override is not None else {}
    config_file = path / "config.json" if path.is_dir() else None
    if config_file is not None and config_file.is_file():
        raw = read_json_object(config_file, ConfigError, "config")
        _check_quantization_config(raw.pop("quantization_config", None), str(config_file))
        return TransformerConfig.from_dict({**raw, **extra}, source=str(config_file))
    inferred = infer_config(shapes, source=str(path))
    # No config file: the checkpoint's name is the only hint for a kind-specific base_fps (Image2Video-4Step).
    name = path.parent.name if path.name == "transformer" else (path.stem if path.is_file() else path.name)
    inferred["base_fps"] = float(checkpoint_base_fps(checkpoint_kind_from_name(name)))
    if inferred["head_dim"] != 128 and "rope_axes_dim" not in extra:
        raise ConfigError(
            f"{path}: head_dim is {inferred['head_dim']} (not 128), so the mRoPE sections cannot be inferred from "
            "the tensors; load the diffusers checkpoint folder instead (its transformer/config.json names them), "
            "or, from Python, pass config={'rope_axes_dim': [t, h, w]}"
        )
    source = f"{path} (config inferred from tensor shapes" + (" + override)" if extra else ")")
    return TransformerConfig.from_dict({**inferred, **extra}, source=source)


def _check_quantization_config(quant: Any, source: str) -> None:
    """Accept ModelOpt's ``quantization_config`` block when it describes per-tensor FP8 (the scales themselves
    are validated against the tensors); refuse other algorithms by name."""
    if quant is None:
        return
    if not isinstance(quant, dict):
        raise ConfigError(f"{source}: 'quantization_config' must be an object, got {type(quant).__name__}")
    algo = quant.get("quant_algo")
    if algo is None and isinstance(quant.get("quantization"), dict):
        algo = quant["quantization"].get("quant_algo")
    if algo is not None and str(algo).upper() not in SUPPORTED_QUANT_ALGOS:
        raise ConfigError(
            f"{source}: quantization {algo!r} is not supported; supported: {', '.join(SUPPORTED_QUANT_ALGOS)} "
            "(per-tensor FP8, e.g. NVIDIA ModelOpt FP8 checkpoints) or an unquantised checkpoint"
        )


def infer_config(shapes: Mapping[str, tuple[int, ...]], source: str = "checkpoint") -> dict[str, Any]:
    """Derive the architecture from diffusers-named tensor shapes (used for single-file checkpoints)."""

    def shape(key: str) -> tuple[int, ...]:
        if key not in shapes:
            raise CheckpointKeyError(f"{source}: cannot infer the transformer config: tensor {key!r} is missing")
        return tuple(shapes[key])

    vocab, hidden = shape("embed_tokens.weight")
    layers = sorted({int(m.group(1)) for k in shapes if (m := _LAYER_RE.match(k))})
    if not layers:
        raise CheckpointKeyError(f"{source}: cannot infer the transformer config: no 'layers.N.*' tensors")
    head_dim = shape("layers.0.self_attn.norm_added_q.weight")[0]
    q_rows, kv_rows = shape("layers.0.self_attn.to_q.weight")[0], shape("layers.0.self_attn.to_k.weight")[0]
    if q_rows % head_dim or kv_rows % head_dim:
        raise CheckpointKeyError(
            f"{source}: q/k projection rows ({q_rows}, {kv_rows}) are not multiples of head_dim {head_dim}"
        )
    gated = "layers.0.mlp.gate_proj.weight" in shapes
    und_k_norm = "layers.0.self_attn.k_norm_und_for_gen.weight" in shapes
    patch_dim = shape("proj_in.weight")[1]
    values: dict[str, Any] = {
        "hidden_size": hidden,
        "vocab_size": vocab,
        "num_hidden_layers": layers[-1] + 1,
        "head_dim": head_dim,
        "num_attention_heads": q_rows // head_dim,
        "num_key_value_heads": kv_rows // head_dim,
        "intermediate_size": shape("layers.0.mlp.up_proj.weight")[0],
        "hidden_act": "silu" if gated else "relu2",
        "qk_norm_for_text": "layers.0.self_attn.norm_q.weight" in shapes,
        "use_und_k_norm_for_gen": und_k_norm,
        "attention_bias": "layers.0.self_attn.to_q.bias" in shapes,
        "latent_patch_size": 2,
        "latent_channel": patch_dim // 4,
        "patch_latent_dim": patch_dim,
    }
    if head_dim == 128:
        values["rope_axes_dim"] = [24, 20, 20]
    if not gated:  # relu² MLP = Edge (Nemotron backbone) constants
        values.update(backbone_type=EDGE_BACKBONE, hidden_act="relu2", rms_norm_eps=1e-5, rope_theta=1e8)
    if "audio_proj_in.weight" in shapes:
        values.update(sound_gen=True, sound_dim=shape("audio_proj_in.weight")[1])
    if "action_proj_in.fc.weight" in shapes:
        domains, flat = shape("action_proj_in.fc.weight")
        values.update(action_gen=True, action_dim=flat // hidden, num_embodiment_domains=domains)
    return values
