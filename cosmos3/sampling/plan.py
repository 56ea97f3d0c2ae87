"""Turn "auto" sampling settings into concrete ones, and estimate a sampling run's activation memory.

Front ends (the ComfyUI sampler node) cannot know a run's mode when their widgets are drawn: one sampler
serves text-to-video, image-to-video and text-to-image, on base and distilled checkpoints. They pass
:data:`AUTO` (0 for steps / guidance / shift, ``"auto"`` for the schedule) and :func:`resolve_sampling_plan`
fills in the framework defaults of :func:`cosmos3.defaults.generation_defaults` for the mode, variant and
checkpoint kind. Explicit values always win.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..defaults import (
    T2I_GUIDANCE_INTERVAL,
    CheckpointKind,
    GenerationDefaults,
    Mode,
    generation_defaults,
)
from ..geometry import SizeError, latent_shape
from ..model.config import TransformerConfig
from ..variants import Variant, check_generation_size
from .loop import SCHEDULES

AUTO = 0
AUTO_SCHEDULE = "auto"
SCHEDULE_CHOICES = (AUTO_SCHEDULE, *SCHEDULES)
_FIXED_SIGMA_SCHEDULES = ("distilled",)
_SHIFTED_SCHEDULES = ("native", "euler", "diffusers")


@dataclass(frozen=True)
class SamplingPlan:
    """Concrete settings for :func:`cosmos3.sampling.loop.sample` plus how they were chosen.

    ``steps`` is ``None`` for the distilled sampler (its fixed sigmas give the count); ``shift`` is ``None``
    where the schedule takes none. ``chosen`` lists the settings filled in automatically; ``warnings``
    names settings outside the variant's trained envelope (sampling still runs).
    """

    mode: Mode
    steps: int | None
    guidance: float
    shift: float | None
    schedule: str
    guidance_interval: tuple[float, float] | None
    defaults: GenerationDefaults
    chosen: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def describe(self) -> str:
        steps = "fixed" if self.steps is None else str(self.steps)
        shift = "-" if self.shift is None else f"{self.shift:g}"
        interval = "" if self.guidance_interval is None else f", CFG only for t in {self.guidance_interval}"
        auto = f" (auto: {', '.join(self.chosen)})" if self.chosen else ""
        return f"{self.mode.value}: {steps} steps, cfg {self.guidance:g}, shift {shift}, schedule {self.schedule}{interval}{auto}"


def mode_for(num_frames: int, has_image: bool) -> Mode:
    """``text2image`` for one frame, ``image2video`` with an image condition, else ``text2video``."""
    if num_frames == 1:
        if has_image:
            raise ValueError(
                "an image condition needs a video (frames > 1); for one frame (text-to-image) disconnect image_cond"
            )
        return Mode.TEXT2IMAGE
    return Mode.IMAGE2VIDEO if has_image else Mode.TEXT2VIDEO


def resolve_sampling_plan(
    *,
    num_frames: int,
    height: int,
    width: int,
    fps: float | None = None,
    has_image: bool = False,
    variant: Variant | str = Variant.CUSTOM,
    kind: CheckpointKind | str = CheckpointKind.BASE,
    distilled: bool = False,
    steps: int = AUTO,
    guidance: float = AUTO,
    shift: float = AUTO,
    schedule: str = AUTO_SCHEDULE,
    cfg_interval: bool = False,
) -> SamplingPlan:
    """Resolve :data:`AUTO` values (see the module docstring); errors name the value and what is allowed.

    ``distilled``: the checkpoint ships fixed sigmas (``CheckpointInfo.distilled``), so ``auto`` picks the
    distilled schedule even when the kind could not be told from the folder name.
    """
    mode = mode_for(num_frames, has_image)
    defaults = generation_defaults(mode, variant, kind)
    chosen: list[str] = []
    if schedule not in SCHEDULE_CHOICES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULE_CHOICES)}, got {schedule!r}")
    if schedule == AUTO_SCHEDULE:
        schedule = "distilled" if (distilled or defaults.sampler == "distilled_sde") else "native"
        chosen.append(f"schedule {schedule}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be 0 (auto) or a positive integer, got {steps!r}")
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not math.isfinite(guidance) or guidance < 0:
        raise ValueError(f"cfg must be 0 (auto) or a positive number, got {guidance!r}")
    if isinstance(shift, bool) or not isinstance(shift, (int, float)) or not math.isfinite(shift) or shift < 0:
        raise ValueError(f"shift must be 0 (auto) or a positive number, got {shift!r}")

    if schedule in _FIXED_SIGMA_SCHEDULES:
        if shift != AUTO:
            raise ValueError(f"schedule {schedule!r} has fixed sigmas: set shift to 0 (auto), got {shift:g}")
        resolved_shift = None
        resolved_steps = None if steps == AUTO else steps
    else:
        if steps == AUTO:
            resolved_steps = defaults.steps if defaults.sampler != "distilled_sde" else 4
            chosen.append(f"steps {resolved_steps}")
        else:
            resolved_steps = steps
        if shift != AUTO:
            resolved_shift = float(shift)
        elif schedule in _SHIFTED_SCHEDULES:
            resolved_shift = float(defaults.shift if defaults.shift is not None else 3.0)
            chosen.append(f"shift {resolved_shift:g}")
        else:  # "checkpoint": the shipped scheduler config decides
            resolved_shift = None
    if guidance == AUTO:
        resolved_guidance = float(defaults.guidance)
        chosen.append(f"cfg {resolved_guidance:g}")
    else:
        resolved_guidance = float(guidance)

    warnings: list[str] = []
    try:
        check_generation_size(height, width, num_frames, fps if num_frames > 1 else None, variant=variant,
                              allow_768=CheckpointKind(kind) in (CheckpointKind.TEXT2IMAGE, CheckpointKind.TEXT2IMAGE_4STEP))
    except SizeError as exc:
        warnings.append(f"{exc} (outside the trained envelope; expect degraded results)")
    if schedule == "distilled" and resolved_guidance != 1.0:
        warnings.append(f"cfg {resolved_guidance:g} with a distilled checkpoint: its guidance is baked in (use 1.0)")
    return SamplingPlan(
        mode=mode,
        steps=resolved_steps,
        guidance=resolved_guidance,
        shift=resolved_shift,
        schedule=schedule,
        guidance_interval=T2I_GUIDANCE_INTERVAL if cfg_interval else None,
        defaults=defaults,
        chosen=tuple(chosen),
        warnings=tuple(warnings),
    )


def estimate_sampling_bytes(
    config: TransformerConfig,
    num_frames: int,
    height: int,
    width: int,
    text_tokens: int,
    dtype: torch.dtype,
    *,
    guidance: bool = True,
) -> int:
    """Rough peak activation memory of one generation-tower step (excluding the weights), in bytes.

    Counts one layer's live tensors over the latent tokens (hidden state, q/k/v, attention output, the
    gated MLP's two intermediate tensors), the concatenated text+latent keys/values, every layer's cached
    text K/V on the device (twice with CFG) and the float32 sampler state, plus 25% headroom. Assumes a
    memory-efficient attention kernel (no ``N x N`` score matrix).
    """
    elt = torch.empty((), dtype=dtype).element_size()
    _, frames, h, w = latent_shape(num_frames, height, width, config.latent_channel)
    p = config.latent_patch_size
    tokens = frames * (-(-h // p)) * (-(-w // p))
    per_layer = tokens * (4 * config.hidden_size + 2 * config.q_dim + 3 * config.intermediate_size) * elt
    kv = 2 * (text_tokens + tokens) * config.kv_dim * elt
    caches = (2 if guidance else 1) * 2 * config.num_hidden_layers * text_tokens * config.kv_dim * elt
    state = 6 * config.latent_channel * frames * h * w * 4
    return int(1.25 * (per_layer + kv + caches + state))


def resident_gen_bytes(transformer, blocks_to_swap: int, prefetch: int = 1) -> int:
    """Device weight bytes of the generation tower when its last ``blocks_to_swap`` layers are streamed
    (:func:`cosmos3.runtime.offload.enable_block_swap`): everything else, plus the ``prefetch + 1`` largest swapped
    layers that can be on the device at once."""
    from ..model.transformer import module_nbytes

    layers = transformer.gen_tower.layers
    swapped = sorted(module_nbytes(layers[i]) for i in range(len(layers) - blocks_to_swap, len(layers)))
    in_flight = sum(swapped[-(prefetch + 1):]) if swapped else 0
    return module_nbytes(transformer.gen_tower) - sum(swapped) + in_flight
