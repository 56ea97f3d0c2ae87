"""Hyper-parameters of the Cosmos3 Mixture-of-Transformers DiT, parsed and checked.

The source of truth is a diffusers ``transformer/config.json`` (class ``Cosmos3OmniTransformer``). Every field
diffusers writes is accepted, plus the extras Edge configs carry (``backbone_type``, ``layer_norm_epsilon``,
...). Unknown fields and inconsistent values raise :class:`ConfigError` naming the field, so a wrong or
hand-edited config fails at load time instead of producing noise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ..errors import Cosmos3Error
from ..files.json_files import read_json_object

EDGE_BACKBONE = "cosmos3_edge_nemotron_dense"
HIDDEN_ACTS = ("silu", "relu2")

# Written by diffusers / the hub as bookkeeping; never architecture.
_METADATA_FIELDS = frozenset(
    {"_class_name", "_diffusers_version", "_name_or_path", "_use_default_values", "_commit_hash"}
)
# Load-time hints or training-only knobs that do not change the inference math.
_IGNORED_FIELDS = frozenset({"dtype", "attention_dropout"})
# Fields that only select among values we validate (accepted, checked, not stored).
_CHECKED_ONLY_FIELDS = frozenset({"backbone_type", "position_embedding_type", "joint_attn_implementation"})
_ALIASES = {"layer_norm_epsilon": "rms_norm_eps"}

# Per-variant constants used when a field is absent (diffusers defaults are the Nano values).
_QWEN_DEFAULTS = {"rms_norm_eps": 1e-6, "rope_theta": 5_000_000.0, "vocab_size": 151936}
_EDGE_DEFAULTS = {"rms_norm_eps": 1e-5, "rope_theta": 100_000_000.0, "vocab_size": 131072}


class ConfigError(Cosmos3Error):
    """A transformer config field is unknown, missing, of the wrong type or inconsistent."""


@dataclass(frozen=True)
class TransformerConfig:
    """Architecture of one Cosmos3 transformer (both towers share these numbers).

    Defaults are the Nano values. ``rope_axes_dim`` = (t, h, w) frequency slots of the interleaved 3-D mRoPE.
    """

    hidden_size: int = 4096
    num_hidden_layers: int = 36
    num_attention_heads: int = 32
    num_key_value_heads: int = 8
    head_dim: int = 128
    intermediate_size: int = 12288
    vocab_size: int = 151936
    hidden_act: str = "silu"
    rms_norm_eps: float = 1e-6
    rope_theta: float = 5_000_000.0
    rope_axes_dim: tuple[int, int, int] = (24, 20, 20)
    attention_bias: bool = False
    qk_norm_for_text: bool = True
    use_und_k_norm_for_gen: bool = False
    latent_channel: int = 48
    latent_patch_size: int = 2
    patch_latent_dim: int = 192
    timestep_scale: float = 0.001
    base_fps: float = 24.0
    enable_fps_modulation: bool = True
    temporal_compression_factor: int = 4
    unified_3d_mrope_reset_spatial_ids: bool = True
    unified_3d_mrope_temporal_modality_margin: int = 15000
    sound_gen: bool = False
    sound_dim: int | None = None
    sound_latent_fps: float = 25.0
    action_gen: bool = False
    action_dim: int | None = None
    num_embodiment_domains: int = 32

    def __post_init__(self) -> None:
        _validate(self)

    # ------------------------------------------------------------------ derived values
    @property
    def is_edge(self) -> bool:
        """Nemotron-backbone variant (relu² MLP, Nemotron RMSNorm)."""
        return self.hidden_act == "relu2"

    @property
    def norm_flavour(self) -> str:
        """``"nemotron"`` (weight multiply in fp32) or ``"qwen"`` (cast, then weight multiply)."""
        return "nemotron" if self.hidden_act == "relu2" else "qwen"

    @property
    def q_dim(self) -> int:
        return self.num_attention_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_key_value_heads * self.head_dim

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], source: str = "transformer config") -> TransformerConfig:
        """Parse a diffusers-style config dict; raise :class:`ConfigError` naming any bad field."""
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{source}: expected a JSON object, got {type(raw).__name__}")
        known = {f.name for f in fields(cls)}
        accepted = known | _METADATA_FIELDS | _IGNORED_FIELDS | _CHECKED_ONLY_FIELDS | set(_ALIASES) | {"rope_scaling"}
        unknown = sorted(k for k in raw if k not in accepted)
        if unknown:
            raise ConfigError(
                f"{source}: unknown field(s) {', '.join(repr(k) for k in unknown)}; this is not a Cosmos3 "
                "transformer config or it comes from an unsupported version"
            )
        class_name = raw.get("_class_name")
        if class_name is not None and not str(class_name).startswith("Cosmos3"):
            raise ConfigError(f"{source}: field '_class_name' is {class_name!r}, expected a Cosmos3 transformer")

        values: dict[str, Any] = {k: v for k, v in raw.items() if k in known}
        for alias, name in _ALIASES.items():
            if alias in raw:
                if name in values and values[name] != raw[alias]:
                    raise ConfigError(
                        f"{source}: fields '{alias}' ({raw[alias]!r}) and '{name}' ({values[name]!r}) disagree"
                    )
                values[name] = raw[alias]

        backbone = raw.get("backbone_type")
        if backbone is not None and backbone != EDGE_BACKBONE:
            raise ConfigError(f"{source}: field 'backbone_type' is {backbone!r}; allowed: {EDGE_BACKBONE!r} or absent")
        if backbone == EDGE_BACKBONE and values.get("hidden_act", "relu2") != "relu2":
            raise ConfigError(
                f"{source}: field 'hidden_act' is {values['hidden_act']!r} but backbone_type {EDGE_BACKBONE!r} "
                "uses 'relu2'"
            )
        edge = backbone == EDGE_BACKBONE or values.get("hidden_act") == "relu2"
        if edge:
            values.setdefault("hidden_act", "relu2")
            values.setdefault("qk_norm_for_text", False)
            values.setdefault("use_und_k_norm_for_gen", True)
        for name, default in (_EDGE_DEFAULTS if edge else _QWEN_DEFAULTS).items():
            values.setdefault(name, default)
        only = (("position_embedding_type", "unified_3d_mrope"), ("joint_attn_implementation", "two_way"))
        for name, allowed in only:
            if name in raw and raw[name] != allowed:
                raise ConfigError(f"{source}: field '{name}' is {raw[name]!r}; only {allowed!r} is supported")

        _merge_rope_fields(values, raw.get("rope_scaling"), source)
        if "head_dim" not in values:
            hidden, heads = (
                values.get("hidden_size", cls.hidden_size),
                values.get("num_attention_heads", cls.num_attention_heads),
            )
            if not (isinstance(hidden, int) and isinstance(heads, int) and heads > 0 and hidden % heads == 0):
                raise ConfigError(
                    f"{source}: field 'head_dim' is absent and hidden_size {hidden!r} is not a multiple of "
                    f"num_attention_heads {heads!r}"
                )
            values["head_dim"] = hidden // heads
        for name in ("base_fps", "sound_latent_fps", "rope_theta", "rms_norm_eps", "timestep_scale"):
            if isinstance(values.get(name), int) and not isinstance(values.get(name), bool):
                values[name] = float(values[name])
        try:
            return cls(**values)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    @classmethod
    def from_file(cls, path: str | Path) -> TransformerConfig:
        """Read a ``config.json`` file."""
        return cls.from_dict(read_json_object(path, ConfigError, "config"), source=str(path))

    def to_dict(self) -> dict[str, Any]:
        """Diffusers-compatible dict (``rope_axes_dim`` as a list)."""
        out = asdict(self)
        out["rope_axes_dim"] = list(self.rope_axes_dim)
        return out


def load_config_source(config: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """Return the raw dict of a config given as a dict, a ``config.json`` path, or a folder holding one."""
    if isinstance(config, Mapping):
        return dict(config)
    path = Path(config)
    if path.is_dir():
        path = path / "config.json"
    return read_json_object(path, ConfigError, "config")


def _merge_rope_fields(values: dict[str, Any], rope_scaling: Any, source: str) -> None:
    """Fold the legacy ``rope_scaling`` dict into ``rope_axes_dim`` (which wins in diffusers; must agree)."""
    if rope_scaling is None:
        pass
    elif not isinstance(rope_scaling, Mapping):
        raise ConfigError(f"{source}: field 'rope_scaling' must be an object or null, got {rope_scaling!r}")
    else:
        extra = sorted(set(rope_scaling) - {"mrope_interleaved", "mrope_section", "rope_type", "type"})
        if extra:
            raise ConfigError(f"{source}: field 'rope_scaling' has unknown key(s) {extra}")
        if rope_scaling.get("mrope_interleaved", True) is not True:
            raise ConfigError(
                f"{source}: field 'rope_scaling.mrope_interleaved' must be true (chunked mRoPE is not used by Cosmos3)"
            )
        for key in ("rope_type", "type"):
            if rope_scaling.get(key, "default") != "default":
                raise ConfigError(
                    f"{source}: field 'rope_scaling.{key}' is {rope_scaling[key]!r}; only 'default' is supported"
                )
        section = rope_scaling.get("mrope_section")
        if section is not None:
            if values.get("rope_axes_dim") is not None and list(values["rope_axes_dim"]) != list(section):
                raise ConfigError(
                    f"{source}: fields 'rope_axes_dim' {list(values['rope_axes_dim'])} and "
                    f"'rope_scaling.mrope_section' {list(section)} disagree"
                )
            values.setdefault("rope_axes_dim", section)
    if values.get("rope_axes_dim") is None:
        values.pop("rope_axes_dim", None)
    elif isinstance(values["rope_axes_dim"], (list, tuple)):
        values["rope_axes_dim"] = tuple(values["rope_axes_dim"])


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _validate(cfg: TransformerConfig) -> None:
    for name in (
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "intermediate_size",
        "vocab_size",
        "latent_channel",
        "latent_patch_size",
        "patch_latent_dim",
        "temporal_compression_factor",
        "num_embodiment_domains",
    ):
        value = getattr(cfg, name)
        if not _is_int(value) or value <= 0:
            raise ConfigError(f"field '{name}' must be a positive integer, got {value!r}")
    if not _is_int(cfg.unified_3d_mrope_temporal_modality_margin) or cfg.unified_3d_mrope_temporal_modality_margin < 0:
        raise ConfigError(
            "field 'unified_3d_mrope_temporal_modality_margin' must be a non-negative integer, "
            f"got {cfg.unified_3d_mrope_temporal_modality_margin!r}"
        )
    for name in ("rms_norm_eps", "rope_theta", "timestep_scale", "base_fps", "sound_latent_fps"):
        value = getattr(cfg, name)
        if not _is_number(value) or value <= 0:
            raise ConfigError(f"field '{name}' must be a positive number, got {value!r}")
    for name in (
        "attention_bias",
        "qk_norm_for_text",
        "use_und_k_norm_for_gen",
        "enable_fps_modulation",
        "unified_3d_mrope_reset_spatial_ids",
        "sound_gen",
        "action_gen",
    ):
        if not isinstance(getattr(cfg, name), bool):
            raise ConfigError(f"field '{name}' must be true or false, got {getattr(cfg, name)!r}")
    if cfg.hidden_act not in HIDDEN_ACTS:
        raise ConfigError(f"field 'hidden_act' is {cfg.hidden_act!r}; allowed: {', '.join(HIDDEN_ACTS)}")
    if cfg.num_attention_heads % cfg.num_key_value_heads:
        raise ConfigError(
            f"field 'num_attention_heads' ({cfg.num_attention_heads}) must be a multiple of "
            f"num_key_value_heads ({cfg.num_key_value_heads})"
        )
    if cfg.head_dim % 2:
        raise ConfigError(f"field 'head_dim' must be even for rotary embeddings, got {cfg.head_dim}")
    axes = cfg.rope_axes_dim
    if not (isinstance(axes, tuple) and len(axes) == 3 and all(_is_int(a) and a >= 0 for a in axes)):
        raise ConfigError(f"field 'rope_axes_dim' must be three non-negative integers, got {axes!r}")
    half = cfg.head_dim // 2
    if sum(axes) != half:
        raise ConfigError(f"field 'rope_axes_dim' {list(axes)} must sum to head_dim/2 = {half} (sums to {sum(axes)})")
    if 3 * max(axes[1], axes[2]) > half:
        raise ConfigError(
            f"field 'rope_axes_dim' {list(axes)}: the interleaved layout needs 3*h and 3*w <= head_dim/2 = {half}"
        )
    if cfg.use_und_k_norm_for_gen and cfg.qk_norm_for_text:
        raise ConfigError(
            "field 'use_und_k_norm_for_gen' is true but 'qk_norm_for_text' is also true; the extra generator-side "
            "text key norm only exists when the text tower has no q/k norm (Edge)"
        )
    if cfg.patch_latent_dim != cfg.latent_patch_size**2 * cfg.latent_channel:
        raise ConfigError(
            f"field 'patch_latent_dim' ({cfg.patch_latent_dim}) must equal latent_patch_size^2 * latent_channel "
            f"= {cfg.latent_patch_size**2 * cfg.latent_channel}"
        )
    if cfg.sound_gen and (not _is_int(cfg.sound_dim) or cfg.sound_dim <= 0):
        raise ConfigError(f"field 'sound_dim' must be a positive integer when sound_gen is true, got {cfg.sound_dim!r}")
    if cfg.action_gen and (not _is_int(cfg.action_dim) or cfg.action_dim <= 0):
        raise ConfigError(
            f"field 'action_dim' must be a positive integer when action_gen is true, got {cfg.action_dim!r}"
        )
