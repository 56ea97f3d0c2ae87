"""The 48-channel Wan 2.2 video VAE (causal 3-D convolutions), streamed chunk by chunk.

Shapes (B = batch, F = 4k + 1 frames, H and W multiples of 16):

* pixels ``[B, 3, F, H, W]`` in [-1, 1]  <->  raw latents ``[B, 48, 1 + (F - 1) / 4, H / 16, W / 16]``;
* :meth:`WanVAE.encode` returns the raw posterior mean (no sampling), :meth:`WanVAE.decode` clamps to [-1, 1];
* :meth:`WanVAE.normalize` / :meth:`WanVAE.denormalize` map raw latents to and from the diffusion model's
  normalised space with the config's ``latents_mean`` / ``latents_std`` (:attr:`WanVAE.stats`, a
  :class:`~cosmos3.vae.latent_stats.LatentStats`, in the VAE's dtype).

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

Spatial tiling (see :mod:`cosmos3.vae.tiling`) bounds memory further for large frames. The convolution lives
in :mod:`cosmos3.vae.causal_conv`, the blocks and stages in :mod:`cosmos3.vae.blocks`.

Parameter names follow the diffusers checkpoint layout so ``vae/diffusion_pytorch_model.safetensors`` loads
without renaming; :mod:`cosmos3.vae.loading` maps the original Wan key names onto them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from . import tiling
from .blocks import ChannelRMSNorm, DownStage, MidBlock, ResBlock, UpStage, build_stages
from .causal_conv import CausalConv3d, StreamState
from .config import WAN22_VAE_CONFIG, WanVAEConfig
from .latent_stats import LatentStats

ProgressFn = Callable[[int, int], Any]

_MAX_PIXEL_MAGNITUDE = 1.5  # encode refuses inputs clearly outside [-1, 1] (e.g. 0..255 images)


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
        dims = [config.base_dim * m for m in (1, *config.dim_mult)]
        self.conv_in = CausalConv3d(config.in_channels, dims[0], 3, padding=1)
        self.down_blocks = build_stages(DownStage, dims, config.num_res_blocks, config.temporal_downsample)
        self.mid_block = MidBlock(dims[-1])
        self.norm_out = ChannelRMSNorm(dims[-1])
        self.conv_out = CausalConv3d(dims[-1], config.z_dim * 2, 3, padding=1)
        # Leading levels without temporal down-sampling never mix frames: run them one frame at a time.
        levels = len(self.down_blocks)
        self.frame_local_levels = next((i for i, blk in enumerate(self.down_blocks) if blk.factor_t > 1), levels)

    def _frame_local(self, x: torch.Tensor, state: StreamState) -> torch.Tensor:
        x = self.conv_in(x, state)
        for block in self.down_blocks[: self.frame_local_levels]:
            x = block(x, state)
        return x

    def forward(self, x: torch.Tensor, state: StreamState) -> torch.Tensor:
        """One chunk (1 or 4 frames) ``[B, 12, T, H/2, W/2]`` -> ``[B, 2*z, 1, H/16, W/16]``."""
        if x.shape[2] > 1 and self.frame_local_levels > 0:
            x = torch.cat([self._frame_local(x[:, :, i : i + 1], state) for i in range(x.shape[2])], dim=2)
        else:
            x = self._frame_local(x, state)
        for block in self.down_blocks[self.frame_local_levels :]:
            x = block(x, state)
        x = self.mid_block(x, state)
        return self.conv_out.activated(self.norm_out, x, state)

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
        dims = [config.decoder_base_dim * m for m in (config.dim_mult[-1], *reversed(config.dim_mult))]
        temporal_up = tuple(reversed(config.temporal_downsample))
        self.conv_in = CausalConv3d(config.z_dim, dims[0], 3, padding=1)
        self.mid_block = MidBlock(dims[0])
        self.up_blocks = build_stages(UpStage, dims, config.num_res_blocks, temporal_up)
        self.norm_out = ChannelRMSNorm(dims[-1])
        self.conv_out = CausalConv3d(dims[-1], config.out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, state: StreamState, first: bool) -> Iterator[torch.Tensor]:
        """Yield the output frames of one latent step in order (``[B, 12, n, H, W]`` pieces)."""
        x = self.conv_in(x, state)
        x = self.mid_block(x, state)
        yield from self._climb(0, x, state, first)

    def _climb(self, level: int, x: torch.Tensor, state: StreamState, first: bool) -> Iterator[torch.Tensor]:
        if level == len(self.up_blocks):
            yield self.conv_out.activated(self.norm_out, x, state)
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
    return rearrange(x, "b c t (h ph) (w pw) -> b (c pw ph) t h w", ph=p, pw=p)


def unpatchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``[B, C*p*p, T, h, w] -> [B, C, T, h*p, w*p]``."""
    if p == 1:
        return x
    return rearrange(x, "b (c pw ph) t h w -> b c t (h ph) (w pw)", ph=p, pw=p)


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
        self.stats = LatentStats(config.latents_mean, config.latents_std, "VAE config")  # latent normalisation
        self.memory_budget: int | None = None  # bytes; None -> tiling.default_memory_budget(device)

    # -- properties -------------------------------------------------------------------------------------

    @property
    def dtype(self) -> torch.dtype:
        """Parameter and compute dtype."""
        return self.post_quant_conv.weight.dtype

    @property
    def device(self) -> torch.device:
        """Where the weights are."""
        return self.post_quant_conv.weight.device

    @property
    def z_dim(self) -> int:
        """Latent channels (48)."""
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
        return self.stats.tensors(self.dtype, self.device if device is None else device)

    def _check_latent_channels(self, z: torch.Tensor, what: str) -> None:
        if not torch.is_floating_point(z):
            raise TypeError(f"{what}: expected a floating point tensor, got {z.dtype}")
        if z.dim() != 5 or z.shape[1] != self.config.z_dim:
            raise ValueError(f"{what}: expected latents [B, {self.config.z_dim}, T, H, W], got {list(z.shape)}")

    def normalize(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw -> normalised latents: ``(raw - mean) * inv_std`` in the VAE dtype, returned in ``raw``'s dtype."""
        self._check_latent_channels(raw, "normalize")
        return self.stats.normalize(raw, self.dtype)

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised latents -> raw: ``z / inv_std + mean`` computed in the VAE dtype, returned in ``z``'s dtype."""
        self._check_latent_channels(z, "denormalize")
        return self.stats.denormalize(z, self.dtype)

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
            # ValueError, like encode's refusal of a non-tensor (callers catch ValueError).
            raise ValueError(f"decode: expected a latent tensor, got {type(latents).__name__}")  # noqa: TRY004
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
