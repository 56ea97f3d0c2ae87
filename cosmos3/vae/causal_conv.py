"""The VAE's causal 3-D convolution and its banded execution.

A :class:`CausalConv3d` is causal in time and streams: with a :data:`StreamState` it remembers the last
frames of its input in a ring buffer, so consecutive calls compute what one call over all frames would. On
large frames it (and :func:`upsample_conv_into`, the decoder's nearest-2x + 3x3 convolution) runs over bands
of output rows, so no padded or up-sampled copy of a whole frame exists; the results are those of one
convolution over the whole frame.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

StreamState = dict  # module -> cached frames / first-call marker; one per (sample, tile) stream

_BAND_BYTES = 16 << 20  # minimum input bytes per row band of a causal / up-sampling convolution
_BAND_PER_WEIGHT = 2  # ... and at least this many times the weight's bytes
_MIN_BAND_ROWS = 8


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
        """``[B, C_in, T, H, W]`` -> ``[B, C_out, T', H', W']`` (``T' = T`` for the padded, history-keeping convs)."""
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


def upsample_conv_into(conv: nn.Conv2d, frame: torch.Tensor, out: torch.Tensor) -> None:
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


