"""Building blocks of the Wan 2.2 VAE: channel RMS norm, residual and attention blocks, resampling, and the
encoder / decoder stages with their parameter-free shortcuts (AvgDown, DupUp).

Activations are ``[B, C, T, H, W]``; every block that holds a causal convolution takes the per-stream
:data:`~cosmos3.vae.causal_conv.StreamState`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .causal_conv import CausalConv3d, StreamState, upsample_conv_into

_NORM_CHUNK_ELEMENTS = 1 << 20  # float32 scratch per chunk when normalising half-precision activations


def _unit_channels(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out = x / max(||x||_2 over dim 1, 1e-12)``; half precision is normalised in float32 and rounded once,
    a few rows at a time (a whole-frame float32 copy would cost more than the frame itself)."""
    if x.dtype in (torch.float32, torch.float64):
        return F.normalize(x, dim=1, out=out)
    rows = x.shape[-2]
    step = max(1, _NORM_CHUNK_ELEMENTS // max(1, x.numel() // max(rows, 1)))
    for r in range(0, rows, step):
        out[..., r : r + step, :] = F.normalize(x[..., r : r + step, :].float(), dim=1)
    return out


class ChannelRMSNorm(nn.Module):
    """RMS normalisation over channels (dim 1): ``unit(x) * sqrt(C) * gamma``; ``gamma`` is ``[C, 1, 1(, 1)]``."""

    def __init__(self, dim: int, video: bool = True) -> None:
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones((dim, 1, 1, 1) if video else (dim, 1, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, ...]`` -> same shape and dtype (a new contiguous tensor)."""
        out = _unit_channels(x, torch.empty_like(x, memory_format=torch.contiguous_format))
        return out.mul_(self.scale).mul_(self.gamma)


class ResBlock(nn.Module):
    """``conv2(silu(norm2(conv1(silu(norm1(x)))))) + shortcut(x)``; both 3x3x3 convs are causal and cached."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.norm1 = ChannelRMSNorm(in_dim)
        self.conv1 = CausalConv3d(in_dim, out_dim, 3, padding=1)
        self.norm2 = ChannelRMSNorm(out_dim)
        self.conv2 = CausalConv3d(out_dim, out_dim, 3, padding=1)
        self.conv_shortcut = CausalConv3d(in_dim, out_dim, 1) if in_dim != out_dim else None

    def forward(self, x: torch.Tensor, state: StreamState) -> torch.Tensor:
        """``[B, C_in, T, H, W]`` -> ``[B, C_out, T, H, W]``."""
        y = self.conv1.activated(self.norm1, x, state)
        skip = self.conv_shortcut(x) if self.conv_shortcut is not None else x  # not alive during conv1
        y = self.conv2.activated(self.norm2, y, state)
        return y.add_(skip)


class FrameAttention(nn.Module):
    """Single-head self-attention over the H*W positions of each frame, with a residual connection."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = ChannelRMSNorm(dim, video=False)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, T, H, W]`` -> same shape."""
        b, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)
        qkv = self.to_qkv(self.norm(frames))
        del frames
        # [BT, 3C, HW] -> [BT, 1, HW, 3C]; q, k, v are the three C-wide column blocks
        qkv = qkv.reshape(b * t, 1, 3 * c, h * w).permute(0, 1, 3, 2).contiguous()
        q, k, v = qkv.chunk(3, dim=-1)
        att = F.scaled_dot_product_attention(q, k, v)
        del qkv, q, k, v
        att = att.squeeze(1).permute(0, 2, 1).reshape(b * t, c, h, w)
        att = self.proj(att)
        return att.view(b, t, c, h, w).permute(0, 2, 1, 3, 4) + x


class MidBlock(nn.Module):
    """ResBlock -> FrameAttention -> ResBlock at the lowest resolution."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.resnets = nn.ModuleList([ResBlock(dim, dim), ResBlock(dim, dim)])
        self.attentions = nn.ModuleList([FrameAttention(dim)])

    def forward(self, x: torch.Tensor, state: StreamState) -> torch.Tensor:
        """``[B, C, T, H, W]`` -> same shape."""
        x = self.resnets[0](x, state)
        x = self.attentions[0](x)
        return self.resnets[1](x, state)


class Resample(nn.Module):
    """2x spatial resampling of every frame, optionally with 2x temporal resampling.

    ``mode``: ``"up2d"``/``"up3d"`` (nearest 2x then 3x3 conv; ``up3d`` first doubles the frame count with a
    causal (3,1,1) conv emitting two frames per input frame, skipped on the first call of a stream) or
    ``"down2d"``/``"down3d"`` (zero-pad right/bottom, 3x3 stride-2 conv; ``down3d`` then halves the frame
    count with a stride-2 (3,1,1) conv over [last frame of the previous chunk, this chunk], skipped on the
    first call of a stream).
    """

    def __init__(self, dim: int, mode: str, out_dim: int | None = None) -> None:
        super().__init__()
        if mode not in ("up2d", "up3d", "down2d", "down3d"):
            raise ValueError(f"unknown resample mode {mode!r}")
        self.mode = mode
        if mode.startswith("up"):
            conv = nn.Conv2d(dim, out_dim or dim, 3, padding=1)
        else:
            conv = nn.Conv2d(dim, dim, 3, stride=2)
        # checkpoint key "resample.1": index 0 upstream is the parameter-free upsample / pad layer
        self.resample = nn.ModuleDict({"1": conv})
        if mode == "up3d":
            self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1), padding=(1, 0, 0))
        elif mode == "down3d":
            self.time_conv = CausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1))
        else:
            self.time_conv = None

    def forward(self, x: torch.Tensor, state: StreamState) -> torch.Tensor:
        """``[B, C, T, H, W]`` -> ``[B, C', T', 2H, 2W]`` (up) or ``[B, C, T', H/2, W/2]`` (down)."""
        return self._up(x, state) if self.mode.startswith("up") else self._down(x, state)

    def _up(self, x: torch.Tensor, state: StreamState) -> torch.Tensor:
        b, c, t, h, w = x.shape
        conv = self.resample["1"]
        if self.time_conv is not None and self in state:
            doubled = self.time_conv(x, state)  # [B, 2C, T, H, W]: output frame 2i + j is channel half j of step i
            frames = [doubled[:, j * c : (j + 1) * c, i] for i in range(t) for j in (0, 1)]
        else:
            if self.time_conv is not None:
                state[self] = True
            frames = [x[:, :, i] for i in range(t)]
        out = torch.empty((b, conv.out_channels, len(frames), 2 * h, 2 * w), dtype=x.dtype, device=x.device)
        for i, frame in enumerate(frames):
            upsample_conv_into(conv, frame, out[:, :, i])
        return out

    def _down(self, x: torch.Tensor, state: StreamState) -> torch.Tensor:
        conv = self.resample["1"]
        out = torch.stack([conv(F.pad(x[:, :, i], (0, 1, 0, 1))) for i in range(x.shape[2])], dim=2)
        if self.time_conv is None:
            return out
        prev = state.get(self)
        state[self] = out[:, :, -1:].clone()
        if prev is None:
            return out
        return self.time_conv(torch.cat([prev, out], dim=2))


def _avg_down(x: torch.Tensor, out_channels: int, ft: int, fs: int) -> torch.Tensor:
    """Parameter-free shortcut: fold (ft, fs, fs) blocks into channels, then average groups of channels.

    A chunk whose frame count is not a multiple of ``ft`` is zero-padded at the front (the first frame of a
    stream is averaged with a zero frame, as upstream does).
    """
    b, c, t, h, w = x.shape
    factor = ft * fs * fs
    if factor == 1 and c == out_channels:
        return x
    pad_t = (-t) % ft
    if pad_t:
        x = F.pad(x, (0, 0, 0, 0, pad_t, 0))
        t += pad_t
    x = x.view(b, c, t // ft, ft, h // fs, fs, w // fs, fs).permute(0, 1, 3, 5, 7, 2, 4, 6)
    x = x.reshape(b, out_channels, c * factor // out_channels, t // ft, h // fs, w // fs)
    return x.mean(dim=2)


def _add_dup_up_(main: torch.Tensor, src: torch.Tensor, ft: int, fs: int, first: bool) -> torch.Tensor:
    """``main += DupUp(src)`` without materialising the shortcut.

    DupUp repeats every channel of ``src`` ``r = C_out * ft * fs^2 / C_in`` times and unfolds the repeated
    channels into (ft, fs, fs) blocks of time/height/width; on the first chunk of a stream only the last of
    the ``ft`` frames is kept. Channel ``o`` of sub-position ``s`` therefore reads ``src`` channel
    ``(o * ft * fs^2 + s) // r``.
    """
    _, c_in, t, h, w = src.shape
    c_out = main.shape[1]
    factor = ft * fs * fs
    repeats = c_out * factor // c_in
    skip = ft - 1 if first else 0
    if main.shape[2] != t * ft - skip or main.shape[-2:] != (h * fs, w * fs):
        raise RuntimeError(f"shortcut shape mismatch: main {tuple(main.shape)} vs source {tuple(src.shape)}")
    base = torch.arange(c_out, device=src.device) * factor
    for ti, a in itertools.product(range(t), range(ft)):
        m = ti * ft + a - skip
        if m < 0:
            continue
        frame = main[:, :, m].unflatten(3, (w, fs)).unflatten(2, (h, fs))  # [B, C, H, fs, W, fs] view
        for by, bx in itertools.product(range(fs), range(fs)):
            idx = (base + (a * fs + by) * fs + bx) // repeats
            frame[:, :, :, by, :, bx] += src[:, :, ti].index_select(1, idx)
    return main


class _Stage(nn.Module):
    """ResBlocks ``in_dim -> out_dim`` (then ``out_dim -> out_dim``) of one encoder / decoder level."""

    def __init__(self, in_dim: int, out_dim: int, num_resnets: int, temporal: bool, spatial: bool) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.factor_t = 2 if temporal else 1
        self.factor_s = 2 if spatial else 1
        dims = [in_dim] + [out_dim] * num_resnets
        self.resnets = nn.ModuleList([ResBlock(i, o) for i, o in itertools.pairwise(dims)])


class DownStage(_Stage):
    """Encoder level: ResBlocks, optional 2x down-sampling, plus an averaging (AvgDown) shortcut."""

    def __init__(self, in_dim: int, out_dim: int, num_res_blocks: int, temporal: bool, spatial: bool) -> None:
        super().__init__(in_dim, out_dim, num_res_blocks, temporal, spatial)
        self.downsampler = Resample(out_dim, "down3d" if temporal else "down2d") if spatial else None

    def forward(self, x: torch.Tensor, state: StreamState) -> torch.Tensor:
        """``[B, C_in, T, H, W]`` -> ``[B, C_out, T / factor_t, H / factor_s, W / factor_s]``."""
        shortcut = _avg_down(x, self.out_dim, self.factor_t, self.factor_s)
        for resnet in self.resnets:
            x = resnet(x, state)
        if self.downsampler is not None:
            x = self.downsampler(x, state)
        return x.add_(shortcut)


class UpStage(_Stage):
    """Decoder level: ResBlocks, optional 2x up-sampling, plus a duplicating (DupUp) shortcut."""

    def __init__(self, in_dim: int, out_dim: int, num_res_blocks: int, temporal: bool, spatial: bool) -> None:
        super().__init__(in_dim, out_dim, num_res_blocks + 1, temporal, spatial)
        self.upsampler = Resample(out_dim, "up3d" if temporal else "up2d", out_dim=out_dim) if spatial else None

    def forward(self, x: torch.Tensor, state: StreamState, first: bool) -> torch.Tensor:
        """``[B, C_in, T, H, W]`` -> ``[B, C_out, T', H * factor_s, W * factor_s]``; ``first``: the stream's first
        step (then only the last of the ``factor_t`` frames of a temporal up-sampling is kept)."""
        src = x
        for resnet in self.resnets:
            x = resnet(x, state)
        if self.upsampler is None:
            return x
        x = self.upsampler(x, state)
        return _add_dup_up_(x, src, self.factor_t, self.factor_s, first)


def build_stages(
    stage: type[DownStage | UpStage], dims: Sequence[int], num_res_blocks: int, temporal: Sequence[bool]
) -> nn.ModuleList:
    """One ``stage`` per consecutive pair of ``dims``; all but the last resample 2x in space, and 2x in time
    where ``temporal[i]``."""
    last = len(dims) - 2
    return nn.ModuleList(
        stage(dims[i], dims[i + 1], num_res_blocks, temporal=i < last and bool(temporal[i]), spatial=i < last)
        for i in range(len(dims) - 1)
    )
