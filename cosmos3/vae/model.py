"""The 48-channel Wan 2.2 video VAE (causal 3-D convolutions), streamed chunk by chunk.

Shapes (B = batch, F = 4k + 1 frames, H and W multiples of 16):

* pixels ``[B, 3, F, H, W]`` in [-1, 1]  <->  raw latents ``[B, 48, 1 + (F - 1) / 4, H / 16, W / 16]``;
* :meth:`WanVAE.encode` returns the raw posterior mean (no sampling), :meth:`WanVAE.decode` clamps to [-1, 1];
* :meth:`WanVAE.normalize` / :meth:`WanVAE.denormalize` map raw latents to and from the diffusion model's
  normalised space with the config's ``latents_mean`` / ``latents_std``.

Computation follows diffusers' ``AutoencoderKLWan`` chunk schedule exactly: the encoder sees frame 0 alone,
then groups of 4 frames; the decoder sees one latent frame at a time. Every causal convolution keeps the last
two frames of its input in a per-call *stream state* (``dict`` keyed by module), so consecutive calls compute
what one call over all frames would. Results match diffusers to float rounding (bit-identical in bf16 on
the CPU builds tested); only the memory behaviour differs:

* stages that never mix frames run one frame at a time (all decoder levels above the first temporal
  up-sampling, the encoder levels before the first temporal down-sampling);
* each causal cache is one long-lived ring buffer updated in place, and on large frames causal and
  up-sampling convolutions run over bands of output rows, so neither a history+input concatenation (nor the
  backend's re-layout of it) nor an up-sampled frame exists at full size;
* the decoder writes finished frames straight into the preallocated output (optionally on another device).

Spatial tiling (see :mod:`cosmos3.vae.tiling`) bounds memory further for large frames.

Parameter names follow the diffusers checkpoint layout so ``vae/diffusion_pytorch_model.safetensors`` loads
without renaming; :mod:`cosmos3.vae.loading` maps the original Wan key names onto them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import WAN22_VAE_CONFIG, WanVAEConfig
from . import tiling

StreamState = dict  # module -> cached frames / first-call marker; one per (sample, tile) stream
ProgressFn = Callable[[int, int], Any]

_NORM_CHUNK_ELEMENTS = 1 << 20  # float32 scratch per chunk when normalising half-precision activations
_BAND_BYTES = 16 << 20  # minimum input bytes per row band of a causal / up-sampling convolution
_BAND_PER_WEIGHT = 2  # ... and at least this many times the weight's bytes
_MIN_BAND_ROWS = 8
_MAX_PIXEL_MAGNITUDE = 1.5  # encode refuses inputs clearly outside [-1, 1] (e.g. 0..255 images)


# ----------------------------------------------------------------------------------------------------------
# building blocks
# ----------------------------------------------------------------------------------------------------------


class CausalConv3d(nn.Conv3d):
    """3-D convolution that is causal in time: output frame t sees input frames up to t.

    ``padding=(pt, ph, pw)`` pads H/W symmetrically and puts all ``2 * pt`` temporal padding frames *before*
    the input. With a stream state, the last ``2 * pt`` input frames are remembered, so consecutive calls
    compute what one call over all frames would (zeros before the first frame).

    Memory: the history lives in one ring buffer per convolution, updated in place; on large frames the
    convolution runs over bands of rows, so neither the history+input concatenation nor the backend's
    re-layout of it exists at full frame size. Results are those of one convolution over the whole frame.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int, int],
        stride: int | tuple[int, int, int] = 1,
        padding: int | tuple[int, int, int] = 0,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0)
        pt, ph, pw = (padding,) * 3 if isinstance(padding, int) else tuple(padding)
        self.history = 2 * pt
        self.spatial_padding = (0, ph, pw)

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        if not self.history:
            return F.conv3d(x, self.weight, self.bias, self.stride, self.spatial_padding)
        if self.stride != (1, 1, 1):
            raise NotImplementedError("strided causal convolutions with history are not used by this VAE")
        state = {} if state is None else state
        ring = state.get(self)
        if ring is None:  # start of a stream: the history is zeros
            b, c, _, h, w = x.shape
            ring = state[self] = _History(x.new_zeros((b, c, self.history, h, w)))
        out = self._banded(ring.frames(), x)
        ring.push(x)
        return out

    def _band_rows(self, x: torch.Tensor) -> int:
        """Output rows per band for input ``x`` (>= H means a single call)."""
        b, c, t, _, w = x.shape
        row_bytes = b * c * (self.history + t) * w * x.element_size()
        # Every call re-lays-out the weight for the backend: keep bands several times larger than the weight.
        band_bytes = max(_BAND_BYTES, _BAND_PER_WEIGHT * self.weight.numel() * self.weight.element_size())
        return max(_MIN_BAND_ROWS, band_bytes // max(row_bytes, 1))

    def activated(self, norm: nn.Module, x: torch.Tensor, state: StreamState) -> torch.Tensor:
        """``self(silu(norm(x)), state)``. For a single large frame the activation is computed band by band
        and written straight into the history ring (its oldest slot, once no later band still reads the old
        rows as halo), so the activated frame never exists separately."""
        b, c, t, h, w = x.shape
        step = self._band_rows(x)
        if self.history != 2 or t != 1 or step >= h:
            return self(F.silu(norm(x), inplace=True), state)
        ring = state.get(self)
        if ring is None:
            ring = state[self] = _History(x.new_zeros((b, c, 2, h, w)))
        old, newer = ring.buffer[:, :, ring.start], ring.buffer[:, :, 1 - ring.start]
        ph, pw = self.spatial_padding[1], self.spatial_padding[2]
        out = torch.empty((b, self.out_channels, 1, h, w), dtype=x.dtype, device=x.device)
        written = 0
        for r0 in range(0, h, step):
            r1 = min(h, r0 + step)
            lo, hi = max(0, r0 - ph), min(h, r1 + ph)
            top = ph - (r0 - lo)
            act = F.silu(norm(x[:, :, :, lo:hi]), inplace=True)[:, :, 0]
            band = x.new_empty((b, c, 3, r1 - r0 + 2 * ph, w))
            band[:, :, :, :top].zero_()
            band[:, :, :, top + hi - lo :].zero_()
            band[:, :, 0, top : top + hi - lo] = old[:, :, lo:hi]
            band[:, :, 1, top : top + hi - lo] = newer[:, :, lo:hi]
            band[:, :, 2, top : top + hi - lo] = act
            out[:, :, :, r0:r1] = F.conv3d(band, self.weight, self.bias, 1, (0, 0, pw))
            del band
            upto = h if r1 == h else r1 - ph  # the next band still reads rows >= r1 - ph of the old frame
            old[:, :, written:upto] = act[:, :, written - lo : upto - lo]
            written = upto
        ring.start = 1 - ring.start
        return out

    def _banded(self, history: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Convolve ``history + x`` (concatenated over time), one band of output rows at a time."""
        b, c, t, h, w = x.shape
        ph, pw = self.spatial_padding[1], self.spatial_padding[2]
        frames = self.history + t
        step = self._band_rows(x)
        if step >= h:  # small frame: a single call
            return F.conv3d(torch.cat([*history, x], dim=2), self.weight, self.bias, 1, self.spatial_padding)
        t_out = frames - self.kernel_size[0] + 1
        out = torch.empty((b, self.out_channels, t_out, h, w), dtype=x.dtype, device=x.device)
        for r0 in range(0, h, step):
            r1 = min(h, r0 + step)
            lo, hi = max(0, r0 - ph), min(h, r1 + ph)
            top = ph - (r0 - lo)  # zero rows above the frame
            band = x.new_empty((b, c, frames, r1 - r0 + 2 * ph, w))
            band[:, :, :, :top].zero_()
            band[:, :, :, top + hi - lo :].zero_()
            i = 0
            for piece in (*history, x):
                n = piece.shape[2]
                band[:, :, i : i + n, top : top + hi - lo] = piece[:, :, :, lo:hi]
                i += n
            out[:, :, :, r0:r1] = F.conv3d(band, self.weight, self.bias, 1, (0, 0, pw))
            del band
        return out


class _History:
    """The last ``n`` input frames of a causal conv as a ring buffer ``[B, C, n, H, W]`` updated in place."""

    def __init__(self, buffer: torch.Tensor) -> None:
        self.buffer = buffer
        self.start = 0  # slot of the oldest frame

    def frames(self) -> list[torch.Tensor]:
        """Oldest-first ``[B, C, k, H, W]`` views covering the ring (at most two pieces)."""
        if self.start == 0:
            return [self.buffer]
        return [self.buffer[:, :, self.start :], self.buffer[:, :, : self.start]]

    def push(self, x: torch.Tensor) -> None:
        n, t = self.buffer.shape[2], x.shape[2]
        if t >= n:
            self.buffer.copy_(x[:, :, t - n :])
            self.start = 0
            return
        for i in range(t):  # overwrite the oldest slot
            self.buffer[:, :, self.start].copy_(x[:, :, i])
            self.start = (self.start + 1) % n


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
        out = _unit_channels(x, torch.empty_like(x, memory_format=torch.contiguous_format))
        return out.mul_(self.scale).mul_(self.gamma)


def _norm_silu_conv(norm: ChannelRMSNorm, conv: CausalConv3d, x: torch.Tensor, state: StreamState) -> torch.Tensor:
    """``conv(silu(norm(x)))`` (see :meth:`CausalConv3d.activated`)."""
    return conv.activated(norm, x, state)


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
        y = _norm_silu_conv(self.norm1, self.conv1, x, state)
        skip = self.conv_shortcut(x) if self.conv_shortcut is not None else x  # not alive during conv1
        y = _norm_silu_conv(self.norm2, self.conv2, y, state)
        return y.add_(skip)


class FrameAttention(nn.Module):
    """Single-head self-attention over the H*W positions of each frame, with a residual connection."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = ChannelRMSNorm(dim, video=False)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
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
            _upsample_conv_into(conv, frame, out[:, :, i])
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


def _upsample_conv_into(conv: nn.Conv2d, frame: torch.Tensor, out: torch.Tensor) -> None:
    """``out = conv(nearest_2x(frame))`` for a 3x3, padding-1 conv, computed in bands of output rows so the
    up-sampled frame never exists at full size. Output rows [r0, r1) need up-sampled rows [r0-1, r1+1), which
    come from input rows [(r0-1)//2, r1//2]."""
    h, w = frame.shape[-2:]
    rows = 2 * h
    row_bytes = frame.shape[0] * frame.shape[1] * 2 * w * frame.element_size()
    band_bytes = max(_BAND_BYTES, _BAND_PER_WEIGHT * conv.weight.numel() * conv.weight.element_size())
    step = max(_MIN_BAND_ROWS, band_bytes // max(row_bytes, 1)) // 2 * 2
    if step >= rows:
        out.copy_(conv(F.interpolate(frame, scale_factor=2.0, mode="nearest-exact")))
        return
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        lo, hi = max(0, (r0 - 1) // 2), min(h, r1 // 2 + 1)
        up = F.interpolate(frame[:, :, lo:hi], scale_factor=2.0, mode="nearest-exact")
        band = up[:, :, max(0, r0 - 1) - 2 * lo : min(rows, r1 + 1) - 2 * lo]
        pad_top, pad_bottom = int(r0 == 0), int(r1 == rows)
        if pad_top or pad_bottom:
            band = F.pad(band, (0, 0, pad_top, pad_bottom))
        out[:, :, r0:r1] = F.conv2d(band, conv.weight, conv.bias, 1, (0, 1))
        del up, band


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
    b, c_in, t, h, w = src.shape
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


class DownStage(nn.Module):
    """Encoder level: ResBlocks, optional 2x down-sampling, plus an averaging (AvgDown) shortcut."""

    def __init__(self, in_dim: int, out_dim: int, num_res_blocks: int, temporal: bool, spatial: bool) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.factor_t = 2 if temporal else 1
        self.factor_s = 2 if spatial else 1
        dims = [in_dim] + [out_dim] * num_res_blocks
        self.resnets = nn.ModuleList([ResBlock(i, o) for i, o in zip(dims[:-1], dims[1:])])
        self.downsampler = Resample(out_dim, "down3d" if temporal else "down2d") if spatial else None

    def forward(self, x: torch.Tensor, state: StreamState) -> torch.Tensor:
        shortcut = _avg_down(x, self.out_dim, self.factor_t, self.factor_s)
        for resnet in self.resnets:
            x = resnet(x, state)
        if self.downsampler is not None:
            x = self.downsampler(x, state)
        return x.add_(shortcut)


class UpStage(nn.Module):
    """Decoder level: ResBlocks, optional 2x up-sampling, plus a duplicating (DupUp) shortcut."""

    def __init__(self, in_dim: int, out_dim: int, num_res_blocks: int, temporal: bool, spatial: bool) -> None:
        super().__init__()
        self.factor_t = 2 if temporal else 1
        self.factor_s = 2 if spatial else 1
        dims = [in_dim] + [out_dim] * (num_res_blocks + 1)
        self.resnets = nn.ModuleList([ResBlock(i, o) for i, o in zip(dims[:-1], dims[1:])])
        self.upsampler = Resample(out_dim, "up3d" if temporal else "up2d", out_dim=out_dim) if spatial else None

    def forward(self, x: torch.Tensor, state: StreamState, first: bool) -> torch.Tensor:
        src = x
        for resnet in self.resnets:
            x = resnet(x, state)
        if self.upsampler is None:
            return x
        x = self.upsampler(x, state)
        return _add_dup_up_(x, src, self.factor_t, self.factor_s, first)


# ----------------------------------------------------------------------------------------------------------
# encoder / decoder
# ----------------------------------------------------------------------------------------------------------


# Memory profile entries: ("cache", units, scale) persist for the whole stream, ("work", units, scale) are one
# step's transients (only the largest counts). Bytes = units * scale^2 * latent pixels * itemsize, where scale
# is the resolution relative to the latent grid. Work multipliers were calibrated on CPU (see vae_tiling).
_WORK_PER_CONV = 7  # x, normalised input, band buffers and backend copies, output, shortcut (units of C_in)
_WORK_PER_CHUNK_FRAME = 6  # per frame of a multi-frame encoder chunk (units of C_out)
_WORK_PER_UPSAMPLED = 4  # output frames of an up-sampler plus banded scratch (units of C_out)


def _conv_profile(conv: CausalConv3d, scale: int, frames: int = 1) -> list[tuple[str, int, int]]:
    return [
        ("cache", conv.history * conv.in_channels, scale),
        ("work", _WORK_PER_CONV * conv.in_channels * frames, scale),
    ]


def _resblock_profile(block: ResBlock, scale: int, frames: int = 1) -> list[tuple[str, int, int]]:
    return _conv_profile(block.conv1, scale, frames) + _conv_profile(block.conv2, scale, frames)


class Encoder(nn.Module):
    """Patchified pixels ``[B, 12, T, H/2, W/2]`` -> ``[B, 2*z, T', H/16, W/16]`` (mean and log-variance)."""

    def __init__(self, config: WanVAEConfig) -> None:
        super().__init__()
        n = len(config.dim_mult)
        dims = [config.base_dim * m for m in (1, *config.dim_mult)]
        self.conv_in = CausalConv3d(config.in_channels, dims[0], 3, padding=1)
        self.down_blocks = nn.ModuleList(
            DownStage(
                dims[i],
                dims[i + 1],
                config.num_res_blocks,
                temporal=i < n - 1 and bool(config.temporal_downsample[i]),
                spatial=i < n - 1,
            )
            for i in range(n)
        )
        self.mid_block = MidBlock(dims[-1])
        self.norm_out = ChannelRMSNorm(dims[-1])
        self.conv_out = CausalConv3d(dims[-1], config.z_dim * 2, 3, padding=1)
        # Leading levels without temporal down-sampling never mix frames: run them one frame at a time.
        self.frame_local_levels = next((i for i, blk in enumerate(self.down_blocks) if blk.factor_t > 1), n)

    def _frame_local(self, x: torch.Tensor, state: StreamState) -> torch.Tensor:
        x = self.conv_in(x, state)
        for block in self.down_blocks[: self.frame_local_levels]:
            x = block(x, state)
        return x

    def forward(self, x: torch.Tensor, state: StreamState) -> torch.Tensor:
        if x.shape[2] > 1 and self.frame_local_levels > 0:
            x = torch.cat([self._frame_local(x[:, :, i : i + 1], state) for i in range(x.shape[2])], dim=2)
        else:
            x = self._frame_local(x, state)
        for block in self.down_blocks[self.frame_local_levels :]:
            x = block(x, state)
        x = self.mid_block(x, state)
        return _norm_silu_conv(self.norm_out, self.conv_out, x, state)

    def profile(self, chunk_frames: int = 4) -> list[tuple[str, int, int]]:
        """Memory profile entries (see ``_conv_profile``) for chunks of ``chunk_frames`` input frames."""
        scale, frames = 2 ** (len(self.down_blocks) - 1), chunk_frames
        entries = _conv_profile(self.conv_in, scale)
        for i, block in enumerate(self.down_blocks):
            local = i < self.frame_local_levels
            for resnet in block.resnets:
                entries += _resblock_profile(resnet, scale, 1 if local else frames)
            if not local:
                entries.append(("work", _WORK_PER_CHUNK_FRAME * block.out_dim * frames, scale))
            if block.downsampler is not None:
                scale //= 2
            frames = max(1, frames // block.factor_t)
        for resnet in self.mid_block.resnets:
            entries += _resblock_profile(resnet, scale)
        return entries + _conv_profile(self.conv_out, scale)


class Decoder(nn.Module):
    """Latent frames ``[B, z, 1, h, w]`` -> pixel frames ``[B, 12, n, 8h, 8w]`` (patchified), one step at a time."""

    def __init__(self, config: WanVAEConfig) -> None:
        super().__init__()
        n = len(config.dim_mult)
        dims = [config.decoder_base_dim * m for m in (config.dim_mult[-1], *reversed(config.dim_mult))]
        temporal_up = tuple(reversed(config.temporal_downsample))
        self.conv_in = CausalConv3d(config.z_dim, dims[0], 3, padding=1)
        self.mid_block = MidBlock(dims[0])
        self.up_blocks = nn.ModuleList(
            UpStage(
                dims[i],
                dims[i + 1],
                config.num_res_blocks,
                temporal=i < n - 1 and bool(temporal_up[i]),
                spatial=i < n - 1,
            )
            for i in range(n)
        )
        self.norm_out = ChannelRMSNorm(dims[-1])
        self.conv_out = CausalConv3d(dims[-1], config.out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, state: StreamState, first: bool) -> Iterator[torch.Tensor]:
        """Yield the output frames of one latent step in order (``[B, 12, n, H, W]`` pieces)."""
        x = self.conv_in(x, state)
        x = self.mid_block(x, state)
        yield from self._climb(0, x, state, first)

    def _climb(self, level: int, x: torch.Tensor, state: StreamState, first: bool) -> Iterator[torch.Tensor]:
        if level == len(self.up_blocks):
            yield _norm_silu_conv(self.norm_out, self.conv_out, x, state)
            return
        x = self.up_blocks[level](x, state, first)
        # Everything above this level is causal per frame: continue one frame at a time.
        for i in range(x.shape[2]):
            yield from self._climb(level + 1, x[:, :, i : i + 1], state, first)

    def profile(self) -> list[tuple[str, int, int]]:
        """Memory profile entries (see ``_conv_profile``) of one decode step."""
        scale = 1
        entries = _conv_profile(self.conv_in, scale)
        for resnet in self.mid_block.resnets:
            entries += _resblock_profile(resnet, scale)
        for block in self.up_blocks:
            for resnet in block.resnets:
                entries += _resblock_profile(resnet, scale)
            if block.upsampler is not None:
                if block.upsampler.time_conv is not None:
                    entries += _conv_profile(block.upsampler.time_conv, scale)
                scale *= 2
                out_channels = block.upsampler.resample["1"].out_channels
                entries.append(("work", _WORK_PER_UPSAMPLED * out_channels * block.factor_t, scale))
        return entries + _conv_profile(self.conv_out, scale)


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """``[B, C, T, H, W] -> [B, C*p*p, T, H/p, W/p]``; channel = (c * p + column phase) * p + row phase."""
    if p == 1:
        return x
    b, c, t, h, w = x.shape
    x = x.reshape(b, c, t, h // p, p, w // p, p).permute(0, 1, 6, 4, 2, 3, 5)
    return x.reshape(b, c * p * p, t, h // p, w // p)


def unpatchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``[B, C*p*p, T, h, w] -> [B, C, T, h*p, w*p]``."""
    if p == 1:
        return x
    b, cp, t, h, w = x.shape
    x = x.reshape(b, cp // (p * p), p, p, t, h, w).permute(0, 1, 4, 5, 3, 6, 2)
    return x.reshape(b, cp // (p * p), t, h * p, w * p)


# ----------------------------------------------------------------------------------------------------------
# public model
# ----------------------------------------------------------------------------------------------------------


class WanVAE(nn.Module):
    """The Wan 2.2 VAE used by Cosmos3 (48 latent channels, 4x temporal and 16x spatial compression).

    Create with :func:`cosmos3.load_vae`. Inference only (all entry points run under ``torch.no_grad``).
    Tiling: ``tiled=None`` (default) tiles only when the estimated activation memory of a full frame exceeds
    the memory budget (``memory_budget`` argument, else :attr:`memory_budget`, else a share of the free
    device memory); ``tiled=True``/``False`` forces it on/off. See :mod:`cosmos3.vae.tiling`.
    """

    def __init__(self, config: WanVAEConfig = WAN22_VAE_CONFIG) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.quant_conv = CausalConv3d(config.z_dim * 2, config.z_dim * 2, 1)
        self.post_quant_conv = CausalConv3d(config.z_dim, config.z_dim, 1)
        self.decoder = Decoder(config)
        self.memory_budget: int | None = None  # bytes; None -> tiling.default_memory_budget(device)

    # -- properties -------------------------------------------------------------------------------------

    @property
    def dtype(self) -> torch.dtype:
        return self.post_quant_conv.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.post_quant_conv.weight.device

    @property
    def z_dim(self) -> int:
        return self.config.z_dim

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """``(48, T', H/16, W/16)`` for a valid pixel size (raises ``ValueError`` with the nearest valid one)."""
        tiling.check_pixel_size(num_frames, height, width, self.config)
        sf, tf = self.config.spatial_factor, self.config.temporal_factor
        return (self.config.z_dim, 1 + (num_frames - 1) // tf, height // sf, width // sf)

    # -- latent normalisation ----------------------------------------------------------------------------

    def latent_stats(self, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, inv_std)`` as ``[1, 48, 1, 1, 1]`` tensors in the VAE dtype; ``inv_std = 1 / std`` is
        computed in that dtype, exactly as the diffusers Cosmos3 pipeline materialises it."""
        dtype = self.dtype
        device = self.device if device is None else device
        mean = torch.tensor(self.config.latents_mean, dtype=dtype, device=device)
        inv_std = 1.0 / torch.tensor(self.config.latents_std, dtype=dtype, device=device)
        return mean.view(1, -1, 1, 1, 1), inv_std.view(1, -1, 1, 1, 1)

    def _check_latent_channels(self, z: torch.Tensor, what: str) -> None:
        if not torch.is_floating_point(z):
            raise TypeError(f"{what}: expected a floating point tensor, got {z.dtype}")
        if z.dim() != 5 or z.shape[1] != self.config.z_dim:
            raise ValueError(f"{what}: expected latents [B, {self.config.z_dim}, T, H, W], got {list(z.shape)}")

    def normalize(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw -> normalised latents: ``(raw - mean) * inv_std`` in the VAE dtype, returned in ``raw``'s dtype."""
        self._check_latent_channels(raw, "normalize")
        mean, inv_std = self.latent_stats(raw.device)
        return ((raw.to(self.dtype) - mean) * inv_std).to(raw.dtype)

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised latents -> raw: ``z / inv_std + mean`` computed in the VAE dtype, returned in ``z``'s dtype."""
        self._check_latent_channels(z, "denormalize")
        mean, inv_std = self.latent_stats(z.device)
        return (z.to(self.dtype) / inv_std + mean).to(z.dtype)

    # -- encode -------------------------------------------------------------------------------------------

    @torch.no_grad()
    def encode(
        self,
        pixels: torch.Tensor,
        *,
        tiled: bool | None = None,
        tile_size: int | None = None,
        tile_overlap: int | None = None,
        memory_budget: int | None = None,
        progress: ProgressFn | None = None,
    ) -> torch.Tensor:
        """Pixels ``[B, 3, F, H, W]`` in [-1, 1] (F = 4k+1, H/W multiples of 16; any float dtype/device)
        -> raw posterior mean ``[B, 48, 1 + (F-1)/4, H/16, W/16]`` in the VAE dtype on the VAE device.

        ``tile_size``/``tile_overlap`` are in pixels (multiples of 16). ``progress(done, total)`` is called
        after every encoded chunk (frame 0, then every 4 frames) of every tile and batch item.
        """
        cfg = self.config
        if not isinstance(pixels, torch.Tensor) or pixels.dim() != 5:
            shape = list(pixels.shape) if isinstance(pixels, torch.Tensor) else type(pixels).__name__
            raise ValueError(f"encode: expected pixels [B, {cfg.pixel_channels}, F, H, W], got {shape}")
        if not torch.is_floating_point(pixels):
            raise TypeError(f"encode: expected floating point pixels in [-1, 1], got {pixels.dtype}")
        b, c, f, h, w = pixels.shape
        if c != cfg.pixel_channels:
            raise ValueError(
                f"encode: expected {cfg.pixel_channels} colour channels in dim 1, got shape {list(pixels.shape)}"
            )
        tiling.check_pixel_size(f, h, w, cfg)
        peak = max(pixels.amax().item(), -pixels.amin().item())  # no full-size temporary
        if peak > _MAX_PIXEL_MAGNITUDE:
            raise ValueError(
                f"encode: pixels must be in [-1, 1] (got max |x| = {peak:g}); convert 0..255 images with "
                "x / 127.5 - 1 and 0..1 images with 2 * x - 1"
            )
        sf, tf, p = cfg.spatial_factor, cfg.temporal_factor, cfg.patch_size
        lt, lh, lw = 1 + (f - 1) // tf, h // sf, w // sf
        plan = tiling.plan_tiles(
            self, "encode", lh, lw, tiled=tiled, tile_size=tile_size, tile_overlap=tile_overlap,
            memory_budget=memory_budget if memory_budget is not None else self.memory_budget,
        )
        device, dtype, z = self.device, self.dtype, cfg.z_dim
        q_weight, q_bias = self.quant_conv.weight[:z], self.quant_conv.bias[:z]  # the mean half of the posterior
        out = torch.zeros((b, z, lt, lh, lw), dtype=dtype, device=device)
        chunks = [(0, 1)] + [(1 + tf * i, 1 + tf * (i + 1)) for i in range(lt - 1)]
        total, done = b * len(plan.tiles) * lt, 0
        for bi in range(b):
            for tile in plan.tiles:
                state: StreamState = {}
                for k, (f0, f1) in enumerate(chunks):
                    x = pixels[bi : bi + 1, :, f0:f1, tile.y0 * sf : tile.y1 * sf, tile.x0 * sf : tile.x1 * sf]
                    x = patchify(x.to(device=device, dtype=dtype), p)
                    mu = F.conv3d(self.encoder(x, state), q_weight, q_bias)
                    del x
                    target = out[bi : bi + 1, :, k : k + 1, tile.y0 : tile.y1, tile.x0 : tile.x1]
                    tile.blend_into(target, mu)
                    done += 1
                    if progress is not None:
                        progress(done, total)
        return out

    # -- decode -------------------------------------------------------------------------------------------

    @torch.no_grad()
    def decode(
        self,
        latents: torch.Tensor,
        *,
        tiled: bool | None = None,
        tile_size: int | None = None,
        tile_overlap: int | None = None,
        memory_budget: int | None = None,
        progress: ProgressFn | None = None,
        output_device: torch.device | str | None = None,
        output_dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """Raw latents ``[B, 48, T, h, w]`` -> pixels ``[B, 3, 1 + 4(T-1), 16h, 16w]`` clamped to [-1, 1].

        The output is in ``output_dtype`` (default: the VAE dtype) on ``output_device`` (default: the VAE
        device; use ``"cpu"`` to keep a long video out of GPU memory). ``tile_size``/``tile_overlap`` are in
        pixels (multiples of 16). ``progress(done, total)`` is called after every latent frame of every tile
        and batch item.
        """
        cfg = self.config
        if not isinstance(latents, torch.Tensor):
            raise ValueError(f"decode: expected a latent tensor, got {type(latents).__name__}")
        self._check_latent_channels(latents, "decode")
        b, _, t, lh, lw = latents.shape
        if min(t, lh, lw) < 1:
            raise ValueError(f"decode: empty latent shape {list(latents.shape)}")
        sf, tf, p = cfg.spatial_factor, cfg.temporal_factor, cfg.patch_size
        n_frames = 1 + tf * (t - 1)
        plan = tiling.plan_tiles(
            self, "decode", lh, lw, tiled=tiled, tile_size=tile_size, tile_overlap=tile_overlap,
            memory_budget=memory_budget if memory_budget is not None else self.memory_budget,
        )
        device, dtype = self.device, self.dtype
        out_device = torch.device(output_device) if output_device is not None else device
        alloc = torch.empty if plan.single else torch.zeros  # tiles accumulate; an untiled run writes every pixel
        out = alloc((b, cfg.pixel_channels, n_frames, lh * sf, lw * sf), dtype=output_dtype or dtype, device=out_device)
        total, done = b * len(plan.tiles) * t, 0
        for bi in range(b):
            for tile in plan.tiles:
                state: StreamState = {}
                frame = 0
                region = (slice(tile.y0 * sf, tile.y1 * sf), slice(tile.x0 * sf, tile.x1 * sf))
                for ti in range(t):
                    zt = latents[bi : bi + 1, :, ti : ti + 1, tile.y0 : tile.y1, tile.x0 : tile.x1]
                    x = self.post_quant_conv(zt.to(device=device, dtype=dtype))
                    for piece in self.decoder(x, state, first=ti == 0):
                        pix = unpatchify(piece, p)
                        n = pix.shape[2]
                        target = out[bi : bi + 1, :, frame : frame + n, region[0], region[1]]
                        if plan.single:
                            target.copy_(pix.clamp_(-1.0, 1.0))
                        else:
                            tile.blend_into(target, pix)
                        frame += n
                    done += 1
                    if progress is not None:
                        progress(done, total)
                if frame != n_frames:
                    raise RuntimeError(f"decoder produced {frame} frames, expected {n_frames}")
        if not plan.single:
            out.clamp_(-1.0, 1.0)
        return out
