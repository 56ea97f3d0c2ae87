"""The sound tokenizer's decoder: sound latents ``[B, C, T]`` -> waveform ``[B, channels, T * hop]`` in [-1, 1].

Oobleck architecture: a width-7 input conv, one upsampling block per stride (Snake activation, transposed
conv of kernel ``2s`` / stride ``s`` / padding ``ceil(s/2)`` / output padding ``s % 2``, then three residual
units with dilations 1, 3, 9), a final Snake and a width-7 output conv without bias; the result is clamped
to [-1, 1]. Every conv is weight-normalised in the checkpoint; the loader (:mod:`cosmos3.audio.loading`)
folds ``g * v / ||v||`` into plain conv weights, so the modules here are ordinary convolutions.

Module names match the diffusers ``Cosmos3AVAEAudioTokenizer.decoder`` (minus the weight-norm split).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import SoundTokenizerConfig

_SNAKE_EPS = 1e-9


class Snake(nn.Module):
    """SnakeBeta with log-scale parameters: ``x + 1 / (e^beta + eps) * sin(e^alpha * x)^2`` per channel."""

    def __init__(self, channels: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(1, channels, 1, device=device, dtype=dtype))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, N]`` -> ``[B, C, N]``."""
        alpha = torch.exp(self.alpha)
        beta = torch.exp(self.beta)
        return x + (beta + _SNAKE_EPS).reciprocal() * torch.sin(alpha * x).pow(2)


class ResidualUnit(nn.Module):
    """``x + conv2(snake2(conv1(snake1(x))))`` with a dilated width-7 conv1 (same length) and a 1x1 conv2."""

    def __init__(self, channels: int, dilation: int, factory: dict):
        super().__init__()
        self.snake1 = Snake(channels, **factory)
        self.conv1 = nn.Conv1d(channels, channels, 7, dilation=dilation, padding=3 * dilation, **factory)
        self.snake2 = Snake(channels, **factory)
        self.conv2 = nn.Conv1d(channels, channels, 1, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.snake2(self.conv1(self.snake1(x))))


class UpsampleBlock(nn.Module):
    """Snake, transposed conv (``x stride`` in length), three residual units."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, factory: dict):
        super().__init__()
        self.snake1 = Snake(in_channels, **factory)
        self.conv_t1 = nn.ConvTranspose1d(
            in_channels, out_channels, 2 * stride, stride=stride, padding=math.ceil(stride / 2),
            output_padding=stride % 2, **factory,
        )
        self.res_unit1 = ResidualUnit(out_channels, 1, factory)
        self.res_unit2 = ResidualUnit(out_channels, 3, factory)
        self.res_unit3 = ResidualUnit(out_channels, 9, factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_t1(self.snake1(x))
        return self.res_unit3(self.res_unit2(self.res_unit1(x)))


class SoundDecoderStack(nn.Module):
    """The conv stack (diffusers' ``decoder`` submodule): ``[B, C, T]`` -> ``[B, channels, T * prod(strides)]``."""

    def __init__(self, config: SoundTokenizerConfig, factory: dict):
        super().__init__()
        strides = list(reversed(config.dec_strides))
        widths = [config.dec_dim * m for m in (1, *config.dec_c_mults)]  # widths[k]: after k blocks from the end
        depth = len(strides)
        self.conv1 = nn.Conv1d(config.vocoder_input_dim, widths[-1], 7, padding=3, **factory)
        self.block = nn.ModuleList(
            UpsampleBlock(widths[depth - i], widths[depth - i - 1], stride, factory) for i, stride in enumerate(strides)
        )
        self.snake1 = Snake(config.dec_dim, **factory)
        self.conv2 = nn.Conv1d(config.dec_dim, config.dec_out_channels, 7, padding=3, bias=False, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        for block in self.block:
            x = block(x)
        return self.conv2(self.snake1(x))


class SoundDecoder(nn.Module):
    """Sound latents -> stereo (``dec_out_channels``) waveform at ``config.sampling_rate``.

    Built on any device (``"meta"`` for loading); see :func:`cosmos3.audio.loading.load_sound_decoder`.
    """

    def __init__(
        self, config: SoundTokenizerConfig, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ):
        super().__init__()
        self.config = config
        self.decoder = SoundDecoderStack(config, {"device": device, "dtype": dtype})

    @property
    def sample_rate(self) -> int:
        return self.config.sampling_rate

    @property
    def device(self) -> torch.device:
        return self.decoder.conv1.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.decoder.conv1.weight.dtype

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """``[B, C, T]`` or ``[C, T]`` latents (any float dtype) -> waveform ``[B, ch, N]`` / ``[ch, N]`` in the
        decoder's dtype on its device, clamped to [-1, 1] (``N = T * prod(dec_strides)``)."""
        squeeze = latents.dim() == 2
        if squeeze:
            latents = latents.unsqueeze(0)
        if latents.dim() != 3 or latents.shape[1] != self.config.vocoder_input_dim or latents.shape[2] < 1:
            raise ValueError(
                f"sound decode: latents must be [B, {self.config.vocoder_input_dim}, T] (or [C, T]) with T >= 1, "
                f"got {tuple(latents.shape)}"
            )
        audio = self.decoder(latents.to(device=self.device, dtype=self.dtype)).clamp(-1.0, 1.0)
        return audio[0] if squeeze else audio
