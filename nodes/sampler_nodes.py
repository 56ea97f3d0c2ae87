"""Sampler: cached text K/V + an empty LATENT (its shape gives frames and size) -> raw Wan 2.2 latents.

Runs only the generation tower per step (:func:`cosmos3.sampling.loop.sample`), loaded through ComfyUI's model
management with an activation estimate so other models (the text tower, a VAE, another checkpoint) are
offloaded as needed. Per step: ComfyUI's interrupt is honoured (the exception stops sampling), the progress
bar advances and, when previews are on (``--preview-method``), frame 0 of the model's clean-latent estimate
is shown through ComfyUI's Wan 2.2 Latent2RGB/TAE previewer.

The output follows ComfyUI's LATENT convention: ``{"samples": raw (un-normalised) latents [1, 48, T, H/16,
W/16]}`` float32 on the intermediate device, denormalised with the checkpoint's latent statistics in the
model's dtype (as the Wan 2.2 VAE does it), so our VAE Decode and core Wan 2.2 nodes take it as is.
"""

from __future__ import annotations

import logging

import torch

from ..cosmos3 import geometry
from ..cosmos3.model import attention as attention_kernels
from ..cosmos3.runtime import compile as runtime_compile
from ..cosmos3.runtime.offload import enable_block_swap
from ..cosmos3.runtime.step_cache import StepCache
from ..cosmos3.sampling import plan as plan_mod
from ..cosmos3.sampling.conditioning import ImageCondition
from ..cosmos3.sampling.loop import MAX_GUIDANCE
from ..cosmos3.sampling.schedulers import MAX_SHIFT, MAX_STEPS, SamplerConfigError
from ..cosmos3.text.encoding import EncodedPrompt
from . import _comfy, core_model, parallel_nodes, sound_nodes
from ._comfy import io
from .common import (
    C3MOT_IMAGE_COND,
    C3MOT_MODEL,
    C3MOT_PARALLEL,
    C3MOT_TEXT,
    CATEGORY_ROOT,
    MAX_SEED,
    check_choice,
    check_latents,
    node_schema,
)
from .model_nodes import settle_on_device

log = logging.getLogger("cosmos3_mot")

CATEGORY = CATEGORY_ROOT + "/sampling"
# The attention kernels are the library's registered backends, after "auto" (the default: ComfyUI's own
# attention inside ComfyUI, sdpa outside it). The menu keeps the order it was released with (saved workflows
# store the name; new library backends are appended); "math", the library's fp32 reference kernel for tests,
# is not offered.
AUTO_ATTENTION = "auto"
_ATTENTION_MENU_ORDER = ("sdpa", "flash_attn", "flash_attn3", "sage", "comfy")
_ATTENTION_NOT_OFFERED = ("math",)
ATTENTION_CHOICES = (AUTO_ATTENTION, *
    sorted(
        (name for name in attention_kernels.attention_backends() if name not in _ATTENTION_NOT_OFFERED),
        key=lambda name: (
            _ATTENTION_MENU_ORDER.index(name) if name in _ATTENTION_MENU_ORDER else len(_ATTENTION_MENU_ORDER),
            name,
        ),
    )
)
SCHEDULE_CHOICES = plan_mod.SCHEDULE_CHOICES
GEN_ANCHORS = core_model.GEN_ANCHORS  # the generation tower computes where proj_in's weight is


def check_attention(name: str) -> str:
    """The kernel to use for ``name`` (``auto`` -> ``comfy`` inside ComfyUI, else ``sdpa``) if it can run here;
    else an error naming the package it needs (the library's registered install hint)."""
    check_choice("attention", name, ATTENTION_CHOICES)
    name = core_model.resolve_attention(name)
    try:
        return attention_kernels.check_backend(name)
    except ValueError as exc:  # AttentionBackendUnavailable: names the package and how to install it
        raise RuntimeError(f"attention backend {name!r} is not available ({exc}). Use 'sdpa'.") from None


SAMPLES_IMAGE_LATENT_HINT = (
    " — a 4-D image latent (e.g. from core's Empty Latent Image); connect the Cosmos3 MoT Empty Latent's samples "
    "output here instead (its frames, width and height set what is generated)"
)


def latent_geometry(samples) -> tuple[int, int, int]:
    """``(frames, height, width)`` of a LATENT's raw Wan 2.2 latents (batch 1)."""
    latents = check_latents(samples, SAMPLES_IMAGE_LATENT_HINT)
    b, _, t, h, w = latents.shape
    if b != 1:
        raise ValueError(f"the Cosmos3 sampler generates one clip at a time: LATENT batch must be 1, got {b}")
    return (t - 1) * geometry.TEMPORAL_COMPRESSION + 1, h * geometry.SPATIAL_MULTIPLE, w * geometry.SPATIAL_MULTIPLE


def _check_text(text, model=None):
    if not isinstance(text, EncodedPrompt):
        raise TypeError(f"text must come from the Cosmos3 MoT Text Encode node, got {type(text).__name__}")
    if model is not None:
        core_model.check_text_weights({text.text_weights}, model.text_weights)
    return text


def _check_condition(image_cond, frames: int, height: int, width: int):
    """The condition (Image or Video Condition node), checked against the LATENT's size and frame count."""
    if image_cond is None:
        return None
    if not isinstance(image_cond, ImageCondition):
        raise TypeError(
            f"image_cond must come from the Cosmos3 MoT Image Condition or Video Condition node, got "
            f"{type(image_cond).__name__}"
        )
    made = image_cond.geometry
    if made.frames != frames:
        raise ValueError(
            f"image_cond was prepared for {made.frames} frames (the condition node's frames) but the LATENT "
            f"(samples) has {frames} frames: link the condition node's frames to the Empty Latent's frames output"
        )
    if (made.width, made.height) != (width, height):
        raise ValueError(
            f"image_cond was prepared for {made.width}x{made.height} but the LATENT (samples) is {width}x{height}: "
            "link the condition node's width and height to the Empty Latent's outputs"
        )
    return image_cond


MAX_STEP_CACHE = 1.0
MAX_BLOCKS_TO_SWAP = 256


def _speed_options(model, *, step_cache: float, step_cache_warmup: int, blocks_to_swap: int):
    """Validate the speed/VRAM options; returns the :class:`StepCache` (or ``None``)."""
    layers = model.config.num_hidden_layers
    if isinstance(blocks_to_swap, bool) or not isinstance(blocks_to_swap, int) or not 0 <= blocks_to_swap <= layers:
        raise ValueError(
            f"blocks_to_swap must be an integer from 0 to {layers} (this model's layers), got {blocks_to_swap!r}"
        )
    if (
        not isinstance(step_cache, (int, float))
        or isinstance(step_cache, bool)
        or not 0 <= step_cache <= MAX_STEP_CACHE
    ):
        raise ValueError(f"step_cache must be a threshold from 0 (off) to {MAX_STEP_CACHE:g}, got {step_cache!r}")
    if step_cache <= 0:
        return None
    return StepCache(threshold=float(step_cache), warmup_steps=int(step_cache_warmup))


def _set_compiled(transformer, enabled: bool) -> None:
    if enabled and not runtime_compile.is_compiled(transformer):
        runtime_compile.compile_generation_layers(transformer)
    elif not enabled and runtime_compile.is_compiled(transformer):
        runtime_compile.uncompile_generation_layers(transformer)


def run_sampler(
    model,
    text,
    samples,
    *,
    seed: int,
    steps: int = 0,
    cfg: float = 0.0,
    shift: float = 0.0,
    schedule: str = "auto",
    attention: str = AUTO_ATTENTION,
    cfg_interval: bool = False,
    image_cond=None,
    cfg_batch: bool = False,
    step_cache: float = 0.0,
    step_cache_warmup: int = 3,
    blocks_to_swap: int = 0,
    compile_layers: bool = False,
    sound: str = "off",
    return_sound: bool = False,
    parallel=None,
) -> dict | tuple[dict, dict]:
    """Everything the Sampler node does; returns the LATENT dict.

    ``blocks_to_swap > 0`` streams that many generation layers from the offload device (one layer
    prefetched ahead) instead of loading the whole generation tower through ComfyUI. ``sound``: see sound_nodes.
    """
    text = _check_text(text, model)
    frames, height, width = latent_geometry(samples)
    image_cond = _check_condition(image_cond, frames, height, width)
    info = model.info
    plan = plan_mod.resolve_sampling_plan(
        num_frames=frames,
        height=height,
        width=width,
        fps=text.geometry.fps,
        has_image=image_cond is not None and len(image_cond.frames) == 1,
        has_video=image_cond is not None and len(image_cond.frames) > 1,  # from the Video Condition node
        variant=model.variant,
        kind=info.kind,
        distilled=info.distilled,
        steps=plan_mod.unset_if_auto(steps),
        guidance=plan_mod.unset_if_auto(cfg),
        shift=plan_mod.unset_if_auto(shift),
        schedule=schedule,
        cfg_interval=cfg_interval,
    )
    try:
        text.check_matches(plan.geometry)
    except ValueError as exc:
        raise ValueError(
            f"{exc} In ComfyUI: link the Text Encode's width, height and frames to the Empty Latent's outputs."
        ) from None
    try:  # before any weights move: a bad steps/shift/schedule combination fails here
        sampler = plan.build_sampler(info)
    except SamplerConfigError as exc:
        raise ValueError(f"{exc} (in the Sampler node, 0 means auto/unset for steps and shift)") from None
    sound_frames, sound_location = sound_nodes.plan_sound(model, sound, frames, plan.geometry.fps)
    attention = check_attention(attention)
    cache = _speed_options(
        model, step_cache=step_cache, step_cache_warmup=step_cache_warmup, blocks_to_swap=blocks_to_swap
    )
    run = parallel_nodes.sampler_for(model, parallel, attention, cache)  # a bad layout fails before weights move
    _comfy.warn_user(plan.warnings)  # settings that change the result: on the node and as a toast, not only logged
    use_cfg = plan.guidance != 1.0
    need = plan_mod.estimate_sampling_bytes(
        model.config,
        plan.geometry,
        max(text.cond.text_len, text.uncond.text_len if text.uncond else 0),
        model.dtype,
        guidance=use_cfg,
    )
    log.info("[Cosmos3 MoT] sampling %dx%d, %d frame(s): %s", width, height, frames, plan.describe())

    patcher = model.gen_patcher
    transformer = model.transformer
    device = model.device
    swap = None
    if blocks_to_swap and getattr(patcher, "patches", None):
        raise ValueError("blocks_to_swap streams the stored weights and cannot apply LoRA patches; set it to 0 "
                         "for a model from the LoRA Loader")
    if blocks_to_swap:
        # We place the layers ourselves: the tower leaves ComfyUI's list of loaded models first.
        _comfy.offload_models([patcher])
        resident = plan_mod.resident_gen_bytes(transformer, blocks_to_swap)
        _comfy.free_memory(resident + need, device)
        swap = enable_block_swap(transformer, blocks_to_swap, device, offload_device=patcher.offload_device,
                                 pin_memory=torch.device(device).type == "cuda")
        log.info("[Cosmos3 MoT] block swap: %d of %d generation layers streamed from %s", blocks_to_swap,
                 model.config.num_hidden_layers, patcher.offload_device)
    else:
        _comfy.load_models([patcher], memory_required=need)
        settle_on_device(patcher, GEN_ANCHORS)
    _set_compiled(transformer, compile_layers)
    previewer = _comfy.latent_previewer(device)
    bar = _comfy.progress_bar(sampler.num_steps)

    def on_step(step) -> None:
        _comfy.throw_if_interrupted()  # raises ComfyUI's InterruptProcessingException: sampling stops here
        preview = _comfy.preview_image(previewer, step.denoised) if previewer is not None else None
        bar.update_absolute(step.index + 1, step.total, preview)

    previous = transformer.attention_backend
    transformer.attention_backend = attention
    try:
        latents = run(
            transformer, text, sampler, guidance_scale=plan.guidance, seed=seed, condition=image_cond,
            guidance_interval=plan.guidance_interval, callback=on_step, device=device, cfg_batch=cfg_batch,
            step_cache=cache, sound_frames=sound_frames,
        )
    finally:
        transformer.attention_backend = previous
        if swap is not None:
            swap.unload_all()
            transformer.block_swap = None
            transformer.gen_tower.to(patcher.offload_device)
    if cache is not None and cache.skipped_steps:
        log.info("[Cosmos3 MoT] step cache reused the generation tower on steps %s", cache.skipped_steps)
    latents, sound_out = sound_nodes.split_outputs(latents, sound_frames, sound_location)
    raw = model.latent_stats.denormalize(latents, model.dtype)
    video = {"samples": raw.to(device=_comfy.intermediate_device(), dtype=torch.float32)}
    return (video, sound_out) if return_sound else video


class Sampler(io.ComfyNode):
    """Generates the latents of a video or image with the Cosmos3 generation tower, reusing the cached text K/V of the
    Text Encode node. The size and frame count come from the input LATENT (Empty Latent); text-to-image when frames
    = 1, image-to-video (or video-to-video) when image_cond is connected. 0 = auto picks the framework defaults for
    the mode and checkpoint. Outputs raw Wan 2.2 latents for VAE Decode."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(
            cls,
            "C3MoTSampler",
            "Sampler",
            CATEGORY,
            inputs=[
                C3MOT_MODEL.Input(
                    "model", tooltip="From the Cosmos3 MoT Model Loader (the same model as the Text Encode)."
                ),
                C3MOT_TEXT.Input(
                    "text",
                    tooltip="From the Cosmos3 MoT Text Encode: holds both the positive and the "
                    "negative prompt (the negative prompt is set on the Text Encode node).",
                ),
                io.Latent.Input(
                    "samples",
                    tooltip="From the Cosmos3 MoT Empty Latent: its shape sets frames and "
                    "size (must match the Text Encode's); its values are ignored.",
                ),
                io.Int.Input(
                    "seed",
                    default=0, min=0,
                    max=MAX_SEED,
                    step=1,
                    control_after_generate=True,
                    tooltip=("Noise seed (drawn on the CPU, so a seed gives the same result on any device)."),
                ),
                io.Int.Input(
                    "steps",
                    default=0, min=0,
                    max=MAX_STEPS,
                    step=1,
                    tooltip=(
                        "Denoising steps; 0 = auto (framework defaults: 35 for video, 50 for images, 4 for distilled "
                        "checkpoints, whose step count is fixed)."
                    ),
                ),
                io.Float.Input(
                    "cfg",
                    default=0.0, min=0.0,
                    max=MAX_GUIDANCE,
                    step=0.1, round=0.01,
                    tooltip=(
                        "Classifier-free guidance scale; 0 = auto (6.0 for video, 4.0 for images, 1.0 for distilled "
                        "checkpoints). 1.0 = no guidance (the negative prompt is not used, twice as fast)."
                    ),
                ),
                io.Float.Input(
                    "shift",
                    default=0.0, min=0.0,
                    max=MAX_SHIFT,
                    step=0.1, round=0.01,
                    tooltip=(
                        "Flow shift of the sigma schedule; 0 = auto (video: 10 for Nano, 5 for Super, 3 for Edge; "
                        "images: 3). Lower values spend more steps on detail, higher on layout; lower-resolution video "
                        "may prefer lower values. Must stay 0 for the 'checkpoint' and 'distilled' schedules."
                    ),
                ),
                io.Combo.Input(
                    "schedule",
                    options=list(SCHEDULE_CHOICES),
                    default="auto",
                    tooltip=(
                        "Sampler and sigma grid: 'auto' = 'native' ('distilled' for 4-step checkpoints); "
                        "'native' = flow "
                        "UniPC on the framework's grid (the reference); 'euler' = flow Euler; 'diffusers' = UniPC on "
                        "diffusers' default grid; 'checkpoint' = the checkpoint's scheduler_config.json as shipped; "
                        "'distilled' = the fixed 4-step SDE of distilled checkpoints."
                    ),
                ),
                io.Combo.Input(
                    "attention",
                    options=list(ATTENTION_CHOICES),
                    default=AUTO_ATTENTION,
                    tooltip=(
                        "Attention kernel: 'auto' = whatever ComfyUI is configured to use (its optimized attention: "
                        "--use-sage-attention, --use-flash-attention, PyTorch, split …; 'sdpa' outside ComfyUI); "
                        "'sdpa' = PyTorch (always available); 'flash_attn' = FlashAttention 2 "
                        "(pip install flash-attn); 'flash_attn3' = FlashAttention 3 (Hopper); 'sage' = SageAttention "
                        "(pip install sageattention; int8, not bit-exact); "
                        "'comfy' = whatever ComfyUI's optimized attention uses (--use-sage-attention etc.)."
                    ),
                ),
                io.Boolean.Input(
                    "cfg_interval",
                    default=False,
                    tooltip=("Apply guidance only for timesteps between 400 and 1000 (an option other runtimes use "
                             "for text-to-image; the framework default is off)."),
                ),
                C3MOT_IMAGE_COND.Input(
                    "image_cond",
                    optional=True,
                    tooltip=(
                        "Optional, for image-to-video: from the Cosmos3 MoT Image Condition node; for "
                        "video-to-video: from the Video Condition node (its width/height/frames must match the "
                        "LATENT's)."
                    ),
                ),
                io.Boolean.Input(
                    "cfg_batch",
                    default=False,
                    optional=True,
                    tooltip=(
                        "Run the positive and negative passes as one batch of two (pads the shorter prompt and masks "
                        "the padding). Same result up to rounding; faster on GPUs with spare compute, needs more "
                        "activation memory."
                    ),
                ),
                io.Float.Input(
                    "step_cache",
                    default=0.0, min=0.0,
                    max=MAX_STEP_CACHE,
                    step=0.01, round=0.001,
                    optional=True,
                    tooltip=(
                        "Step cache threshold (TeaCache-style): a step whose input changed less than this (accumulated "
                        "relative L1) reuses the previous generation-tower residual. 0 = off (exact). 0.05-0.2 trades "
                        "quality for speed."
                    ),
                ),
                io.Int.Input(
                    "step_cache_warmup",
                    default=3, min=0,
                    max=MAX_STEPS,
                    step=1,
                    optional=True,
                    tooltip=("Leading steps that always run the full generation tower when the step cache is on."),
                ),
                io.Int.Input(
                    "blocks_to_swap",
                    default=0, min=0,
                    max=MAX_BLOCKS_TO_SWAP,
                    step=1,
                    optional=True,
                    tooltip=("Generation layers kept in system RAM and streamed to the GPU one layer ahead while "
                             "sampling (0 = load the whole generation tower). Lowers VRAM by about the layers' size; "
                             "slower when PCIe cannot keep up."),
                ),
                io.Boolean.Input(
                    "compile",
                    default=False,
                    optional=True,
                    tooltip=("torch.compile the generation layers (the first run compiles and is slow; needs a working "
                             "Triton/C++ toolchain)."),
                ),
                sound_nodes.sound_input(),
                C3MOT_PARALLEL.Input("parallel", optional=True, tooltip=(
                    "Optional: from the Cosmos3 MoT Parallel node, to split each step over several GPUs.")),
            ],
            outputs=[
                io.Latent.Output(
                    display_name="samples",
                    tooltip=("Raw Wan 2.2 latents [1, 48, T, H/16, W/16] for the Cosmos3 MoT VAE Decode."),
                ),
                sound_nodes.sound_output(),
            ],
        )

    @classmethod
    def execute(
        cls,
        model,
        text,
        samples,
        seed,
        steps,
        cfg,
        shift,
        schedule,
        attention,
        cfg_interval,
        image_cond=None,
        cfg_batch=False,
        step_cache=0.0,
        step_cache_warmup=3,
        blocks_to_swap=0,
        compile=False,
        sound="off",
        parallel=None,
    ) -> io.NodeOutput:
        return io.NodeOutput(
            *run_sampler(
                model,
                text,
                samples,
                seed=seed,
                steps=steps,
                cfg=cfg,
                shift=shift,
                schedule=schedule,
                attention=attention,
                cfg_interval=cfg_interval,
                image_cond=image_cond,
                cfg_batch=cfg_batch,
                step_cache=step_cache,
                step_cache_warmup=step_cache_warmup,
                blocks_to_swap=blocks_to_swap,
                compile_layers=compile,
                sound=sound,
                return_sound=True,
                parallel=parallel,
            )
        )


NODES = [Sampler]
