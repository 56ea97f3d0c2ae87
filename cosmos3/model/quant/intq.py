"""Integer weight-only formats: int8 per output channel and int4 group-wise (two values per byte).

* ``int8``: ``q`` int8 ``[out, in]`` in [-127, 127] and an fp32 scale ``[out]`` (``amax / 127``):
  ``W ≈ q * scale[:, None]``.
* ``int4``: symmetric, ``group_size`` consecutive input columns share one fp16 scale (``c * amax / 7``, with the
  clip ``c`` in :data:`CLIP_RATIOS` that gives the group the least squared error); values in
  [-8, 7] are stored offset by 8 as nibbles, column ``2i`` in the low and ``2i + 1`` in the high nibble of byte
  ``i``: packed ``uint8 [out, in / 2]``, scales ``float16 [out, in / group_size]``.

Both dequantise in float32 and round once to the activation dtype. An all-zero row/group gets scale 1.
"""

from __future__ import annotations

import torch

INT4_GROUP_SIZES = (32, 64, 128, 256)
DEFAULT_INT4_GROUP = 128
_FP16_MAX = 65504.0
CLIP_RATIOS = (1.0, 0.95, 0.9, 0.85, 0.8)  # of the group's amax, tried per group when quantising


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``weight [out, in]`` -> ``(int8 [out, in], fp32 scale [out])``."""
    w = weight.detach().float()
    amax = w.abs().amax(dim=1)
    scale = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))
    return torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8), scale


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``q.float() * scale[:, None]`` rounded once to ``dtype``."""
    return (q.float() * scale.float()[:, None]).to(dtype)


def int4_group(in_features: int, group_size: int = DEFAULT_INT4_GROUP) -> int:
    """The group size used for ``in_features`` columns: ``group_size``, halved until it divides them (min 8)."""
    group = group_size
    while group > 8 and in_features % group:
        group //= 2
    if in_features % group or in_features % 2:
        raise ValueError(f"int4: {in_features} input columns cannot be split into groups (need a multiple of 8)")
    return group


def quantize_int4(weight: torch.Tensor, group_size: int = DEFAULT_INT4_GROUP) -> tuple[torch.Tensor, torch.Tensor]:
    """``weight [out, in]`` -> ``(packed uint8 [out, in/2], fp16 scales [out, in/group])``; the group is
    :func:`int4_group` (``group_size`` or a divisor of ``in``)."""
    w = weight.detach().float()
    out_features, in_features = w.shape
    group = int4_group(in_features, group_size)
    grouped = w.reshape(out_features, in_features // group, group)
    amax = grouped.abs().amax(dim=-1)
    best_q, best_scale, best_err = None, None, None
    for clip in CLIP_RATIOS:  # the clipping ratio with the least squared error, per group
        scale = (amax * (clip / 7.0)).clamp(max=_FP16_MAX).half()
        used = scale.float()
        used = torch.where(used > 0, used, torch.ones_like(used))
        q = torch.round(grouped / used[..., None]).clamp_(-8, 7)
        err = (q * used[..., None] - grouped).pow_(2).sum(dim=-1)
        if best_q is None:
            best_q, best_scale, best_err = q, scale, err
        else:
            better = err < best_err
            best_q = torch.where(better[..., None], q, best_q)
            best_scale, best_err = torch.where(better, scale, best_scale), torch.minimum(err, best_err)
    scale = best_scale
    q = best_q.to(torch.int16) + 8
    q = q.reshape(out_features, in_features).to(torch.uint8)
    packed = q[:, 0::2] | (q[:, 1::2] << 4)
    return packed, torch.where(scale > 0, scale, torch.ones_like(scale))


def dequantize_int4(packed: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Packed nibbles ``[out, in/2]`` and scales ``[out, groups]`` -> ``[out, in]`` in ``dtype``."""
    out_features, half = packed.shape
    q = torch.stack([packed & 0x0F, packed >> 4], dim=-1).reshape(out_features, 2 * half)
    groups = scale.shape[1]
    values = (q.to(torch.int8) - 8).float().reshape(out_features, groups, -1) * scale.float()[..., None]
    return values.reshape(out_features, 2 * half).to(dtype)
