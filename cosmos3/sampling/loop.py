"""The denoising loop: noise -> clean normalised latents, running only the generation tower per step."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..errors import Cosmos3Error
from ..geometry import Geometry
from ..model.transformer import BatchedTextKV, Cosmos3Transformer
from ..runtime.parallel import ParallelError, ParallelRuntime, ParallelStopped, sequence_parallel_for
from ..runtime.step_cache import StepCache
from ..text.encoding import EncodedPrompt
from .conditioning import ImageCondition
from .samplers import FlowSampler, draw_noise

MAX_GUIDANCE = 100.0


class NonFiniteLatentsError(Cosmos3Error):
    """Sampling produced NaN or infinite latents (broken weights, or an overflow in a half-precision dtype)."""


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


def reanchor(sample: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Put the clean conditioning latents back: ``mask·reference + (1 − mask)·sample`` (mask 1 = conditioned)."""
    mask = mask.to(device=sample.device, dtype=sample.dtype)
    return mask * reference.to(device=sample.device, dtype=sample.dtype) + (1.0 - mask) * sample


def cfg_combine(v_cond: torch.Tensor, v_uncond: torch.Tensor, guidance: float) -> torch.Tensor:
    """Classifier-free guidance in the canonical order ``u + g·(c − u)`` (other rewrites round differently)."""
    return v_uncond + guidance * (v_cond - v_uncond)


def guidance_active(timestep: float | int | torch.Tensor, interval: Sequence[float] | None) -> bool:
    """Whether CFG applies at ``timestep`` (0..1000 scale) given an optional ``(low, high)`` interval.

    Follows the framework: strictly inside, ``low < t < high``. ``None`` means always.
    """
    if interval is None:
        return True
    if len(interval) != 2:
        raise ValueError(f"guidance interval must be (low, high), got {interval!r}")
    t = float(timestep.item() if isinstance(timestep, torch.Tensor) else timestep)
    return float(interval[0]) < t < float(interval[1])



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
    seed: int, geometry: Geometry, channels: int = 48, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """``randn`` of shape ``(1, C, T', H/16, W/16)`` from a CPU generator seeded with ``seed`` (as diffusers
    draws it)."""
    generator = torch.Generator("cpu").manual_seed(_check_seed(seed))
    return draw_noise((1, *geometry.latent_shape(channels)), generator, "cpu", dtype)


@torch.no_grad()
def sample(
    transformer: Cosmos3Transformer,
    prompt: EncodedPrompt,
    sampler: FlowSampler,
    *,
    guidance_scale: float,
    seed: int = 0,
    condition: ImageCondition | None = None,
    guidance_interval: Sequence[float] | None = None,
    reanchor_condition: bool = True,
    noise: torch.Tensor | None = None,
    callback: Callable[[StepInfo], None] | None = None,
    device: torch.device | str | None = None,
    cfg_batch: bool = False,
    step_cache: StepCache | None = None,
    parallel: ParallelRuntime | None = None,
) -> torch.Tensor:
    """Denoise from seeded noise; returns normalised latents ``[1, 48, T', H/16, W/16]`` float32 on the CPU.

    The clip's frames, size and fps are those ``prompt`` was encoded for (``prompt.geometry``); ``sampler``
    (:func:`cosmos3.sampling.schedulers.build_sampler`, or :meth:`SamplingPlan.build_sampler`) gives the sigmas,
    the update rule and the state dtype. Each step runs the generation tower against ``prompt``'s cached text
    K/V: once with ``prompt.cond`` and, when guidance is active (``guidance_scale != 1`` and the timestep
    inside ``guidance_interval``), once with ``prompt.uncond``; then ``v = u + g (c - u)`` and one sampler
    step. Conditioned frames (``condition``) get zero velocity and are re-anchored to their clean value after
    each step. ``callback(StepInfo)`` runs after every step; an exception it raises stops sampling.

    ``cfg_batch=True`` runs cond and uncond as one batch of two through the generation tower (prompts of
    different lengths are padded and masked); equal to the serial passes up to floating-point reassociation.
    ``step_cache`` (:class:`~cosmos3.runtime.step_cache.StepCache`) lets steps whose input barely changed reuse
    the previous generation-tower residual (approximate; off by default).

    ``parallel`` (:class:`~cosmos3.runtime.parallel.ParallelRuntime`): call ``sample`` on every rank of the run with
    the same arguments; the generation stream is sharded over the sequence group (Ulysses/ring) and, with
    ``cfg=2``, cond and uncond run on different rank groups and are combined once per step. Every rank returns
    the same latents. The ranks agree before each step, so an exception on one rank (e.g. an interrupting
    ``callback``) stops the others with :class:`~cosmos3.runtime.parallel.ParallelError` instead of a hang.
    """
    if not isinstance(sampler, FlowSampler):
        raise TypeError(
            f"sampler must be a FlowSampler (see cosmos3.sampling.schedulers), got {type(sampler).__name__}"
        )
    geometry = prompt.geometry
    fps = geometry.fps
    guidance = _check_guidance(guidance_scale)
    use_cfg = guidance != 1.0
    if use_cfg and prompt.uncond is None:
        raise ValueError(f"guidance_scale {guidance:g} needs the negative prompt's cache; encode with_negative=True")
    if condition is not None:
        condition.check_matches(geometry)
    state_dtype = sampler.state_dtype

    device = torch.device(device) if device is not None else transformer.gen_tower.proj_in.weight.device
    shape = (1, *geometry.latent_shape(transformer.config.latent_channel))
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
    cfg_split = parallel is not None and parallel.config.cfg == 2
    previous_sharding = getattr(transformer, "sequence_parallel", None)
    if parallel is not None:
        transformer.sequence_parallel = sequence_parallel_for(transformer, parallel)
    try:
        for index in range(total):
            if parallel is not None and not parallel.agree(True):
                raise ParallelStopped(f"another rank stopped the parallel run before step {index + 1} of {total}")
            timestep = sampler.timesteps[index].item()
            if step_cache is not None:
                step_cache.begin_step(index)
            guided = use_cfg and guidance_active(timestep, guidance_interval)
            if guided and cfg_split:  # this rank's branch only; the pair is exchanged once per step
                mine = parallel.cfg_index == 0
                v_branch = transformer.velocity(
                    latents, timestep, cond_cache if mine else uncond_cache, fps=fps, condition_frames=frames,
                    step_cache=step_cache, branch="cond" if mine else "uncond",
                ).float()
                v = cfg_combine(*parallel.exchange_cfg(v_branch), guidance)
            elif guided and both is not None:
                pair = transformer.velocity_batch(
                    latents, timestep, both, fps=fps, condition_frames=frames, step_cache=step_cache, branch="cfg"
                ).float()
                v = cfg_combine(pair[0:1], pair[1:2], guidance)
            else:
                v = transformer.velocity(
                    latents,
                    timestep,
                    cond_cache,
                    fps=fps,
                    condition_frames=frames,
                    step_cache=step_cache,
                    branch="cond",
                ).float()
                if guided:
                    v_uncond = transformer.velocity(
                        latents,
                        timestep,
                        uncond_cache,
                        fps=fps,
                        condition_frames=frames,
                        step_cache=step_cache,
                        branch="uncond",
                    )
                    v = cfg_combine(v, v_uncond.float(), guidance)
            denoised = latents.float() - float(sampler.sigmas[index]) * v if callback is not None else None
            latents = sampler.step(v, index, latents, generator=generator)
            if condition is not None and reanchor_condition:
                latents = reanchor(latents, clean, mask)
            if not bool(torch.isfinite(latents).all()):
                raise NonFiniteLatentsError(
                    f"sampling produced non-finite latents (NaN or Inf) at step {index + 1} of {total}; the result "
                    "would be a black or garbage video. Check the checkpoint for NaN/Inf weights, or run in bf16/fp32 "
                    "instead of fp16 (overflow)."
                )
            if callback is not None:
                callback(StepInfo(index, total, float(timestep), latents.float(), denoised))
        if parallel is not None and not parallel.agree(True):  # a stop raised by another rank's last callback
            raise ParallelStopped(f"another rank stopped the parallel run after step {total} of {total}")
    except BaseException as exc:
        if parallel is not None and not isinstance(exc, ParallelError):
            try:  # tell the other ranks (waiting at the next step's signal) to stop too
                parallel.agree(False)
            except ParallelError:
                pass
        raise
    finally:  # free what only sampling needed (the VAE decode wants the room)
        if parallel is not None:
            transformer.sequence_parallel = previous_sharding
        swap = getattr(transformer, "block_swap", None)
        if swap is not None:
            swap.unload_all()  # the layer prefetched for a next pass
        if step_cache is not None:
            step_cache.release()
    return latents.float().cpu()
