"""One line saying what a transformer file looks like when its tensors do not match the config.

A key-mismatch error can list hundreds of tensors; :func:`describe_transformer_mismatch` turns the shapes into
the sentence a user needs first ("a Cosmos3 transformer with hidden 3072 vs config 4096, 28 layers vs 36").
Both maps are ``{diffusers tensor name: shape}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_LAYER_RE = re.compile(r"^layers\.(\d+)\.")
_EMBED = "embed_tokens.weight"
_Q = "layers.0.self_attn.to_q.weight"


def _layer_count(shapes: Mapping[str, tuple[int, ...]]) -> int:
    indices = {int(m.group(1)) for k in shapes if (m := _LAYER_RE.match(k))}
    return max(indices) + 1 if indices else 0


def _modules(keys) -> set[str]:
    return {k.split(".", 1)[0] for k in keys if not _LAYER_RE.match(k)}


def describe_transformer_mismatch(
    expected: Mapping[str, tuple[int, ...]], found: Mapping[str, tuple[int, ...]]
) -> str | None:
    """A short description of how ``found`` differs from ``expected``, or ``None`` when nothing stands out."""
    found_layers = _layer_count(found)
    if _EMBED not in found and not found_layers:
        return "not a Cosmos3 transformer (no 'embed_tokens' or 'layers.N' tensors)"
    parts: list[str] = []
    if _EMBED in expected and _EMBED in found:
        (vocab_e, hidden_e), (vocab_f, hidden_f) = expected[_EMBED][:2], found[_EMBED][:2]
        if hidden_e != hidden_f:
            parts.append(f"hidden {hidden_f} vs config {hidden_e}")
        if vocab_e != vocab_f:
            parts.append(f"vocabulary {vocab_f} vs config {vocab_e}")
    expected_layers = _layer_count(expected)
    if found_layers != expected_layers:
        parts.append(f"{found_layers} layers vs config {expected_layers}")
    if not parts and _Q in expected and _Q in found and expected[_Q] != found[_Q]:
        parts.append(f"query projection {list(found[_Q])} vs config {list(expected[_Q])}")
    lacking = sorted(_modules(expected) - _modules(found))
    extra = sorted(_modules(found) - _modules(expected))
    if lacking:
        parts.append(f"the config expects {', '.join(lacking)}, absent from the file")
    if extra:
        parts.append(f"the file has {', '.join(extra)}, which the config does not enable")
    if not parts:
        return None
    return "a Cosmos3 transformer that does not match its config: " + ", ".join(parts)
