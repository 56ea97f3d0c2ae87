"""Offline safety checks for prompts and generated frames (no ComfyUI imports).

Public API (stable names):

* :class:`GuardrailConfig` — which checks run, their files and thresholds.
* :class:`Guardrail` — ``from_config``; ``check_prompt`` / ``ensure_prompt_safe`` before generation,
  ``check_frames`` (uint8 ``[T,H,W,3]``) / ``check_images`` (float ``[N,H,W,3]``) after decoding.
* :class:`Report`, :class:`CheckResult` — what ran and what it found.
* :class:`GuardrailBlocked` (``ValueError``) and :class:`GuardrailSetupError` (``FileNotFoundError``).
* :func:`find_problems` — every missing file for a configuration, without building anything.
* ``python -m guardrails.convert`` — the one-time ``.pth`` → safetensors converter.

Attributes are imported lazily so ``import guardrails`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "GuardrailConfig": ".config",
    "Guardrail": ".suite",
    "Report": ".report",
    "CheckResult": ".report",
    "GuardrailBlocked": ".report",
    "GuardrailSetupError": ".report",
    "find_problems": ".assets",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'guardrails' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name, __name__), name)
    globals()[name] = value
    return value


__all__ = sorted(_LAZY)
