"""Optional ``torch.compile`` of the generation layers (regional compilation).

Each :class:`~cosmos3.model.layers.GenLayer` is compiled in place with :meth:`torch.nn.Module.compile`. All
layers share one code object and their weights are graph inputs, so one compiled graph serves every layer
(recompiling only for new shapes: another resolution, prompt length, CFG batch or padding). The text tower
runs once per prompt and stays eager. Compilation composes with fp8 storage (the upcast is compiled into
the graph) and with block swap (swapped weights keep their ``Parameter`` objects).
"""

from __future__ import annotations

from typing import Any

import torch

from ..model.transformer import Cosmos3Transformer

COMPILE_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# Enough cache entries for the shapes one session typically sees (several resolutions x CFG batch x padding).
_MIN_CACHE_SIZE = 64


def compile_generation_layers(
    model: Cosmos3Transformer,
    *,
    backend: str = "inductor",
    mode: str | None = None,
    dynamic: bool | None = False,
    fullgraph: bool = False,
    options: dict[str, Any] | None = None,
) -> int:
    """``torch.compile`` every generation layer of ``model`` in place; returns the number of layers.

    ``backend``/``mode``/``dynamic``/``fullgraph``/``options`` are passed to :func:`torch.compile`
    (``mode`` one of :data:`COMPILE_MODES`; ``"reduce-overhead"`` uses CUDA graphs and conflicts with block
    swap). ``dynamic=False`` (default) specialises on each shape: a sampling run has fixed shapes, and
    dynamic-shape kernels measured slower (a CFG batch after a serial pass would otherwise recompile as
    dynamic). Raises dynamo's recompile limit to at least 64 entries. Compilation happens lazily on the first
    step.
    """
    if not hasattr(torch, "compile"):
        raise RuntimeError("torch.compile needs PyTorch 2.0 or newer")
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile mode {mode!r} is not supported; allowed: {', '.join(str(m) for m in COMPILE_MODES)}")
    if mode == "reduce-overhead" and model.block_swap is not None and model.block_swap.blocks_to_swap:
        raise ValueError("compile mode 'reduce-overhead' (CUDA graphs) cannot be combined with block swap")
    from torch._dynamo import config
    config.cache_size_limit = max(config.cache_size_limit, _MIN_CACHE_SIZE)
    if hasattr(config, "accumulated_cache_size_limit"):
        config.accumulated_cache_size_limit = max(config.accumulated_cache_size_limit, 4 * _MIN_CACHE_SIZE)
    kwargs: dict[str, Any] = {"backend": backend, "dynamic": dynamic, "fullgraph": fullgraph}
    if options is not None:
        kwargs["options"] = options
    elif mode is not None:
        kwargs["mode"] = mode
    for layer in model.gen_tower.layers:
        layer.compile(**kwargs)
    model.compiled_layers = {"backend": backend, "mode": mode, "dynamic": dynamic, "fullgraph": fullgraph}
    return len(model.gen_tower.layers)


def uncompile_generation_layers(model: Cosmos3Transformer) -> None:
    """Return every generation layer to eager execution."""
    for layer in model.gen_tower.layers:
        layer._compiled_call_impl = None
    model.compiled_layers = None


def is_compiled(model: Cosmos3Transformer) -> bool:
    """Whether :func:`compile_generation_layers` is in effect."""
    return any(getattr(layer, "_compiled_call_impl", None) is not None for layer in model.gen_tower.layers)
