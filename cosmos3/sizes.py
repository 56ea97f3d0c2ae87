"""Size and frame rules, resolution presets and default generation parameters for Cosmos3.

Rules (all variants):

* height and width are multiples of 16 (the Wan 2.2 VAE compresses 16× spatially);
* a video has 4k + 1 frames (4× temporal compression, the first frame is its own latent frame); an image
  has 1 frame. The framework rounds a request **up** to the next 4k + 1 (:func:`round_frames_up`);
  :func:`nearest_valid_frames` names the valid counts on either side.

Per-variant envelopes (``strict=True``, the default, turns them into errors; the framework only warns):

* Edge: tiers 256 and 480 only (larger grids exceed its trained mRoPE range), video 50–150 frames,
  12–30 fps.
* Nano / Super: tiers 256 / 480 / 704 / 720 (+ 768 for images of the Super-Text2Image checkpoints),
  video at least 24 frames and at most 400 (256 tier), 300 (480) or 200 (704/720/768); fps 10–30.
* ``custom`` (tiny or unknown transformer configs): only the structural rules above.

A size that is not a preset belongs to the smallest allowed tier whose largest preset covers both its
area and its long side; a larger size is out of range.

Variants are identified from the transformer config (:func:`detect_variant`): Edge by
``backbone_type == "cosmos3_edge_nemotron_dense"`` or ``hidden_act == "relu2"`` (with hidden size 2048),
Nano by hidden size 4096 (36 layers, 32 heads), Super by 5120 (64 layers, 64 heads); anything else,
e.g. the tiny test configs, is ``custom``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, NamedTuple

SPATIAL_MULTIPLE = 16
TEMPORAL_COMPRESSION = 4
ASPECT_RATIOS = ("1,1", "4,3", "3,4", "16,9", "9,16")


class SizeError(ValueError):
    """A height, width, frame count or fps is invalid or outside a variant's trained envelope."""


class Size(NamedTuple):
    height: int
    width: int


def _presets(table: Mapping[str, Mapping[str, tuple[int, int]]]) -> dict[str, dict[str, Size]]:
    # the framework lists (width, height); we store Size(height, width)
    return {tier: {ar: Size(h, w) for ar, (w, h) in row.items()} for tier, row in table.items()}


# [REF] cosmos_framework/data/generator/utils.py VIDEO_RES_SIZE_INFO / IMAGE_RES_SIZE_INFO (W, H)
_BUCKETS_WH = {
    "256": {"1,1": (256, 256), "4,3": (320, 256), "3,4": (256, 320), "16,9": (320, 192), "9,16": (192, 320)},
    "480": {"1,1": (640, 640), "4,3": (736, 544), "3,4": (544, 736), "16,9": (832, 480), "9,16": (480, 832)},
    "704": {"1,1": (960, 960), "4,3": (1088, 832), "3,4": (832, 1088), "16,9": (1280, 704), "9,16": (704, 1280)},
    "720": {"1,1": (960, 960), "4,3": (1104, 832), "3,4": (832, 1104), "16,9": (1280, 720), "9,16": (720, 1280)},
    "768": {"1,1": (1024, 1024), "4,3": (1184, 880), "3,4": (880, 1184), "16,9": (1360, 768), "9,16": (768, 1360)},
}
IMAGE_PRESETS: dict[str, dict[str, Size]] = _presets(_BUCKETS_WH)
VIDEO_PRESETS: dict[str, dict[str, Size]] = _presets({**_BUCKETS_WH, "480": {**_BUCKETS_WH["480"], "2,3": (512, 768)}})
TIERS = tuple(IMAGE_PRESETS)

MIN_VIDEO_FRAMES = 24
MAX_VIDEO_FRAMES = {"256": 400, "480": 300, "704": 200, "720": 200, "768": 200}
FPS_RANGE = (10, 30)
EDGE_FRAME_RANGE = (50, 150)
EDGE_FPS_RANGE = (12, 30)


class Variant(str, Enum):
    EDGE = "edge"
    NANO = "nano"
    SUPER = "super"
    CUSTOM = "custom"


_EDGE_BACKBONES = ("cosmos3_edge_nemotron_dense",)
# hidden_size -> (num_hidden_layers, num_attention_heads, variant)
_SHAPES = {2048: (28, 16, Variant.EDGE), 4096: (36, 32, Variant.NANO), 5120: (64, 64, Variant.SUPER)}


def detect_variant(
    *,
    hidden_size: int | None = None,
    hidden_act: str | None = None,
    backbone_type: str | None = None,
    num_hidden_layers: int | None = None,
    num_attention_heads: int | None = None,
) -> Variant:
    """Identify Edge / Nano / Super from transformer-config values; unknown shapes are ``CUSTOM``.

    Layer and head counts are checked only when given.
    """
    edge_like = (backbone_type in _EDGE_BACKBONES) or (hidden_act == "relu2")
    shape = _SHAPES.get(hidden_size) if hidden_size is not None else None
    if shape is None:
        return Variant.CUSTOM
    layers, heads, variant = shape
    if num_hidden_layers is not None and num_hidden_layers != layers:
        return Variant.CUSTOM
    if num_attention_heads is not None and num_attention_heads != heads:
        return Variant.CUSTOM
    if (variant is Variant.EDGE) != edge_like:
        return Variant.CUSTOM
    return variant


def variant_from_config(config: Mapping[str, Any] | Any) -> Variant:
    """:func:`detect_variant` on a config dict (e.g. ``transformer/config.json``) or an object with attributes."""
    fields = ("hidden_size", "hidden_act", "backbone_type", "num_hidden_layers", "num_attention_heads")
    if isinstance(config, Mapping):
        values = {f: config.get(f) for f in fields}
    else:
        values = {f: getattr(config, f, None) for f in fields}
    return detect_variant(**values)


@dataclass(frozen=True)
class VariantLimits:
    """The trained envelope of a variant (see module docstring)."""

    video_tiers: tuple[str, ...]
    image_tiers: tuple[str, ...]
    min_frames: int
    max_frames: int | None  # variant-wide cap on top of the per-tier caps
    fps_range: tuple[int, int]


def variant_limits(variant: Variant | str, *, allow_768: bool = False) -> VariantLimits | None:
    """Envelope for ``variant``; ``None`` for ``custom``. ``allow_768`` adds the 768 image tier (Super-Text2Image)."""
    variant = Variant(variant)
    if variant is Variant.CUSTOM:
        return None
    if variant is Variant.EDGE:
        return VariantLimits(("256", "480"), ("256", "480"), EDGE_FRAME_RANGE[0], EDGE_FRAME_RANGE[1], EDGE_FPS_RANGE)
    image = ("256", "480", "704", "720") + (("768",) if allow_768 else ())
    return VariantLimits(("256", "480", "704", "720"), image, MIN_VIDEO_FRAMES, None, FPS_RANGE)


# ----------------------------------------------------------------------------------------------------
# Rounding helpers


def round_frames_up(num_frames: int) -> int:
    """The framework's rule: the smallest 4k + 1 count ≥ ``num_frames`` (1 stays 1)."""
    n = _positive_int("num_frames", num_frames)
    return math.ceil((n - 1) / TEMPORAL_COMPRESSION) * TEMPORAL_COMPRESSION + 1


def nearest_valid_frames(num_frames: int) -> tuple[int, int]:
    """The valid 4k + 1 counts just below and just above ``num_frames`` (equal when it is valid)."""
    n = _positive_int("num_frames", num_frames)
    below = (n - 1) // TEMPORAL_COMPRESSION * TEMPORAL_COMPRESSION + 1
    return below, round_frames_up(n)


def round_size_up(value: int, multiple: int = SPATIAL_MULTIPLE) -> int:
    """The smallest multiple of 16 ≥ ``value``."""
    v = _positive_int("size", value)
    return math.ceil(v / multiple) * multiple


def nearest_valid_sizes(value: int, multiple: int = SPATIAL_MULTIPLE) -> tuple[int, int]:
    """The multiples of 16 just below and just above ``value`` (below is at least 16)."""
    v = _positive_int("size", value)
    return max(multiple, v // multiple * multiple), round_size_up(v, multiple)


def latent_frames(num_frames: int) -> int:
    """Latent frame count T' = (num_frames − 1) // 4 + 1."""
    return (_positive_int("num_frames", num_frames) - 1) // TEMPORAL_COMPRESSION + 1


def latent_shape(num_frames: int, height: int, width: int, channels: int = 48) -> tuple[int, int, int, int]:
    """Latent ``(C, T', H/16, W/16)`` of a valid request."""
    check_structure(height, width, num_frames)
    return channels, latent_frames(num_frames), height // SPATIAL_MULTIPLE, width // SPATIAL_MULTIPLE


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SizeError(f"{name} must be a positive integer, got {value!r}")
    return value


# ----------------------------------------------------------------------------------------------------
# Presets


def detect_aspect_ratio(width: int, height: int) -> str:
    """The closest bucket of :data:`ASPECT_RATIOS` by W/H (the framework's rule for input media)."""
    ratio = width / height
    values = {"16,9": 16 / 9, "4,3": 4 / 3, "1,1": 1.0, "3,4": 3 / 4, "9,16": 9 / 16}
    return min(values, key=lambda k: (values[k] - ratio) ** 2)


def preset_size(tier: str | int, aspect_ratio: str = "16,9", *, image: bool = False) -> Size:
    """Preset ``Size(height, width)`` of a tier ("256", "480", "704", "720", "768") and aspect ratio ("16,9" …)."""
    tier = str(tier)
    table = IMAGE_PRESETS if image else VIDEO_PRESETS
    if tier not in table:
        raise SizeError(f"unknown resolution tier {tier!r}; allowed: {', '.join(table)}")
    row = table[tier]
    if aspect_ratio not in row:
        raise SizeError(f"unknown aspect ratio {aspect_ratio!r} for tier {tier}; allowed: {', '.join(row)}")
    return row[aspect_ratio]


def presets_for(variant: Variant | str, *, image: bool = False, allow_768: bool = False) -> dict[str, dict[str, Size]]:
    """The preset table restricted to the tiers ``variant`` supports (all tiers for ``custom``)."""
    limits = variant_limits(variant, allow_768=allow_768)
    table = IMAGE_PRESETS if image else VIDEO_PRESETS
    if limits is None:
        return {t: dict(r) for t, r in table.items()}
    tiers = limits.image_tiers if image else limits.video_tiers
    return {t: dict(table[t]) for t in tiers}


def _tier_of(size: Size, tiers: tuple[str, ...], table: Mapping[str, Mapping[str, Size]]) -> str | None:
    for tier in sorted(tiers, key=lambda t: t == "704"):  # 960x960 is in 704 and 720: report 720
        if size in table[tier].values():
            return tier
    area, side = size.height * size.width, max(size)
    for tier in tiers:
        presets = table[tier].values()
        if area <= max(p.height * p.width for p in presets) and side <= max(max(p) for p in presets):
            return tier
    return None


# ----------------------------------------------------------------------------------------------------
# Validation


def check_structure(height: int, width: int, num_frames: int) -> None:
    """Multiples of 16 and 1 or 4k + 1 frames; errors name the nearest valid values."""
    for name, value in (("height", height), ("width", width)):
        v = _positive_int(name, value)
        if v % SPATIAL_MULTIPLE:
            lo, hi = nearest_valid_sizes(v)
            raise SizeError(f"{name} {v} is not a multiple of {SPATIAL_MULTIPLE}; nearest valid values: {lo} or {hi}")
    n = _positive_int("num_frames", num_frames)
    if n > 1 and (n - 1) % TEMPORAL_COMPRESSION:
        lo, hi = nearest_valid_frames(n)
        raise SizeError(
            f"num_frames {n} is not of the form 4k+1 (or 1 for an image); nearest valid values: {lo} or {hi}"
        )


def check_generation_size(
    height: int,
    width: int,
    num_frames: int,
    fps: float | None = None,
    *,
    variant: Variant | str = Variant.CUSTOM,
    allow_768: bool = False,
    strict: bool = True,
) -> str | None:
    """Validate a request and return its resolution tier (``None`` for ``custom`` or ``strict=False``).

    Structural rules always apply; the variant envelope only when ``strict``. Errors name the allowed values.
    """
    check_structure(height, width, num_frames)
    limits = variant_limits(variant, allow_768=allow_768)
    if limits is None or not strict:
        return None
    name = f"Cosmos3-{Variant(variant).value.capitalize()}"
    image = num_frames == 1
    tiers = limits.image_tiers if image else limits.video_tiers
    table = IMAGE_PRESETS if image else VIDEO_PRESETS
    size = Size(height, width)
    tier = _tier_of(size, tiers, table)
    if tier is None:
        top = table[tiers[-1]]
        biggest = max(top.values(), key=lambda s: s.height * s.width)
        long_side = max(max(p) for p in top.values())
        raise SizeError(
            f"{height}x{width} is larger than {name} supports for {'images' if image else 'video'}: allowed tiers "
            f"{', '.join(tiers)} (largest preset {biggest.height}x{biggest.width}, long side at most {long_side})"
        )
    if image:
        return tier
    lo = limits.min_frames
    hi = MAX_VIDEO_FRAMES[tier] if limits.max_frames is None else min(limits.max_frames, MAX_VIDEO_FRAMES[tier])
    first, last = round_frames_up(lo), nearest_valid_frames(hi)[0]
    if not first <= num_frames <= last:
        raise SizeError(
            f"num_frames {num_frames} is out of range for {name} at the {tier} tier: "
            f"use 4k+1 values from {first} to {last}"
        )
    if fps is not None:
        f_lo, f_hi = limits.fps_range
        if not f_lo <= float(fps) <= f_hi:
            raise SizeError(f"fps {fps} is out of range for {name}: allowed {f_lo} to {f_hi}")
    return tier


# ----------------------------------------------------------------------------------------------------
# Default generation parameters


class Mode(str, Enum):
    TEXT2VIDEO = "text2video"
    IMAGE2VIDEO = "image2video"
    TEXT2IMAGE = "text2image"
    VIDEO2VIDEO = "video2video"


class CheckpointKind(str, Enum):
    BASE = "base"  # Cosmos3-Edge / -Nano / -Super (all modes)
    TEXT2IMAGE = "text2image"  # Cosmos3-Super-Text2Image
    IMAGE2VIDEO = "image2video"  # Cosmos3-Super-Image2Video
    TEXT2IMAGE_4STEP = "text2image-4step"  # Cosmos3-Super-Text2Image-4Step (distilled)
    IMAGE2VIDEO_4STEP = "image2video-4step"  # Cosmos3-Super-Image2Video-4Step (distilled, base_fps 16)

    @property
    def distilled(self) -> bool:
        return self in (CheckpointKind.TEXT2IMAGE_4STEP, CheckpointKind.IMAGE2VIDEO_4STEP)


def checkpoint_kind_from_name(name: str) -> CheckpointKind:
    """Guess the checkpoint kind from a repo or folder name such as ``Cosmos3-Super-Image2Video-4Step``."""
    n = name.lower().replace("_", "-")
    distilled = "4step" in n or "4-step" in n
    if "text2image" in n:
        return CheckpointKind.TEXT2IMAGE_4STEP if distilled else CheckpointKind.TEXT2IMAGE
    if "image2video" in n:
        return CheckpointKind.IMAGE2VIDEO_4STEP if distilled else CheckpointKind.IMAGE2VIDEO
    return CheckpointKind.BASE


def _checkpoint_kind(value: CheckpointKind | str) -> CheckpointKind:
    try:
        return CheckpointKind(value)
    except ValueError:
        allowed = ", ".join(c.value for c in CheckpointKind)
        raise SizeError(f"unknown checkpoint kind {value!r}; allowed: {allowed}") from None


# The frame rate a checkpoint's temporal mRoPE was trained at, where it differs from the usual 24.
_BASE_FPS = {CheckpointKind.IMAGE2VIDEO_4STEP: 16}


def checkpoint_base_fps(kind: CheckpointKind | str) -> int:
    """``base_fps`` (mRoPE fps modulation) of a checkpoint kind: 16 for Super-Image2Video-4Step, else 24."""
    return _BASE_FPS.get(_checkpoint_kind(kind), 24)


# CFG-interval option for text-to-image used by other runtimes; the framework default leaves it off.
T2I_GUIDANCE_INTERVAL = (400.0, 1000.0)


@dataclass(frozen=True)
class GenerationDefaults:
    """Default parameters of one (mode, variant, checkpoint) combination."""

    height: int
    width: int
    num_frames: int
    fps: int
    steps: int
    guidance: float
    shift: float | None  # None for the distilled sampler (fixed sigmas)
    sampler: str  # a cosmos3.schedulers kind
    tier: str
    aspect_ratio: str
    negative_prompt: str  # "structured" (default video negative), "empty", or "none" (no CFG)
    guidance_interval: tuple[float, float] | None = None
    base_fps: int = 24
    source: str = ""


_FW = "framework inference/defaults/<mode>/sample_args.json"


def _video(tier: str, frames: int, steps: int, guidance: float, shift: float, source: str) -> dict[str, Any]:
    h, w = preset_size(tier, "16,9")
    return dict(height=h, width=w, num_frames=frames, fps=24, steps=steps, guidance=guidance, shift=shift,
                sampler="flow_unipc", tier=tier, aspect_ratio="16,9", negative_prompt="structured", source=source)


def _image(tier: str, steps: int, guidance: float, shift: float, source: str) -> dict[str, Any]:
    h, w = preset_size(tier, "1,1", image=True)
    return dict(height=h, width=w, num_frames=1, fps=24, steps=steps, guidance=guidance, shift=shift,
                sampler="flow_unipc", tier=tier, aspect_ratio="1,1", negative_prompt="empty", source=source)


def _distilled(tier: str, aspect: str, frames: int, base_fps: int, source: str) -> dict[str, Any]:
    h, w = preset_size(tier, aspect, image=frames == 1)
    return dict(height=h, width=w, num_frames=frames, fps=24, steps=4, guidance=1.0, shift=None,
                sampler="distilled_sde", tier=tier, aspect_ratio=aspect, negative_prompt="none",
                base_fps=base_fps, source=source)


_VIDEO_MODES = (Mode.TEXT2VIDEO, Mode.IMAGE2VIDEO, Mode.VIDEO2VIDEO)
_DEFAULTS: dict[tuple[Variant, CheckpointKind, Mode], dict[str, Any]] = {}
for _mode in _VIDEO_MODES:
    _DEFAULTS[(Variant.NANO, CheckpointKind.BASE, _mode)] = _video("720", 189, 35, 6.0, 10.0, _FW)
    _DEFAULTS[(Variant.SUPER, CheckpointKind.BASE, _mode)] = _video(
        "720", 189, 35, 6.0, 5.0, _FW + "; shift 5 per the framework FAQ / 32B shift table (JSON says 10)"
    )
    _DEFAULTS[(Variant.EDGE, CheckpointKind.BASE, _mode)] = _video(
        "480", 121, 35, 6.0, 3.0, _FW + "; 121 frames and tier 480 for Edge; shift 3 per NVIDIA's Edge diffusers export"
    )
_DEFAULTS[(Variant.NANO, CheckpointKind.BASE, Mode.TEXT2IMAGE)] = _image("720", 50, 4.0, 3.0, _FW)
_DEFAULTS[(Variant.SUPER, CheckpointKind.BASE, Mode.TEXT2IMAGE)] = _image("720", 50, 4.0, 3.0, _FW)
_DEFAULTS[(Variant.EDGE, CheckpointKind.BASE, Mode.TEXT2IMAGE)] = _image("480", 50, 4.0, 3.0, _FW)
_DEFAULTS[(Variant.SUPER, CheckpointKind.TEXT2IMAGE, Mode.TEXT2IMAGE)] = _image("768", 50, 4.0, 3.0, _FW + "; tier 768")
_DEFAULTS[(Variant.SUPER, CheckpointKind.IMAGE2VIDEO, Mode.IMAGE2VIDEO)] = _video(
    "720", 189, 35, 6.0, 5.0, _FW + "; shift 5 per the framework FAQ"
)
_DEFAULTS[(Variant.SUPER, CheckpointKind.TEXT2IMAGE_4STEP, Mode.TEXT2IMAGE)] = _distilled(
    "768", "1,1", 1, 24, "framework args.py checkpoint table (t_list, tier 768)"
)
_DEFAULTS[(Variant.SUPER, CheckpointKind.IMAGE2VIDEO_4STEP, Mode.IMAGE2VIDEO)] = _distilled(
    "480", "16,9", 189, checkpoint_base_fps(CheckpointKind.IMAGE2VIDEO_4STEP),
    "framework args.py checkpoint table (t_list, tier 480, base_fps 16)",
)


def generation_defaults(
    mode: Mode | str,
    variant: Variant | str = Variant.NANO,
    checkpoint: CheckpointKind | str = CheckpointKind.BASE,
) -> GenerationDefaults:
    """Framework default parameters for a mode on a variant/checkpoint (``custom`` uses Nano's, or Super's for
    the task-tuned checkpoint kinds, which exist only for Super)."""
    try:
        mode = Mode(mode)
    except ValueError:
        raise SizeError(f"unknown mode {mode!r}; allowed: {', '.join(m.value for m in Mode)}") from None
    try:
        variant = Variant(variant)
    except ValueError:
        raise SizeError(f"unknown variant {variant!r}; allowed: {', '.join(v.value for v in Variant)}") from None
    checkpoint = _checkpoint_kind(checkpoint)
    if variant is Variant.CUSTOM:  # the task-tuned checkpoints exist only for Super
        variant = Variant.NANO if checkpoint is CheckpointKind.BASE else Variant.SUPER
    key = (variant, checkpoint, mode)
    if key not in _DEFAULTS:
        supported = sorted(m.value for (v, c, m) in _DEFAULTS if v is variant and c is checkpoint)
        if not supported:
            raise SizeError(f"no {checkpoint.value} checkpoint exists for Cosmos3-{variant.value.capitalize()}")
        raise SizeError(f"the {checkpoint.value} checkpoint supports only: {', '.join(supported)} (got {mode.value})")
    return GenerationDefaults(**_DEFAULTS[key])
