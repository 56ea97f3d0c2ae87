"""Loader hooks for quantised weight storage (used by :func:`cosmos3.model.loading.load_transformer`).

Storage names (``weight_storage``): ``"int8"`` (per output channel), ``"int4"`` (group 128) and ``"int4_g64"``
(group 64) quantise the decoder-layer projections on load (from any source: bf16/fp32, fp8, GGUF, int);
``"default"`` / ``"auto"`` keep projections that the file already stores packed (int8/int4 safetensors, GGUF
block formats) as they are, still packed and file-backed. Everything else (norms, embeddings, biases, the
latent in/out projections, the timestep MLP) is loaded in the base dtype as before.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .linear import QuantTensor, quantize_weight, replace_with_quant

QUANT_STORAGES = {"int8": ("int8", 128), "int4": ("int4", 128), "int4_g64": ("int4", 64)}
KEEP_STORAGES = ("default", "auto")


def plan_quant_modules(
    model: nn.Module, reader: Any, names: dict[str, str], storage: str
) -> dict[str, tuple[str, int]]:
    """``{module name: (format, int4 group size)}`` for every decoder-layer projection stored packed."""
    from ..fp8 import fp8_module_names
    from ..loading import checkpoint_key

    quant_format = getattr(reader, "quant_format", None)
    plan: dict[str, tuple[str, int]] = {}
    for module_name in fp8_module_names(model):
        if storage in QUANT_STORAGES:
            plan[module_name] = QUANT_STORAGES[storage]
            continue
        key = names.get(checkpoint_key(f"{module_name}.weight"))
        stored = quant_format(key) if quant_format is not None and key is not None else None
        if stored is not None and storage in KEEP_STORAGES:
            plan[module_name] = (stored, 128)
    return plan


def assign_quant(
    model: nn.Module, module_name: str, reader: Any, key: str, plan: tuple[str, int], device: torch.device
) -> None:
    """Put the weight ``key`` into ``model.<module_name>`` as a :class:`~.linear.QuantLinear` in format ``plan``:
    the file's packed tensor as it is when it already has that format, else quantised from its float value."""
    fmt, group = plan
    stored: QuantTensor | None = reader.quant(key) if hasattr(reader, "quant") else None
    if stored is None or stored.fmt != fmt:
        stored = quantize_weight(reader.load_mapped(key), fmt, group)
        release_freed_memory()
    replace_with_quant(model, module_name, stored.to(device))


def release_freed_memory() -> None:
    """Hand the quantiser's freed float32 temporaries back to the OS (glibc ``malloc_trim``; no-op elsewhere).

    Without this, glibc keeps them in its heap between the long-lived packed weights, and anonymous memory
    after quantising on load grows to several times the packed weights."""
    global _TRIM
    if _TRIM is None:
        try:
            import ctypes

            _TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _TRIM = False
    if _TRIM:
        _TRIM(0)


_TRIM: Any = None
