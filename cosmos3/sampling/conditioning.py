"""Clean conditioning latents for image-to-video (I2V) and video-to-video (V2V).

The reference preprocessing: scale the source so it *covers* ``height x width`` (``scale = max(W/w, H/h)``,
size rounded up), bilinear resize with antialias, centre crop with ``round`` offsets, round and clamp to
0..255, then map to [-1, 1]. The VAE's encoder is temporally causal, so encoding just the conditioning
pixel frames gives exactly the latents that encoding a full padded clip would give at those indices.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..files.media import pil_to_rgb
from ..geometry import Geometry

VIDEO_KEEP = ("first", "last")


@dataclass
class ImageCondition:
    """Clean latent frames that anchor a generation.

    ``latent``: normalised latents ``[1, 48, Tc, h, w]`` float32 on the CPU, holding latent frames
    ``0 .. Tc-1``; ``frames``: the latent frame indices that are conditioned (``(0,)`` for I2V).
    ``geometry``: the clip it was prepared for (checked by the sampler).
    """

    latent: torch.Tensor
    frames: tuple[int, ...]
    geometry: Geometry


    def mask(self, latent_t: int) -> torch.Tensor:
        """``[1, 1, latent_t, 1, 1]`` float32 mask, 1 at conditioned frames."""
        m = torch.zeros((1, 1, latent_t, 1, 1), dtype=torch.float32)
        m[:, :, list(self.frames)] = 1.0
        return m

    def full_latent(self, latent_t: int) -> torch.Tensor:
        """``[1, 48, latent_t, h, w]`` with the clean frames in place and zeros elsewhere (float32)."""
        channels, _, h, w = self.latent.shape[1:]
        out = torch.zeros((1, channels, latent_t, h, w), dtype=torch.float32)
        out[:, :, list(self.frames)] = self.latent[:, :, list(self.frames)].float()
        return out

    def check_matches(self, geometry: Geometry) -> None:
        """Raise ``ValueError`` if this condition was prepared for another size or does not fit the clip."""
        if self.geometry.size != geometry.size:
            raise ValueError(
                f"the image condition was prepared for {self.geometry.width}x{self.geometry.height} but sampling is "
                f"{geometry.width}x{geometry.height}; prepare it with the sampler's size"
            )
        if max(self.frames) >= geometry.latent_frames:
            raise ValueError(
                f"the condition covers latent frames {list(self.frames)} but {geometry.frames} frames have only "
                f"{geometry.latent_frames} latent frames"
            )


def image_to_tensor(image: Any) -> torch.Tensor:
    """Any common image representation -> float32 ``[1, 3, H, W]`` on the 0..255 scale.

    Accepts a PIL image, a numpy array ``[H, W, 3]`` (uint8 0..255 or float 0..1), a torch tensor
    ``[H, W, 3]`` / ``[1, H, W, 3]`` (ComfyUI IMAGE, float 0..1) or ``[3, H, W]`` / ``[1, 3, H, W]``
    (float in 0..1 or -1..1, or uint8).
    """
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL (16-bit greyscale scaled, not clipped)
        image = np.array(pil_to_rgb(image), copy=True)
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(np.array(image, copy=True))
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"image must be a PIL image, numpy array or torch tensor, got {type(image).__name__}")
    x = image.detach().cpu()
    if x.dim() == 4:
        if x.shape[0] != 1:
            raise ValueError(f"expected one image, got a batch of {x.shape[0]} (shape {tuple(x.shape)})")
        x = x[0]
    if x.dim() != 3:
        raise ValueError(f"image must have 3 dimensions (H, W, 3) or (3, H, W), got shape {tuple(image.shape)}")
    if x.shape[-1] in (3, 4) and x.shape[0] not in (3, 4):
        x = x[..., :3].permute(2, 0, 1)
    elif x.shape[0] in (3, 4):
        x = x[:3]
    else:
        raise ValueError(f"image must have 3 colour channels, got shape {tuple(image.shape)}")
    integer = not x.is_floating_point()
    x = x.float()
    if not integer:
        if x.numel() and x.min() < 0:
            x = (x + 1.0) * 127.5
        elif x.numel() and x.max() <= 1.0:
            x = x * 255.0
    return x.unsqueeze(0)


UPSCALE_WARNING = 2.0  # the condition image is enlarged more than this -> a blurry first frame
CROP_WARNING = 0.25  # more than this share of the resized image is cut away -> the framing changes


def _warn_if_degraded(src_w: int, src_h: int, width: int, height: int, scale: float, new_w: int, new_h: int) -> None:
    """Say (``warnings.warn``) when covering ``width x height`` enlarges the image a lot or crops much of it."""
    if scale > UPSCALE_WARNING:
        warnings.warn(
            f"the conditioning image ({src_w}x{src_h}) is up-scaled {scale:.1f}x to cover {width}x{height}; "
            "expect a soft first frame (use an image at least as large as the video)",
            stacklevel=3,
        )
    cropped = 1.0 - (width * height) / (new_w * new_h)
    if cropped > CROP_WARNING:
        warnings.warn(
            f"the conditioning image ({src_w}x{src_h}) has another aspect ratio than the video ({width}x{height}): "
            f"{cropped:.0%} of it is cropped away (centre crop); pick a video size with the image's aspect ratio "
            "to keep all of it",
            stacklevel=3,
        )


def preprocess_image(image: Any, height: int, width: int) -> torch.Tensor:
    """Cover-resize (bilinear, antialias) + centre crop to ``height x width``: float32 ``[1, 3, H, W]`` in [-1, 1]."""
    x = image_to_tensor(image)
    src_h, src_w = x.shape[-2:]
    if src_h < 1 or src_w < 1:
        raise ValueError(f"image is empty (shape {tuple(x.shape)})")
    scale = max(width / src_w, height / src_h)
    new_h, new_w = math.ceil(scale * src_h), math.ceil(scale * src_w)
    _warn_if_degraded(src_w, src_h, width, height, scale, new_w, new_h)
    x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True)
    top, left = round((new_h - height) / 2), round((new_w - width) / 2)
    x = x[:, :, top : top + height, left : left + width]
    return x.round().clamp(0, 255) / 127.5 - 1.0


def _encode_normalized(vae: Any, pixels: torch.Tensor, progress: Any = None) -> torch.Tensor:
    """``[1, 3, F, H, W]`` in [-1, 1] -> normalised latents float32 on the CPU (VAE dtype arithmetic)."""
    raw = vae.encode(pixels.to(device=vae.device, dtype=vae.dtype), progress=progress)
    return vae.normalize(raw).float().cpu()


def encode_image_condition(vae: Any, image: Any, geometry: Geometry, *, progress: Any = None) -> ImageCondition:
    """I2V: preprocess ``image``, VAE-encode it as one frame and return latent frame 0 as the condition."""
    if geometry.is_image:
        raise ValueError("image conditioning needs a video (num_frames > 1); for one frame use text-to-image")
    pixels = preprocess_image(image, geometry.height, geometry.width).unsqueeze(2)  # [1, 3, 1, H, W]
    latent = _encode_normalized(vae, pixels, progress)
    return ImageCondition(latent=latent, frames=(0,), geometry=geometry)


def encode_video_condition(
    vae: Any,
    frames: Sequence[Any] | torch.Tensor,
    geometry: Geometry,
    *,
    condition_frames: Sequence[int] = (0, 1),
    keep: str = "first",
    progress: Any = None,
) -> ImageCondition:
    """V2V: keep the first (or last) ``4*max(condition_frames)+1`` source frames as clean latent frames.

    ``frames``: a sequence of images (any :func:`image_to_tensor` form) or a tensor ``[N, H, W, 3]``
    (ComfyUI IMAGE). A clip shorter than needed is padded with its last frame.
    """
    if keep not in VIDEO_KEEP:
        raise ValueError(f"keep must be one of {VIDEO_KEEP}, got {keep!r}")
    indexes = tuple(sorted({int(i) for i in condition_frames}))
    total_latent = geometry.latent_frames
    if not indexes or indexes[0] < 0 or indexes[-1] >= total_latent:
        raise ValueError(
            f"condition_frames {list(condition_frames)} must be latent frame indices in [0, {total_latent - 1}] "
            f"for {geometry.frames} frames"
        )
    clip = list(frames) if not isinstance(frames, torch.Tensor) else list(frames.unbind(0))
    if not clip:
        raise ValueError("the conditioning video has no frames")
    needed = 4 * indexes[-1] + 1
    clip = clip[:needed] if keep == "first" else clip[-needed:]
    clip = clip + [clip[-1]] * (needed - len(clip))
    pixels = torch.stack([preprocess_image(f, geometry.height, geometry.width)[0] for f in clip], dim=1).unsqueeze(0)
    latent = _encode_normalized(vae, pixels, progress)
    return ImageCondition(latent=latent, frames=indexes, geometry=geometry)
