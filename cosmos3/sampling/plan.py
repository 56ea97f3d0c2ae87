"""One place that turns a request's unset settings into concrete ones, and a sampling run's memory estimate.

Every front end (:class:`cosmos3.pipeline.Cosmos3Pipeline` and so the CLI, and the ComfyUI sampler node) asks
:func:`resolve_sampling_plan`. Unset values (``None``, or ``"auto"`` for the schedule) take the framework
defaults of :func:`cosmos3.defaults.generation_defaults` for the mode, variant and checkpoint kind; explicit
values win and are range-checked where they are used (the sampler, the loop). Widgets that cannot hold ``None``
use :data:`AUTO` (0) for steps / guidance / shift and map it to ``None`` (:func:`unset_if_auto`).
The plan carries the :class:`~cosmos3.geometry.Geometry` and builds the sampler (:meth:`SamplingPlan.build_sampler`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ..defaults import (
    T2I_GUIDANCE_INTERVAL,
    CheckpointKind,
    GenerationDefaults,
    Mode,
    generation_defaults,
)
from ..files.checkpoint import CheckpointInfo
from ..geometry import Geometry, SizeError
from ..model.config import TransformerConfig
from ..variants import Variant, check_generation_size
from .samplers import FlowSampler
from .schedulers import SCHEDULES, build_sampler

AUTO = 0
AUTO_SCHEDULE = "auto"
SCHEDULE_CHOICES = (AUTO_SCHEDULE, *SCHEDULES)
_FIXED_SIGMA_SCHEDULES = ("distilled",)
_SHIFTED_SCHEDULES = ("native", "euler", "diffusers")
_768_KINDS = (CheckpointKind.TEXT2IMAGE, CheckpointKind.TEXT2IMAGE_4STEP)


@dataclass(frozen=True)
class SamplingPlan:
    """Concrete settings for :func:`cosmos3.sampling.loop.sample` plus how they were chosen.

    ``steps`` is ``None`` for the distilled sampler (its fixed sigmas give the count); automatic guidance is 1
    for the distilled sampler and for distilled checkpoints (their guidance is baked in); ``shift`` is ``None``
    where the schedule takes none. ``chosen`` lists the settings filled in automatically; ``warnings`` names
    settings that change the result (outside the variant's trained envelope, a schedule or cfg that does not
    fit the checkpoint; sampling still runs).
    """

    mode: Mode
    geometry: Geometry
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
        settings = f"{steps} steps, cfg {self.guidance:g}, shift {shift}, schedule {self.schedule}"
        return f"{self.mode.value}: {settings}{interval}{auto}"

    def build_sampler(
        self, checkpoint: CheckpointInfo | None = None, state_dtype: torch.dtype = torch.float32
    ) -> FlowSampler:
        """The sampler of this plan; ``checkpoint`` supplies the shipped scheduler config, the native-grid flag
        and distilled sigmas (``schedule`` "checkpoint" / "distilled")."""
        return build_sampler(
            self.schedule,
            self.steps,
            self.shift,
            scheduler_config=checkpoint.scheduler_config if checkpoint is not None else None,
            native_flow_schedule=checkpoint.use_native_flow_schedule if checkpoint is not None else False,
            distilled_sigmas=checkpoint.distilled_sigmas if checkpoint is not None else None,
            state_dtype=state_dtype,
        )


def unset_if_auto(value: float | None) -> float | None:
    """A widget's :data:`AUTO` (0) -> ``None`` (unset); any other value unchanged."""
    return None if value is None or (value == AUTO and not isinstance(value, bool)) else value


def mode_for(num_frames: int | None, has_image: bool = False, has_video: bool = False) -> Mode:
    """``text2image`` for one frame, ``image2video`` with an image condition, ``video2video`` with a video
    condition, else ``text2video`` (``None`` frames: the mode's default, a video)."""
    if has_image and has_video:
        raise ValueError("pass either an image (image-to-video) or a video (video-to-video) condition, not both")
    if num_frames == 1:
        if has_image or has_video:
            raise ValueError(
                "an image or video condition needs a video (num_frames > 1); for one frame (text-to-image) "
                "leave the condition out"
            )
        return Mode.TEXT2IMAGE
    if has_image:
        return Mode.IMAGE2VIDEO
    return Mode.VIDEO2VIDEO if has_video else Mode.TEXT2VIDEO


def resolve_sampling_plan(
    *,
    num_frames: int | None = None,
    height: int | None = None,
    width: int | None = None,
    fps: float | None = None,
    has_image: bool = False,
    has_video: bool = False,
    variant: Variant | str = Variant.CUSTOM,
    kind: CheckpointKind | str = CheckpointKind.BASE,
    distilled: bool = False,
    steps: int | None = None,
    guidance: float | None = None,
    shift: float | None = None,
    schedule: str | None = None,
    cfg_interval: bool = False,
    guidance_interval: Sequence[float] | None = None,
    strict: bool = False,
) -> SamplingPlan:
    """Resolve unset values (``None``, ``"auto"`` for the schedule; see the module docstring).

    ``num_frames``/``height``/``width``/``fps`` left ``None`` take the mode's defaults. ``distilled``: the
    checkpoint ships fixed sigmas (``CheckpointInfo.distilled``), so the automatic schedule is the distilled one
    even when the kind could not be told from the folder name. CFG runs only for timesteps inside
    ``guidance_interval`` (``(low, high)`` on the 0..1000 scale) when given, else inside the text-to-image
    interval other runtimes use when ``cfg_interval``, else always. ``strict``: a size outside the variant's trained
    envelope raises :class:`~cosmos3.geometry.SizeError` instead of becoming a warning. Errors name the value
    and what is allowed.
    """
    mode = mode_for(num_frames, has_image, has_video)
    defaults = generation_defaults(mode, variant, kind)
    geometry = Geometry(
        defaults.num_frames if num_frames is None else num_frames,
        defaults.height if height is None else height,
        defaults.width if width is None else width,
        float(defaults.fps) if fps is None else fps,
    )
    chosen: list[str] = []
    if schedule is None:
        schedule = AUTO_SCHEDULE
    if schedule not in SCHEDULE_CHOICES:
        raise ValueError(f"unknown schedule {schedule!r}; allowed: {', '.join(SCHEDULE_CHOICES)}")
    distilled_checkpoint = distilled or defaults.sampler == "distilled_sde"
    if schedule == AUTO_SCHEDULE:
        schedule = "distilled" if distilled_checkpoint else "native"
        chosen.append(f"schedule {schedule}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ValueError(f"steps must be a positive integer (None for the default), got {steps!r}")
    for name, value in (("guidance_scale", guidance), ("shift", shift)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"{name} must be a number (None for the default), got {value!r}")

    if schedule in _FIXED_SIGMA_SCHEDULES:
        if shift is not None:
            raise ValueError(
                f"schedule {schedule!r} has fixed sigmas: set shift to 0 or leave it unset (auto), got {shift:g}"
            )
        resolved_shift = None
        resolved_steps = steps
    else:
        if steps is None:
            resolved_steps = defaults.steps if defaults.sampler != "distilled_sde" else 4
            chosen.append(f"steps {resolved_steps}")
        else:
            resolved_steps = steps
        if shift is not None:
            resolved_shift = float(shift)
        elif schedule in _SHIFTED_SCHEDULES:
            resolved_shift = float(defaults.shift if defaults.shift is not None else 3.0)
            chosen.append(f"shift {resolved_shift:g}")
        else:  # "checkpoint": the shipped scheduler config decides
            resolved_shift = None
    if guidance is None:  # distilled checkpoints and the distilled schedule have guidance baked in: 1
        baked = distilled_checkpoint or schedule in _FIXED_SIGMA_SCHEDULES
        resolved_guidance = 1.0 if baked else float(defaults.guidance)
        chosen.append(f"cfg {resolved_guidance:g}")
    else:
        resolved_guidance = float(guidance)

    warnings: list[str] = []
    try:
        check_generation_size(geometry, variant=variant, allow_768=CheckpointKind(kind) in _768_KINDS)
    except SizeError as exc:
        if strict:
            raise
        warnings.append(f"{exc} (outside the trained envelope; expect degraded results)")
    interval = T2I_GUIDANCE_INTERVAL if cfg_interval else None
    if guidance_interval is not None:
        interval = tuple(float(t) for t in guidance_interval)
    if schedule == "distilled" and not distilled_checkpoint:
        warnings.append(
            f"schedule 'distilled' on a checkpoint that is not distilled ({CheckpointKind(kind).value}): its fixed "
            "4-step sigmas (guidance 1) are made for *-4Step checkpoints; expect a rough result ('auto' picks "
            "'native' here)"
        )
    if (schedule == "distilled" or distilled_checkpoint) and resolved_guidance != 1.0:
        what = "a distilled checkpoint: its guidance is baked in" if distilled_checkpoint else (
            "the 'distilled' schedule: it expects guidance 1")
        warnings.append(f"cfg {resolved_guidance:g} with {what} (use 1.0, or 0 = auto)")
    return SamplingPlan(
        mode=mode, geometry=geometry, steps=resolved_steps, guidance=resolved_guidance, shift=resolved_shift,
        schedule=schedule, guidance_interval=interval, defaults=defaults, chosen=tuple(chosen),
        warnings=tuple(warnings),
    )


def estimate_sampling_bytes(
    config: TransformerConfig,
    geometry: Geometry,
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
    _, frames, h, w = geometry.latent_shape(config.latent_channel)
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
    in_flight = sum(swapped[-(prefetch + 1) :]) if swapped else 0
    return module_nbytes(transformer.gen_tower) - sum(swapped) + in_flight
