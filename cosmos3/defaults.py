"""Default generation parameters per mode, variant and checkpoint kind (the framework's sample_args).

Which sizes are *allowed* is :mod:`cosmos3.geometry` / :mod:`cosmos3.variants`; this module only says what a
run uses when the caller leaves a setting unset. :func:`cosmos3.sampling.plan.resolve_sampling_plan` is the
one place that turns unset settings into concrete ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from .geometry import SizeError, preset_size
from .variants import Variant


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
    sampler: str  # a cosmos3.sampling.schedulers kind
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
