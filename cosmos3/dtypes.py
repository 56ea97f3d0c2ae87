"""The weight/activation dtype choices every front end offers (CLI ``--dtype``, the loader nodes' ``dtype``)."""

from __future__ import annotations

import torch

from .errors import Cosmos3Error

DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def parse_dtype(name: str) -> torch.dtype:
    """``"bf16"`` / ``"fp16"`` / ``"fp32"`` -> the torch dtype; anything else names the allowed choices."""
    try:
        return DTYPES[name]
    except (KeyError, TypeError):
        raise Cosmos3Error(f"unknown dtype {name!r}; allowed: {', '.join(DTYPES)}") from None
