"""GGML block formats in torch: dequantisation of Q8_0 / Q6_K / Q5_K / Q4_K (+ F16, BF16, F32) and quantisers.

Dequantisation runs on whatever device the packed bytes live on, in float32 with the same operation order as
``gguf.quants.dequantize`` (numpy), so results are bit-identical to that reference (tests check every type).
Packed data is a ``uint8`` tensor ``[..., row_bytes]`` (one row = ``shape[-1]`` values); the result has the
logical ``shape``.

Block layouts (``QK_K`` = 256 values per super-block):

* ``Q8_0``: 32 values, ``d`` (f16) then 32 int8: ``x = q * d``;
* ``Q4_K``: ``d``, ``dmin`` (f16), 12 bytes of eight 6-bit scale/min pairs, 128 bytes of nibbles (sub-blocks of
  32): ``x = d * sc * q - dmin * m``;
* ``Q5_K``: as Q4_K plus 32 bytes holding each value's 5th bit;
* ``Q6_K``: 128 bytes of low nibbles, 64 bytes of 2-bit highs, 16 int8 scales (sub-blocks of 16), ``d`` (f16):
  ``x = d * sc * (q - 32)``.

Quantisers: Q8_0 / BF16 / F16 use ``gguf.quants.quantize`` (bit-exact with ggml); the K-quants have no
reference quantiser in ``gguf``, so :func:`quantize_k` computes min/max-based scales (no iterative search like
llama.cpp's, so the error is a little higher; any file they produce is a valid GGUF that every reader decodes).
"""

from __future__ import annotations

import numpy as np
import torch

QK_K = 256
# name: (values per block, bytes per block)
BLOCKS = {
    "F32": (1, 4),
    "F16": (1, 2),
    "BF16": (1, 2),
    "Q8_0": (32, 34),
    "Q4_K": (256, 144),
    "Q5_K": (256, 176),
    "Q6_K": (256, 210),
}
QUANTIZED_TYPES = ("Q8_0", "Q6_K", "Q5_K", "Q4_K")
FLOAT_TYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
SUPPORTED_TYPES = tuple(BLOCKS)


def row_bytes(qtype: str, columns: int) -> int:
    """Bytes one row of ``columns`` values takes in ``qtype`` (``columns`` must be a whole number of blocks)."""
    size, nbytes = BLOCKS[qtype]
    if columns % size:
        raise ValueError(f"{qtype} needs rows of a multiple of {size} values, got {columns}")
    return columns // size * nbytes


def can_quantize(qtype: str, shape: tuple[int, ...]) -> bool:
    """Whether a tensor of ``shape`` fits ``qtype``'s blocks (last dimension a multiple of the block size)."""
    return len(shape) >= 1 and shape[-1] % BLOCKS[qtype][0] == 0


def _f16(blocks: torch.Tensor, start: int) -> torch.Tensor:
    """The f16 at byte ``start`` of every block, as float32 ``[n, 1]``."""
    return blocks[:, start:start + 2].contiguous().view(torch.float16).float()


def _shifts(values: list[int], device: torch.device, dims: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.uint8, device=device).reshape(*([1] * (dims - 2)), len(values), 1)


def _scale_min_k4(scales: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unpack Q4_K/Q5_K's 12 scale bytes into eight 6-bit scales and eight 6-bit mins (uint8 ``[n, 8]`` each)."""
    n = scales.shape[0]
    s = scales.reshape(n, 3, 4)
    d, m, md = s[:, 0], s[:, 1], s[:, 2]
    sc = torch.cat([d & 0x3F, (md & 0x0F) | ((d >> 2) & 0x30)], dim=-1)
    mn = torch.cat([m & 0x3F, (md >> 4) | ((m >> 2) & 0x30)], dim=-1)
    return sc, mn


def _dequantize_blocks(blocks: torch.Tensor, qtype: str) -> torch.Tensor:
    n, dev = blocks.shape[0], blocks.device
    if qtype == "Q8_0":
        return blocks[:, 2:].contiguous().view(torch.int8).float() * _f16(blocks, 0)
    if qtype in ("Q4_K", "Q5_K"):
        d, dmin = _f16(blocks, 0), _f16(blocks, 2)
        sc, mn = _scale_min_k4(blocks[:, 4:16])
        scale = (d * sc.float()).reshape(n, 8, 1)
        offset = (dmin * mn.float()).reshape(n, 8, 1)
        qs = blocks[:, -128:].reshape(n, 4, 1, 32) >> _shifts([0, 4], dev, 4)
        q = (qs & 0x0F).reshape(n, 8, 32)
        if qtype == "Q5_K":
            qh = (blocks[:, 16:48].reshape(n, 1, 32) >> _shifts(list(range(8)), dev, 3)) & 0x01
            q = q | (qh << 4)
        return (scale * q.float() - offset).reshape(n, QK_K)
    if qtype == "Q6_K":
        scales = blocks[:, 192:208].contiguous().view(torch.int8).float()
        scale = (_f16(blocks, 208) * scales).reshape(n, 16, 1)
        ql = ((blocks[:, :128].reshape(n, 2, 1, 64) >> _shifts([0, 4], dev, 4)) & 0x0F).reshape(n, 8, 32)
        qh = ((blocks[:, 128:192].reshape(n, 2, 1, 32) >> _shifts([0, 2, 4, 6], dev, 4)) & 0x03).reshape(n, 8, 32)
        q = (ql | (qh << 4)).view(torch.int8) - 32
        return (scale * q.reshape(n, 16, 16).float()).reshape(n, QK_K)
    raise ValueError(f"GGML type {qtype!r} is not supported; supported: {', '.join(SUPPORTED_TYPES)}")


def dequantize(data: torch.Tensor, qtype: str, shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
    """Packed ``uint8`` bytes (or an F32/F16/BF16 tensor) of type ``qtype`` -> float32 tensor of ``shape``."""
    shape = tuple(shape)
    if qtype in FLOAT_TYPES:
        if data.dtype == torch.uint8:
            data = data.contiguous().view(FLOAT_TYPES[qtype])
        return data.float().reshape(shape)
    size, nbytes = BLOCKS.get(qtype, (None, None))
    if size is None:
        raise ValueError(f"GGML type {qtype!r} is not supported; supported: {', '.join(SUPPORTED_TYPES)}")
    blocks = data.contiguous().reshape(-1, nbytes)
    return _dequantize_blocks(blocks, qtype).reshape(shape)


# ---------------------------------------------------------------------------------------------- quantisers


def quantize(tensor: torch.Tensor, qtype: str) -> np.ndarray:
    """``tensor`` (any float dtype, last dim a multiple of the block size) -> GGUF payload as numpy.

    F32/F16 return float arrays; every other type returns the packed ``uint8`` bytes ``[..., row_bytes]``.
    """
    import gguf

    x = tensor.detach().float().cpu()
    if qtype == "F32":
        return x.numpy()
    if qtype == "F16":
        return x.numpy().astype(np.float16)
    if qtype in ("BF16", "Q8_0"):
        return gguf.quants.quantize(x.numpy(), gguf.GGMLQuantizationType[qtype])
    if qtype in ("Q4_K", "Q5_K", "Q6_K"):
        return quantize_k(x, qtype).numpy()
    raise ValueError(f"cannot quantise to {qtype!r}; supported: {', '.join(SUPPORTED_TYPES)}")


def _to_f16(values: torch.Tensor) -> torch.Tensor:
    """float32 -> (f16 as float32, the two f16 bytes)."""
    half = values.clamp(max=65504.0).half()
    return half.float(), half.contiguous().view(torch.uint8).reshape(values.shape[0], 2)


def _safe_div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(b > 0, a / torch.where(b > 0, b, torch.ones_like(b)), torch.zeros_like(a))


def _pack_scale_min_k4(sc: torch.Tensor, mn: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_scale_min_k4`: eight 6-bit scales and mins (uint8 ``[n, 8]``) -> ``[n, 12]`` bytes."""
    lo_sc, hi_sc, lo_mn, hi_mn = sc[:, :4], sc[:, 4:], mn[:, :4], mn[:, 4:]
    first = lo_sc | ((hi_sc >> 4) << 6)
    second = lo_mn | ((hi_mn >> 4) << 6)
    third = (hi_sc & 0x0F) | ((hi_mn & 0x0F) << 4)
    return torch.cat([first, second, third], dim=1)


def quantize_k(x: torch.Tensor, qtype: str) -> torch.Tensor:
    """Float32 ``[..., k*256]`` -> packed K-quant bytes ``uint8 [..., k*bytes_per_block]`` (Q4_K, Q5_K, Q6_K)."""
    shape = x.shape
    blocks = x.reshape(-1, QK_K).float()
    n = blocks.shape[0]
    if qtype == "Q6_K":
        sub = blocks.reshape(n, 16, 16)
        amax = sub.abs().amax(-1)
        scale = amax / 31.0
        d, d_bytes = _to_f16(scale.amax(-1, keepdim=True) / 127.0)
        sc = torch.round(_safe_div(scale, d)).clamp(0, 127)
        eff = (d * sc).unsqueeze(-1)
        q = (torch.round(_safe_div(sub, eff)).clamp(-32, 31) + 32).to(torch.uint8).reshape(n, 2, 4, 32)
        low = q & 0x0F  # (n, half, k, 32) with value index half*128 + k*32 + j
        ql = (low[:, :, 0:2] | (low[:, :, 2:4] << 4)).reshape(n, 128)
        high = (q >> 4) & 0x03
        qh = (high[:, :, 0] | (high[:, :, 1] << 2) | (high[:, :, 2] << 4) | (high[:, :, 3] << 6)).reshape(n, 64)
        packed = torch.cat([ql, qh, sc.to(torch.int8).view(torch.uint8), d_bytes], dim=1)
    elif qtype in ("Q4_K", "Q5_K"):
        levels = 15.0 if qtype == "Q4_K" else 31.0
        sub = blocks.reshape(n, 8, 32)
        low, high = sub.amin(-1).clamp(max=0.0), sub.amax(-1).clamp(min=0.0)
        scale, minimum = (high - low) / levels, -low
        d, d_bytes = _to_f16(scale.amax(-1, keepdim=True) / 63.0)
        dmin, dmin_bytes = _to_f16(minimum.amax(-1, keepdim=True) / 63.0)
        sc = torch.round(_safe_div(scale, d)).clamp(0, 63)
        mn = torch.round(_safe_div(minimum, dmin)).clamp(0, 63)
        eff, off = (d * sc).unsqueeze(-1), (dmin * mn).unsqueeze(-1)
        q = torch.round(_safe_div(sub + off, eff)).clamp(0, levels).to(torch.uint8).reshape(n, 4, 2, 32)
        nibbles = ((q[:, :, 0] & 0x0F) | ((q[:, :, 1] & 0x0F) << 4)).reshape(n, 128)
        parts = [d_bytes, dmin_bytes, _pack_scale_min_k4(sc.to(torch.uint8), mn.to(torch.uint8))]
        if qtype == "Q5_K":
            bits = (q.reshape(n, 8, 32) >> 4) & 0x01
            weights = (2 ** torch.arange(8, dtype=torch.int32)).reshape(1, 8, 1)
            parts.append((bits.to(torch.int32) * weights).sum(1).to(torch.uint8))
        packed = torch.cat([*parts, nibbles], dim=1)
    else:
        raise ValueError(f"quantize_k: {qtype!r} is not a K-quant (Q4_K, Q5_K, Q6_K)")
    return packed.reshape(*shape[:-1], row_bytes(qtype, shape[-1]))
