"""Cosmos3 variants (Edge / Nano / Super / custom) and the size envelope each was trained on.

Per-variant envelopes (``strict=True``, the default, turns them into errors; the framework only warns):

* Edge: tiers 256 and 480 only (larger grids exceed its trained mRoPE range), video 50-150 frames,
  12-30 fps.
* Nano / Super: tiers 256 / 480 / 704 / 720 (+ 768 for images of the Super-Text2Image checkpoints),
  video at least 24 frames and at most 400 (256 tier), 300 (480) or 200 (704/720/768); fps 10-30.
* ``custom`` (tiny or unknown transformer configs): only the structural rules of :mod:`cosmos3.geometry`.

A size that is not a preset belongs to the smallest allowed tier whose largest preset covers both its
area and its long side; a larger size is out of range.

Variants are identified from the transformer config (:func:`detect_variant`). The architecture decides
first: an Edge-style backbone (``backbone_type == "cosmos3_edge_nemotron_dense"`` or a relu² MLP,
``hidden_act == "relu2"``) is Edge whatever its width — the Nemotron family has its own tokenizer, prompt
format, defaults and mRoPE envelope, so giving it Nano's would be wrong. A Qwen-style (SwiGLU) backbone is
Nano with hidden size 4096 (36 layers, 32 heads), Super with 5120 (64 layers, 64 heads), and ``custom``
otherwise (e.g. the tiny test configs), which gets Nano's defaults and only the structural rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from .geometry import (
    IMAGE_PRESETS,
    VIDEO_PRESETS,
    Geometry,
    Size,
    SizeError,
    nearest_valid_frames,
    round_frames_up,
)

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
    """Identify Edge / Nano / Super from transformer-config values (see the module docstring): an Edge-style
    architecture is ``EDGE`` at any size; a SwiGLU one is Nano/Super by its shape, else ``CUSTOM``.

    Layer and head counts are checked only when given.
    """
    if (backbone_type in _EDGE_BACKBONES) or (hidden_act == "relu2"):
        return Variant.EDGE
    shape = _SHAPES.get(hidden_size) if hidden_size is not None else None
    if shape is None:
        return Variant.CUSTOM
    layers, heads, variant = shape
    if num_hidden_layers is not None and num_hidden_layers != layers:
        return Variant.CUSTOM
    if num_attention_heads is not None and num_attention_heads != heads:
        return Variant.CUSTOM
    if variant is Variant.EDGE:  # Edge's width with a SwiGLU MLP is not Edge
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



def check_generation_size(
    geometry: Geometry,
    *,
    variant: Variant | str = Variant.CUSTOM,
    allow_768: bool = False,
    strict: bool = True,
) -> str | None:
    """Check ``geometry`` against the variant's trained envelope and return its resolution tier.

    ``None`` for ``custom`` or ``strict=False`` (the structural rules were checked when ``geometry`` was
    built). Errors name the allowed values; fps is checked for videos only.
    """
    height, width, num_frames, fps = geometry.height, geometry.width, geometry.frames, geometry.fps
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
    f_lo, f_hi = limits.fps_range
    if not f_lo <= fps <= f_hi:
        raise SizeError(f"fps {fps:g} is out of range for {name}: allowed {f_lo} to {f_hi}")
    return tier
