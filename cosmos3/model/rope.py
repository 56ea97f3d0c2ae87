"""3-D multimodal rotary position embedding (interleaved mRoPE) for the Cosmos3 packed sequence.

Positions are ``[3, N]`` (temporal, height, width). Text token ``j`` sits at ``(j, j, j)``; media tokens start
at ``text_len + margin`` on the temporal axis (margin 15000), with spatial ids restarting at 0. With fps
modulation a latent frame ``f`` sits at ``offset + f / (fps/tcf) * (base_fps/tcf)`` so clips sampled at a
different fps keep the temporal spacing the model was trained with.

Precision: positions reach ~15000 + text length, beyond what bf16 represents, so the angle table is always
built in fp32 as an elementwise product (never a matmul, which TF32 or autocast could round) and only
``cos``/``sin`` are cast to the activation dtype.
"""

from __future__ import annotations

import torch

_INV_FREQ_CACHE: dict[tuple[int, float], torch.Tensor] = {}


def text_position_ids(
    num_tokens: int, float_positions: bool = True, device: torch.device | str | None = None
) -> torch.Tensor:
    """Positions of ``num_tokens`` text tokens: ``[3, num_tokens]`` with all three rows ``0..num_tokens-1``.

    float32 when ``float_positions`` (fps-modulated configs), else int64; the values are identical.
    """
    dtype = torch.float32 if float_positions else torch.long
    ids = torch.arange(num_tokens, dtype=dtype, device=device)
    return ids.unsqueeze(0).expand(3, -1).contiguous()


def media_temporal_offset(text_len: int, margin: int) -> int:
    """Temporal position of the first media frame: right after the text plus the modality margin."""
    return int(text_len) + int(margin)


def vision_position_ids(
    frames: int,
    rows: int,
    cols: int,
    temporal_offset: int,
    fps: float | None = None,
    base_fps: float = 24.0,
    temporal_compression: int = 4,
    reset_spatial: bool = True,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Positions of a ``frames x rows x cols`` token grid (t-major, then row, then column): ``[3, N]``.

    ``fps`` enables fps modulation (only applied when ``frames > 1``; returns float32); otherwise integer
    positions ``offset + f`` (int64). ``reset_spatial=False`` shifts row/col ids by the offset too.
    """
    per_frame = rows * cols
    if fps is not None and frames > 1:
        # Same operation order as training/diffusers so fp32 rounding matches for any fps.
        frame_rate = fps / temporal_compression
        base_rate = base_fps / temporal_compression
        t = torch.arange(frames, dtype=torch.float32, device=device) / frame_rate * base_rate + temporal_offset
        t = t.repeat_interleave(per_frame)
        spatial_dtype = torch.float32
    else:
        t = (torch.arange(frames, dtype=torch.long, device=device) + int(temporal_offset)).repeat_interleave(per_frame)
        spatial_dtype = torch.long
    h = torch.arange(rows, dtype=torch.long, device=device).view(1, rows, 1).expand(frames, rows, cols).reshape(-1)
    w = torch.arange(cols, dtype=torch.long, device=device).view(1, 1, cols).expand(frames, rows, cols).reshape(-1)
    if not reset_spatial:
        h = h + int(temporal_offset)
        w = w + int(temporal_offset)
    return torch.stack([t, h.to(spatial_dtype), w.to(spatial_dtype)], dim=0)


def inverse_frequencies(head_dim: int, theta: float) -> torch.Tensor:
    """``1 / theta^(2k/head_dim)``, k = 0..head_dim/2-1, fp32 on the CPU (cached; move to the device to use).

    Always computed on the CPU so every device sees bit-identical frequencies.
    """
    key = (int(head_dim), float(theta))
    cached = _INV_FREQ_CACHE.get(key)
    if cached is None:
        exponents = torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim
        cached = 1.0 / (float(theta) ** exponents)
        _INV_FREQ_CACHE[key] = cached
    return cached


def rope_tables(
    position_ids: torch.Tensor,
    head_dim: int,
    theta: float,
    axes_dim: tuple[int, int, int],
    dtype: torch.dtype,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos``, ``sin`` tables ``[N, head_dim]`` in ``dtype`` for positions ``[3, N]``.

    Frequency slot ``k`` (of head_dim/2) takes its angle from the h axis when ``k % 3 == 1`` and
    ``k < 3*axes_dim[1]``, from the w axis when ``k % 3 == 2`` and ``k < 3*axes_dim[2]``, else from t.
    """
    device = position_ids.device if device is None else torch.device(device)
    inv_freq = inverse_frequencies(head_dim, theta).to(device)
    with torch.autocast(device_type=device.type, enabled=False):
        angles = position_ids.to(device=device, dtype=torch.float32)[:, :, None] * inv_freq  # [3, N, hd/2]
        merged = angles[0].clone()
        for axis, start in ((1, 1), (2, 2)):
            stop = axes_dim[axis] * 3
            merged[:, start:stop:3] = angles[axis, :, start:stop:3]
        emb = torch.cat((merged, merged), dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` [..., N, heads, head_dim] (NeoX rotate-half convention), any float dtype.

    ``cos``/``sin``: [N, head_dim] (shared by every row of ``x``) or [B, N, head_dim] (one table per row of a
    batched ``x`` [B, N, heads, head_dim]); broadcast over the heads. Returns ``x``'s shape.
    """
    cos = cos.unsqueeze(-2)
    sin = sin.unsqueeze(-2)
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin
