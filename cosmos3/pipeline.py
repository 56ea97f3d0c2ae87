"""End-to-end Cosmos3 generation: text-to-video, image-to-video, text-to-image and video-to-video.

:class:`Cosmos3Pipeline` composes the pieces the ComfyUI nodes also use one by one:
:func:`~cosmos3.text.encoding.encode_prompt` (text tower once per prompt),
:func:`~cosmos3.sampling.conditioning.encode_image_condition` (I2V) / ``encode_video_condition`` (V2V),
:func:`~cosmos3.sampling.loop.sample` (generation tower per step) and the VAE decode.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from .audio.stream import SoundStream, SoundUnavailableError
from .defaults import GenerationDefaults, Mode, generation_defaults
from .errors import Cosmos3Error
from .files.checkpoint import CheckpointInfo
from .files.json_files import read_json_object
from .model.loading import load_text_tower, load_transformer
from .model.transformer import Cosmos3Transformer
from .runtime.memory_budget import check_request_memory
from .runtime.offload import TEXT_TOWER_MODES, TextTowerResidency
from .runtime.parallel import DEFAULT_TIMEOUT_S, ParallelConfig, ParallelRuntime, init_parallel
from .runtime.step_cache import StepCache
from .sampling.conditioning import (
    ImageCondition,
    encode_image_condition,
    encode_video_condition,
)
from .sampling.loop import StepInfo, sample
from .sampling.plan import resolve_sampling_plan
from .text.encoding import EncodedPrompt, PromptKVCache, encode_prompt
from .text.prompt_checks import check_negative_text, check_prompt_text
from .text.structured_prompt import resolve_plain_prompt, wrap_plain_prompt
from .text.tokenizer import PromptTokenizer, load_text_tokenizer
from .vae.loading import load_vae
from .vae.model import WanVAE
from .variants import Variant, variant_from_config

ProgressCallback = Callable[[int, int, torch.Tensor], None]
StageCallback = Callable[[str, int, int], None]
STAGES = ("encode_prompt", "encode_condition", "decode")

UNGUARDED_WARNING = (
    "Cosmos3Pipeline.generate() was called with guardrail=None: no guardrail checks ran (no prompt check, "
    "no check or face blur of the generated frames). To enable them, build a guardrail with "
    "guardrails.Guardrail.from_config(guardrails.GuardrailConfig(...)) and pass it as generate(..., "
    "guardrail=...). The Cosmos3 model licence may require these guardrails. "
    "(This warning is shown once per pipeline.)"
)


def latents_to_frames(pixels: torch.Tensor) -> torch.Tensor:
    """VAE output ``[1, 3, F, H, W]`` in [-1, 1] -> float32 frames ``[F, H, W, 3]`` in [0, 1] on the CPU."""
    return (pixels[0].float() / 2 + 0.5).clamp(0, 1).permute(1, 2, 3, 0).contiguous().cpu()


def text_tower_mode(offload_text_tower: bool | str) -> str:
    """``False`` -> ``"keep"``, ``True`` -> ``"offload"``, or one of
    :data:`cosmos3.runtime.offload.TEXT_TOWER_MODES`."""
    if offload_text_tower is False or offload_text_tower is None:
        return "keep"
    if offload_text_tower is True:
        return "offload"
    if offload_text_tower not in TEXT_TOWER_MODES:
        raise ValueError(
            f"offload_text_tower {offload_text_tower!r} is not supported; allowed: True, False, "
            + ", ".join(repr(m) for m in TEXT_TOWER_MODES)
        )
    return offload_text_tower


class Cosmos3Pipeline:
    """A loaded Cosmos3 checkpoint: transformer (two towers), Wan 2.2 VAE, tokenizer and checkpoint flags.

    Speed/memory settings (attributes, read by :meth:`generate`): ``cfg_batch`` (cond + uncond in one batched
    generation-tower pass), ``step_cache`` (a :class:`~cosmos3.runtime.step_cache.StepCache` or ``None``),
    ``text_residency`` (:class:`~cosmos3.runtime.offload.TextTowerResidency`: whether the text tower leaves the device
    after encoding) and ``prompt_cache`` (:class:`~cosmos3.text.encoding.PromptKVCache`: K/V of recent prompts,
    so repeating a prompt needs no text tower). ``parallel`` (a
    :class:`~cosmos3.runtime.parallel.ParallelRuntime`, set by ``from_pretrained(parallel=...)``): every rank of the
    run calls :meth:`generate` with the same arguments; the sampling is split over the ranks and only rank 0
    decodes and returns frames (the other ranks return ``None``).
    """

    def __init__(
        self,
        transformer: Cosmos3Transformer,
        vae: WanVAE,
        tokenizer: PromptTokenizer,
        info: CheckpointInfo | None = None,
        *,
        text_residency: TextTowerResidency | None = None,
        prompt_cache: PromptKVCache | None = None,
        sound: SoundStream | None = None,
    ):
        self.transformer = transformer
        self.vae = vae
        self.tokenizer = tokenizer
        self.info = info
        self.text_residency = text_residency or TextTowerResidency(transformer, "keep")
        self.prompt_cache = prompt_cache
        self.cfg_batch = False
        self.step_cache: StepCache | None = None
        self.parallel: ParallelRuntime | None = None
        self._warned_unguarded = False
        # Sound (sound-capable checkpoints): the sound tokenizer location; its decoder loads on first use.
        self.sound = sound or SoundStream(transformer.config, None)

    @classmethod
    def from_pretrained(
        cls,
        checkpoint_dir: str | Path,
        dtype: torch.dtype = torch.bfloat16,
        device: torch.device | str = "cpu",
        *,
        vae_path: str | Path | None = None,
        vae_dtype: torch.dtype | None = None,
        weight_storage: str | torch.dtype | None = None,
        offload_text_tower: bool | str = False,
        text_offload_device: torch.device | str = "cpu",
        prompt_cache: int | None = None,
        attention_backend: str | None = None,
        sound_tokenizer_path: str | Path | None = None,
        parallel: ParallelConfig | ParallelRuntime | None = None,
        parallel_timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> Cosmos3Pipeline:
        """Load a diffusers-layout checkpoint folder (``transformer/``, ``vae/``, ``text_tokenizer/``, ...).

        ``vae_path`` overrides the VAE location (e.g. ComfyUI's ``wan2.2_vae.safetensors``).
        ``weight_storage``: see :func:`~cosmos3.model.loading.load_transformer` (``"fp8_e4m3fn"``).
        ``offload_text_tower``: ``False``/``"keep"`` (default), ``True``/``"offload"`` (text tower waits on
        ``text_offload_device`` and visits ``device`` only to encode a new prompt) or ``"drop"`` (freed after
        encoding, reloaded from the checkpoint for a new prompt). ``prompt_cache``: how many prompts' K/V to
        keep (default 4 when the text tower is evicted, else 0). ``attention_backend``: see
        :mod:`cosmos3.model.attention`. ``sound_tokenizer_path`` overrides the sound tokenizer location (default:
        the checkpoint's ``sound_tokenizer/``; loaded only when sound is generated).

        ``parallel``: a :class:`~cosmos3.runtime.parallel.ParallelConfig` joins the process group of the run
        (under ``torchrun``: from its environment; collectives time out after ``parallel_timeout_s``) after checking
        the layout against the checkpoint's heads and the world size, before any weight is read; the weights then
        load onto this rank's device (``cuda:LOCAL_RANK``, or the CPU with gloo), whatever ``device`` says. A
        ready :class:`~cosmos3.runtime.parallel.ParallelRuntime` is used as it is.
        """
        mode = text_tower_mode(offload_text_tower)
        info = CheckpointInfo.read(checkpoint_dir)
        transformer_path = info.root / "transformer"
        runtime = None
        if isinstance(parallel, ParallelConfig):
            heads = read_json_object(transformer_path / "config.json", Cosmos3Error, "transformer config")
            runtime = init_parallel(
                parallel, timeout_s=parallel_timeout_s, num_heads=heads.get("num_attention_heads"),
                num_kv_heads=heads.get("num_key_value_heads"),
            )
        elif parallel is not None:
            runtime = parallel
        if runtime is not None:
            device = runtime.device
        transformer = load_transformer(
            transformer_path,
            dtype=dtype,
            device=device,
            weight_storage=weight_storage,
            text_tower_device=text_offload_device if mode != "keep" else None,
        )
        if attention_backend is not None:
            transformer.attention_backend = attention_backend
        reload = None
        if mode == "drop":

            def reload():
                return load_text_tower(transformer_path, dtype=dtype, device=device, weight_storage=weight_storage)

        residency = TextTowerResidency(
            transformer, mode, device=device, offload_device=text_offload_device, reload=reload
        )
        entries = prompt_cache if prompt_cache is not None else (4 if mode != "keep" else 0)
        vae = load_vae(vae_path or info.root / "vae", dtype=vae_dtype or dtype, device=device)
        tokenizer = load_text_tokenizer(info.root, vocab_size=transformer.config.vocab_size)
        if sound_tokenizer_path is not None:
            sound = SoundStream(transformer.config, sound_tokenizer_path, dtype, device, checkpoint=info.root)
        else:
            sound = SoundStream.for_checkpoint(transformer.config, info.root, dtype, device)
        pipe = cls(
            transformer,
            vae,
            tokenizer,
            info,
            text_residency=residency,
            prompt_cache=PromptKVCache(entries) if entries else None,
            sound=sound,
        )
        pipe.parallel = runtime
        return pipe

    # ------------------------------------------------------------------ metadata
    @property
    def variant(self) -> Variant:
        return variant_from_config(self.transformer.config)

    @property
    def has_sound(self) -> bool:
        """Whether this checkpoint has a sound stream (a sound head and a sound tokenizer location)."""
        return self.sound.available

    @property
    def sound_sample_rate(self) -> int | None:
        """Sample rate (Hz) of the waveforms ``generate(..., sound=True)`` returns; ``None`` without sound."""
        return self.sound.sample_rate

    def defaults(self, mode: Mode | str) -> GenerationDefaults:
        """Framework default parameters for ``mode`` on this checkpoint."""
        kind = self.info.kind if self.info is not None else "base"
        return generation_defaults(mode, self.variant, kind)

    # ------------------------------------------------------------------ steps
    def encode_prompt(self, prompt: str, negative_prompt: str | None = None, **kwargs: Any) -> EncodedPrompt:
        """See :func:`cosmos3.text.encoding.encode_prompt` (keyword arguments pass through).

        Uses :attr:`prompt_cache` and :attr:`text_residency`: the text tower is brought to the device only for
        token ids not cached yet and evicted again afterwards.
        """
        kwargs.setdefault("encoder", self.text_residency.encode)
        kwargs.setdefault("kv_cache", self.prompt_cache)
        try:
            return encode_prompt(self.transformer, self.tokenizer, prompt, negative_prompt, **kwargs)
        finally:
            self.text_residency.evict()

    def decode(self, latents: torch.Tensor, *, tiled: bool | None = None, progress: Any = None) -> torch.Tensor:
        """Normalised latents ``[1, 48, T', h, w]`` -> frames ``[F, H, W, 3]`` float32 in [0, 1] on the CPU."""
        raw = self.vae.denormalize(latents.to(self.vae.device))
        pixels = self.vae.decode(raw, tiled=tiled, progress=progress, output_device="cpu")
        return latents_to_frames(pixels)

    # ------------------------------------------------------------------ all in one
    def generate(
        self,
        prompt: str,
        negative_prompt: str | None = None,
        image: Any = None,
        video: Any = None,
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        fps: float | None = None,
        steps: int | None = None,
        guidance_scale: float | None = None,
        seed: int = 0,
        schedule: str | None = None,
        shift: float | None = None,
        prompt_style: str = "framework",
        use_system_prompt: bool | None = None,
        callback: ProgressCallback | None = None,
        *,
        guidance_interval: Sequence[float] | None = None,
        condition_frames: Sequence[int] = (0, 1),
        video_keep: str = "first",
        strict_sizes: bool = True,
        tiled_decode: bool | None = None,
        guardrail: Any = None,
        return_latents: bool = False,
        allow_empty_prompt: bool = False,
        stage_callback: StageCallback | None = None,
        sound: bool = False,
        upsampler: Any = None,
        audio_description: str | None = None,
        plain_prompt: str = "auto",
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None:
        """Generate frames ``[F, H, W, 3]`` float32 in [0, 1] (``F = 1`` for text-to-image).

        The mode follows the inputs: ``num_frames == 1`` text-to-image, ``image`` image-to-video, ``video``
        video-to-video (clean latent frames ``condition_frames`` from the ``video_keep`` end of the clip),
        otherwise text-to-video. Settings resolve through :func:`cosmos3.sampling.plan.resolve_sampling_plan`:
        unset (``None``; 0 for steps/guidance/shift) size, fps, steps, guidance, schedule and shift take the
        framework defaults for the mode and checkpoint (:meth:`defaults`); ``strict_sizes`` refuses sizes outside
        the variant's trained envelope. ``schedule`` is one of :data:`cosmos3.sampling.schedulers.SCHEDULES`.
        ``callback(step, total, latents)`` runs after every step; an exception it raises stops generation.
        ``guardrail`` (a :class:`guardrails.Guardrail`) checks the prompt first and the frames last; without one
        the first unguarded call on this pipeline emits a :class:`UserWarning` (:data:`UNGUARDED_WARNING`).
        ``return_latents`` returns the normalised latents instead of decoding them. An empty or whitespace-only
        ``prompt`` is refused (:class:`~cosmos3.text.prompt_checks.EmptyPromptError`) unless
        ``allow_empty_prompt``; a request whose estimated memory exceeds the device's is refused
        (:class:`~cosmos3.runtime.memory_budget.MemoryEstimateError`) before anything runs.
        ``stage_callback(stage, done, total)`` reports the stages around sampling (:data:`STAGES`): ``(stage, 0, 1)``
        / ``(stage, 1, 1)`` around prompt and condition encoding, ``("decode", done, total)`` per decoded chunk.

        ``sound=True`` (sound-capable checkpoints, T2V/I2V/V2V) denoises a sound latent jointly with the video and
        returns ``(frames, waveform)``: the waveform float32 ``[channels, samples]`` in [-1, 1] at
        :attr:`sound_sample_rate`, as long as the clip (``return_latents``: ``(latents, sound latents)``).
        ``upsampler`` (a :class:`cosmos3.text.upsampler.PromptUpsampler`) first expands ``prompt`` into the
        structured JSON caption for this mode and clip (``image`` shown to it for I2V, ``audio_description`` kept);
        the guardrail then checks both the typed prompt and the caption. ``plain_prompt`` (``auto`` /
        ``as_text`` / ``temporal_caption``) decides how a non-JSON prompt is fed (see
        :func:`cosmos3.text.structured_prompt.resolve_plain_prompt`).

        With :attr:`parallel` set, call this on every rank with the same arguments; rank 0 decodes (the VAE runs
        once, on rank 0) and returns the frames, the other ranks return ``None`` after sampling.
        """
        check_prompt_text(prompt, allow_empty=allow_empty_prompt)
        check_negative_text(negative_prompt)
        info = self.info
        plan = resolve_sampling_plan(
            num_frames=num_frames, height=height, width=width, fps=fps, has_image=image is not None,
            has_video=video is not None, variant=self.variant, kind=info.kind if info is not None else "base",
            distilled=info.distilled if info is not None else False, steps=steps, guidance=guidance_scale,
            shift=shift, schedule=schedule, guidance_interval=guidance_interval, strict=strict_sizes,
        )
        geometry = plan.geometry
        sampler = plan.build_sampler(info)  # a bad steps/shift/schedule fails here, before the text tower runs
        sound_frames = self._sound_frames(geometry) if sound else None  # likewise a checkpoint without sound
        check_request_memory(
            self.transformer.config, geometry, self.transformer.compute_dtype,
            self.transformer.gen_tower.proj_in.weight.device,
            guidance=plan.guidance != 1.0,
        )
        stage = stage_callback or (lambda name, done, total: None)
        if prompt_style == "diffusers" and use_system_prompt is None and info is not None:
            use_system_prompt = info.default_use_system_prompt

        if guardrail is not None:
            guardrail.ensure_prompt_safe(prompt)
        if upsampler is not None:
            mode = "t2i" if geometry.is_image else ("i2v" if image is not None else "t2v")
            prompt = upsampler.upsample(
                prompt, mode, width=geometry.width, height=geometry.height, frames=geometry.frames, fps=geometry.fps,
                image=image, audio_description=audio_description, seed=seed,
            ).text
            if guardrail is not None:
                guardrail.ensure_prompt_safe(prompt)
        edge = self.variant is Variant.EDGE
        prompt = wrap_plain_prompt(prompt, resolve_plain_prompt(plain_prompt, edge=edge, prompt_style=prompt_style))
        if guardrail is None and not self._warned_unguarded:
            self._warned_unguarded = True
            warnings.warn(UNGUARDED_WARNING, UserWarning, stacklevel=2)
        stage("encode_prompt", 0, 1)
        encoded = self.encode_prompt(
            prompt,
            negative_prompt,
            geometry=geometry,
            prompt_style=prompt_style,
            use_system_prompt=use_system_prompt,
            with_negative=plan.guidance != 1.0,
            offload_device=None,
            allow_empty_prompt=allow_empty_prompt,
        )
        stage("encode_prompt", 1, 1)
        condition: ImageCondition | None = None
        if image is not None or video is not None:
            stage("encode_condition", 0, 1)
            if image is not None:
                condition = encode_image_condition(self.vae, image, geometry)
            else:
                condition = encode_video_condition(
                    self.vae, video, geometry, condition_frames=condition_frames, keep=video_keep
                )
            stage("encode_condition", 1, 1)

        step_callback = None
        if callback is not None:

            def step_callback(info: StepInfo) -> None:
                callback(info.index, info.total, info.latents)

        latents = sample(
            self.transformer, encoded, sampler, guidance_scale=plan.guidance, seed=seed, condition=condition,
            guidance_interval=plan.guidance_interval, callback=step_callback, cfg_batch=self.cfg_batch,
            step_cache=self.step_cache, sound_frames=sound_frames, parallel=self.parallel,
        )
        if self.parallel is not None and not self.parallel.is_main:
            return None
        latents, sound_latents = latents if sound else (latents, None)
        if return_latents:
            return latents if sound_latents is None else (latents, sound_latents)
        stage("decode", 0, 1)
        frames = self.decode(latents, tiled=tiled_decode, progress=lambda done, total: stage("decode", done, total))
        if guardrail is not None:
            checked, report = guardrail.check_images(frames)
            if checked is None:
                raise ValueError(f"the guardrail blocked the generated frames:\n{report}")
            frames = checked
        if sound_latents is not None:
            return frames, self.sound.decode(sound_latents)
        return frames

    def _sound_frames(self, geometry: Any) -> int:
        """Sound latent length for ``geometry``; refuses images and checkpoints without a sound stream."""
        if geometry.is_image:
            raise SoundUnavailableError(
                "sound=True needs a video: text-to-image (num_frames=1) has no duration to give sound; "
                "use num_frames > 1 or sound=False"
            )
        self.sound.check()
        return self.sound.latent_frames(geometry.frames, geometry.fps)
