"""The denoising loop: noise -> clean normalised latents, running only the generation tower per step."""

from __future__ import annotations

import copy
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
    ``x - sigma * v`` at this step (what previews should show); ``sound_latents``: the sound latents
    ``[1, sound_dim, T_s]`` after the step when sound is generated, else ``None``.
    """

    index: int
    total: int
    timestep: float
    latents: torch.Tensor
    denoised: torch.Tensor
    sound_latents: torch.Tensor | None = None


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
    sound_frames: int | None = None,
    sound_noise: torch.Tensor | None = None,
    parallel: ParallelRuntime | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
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

    Sound (sound-capable transformers): ``sound_frames`` (``T_s``, see
    :meth:`cosmos3.audio.SoundTokenizerConfig.latent_frames`) denoises a sound latent ``[1, sound_dim, T_s]``
    jointly with the video, like the reference: its noise is drawn from the same seeded generator right after the
    video's (or is ``sound_noise``), its tokens join every pass (cond and uncond), its velocity gets the same
    guidance and it is advanced by its own copy of ``sampler``. Returns ``(video latents, sound latents
    [1, sound_dim, T_s] float32 on the CPU)`` then.

    ``parallel`` (:class:`~cosmos3.runtime.parallel.ParallelRuntime`): call ``sample`` on every rank of the run with
    the same arguments; the generation stream (video and sound tokens) is sharded over the sequence group
    (Ulysses/ring) and, with ``cfg=2``, cond and uncond run on different rank groups and are combined once per
    step. Every rank returns the same latents. The ranks agree before each step, so an exception on one rank (e.g.
    an interrupting ``callback``) stops the others with :class:`~cosmos3.runtime.parallel.ParallelStopped`
    instead of a hang.
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
    sound_latents, sound_sampler = _initial_sound(
        transformer, sound_frames, sound_noise, generator, device, state_dtype, sampler
    )

    cond_cache = prompt.cond.to(device)
    uncond_cache = prompt.uncond.to(device) if use_cfg else None
    both = BatchedTextKV.from_caches([cond_cache, uncond_cache], device=device) if use_cfg and cfg_batch else None
    total = sampler.num_steps
    if step_cache is not None:
        step_cache.reset(total)
    fp8_schedule = getattr(transformer, "fp8_matmul_schedule", None)  # cosmos3.runtime.fp8_matmul
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
            if fp8_schedule is not None:
                fp8_schedule.begin_step(index, total)
            guided = use_cfg and guidance_active(timestep, guidance_interval)
            v, v_sound = _step_velocity(
                transformer, latents, sound_latents, timestep, cond_cache, uncond_cache if guided else None,
                both if guided else None, guidance, parallel, fps=fps, condition_frames=frames,
                step_cache=step_cache,
            )
            denoised = latents.float() - float(sampler.sigmas[index]) * v if callback is not None else None
            latents = sampler.step(v, index, latents, generator=generator)
            if sound_sampler is not None:
                sound_latents = sound_sampler.step(v_sound, index, sound_latents, generator=generator)
            if condition is not None and reanchor_condition:
                latents = reanchor(latents, clean, mask)
            if not bool(torch.isfinite(latents).all()) or (
                sound_latents is not None and not bool(torch.isfinite(sound_latents).all())
            ):
                raise NonFiniteLatentsError(
                    f"sampling produced non-finite latents (NaN or Inf) at step {index + 1} of {total}; the result "
                    "would be a black or garbage video. Check the checkpoint for NaN/Inf weights, or run in bf16/fp32 "
                    "instead of fp16 (overflow)."
                )
            if callback is not None:
                sound_now = sound_latents.float() if sound_latents is not None else None
                callback(StepInfo(index, total, float(timestep), latents.float(), denoised, sound_now))
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
        if fp8_schedule is not None:
            fp8_schedule.end()
    if sound_latents is not None:
        return latents.float().cpu(), sound_latents.float().cpu()
    return latents.float().cpu()


def _initial_sound(
    transformer: Cosmos3Transformer,
    sound_frames: int | None,
    sound_noise: torch.Tensor | None,
    generator: torch.Generator,
    device: torch.device,
    state_dtype: torch.dtype,
    sampler: FlowSampler,
) -> tuple[torch.Tensor | None, FlowSampler | None]:
    """Initial sound latents (noise drawn after the video's) and the sound stream's own sampler, or ``(None, None)``."""
    if sound_frames is None:
        if sound_noise is not None:
            raise ValueError("sound_noise was given without sound_frames")
        return None, None
    cfg = transformer.config
    if not cfg.sound_gen:
        raise ValueError("sound was requested but this checkpoint has no sound stream (transformer sound_gen is false)")
    if isinstance(sound_frames, bool) or not isinstance(sound_frames, int) or sound_frames < 1:
        raise ValueError(f"sound_frames must be a positive integer, got {sound_frames!r}")
    shape = (1, cfg.sound_dim, sound_frames)
    if sound_noise is None:
        sound_noise = draw_noise(shape, generator, device, torch.float32)
    elif tuple(sound_noise.shape) != shape:
        raise ValueError(f"sound_noise must have shape {list(shape)}, got {list(sound_noise.shape)}")
    sampler.reset()
    return sound_noise.to(device=device, dtype=state_dtype), copy.deepcopy(sampler)


def _step_velocity(
    transformer: Cosmos3Transformer,
    latents: torch.Tensor,
    sound_latents: torch.Tensor | None,
    timestep: float,
    cond_cache,
    uncond_cache,
    both: BatchedTextKV | None,
    guidance: float,
    parallel: ParallelRuntime | None = None,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The guided float32 velocity of one step (``uncond_cache`` / ``both`` set when guidance applies) for the video
    and, when ``sound_latents`` is given, for the sound (``None`` otherwise). With CFG parallel (``parallel.config.cfg
    == 2``) this rank runs only its branch and the pair is exchanged."""
    if sound_latents is not None:
        kwargs["sound"] = sound_latents

    def split(out) -> tuple[torch.Tensor, torch.Tensor | None]:
        return (out[0].float(), out[1].float()) if sound_latents is not None else (out.float(), None)

    if uncond_cache is not None and parallel is not None and parallel.config.cfg == 2:
        mine = parallel.cfg_index == 0
        v, v_sound = split(transformer.velocity(
            latents, timestep, cond_cache if mine else uncond_cache, branch="cond" if mine else "uncond", **kwargs
        ))
        v = cfg_combine(*parallel.exchange_cfg(v), guidance)
        v_sound = cfg_combine(*parallel.exchange_cfg(v_sound), guidance) if v_sound is not None else None
        return v, v_sound

    if both is not None:
        pair, pair_sound = split(transformer.velocity_batch(latents, timestep, both, branch="cfg", **kwargs))
        v = cfg_combine(pair[0:1], pair[1:2], guidance)
        v_sound = cfg_combine(pair_sound[0:1], pair_sound[1:2], guidance) if pair_sound is not None else None
        return v, v_sound
    v, v_sound = split(transformer.velocity(latents, timestep, cond_cache, branch="cond", **kwargs))
    if uncond_cache is not None:
        u, u_sound = split(transformer.velocity(latents, timestep, uncond_cache, branch="uncond", **kwargs))
        v = cfg_combine(v, u, guidance)
        v_sound = cfg_combine(v_sound, u_sound, guidance) if v_sound is not None else None
    return v, v_sound
