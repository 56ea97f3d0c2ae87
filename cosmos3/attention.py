"""One attention entry point with swappable kernels.

``attention(q, k, v, causal, backend)`` takes head-major tensors ``q`` [nh, Lq, hd] and ``k``/``v``
[nkv, Lk, hd] (an optional leading batch dim is allowed) with grouped-query attention: key/value head ``j``
serves query heads ``j*g .. j*g+g-1`` where ``g = nh / nkv``. Scale is ``1/sqrt(hd)``. ``causal`` masks
key ``i`` for query ``j < i`` (top-left aligned; only used with ``Lq == Lk``).

Backends: ``"sdpa"`` (``torch.nn.functional.scaled_dot_product_attention``) and ``"math"`` (plain fp32
reference, materialises the score matrix; tests and debugging only). More kernels (flash-attn, sage,
ComfyUI's optimized attention) register themselves with :func:`register_attention_backend`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

AttentionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, bool], torch.Tensor]

_BACKENDS: dict[str, AttentionFn] = {}


def register_attention_backend(name: str, fn: AttentionFn) -> None:
    """Make ``fn(q, k, v, causal) -> out`` available as ``backend=name`` (same shapes as :func:`attention`)."""
    _BACKENDS[name] = fn


def attention_backends() -> tuple[str, ...]:
    """Names accepted by :func:`attention`."""
    return tuple(sorted(_BACKENDS))


def check_backend(name: str) -> str:
    """Return ``name`` if it is a registered backend, else raise ``ValueError`` listing the allowed names."""
    if name not in _BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; allowed: {', '.join(attention_backends())}")
    return name


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, backend: str = "sdpa") -> torch.Tensor:
    """Scaled dot-product attention with GQA: ``q`` [..., nh, Lq, hd], ``k``/``v`` [..., nkv, Lk, hd] -> [..., nh, Lq, hd].

    Output dtype = ``q.dtype``.
    """
    fn = _BACKENDS.get(backend)
    if fn is None:
        check_backend(backend)
    nh, nkv = q.shape[-3], k.shape[-3]
    if k.shape != v.shape or nh % nkv or q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"attention: incompatible shapes q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)} "
            "(need k == v and query heads a multiple of key/value heads)"
        )
    return fn(q, k, v, causal)


def repeat_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Expand key/value heads [..., nkv, L, hd] to [..., nkv*groups, L, hd] (kv head j -> query heads j*g..)."""
    return x if groups == 1 else x.repeat_interleave(groups, dim=-3)


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
    if q.dim() == 3:  # the fused kernels only accept [B, H, L, D]; 3-D input would fall back to the math path
        return _sdpa(q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0), causal).squeeze(0)
    groups = q.shape[-3] // k.shape[-3]
    if groups == 1:
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    try:
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
    except (RuntimeError, TypeError):  # kernels or torch builds without native GQA support
        return F.scaled_dot_product_attention(q, repeat_kv(k, groups), repeat_kv(v, groups), is_causal=causal)


def _math(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
    groups = q.shape[-3] // k.shape[-3]
    k, v = repeat_kv(k, groups).float(), repeat_kv(v, groups).float()
    scores = (q.float() @ k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    if causal:
        lq, lk = scores.shape[-2], scores.shape[-1]
        mask = torch.ones(lq, lk, dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(mask, float("-inf"))
    return (scores.softmax(dim=-1) @ v).to(q.dtype)


register_attention_backend("sdpa", _sdpa)
register_attention_backend("math", _math)
