"""The denoising loop: noise -> clean normalised latents, running only the generation tower per step."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..geometry import check_structure, latent_shape
from ..model.transformer import BatchedTextKV, Cosmos3Transformer
from ..runtime.step_cache import StepCache
from ..text.encoding import EncodedPrompt
from .conditioning import ImageCondition
from .schedulers import (
    FlowSampler,
    SamplerConfigError,
    cfg_combine,
    draw_noise,
    guidance_active,
    make_sampler,
    read_scheduler_config,
    reanchor,
    sampler_from_scheduler_config,
)

SCHEDULES = ("native", "euler", "diffusers", "checkpoint", "distilled")
SCHEDULE_HELP = {
    "native": "flow UniPC (bh2, order 2) on the framework's native sigma grid with shift (default)",
    "euler": "flow Euler on the native grid with shift",
    "diffusers": "flow UniPC on diffusers' default flow grid with shift (karras off)",
    "checkpoint": "the checkpoint's scheduler_config.json as shipped (Karras sigmas: shift has no effect)",
    "distilled": "the 4-step FlowMatch SDE of *-4Step checkpoints (fixed sigmas, guidance 1)",
}
MAX_GUIDANCE = 100.0


@dataclass
class StepInfo:
    """What a progress callback sees after each step (tensors are float32 on the sampling device).

    ``latents``: the normalised latents after the step; ``denoised``: the model's clean-latent estimate
    ``x - sigma * v`` at this step (what previews should show).
    """

    index: int
    total: int
    timestep: float
    latents: torch.Tensor
    denoised: torch.Tensor


def build_sampler(
    schedule: str,
    steps: int | None,
    shift: float | None,
    *,
    scheduler_config: Mapping[str, Any] | str | None = None,
    native_flow_schedule: bool = False,
    distilled_sigmas: Sequence[float] | None = None,
    state_dtype: torch.dtype = torch.float32,
) -> FlowSampler:
    """Sampler for a schedule name (see :data:`SCHEDULE_HELP`)."""
    if schedule == "native":
        return make_sampler("flow_unipc", steps, shift=shift, grid="native", state_dtype=state_dtype)
    if schedule == "euler":
        return make_sampler("flow_euler", steps, shift=shift, grid="native", state_dtype=state_dtype)
    if schedule == "diffusers":
        return make_sampler("flow_unipc", steps, shift=shift, grid="diffusers", state_dtype=state_dtype)
    if schedule == "checkpoint":
        if scheduler_config is None:
            raise SamplerConfigError("schedule 'checkpoint' needs the checkpoint's scheduler/scheduler_config.json")
        config = read_scheduler_config(scheduler_config)
        if shift is not None and config.get("use_karras_sigmas", False):
            raise SamplerConfigError(
                "schedule 'checkpoint' uses the shipped Karras sigmas, where shift has no effect; "
                "leave shift empty or use schedule 'native'"
            )
        overrides = {"flow_shift": float(shift)} if shift is not None else None
        return sampler_from_scheduler_config(
            config, steps, native_flow_schedule=native_flow_schedule, overrides=overrides, state_dtype=state_dtype
        )
    if schedule == "distilled":
        if shift is not None:
            raise SamplerConfigError("schedule 'distilled' has fixed sigmas; shift must be empty")
        return make_sampler("distilled_sde", steps, sigmas=distilled_sigmas, state_dtype=state_dtype)
    raise SamplerConfigError(f"unknown schedule {schedule!r}; allowed: {', '.join(SCHEDULES)}")


def _check_guidance(guidance_scale: float) -> float:
    if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float)):
        raise ValueError(f"guidance_scale must be a number, got {guidance_scale!r}")
    if not (math.isfinite(guidance_scale) and 0.0 <= guidance_scale <= MAX_GUIDANCE):
        raise ValueError(f"guidance_scale {guidance_scale!r} is outside [0, {MAX_GUIDANCE:g}]")
    return float(guidance_scale)


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
        raise ValueError(f"seed must be an integer in [0, 2**64 - 1], got {seed!r}")
    return seed


def initial_noise(
    seed: int, num_frames: int, height: int, width: int, channels: int = 48, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """``randn`` of shape ``(1, C, T', H/16, W/16)`` from a CPU generator seeded with ``seed`` (as diffusers draws it)."""
    generator = torch.Generator("cpu").manual_seed(_check_seed(seed))
    return draw_noise((1, *latent_shape(num_frames, height, width, channels)), generator, "cpu", dtype)


@torch.no_grad()
def sample(
    transformer: Cosmos3Transformer,
    prompt: EncodedPrompt,
    *,
    num_frames: int,
    height: int,
    width: int,
    steps: int | None,
    guidance_scale: float,
    seed: int = 0,
    fps: float | None = None,
    schedule: str = "native",
    shift: float | None = None,
    condition: ImageCondition | None = None,
    guidance_interval: Sequence[float] | None = None,
    scheduler_config: Mapping[str, Any] | str | None = None,
    native_flow_schedule: bool = False,
    distilled_sigmas: Sequence[float] | None = None,
    reanchor_condition: bool = True,
    state_dtype: torch.dtype = torch.float32,
    noise: torch.Tensor | None = None,
    callback: Callable[[StepInfo], None] | None = None,
    device: torch.device | str | None = None,
    cfg_batch: bool = False,
    step_cache: StepCache | None = None,
) -> torch.Tensor:
    """Denoise from seeded noise; returns normalised latents ``[1, 48, T', H/16, W/16]`` float32 on the CPU.

    Each step runs the generation tower against ``prompt``'s cached text K/V: once with ``prompt.cond``
    and, when guidance is active (``guidance_scale != 1`` and the timestep inside ``guidance_interval``),
    once with ``prompt.uncond``; then ``v = u + g (c - u)`` and one sampler step. Conditioned frames
    (``condition``) get zero velocity and are re-anchored to their clean value after each step.
    ``callback(StepInfo)`` runs after every step; an exception it raises stops sampling and propagates.

    ``cfg_batch=True`` runs cond and uncond as one batch of two through the generation tower (prompts of
    different lengths are padded and masked); equal to the serial passes up to floating-point reassociation.
    ``step_cache`` (:class:`~cosmos3.runtime.step_cache.StepCache`) lets steps whose input barely changed reuse the
    previous generation-tower residual (approximate; off by default).
    """
    check_structure(height, width, num_frames)
    fps = prompt.fps if fps is None else float(fps)
    prompt.check_matches(num_frames, height, width, fps)
    guidance = _check_guidance(guidance_scale)
    use_cfg = guidance != 1.0
    if use_cfg and prompt.uncond is None:
        raise ValueError(f"guidance_scale {guidance:g} needs the negative prompt's cache; encode with_negative=True")
    if condition is not None:
        condition.check_matches(num_frames, height, width)
    sampler = build_sampler(
        schedule, steps, shift, scheduler_config=scheduler_config, native_flow_schedule=native_flow_schedule,
        distilled_sigmas=distilled_sigmas, state_dtype=state_dtype,
    )

    device = torch.device(device) if device is not None else transformer.gen_tower.proj_in.weight.device
    shape = (1, *latent_shape(num_frames, height, width, transformer.config.latent_channel))
    generator = torch.Generator("cpu").manual_seed(_check_seed(seed))
    if noise is None:
        noise = draw_noise(shape, generator, device, torch.float32)
    elif tuple(noise.shape) != shape:
        raise ValueError(f"noise must have shape {list(shape)}, got {list(noise.shape)}")
    latents = noise.to(device=device, dtype=torch.float32)
    frames: tuple[int, ...] = ()
    if condition is not None:
        frames = condition.frames
        clean = condition.full_latent(shape[2]).to(device)
        mask = condition.mask(shape[2]).to(device)
        latents = mask * clean + (1.0 - mask) * latents
    latents = latents.to(state_dtype)

    cond_cache = prompt.cond.to(device)
    uncond_cache = prompt.uncond.to(device) if use_cfg else None
    both = BatchedTextKV.from_caches([cond_cache, uncond_cache], device=device) if use_cfg and cfg_batch else None
    total = sampler.num_steps
    if step_cache is not None:
        step_cache.reset(total)
    try:
        for index in range(total):
            timestep = sampler.timesteps[index].item()
            if step_cache is not None:
                step_cache.begin_step(index)
            guided = use_cfg and guidance_active(timestep, guidance_interval)
            if guided and both is not None:
                pair = transformer.velocity_batch(
                    latents, timestep, both, fps=fps, condition_frames=frames, step_cache=step_cache, branch="cfg"
                ).float()
                v = cfg_combine(pair[0:1], pair[1:2], guidance)
            else:
                v = transformer.velocity(
                    latents, timestep, cond_cache, fps=fps, condition_frames=frames, step_cache=step_cache, branch="cond"
                ).float()
                if guided:
                    v_uncond = transformer.velocity(
                        latents, timestep, uncond_cache, fps=fps, condition_frames=frames, step_cache=step_cache,
                        branch="uncond",
                    )
                    v = cfg_combine(v, v_uncond.float(), guidance)
            denoised = latents.float() - float(sampler.sigmas[index]) * v if callback is not None else None
            latents = sampler.step(v, index, latents, generator=generator)
            if condition is not None and reanchor_condition:
                latents = reanchor(latents, clean, mask)
            if callback is not None:
                callback(StepInfo(index, total, float(timestep), latents.float(), denoised))
    finally:  # free what only sampling needed (the VAE decode wants the room)
        swap = getattr(transformer, "block_swap", None)
        if swap is not None:
            swap.unload_all()  # the layer prefetched for a next pass
        if step_cache is not None:
            step_cache.release()
    return latents.float().cpu()
