"""One attention entry point with swappable kernels.

``attention(q, k, v, causal, backend, key_padding=None)`` takes head-major tensors ``q`` [nh, Lq, hd] and
``k``/``v`` [nkv, Lk, hd] (an optional leading batch dim is allowed) with grouped-query attention: key/value
head ``j`` serves query heads ``j*g .. j*g+g-1`` where ``g = nh / nkv``. Scale is ``1/sqrt(hd)``. ``causal``
masks key ``i`` for query ``j < i`` (top-left aligned; only used with ``Lq == Lk``). ``key_padding``
(:class:`KeyPadding`, batched input only) marks the first ``starts[b]`` keys of sample ``b`` as padding.

Backends (:func:`attention_backends`):

* ``"sdpa"`` (default): ``torch.nn.functional.scaled_dot_product_attention``;
* ``"math"``: plain fp32 reference that materialises the score matrix (tests and debugging only);
* ``"flash_attn"`` / ``"flash_attn3"``: the ``flash-attn`` package (FA2) / FlashAttention-3 (``flash_attn_interface``);
* ``"sage"``: SageAttention (``sageattention``; int8 QK, so within kernel tolerance, not bit-exact);
* ``"comfy"``: ComfyUI's ``comfy.ldm.modules.attention.optimized_attention`` (whatever kernel ComfyUI picked
  at start-up). Imported lazily on first use: this module never imports ComfyUI.

The CUDA kernels accept fp16/bf16 CUDA tensors only; fp32 CUDA input is computed in bf16 and cast back.
Selecting a backend whose package is missing raises :class:`AttentionBackendUnavailable` naming the package.
More kernels can register themselves with :func:`register_attention_backend`.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import Cosmos3Error

AttentionFn = Callable[..., torch.Tensor]


class AttentionBackendUnavailable(Cosmos3Error, ImportError):
    """A registered attention backend cannot run here (its package is not installed)."""


@dataclass(frozen=True)
class KeyPadding:
    """Left padding of a batch of key sequences (cond/uncond text of different lengths, batched CFG).

    ``starts[b]``: keys ``[0, starts[b])`` of sample ``b`` are padding; ``mask``: bool ``[B, 1, 1, Lk]``,
    ``True`` = attend. ``split=True`` asks for per-sample attention over the valid keys instead of a mask.
    """

    starts: tuple[int, ...]
    mask: torch.Tensor
    split: bool = False

    @classmethod
    def from_starts(
        cls, starts: Sequence[int], total: int, device: torch.device | str | None, split: bool = False
    ) -> KeyPadding:
        """Padding for keys of length ``total`` per sample, the first ``starts[b]`` of sample ``b`` being padding."""
        starts = tuple(int(s) for s in starts)
        if any(not 0 <= s < total for s in starts):
            raise ValueError(f"key padding starts {starts} must be in [0, {total - 1}]")
        positions = torch.arange(total, device=device)
        mask = positions[None, :] >= torch.tensor(starts, device=device)[:, None]
        return cls(starts=starts, mask=mask[:, None, None, :], split=split)


@dataclass(frozen=True)
class _Backend:
    fn: AttentionFn
    key_padding: Callable[[torch.Tensor], bool] | bool  # whether fn(..., key_padding=) takes a mask for this q
    package: str | None  # importable module the backend needs
    install_hint: str | None


_BACKENDS: dict[str, _Backend] = {}


def register_attention_backend(
    name: str,
    fn: AttentionFn,
    *,
    supports_key_padding: bool | Callable[[torch.Tensor], bool] = False,
    package: str | None = None,
    install_hint: str | None = None,
) -> None:
    """Make ``fn(q, k, v, causal) -> out`` available as ``backend=name`` (same shapes as :func:`attention`).

    ``supports_key_padding``: ``fn`` also accepts ``key_padding=`` (:class:`KeyPadding`) and applies its mask
    (a callable decides per query tensor); otherwise padded batches are split into per-sample calls.
    ``package``: module the backend imports; selecting the backend without it raises
    :class:`AttentionBackendUnavailable` naming it and ``install_hint`` (default ``pip install <package>``).
    """
    hint = install_hint or (f"pip install {package}" if package else None)
    _BACKENDS[name] = _Backend(fn, supports_key_padding, package, hint)


def attention_backends() -> tuple[str, ...]:
    """Names accepted by :func:`attention` (installed or not; see :func:`available_attention_backends`)."""
    return tuple(sorted(_BACKENDS))


def available_attention_backends() -> tuple[str, ...]:
    """Registered backends whose package is importable here (no import is performed)."""
    return tuple(name for name in attention_backends() if _missing_package(_BACKENDS[name]) is None)


def _missing_package(backend: _Backend) -> str | None:
    if backend.package is None:
        return None
    try:
        found = importlib.util.find_spec(backend.package) is not None
    except (ImportError, ValueError):
        found = False
    return None if found else backend.package


def _unavailable(name: str, backend: _Backend) -> AttentionBackendUnavailable:
    if name == "comfy":
        return AttentionBackendUnavailable(
            "attention backend 'comfy' needs ComfyUI's 'comfy' package (comfy.ldm.modules.attention); "
            "it is only available when running inside ComfyUI"
        )
    return AttentionBackendUnavailable(
        f"attention backend {name!r} needs the {backend.package!r} package: {backend.install_hint}"
    )


def check_backend(name: str) -> str:
    """Return ``name`` if it is registered and its package is installed.

    Raises ``ValueError`` (listing the allowed names) for an unknown name and
    :class:`AttentionBackendUnavailable` (naming the package to install) for a missing package.
    """
    backend = _BACKENDS.get(name)
    if backend is None:
        raise ValueError(f"unknown attention backend {name!r}; allowed: {', '.join(attention_backends())}")
    if _missing_package(backend) is not None:
        raise _unavailable(name, backend)
    return name


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool,
    backend: str = "sdpa",
    key_padding: KeyPadding | None = None,
) -> torch.Tensor:
    """Scaled dot-product attention with GQA: ``q`` [..., nh, Lq, hd], ``k``/``v`` [..., nkv, Lk, hd]
    -> [..., nh, Lq, hd].

    Output dtype = ``q.dtype``. ``key_padding`` needs 4-D input ``[B, ...]`` with ``B == len(starts)``.
    """
    entry = _BACKENDS.get(backend)
    if entry is None:
        check_backend(backend)
    nh, nkv = q.shape[-3], k.shape[-3]
    if k.shape != v.shape or nh % nkv or q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"attention: incompatible shapes q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)} "
            "(need k == v and query heads a multiple of key/value heads)"
        )
    if key_padding is None:
        return entry.fn(q, k, v, causal)
    if q.dim() != 4 or q.shape[0] != len(key_padding.starts) or k.shape[0] != q.shape[0]:
        raise ValueError(
            f"attention: key_padding for {len(key_padding.starts)} samples needs batched 4-D q/k/v, "
            f"got q {tuple(q.shape)}, k {tuple(k.shape)}"
        )
    supports = entry.key_padding(q) if callable(entry.key_padding) else entry.key_padding
    if supports and not key_padding.split:
        return entry.fn(q, k, v, causal, key_padding=key_padding)
    # Per-sample attention over each sample's valid keys (left padding: a contiguous suffix, so views only).
    outs = [
        entry.fn(q[b : b + 1], k[b : b + 1, :, start:], v[b : b + 1, :, start:], causal)
        for b, start in enumerate(key_padding.starts)
    ]
    return torch.cat(outs, dim=0)


def repeat_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Expand key/value heads [..., nkv, L, hd] to [..., nkv*groups, L, hd] (kv head j -> query heads j*g..)."""
    return x if groups == 1 else x.repeat_interleave(groups, dim=-3)


# ---------------------------------------------------------------------------------------------- torch kernels


def _sdpa(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, key_padding: KeyPadding | None = None
) -> torch.Tensor:
    if q.dim() == 3:  # the fused kernels only accept [B, H, L, D]; 3-D input would fall back to the math path
        return _sdpa(q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0), causal).squeeze(0)
    mask = key_padding.mask if key_padding is not None else None
    groups = q.shape[-3] // k.shape[-3]
    if groups == 1:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
    try:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=True)
    except (RuntimeError, TypeError):  # kernels or torch builds without native GQA support
        return F.scaled_dot_product_attention(
            q, repeat_kv(k, groups), repeat_kv(v, groups), attn_mask=mask, is_causal=causal
        )


def _sdpa_masks_ok(q: torch.Tensor) -> bool:
    # On CUDA a mask rules out the flash kernel (and with GQA can select the O(L^2)-memory math kernel), so
    # padded CFG batches run per sample there; on the CPU one masked call is cheaper.
    return not q.is_cuda


def _math(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, key_padding: KeyPadding | None = None
) -> torch.Tensor:
    groups = q.shape[-3] // k.shape[-3]
    k, v = repeat_kv(k, groups).float(), repeat_kv(v, groups).float()
    scores = (q.float() @ k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    if causal:
        lq, lk = scores.shape[-2], scores.shape[-1]
        mask = torch.ones(lq, lk, dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(mask, float("-inf"))
    if key_padding is not None:
        scores = scores.masked_fill(~key_padding.mask, float("-inf"))
    return (scores.softmax(dim=-1) @ v).to(q.dtype)


# ---------------------------------------------------------------------------------------------- CUDA kernels

_HALF = (torch.float16, torch.bfloat16)
# The flash/sage kernels only run on CUDA; tests switch this off to drive the wrappers with stand-in kernels.
REQUIRE_CUDA = True


def _kernel(name: str, module: str, attr: str) -> Callable[..., torch.Tensor]:
    """Import ``module.attr`` for backend ``name``, raising :class:`AttentionBackendUnavailable` if missing."""
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        raise _unavailable(name, _BACKENDS[name]) from None


def _cuda_half(name: str, *tensors: torch.Tensor) -> tuple[torch.dtype, list[torch.Tensor]]:
    """Check the device, and cast fp32 input to bf16 (the kernels run fp16/bf16 only)."""
    q = tensors[0]
    if REQUIRE_CUDA and not q.is_cuda:
        raise ValueError(
            f"attention backend {name!r} runs on CUDA tensors only, got {q.device.type} tensors; use 'sdpa' here"
        )
    dtype = q.dtype
    run = dtype if dtype in _HALF else torch.bfloat16
    return dtype, [t if t.dtype == run else t.to(run) for t in tensors]


def _batched(fn: AttentionFn) -> AttentionFn:
    """Lift a [B, H, L, D] kernel to also accept unbatched [H, L, D] input."""

    def wrapper(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
        if q.dim() == 3:
            return fn(q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0), causal).squeeze(0)
        return fn(q, k, v, causal)

    wrapper.__name__ = fn.__name__
    return wrapper


@_batched
def _flash_attn(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
    dtype, (q16, k16, v16) = _cuda_half("flash_attn", q, k, v)
    flash_attn_func = _kernel("flash_attn", "flash_attn", "flash_attn_func")

    # flash-attn takes [B, L, H, D] and supports GQA natively.
    out = flash_attn_func(q16.transpose(1, 2), k16.transpose(1, 2), v16.transpose(1, 2), causal=causal)
    return out.transpose(1, 2).to(dtype)


@_batched
def _flash_attn3(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
    dtype, (q16, k16, v16) = _cuda_half("flash_attn3", q, k, v)
    flash_attn_func = _kernel("flash_attn3", "flash_attn_interface", "flash_attn_func")

    out = flash_attn_func(q16.transpose(1, 2), k16.transpose(1, 2), v16.transpose(1, 2), causal=causal)
    if isinstance(out, tuple):  # some FA3 releases also return the log-sum-exp
        out = out[0]
    return out.transpose(1, 2).to(dtype)


@_batched
def _sage(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
    dtype, (q16, k16, v16) = _cuda_half("sage", q, k, v)
    sageattn = _kernel("sage", "sageattention", "sageattn")

    out = sageattn(q16, k16, v16, tensor_layout="HND", is_causal=causal)
    return out.to(dtype)


@_batched
def _comfy(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
    if causal:
        # ComfyUI's kernels have no causal flag (an additive mask would knock sage/flash back to their
        # fallbacks); the causal pass is the once-per-prompt text tower, so it runs on SDPA.
        return _sdpa(q, k, v, causal)
    optimized_attention = _kernel("comfy", "comfy.ldm.modules.attention", "optimized_attention")
    heads = q.shape[1]
    groups = heads // k.shape[1]
    # ComfyUI's functions expect as many key/value heads as query heads.
    return optimized_attention(
        q, repeat_kv(k, groups), repeat_kv(v, groups), heads, skip_reshape=True, skip_output_reshape=True
    )


register_attention_backend("sdpa", _sdpa, supports_key_padding=_sdpa_masks_ok)
register_attention_backend("math", _math, supports_key_padding=True)
register_attention_backend("flash_attn", _flash_attn, package="flash_attn", install_hint="pip install flash-attn")
register_attention_backend(
    "flash_attn3",
    _flash_attn3,
    package="flash_attn_interface",
    install_hint="build FlashAttention-3 from the flash-attention repository's hopper/ folder (Hopper GPUs)",
)
register_attention_backend("sage", _sage, package="sageattention", install_hint="pip install sageattention")
register_attention_backend("comfy", _comfy, package="comfy")
