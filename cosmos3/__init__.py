"""Cosmos3 world models in plain PyTorch (no ComfyUI imports).

Layout: ``model/`` (the MoT transformer: config, layers, towers, attention, RoPE, loading, fp8), ``vae/`` (Wan 2.2
VAE), ``text/`` (prompt templates, tokenizer, prompt -> cached text K/V), ``sampling/`` (sigmas, samplers,
settings resolution, conditions, the denoising loop), ``runtime/`` (block swap, text-tower eviction, step
cache, compile, parallel), ``files/`` (safetensors, JSON side files, checkpoint folders, media); ``geometry``,
``variants`` and ``defaults`` hold the size rules, the variants' envelopes and the default settings.

Public API (stable names):

* :func:`load_transformer` — the Mixture-of-Transformers DiT with a cached text tower.
* :func:`load_vae` — the 48-channel Wan 2.2 VAE.
* :class:`Cosmos3Pipeline` — T2V / I2V / T2I (and V2V) generation.
* :func:`load_upsampler` / :class:`PromptUpsampler` — a local instruct LLM that writes the structured JSON
  prompt; :func:`build_structured_prompt` — the same JSON from fields, without an LLM.
* :class:`Geometry` (frames, height, width, fps of a clip), :func:`resolve_sampling_plan` (unset settings ->
  concrete ones), :class:`Cosmos3Error` (base of every error the library raises on bad input).

Speed and memory helpers: :func:`enable_block_swap` / :func:`disable_block_swap`, :class:`StepCache`,
:func:`compile_generation_layers`, :class:`BatchedTextKV` (batched CFG), :func:`available_attention_backends`.
Several processes/GPUs: :class:`ParallelConfig` and :func:`init_parallel` (sequence and CFG parallel).

Attributes are imported lazily so ``import cosmos3`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_transformer": ".model.loading",
    "Cosmos3Transformer": ".model.transformer",
    "TransformerConfig": ".model.config",
    "TextKVCache": ".model.text_kv",
    "load_vae": ".vae.loading",
    "WanVAE": ".vae.model",
    "Cosmos3Pipeline": ".pipeline",
    "BatchedTextKV": ".model.text_kv",
    "enable_block_swap": ".runtime.offload",
    "disable_block_swap": ".runtime.offload",
    "StepCache": ".runtime.step_cache",
    "compile_generation_layers": ".runtime.compile",
    "available_attention_backends": ".model.attention",
    "Geometry": ".geometry",
    "resolve_sampling_plan": ".sampling.plan",
    "Cosmos3Error": ".errors",
    "load_upsampler": ".text.upsampler",
    "PromptUpsampler": ".text.upsampler",
    "build_structured_prompt": ".text.structured_prompt",
    "ParallelConfig": ".runtime.parallel",
    "init_parallel": ".runtime.parallel",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'cosmos3' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name, __name__), name)
    globals()[name] = value
    return value


__all__ = sorted(_LAZY)
