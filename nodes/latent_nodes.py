"""Empty latent / size node: picks a Cosmos3 generation size and makes the matching zero LATENT.

The LATENT is ``{"samples": zeros [1, 48, T, H/16, W/16]}`` float32 on the intermediate device (raw Wan 2.2
latent space, T = (frames − 1)/4 + 1); the size is also output as INTs for nodes that need it.
Only the structural rules are checked here (multiples of 16, 1 or 4k+1 frames); a model's trained range
is checked by the sampler, which knows the model.
"""

from __future__ import annotations

import torch

from . import _comfy
from .spec import CATEGORY_ROOT, INT, LATENT, Combo, Int, Node, Output

CATEGORY = CATEGORY_ROOT + "/latent"
CUSTOM = "custom"
LATENT_CHANNELS = 48
MAX_SIZE = 8192
MAX_FRAMES = 1025
# Nano text-to-video defaults (cosmos3.defaults.generation_defaults): 1280x720, 189 frames
DEFAULT_WIDTH, DEFAULT_HEIGHT, DEFAULT_FRAMES = 1280, 720, 189


def _sizes():
    from ..cosmos3 import geometry as sizes

    return sizes


def _preset_label(tier: str, aspect: str, width: int, height: int) -> str:
    return f"{tier}p {aspect.replace(',', ':')} ({width}x{height})"


def preset_table() -> dict[str, tuple[int, int]]:
    """``{label: (width, height)}`` for every resolution tier and aspect ratio of :mod:`cosmos3.geometry`
    (video buckets, which include the image buckets), smallest tier first."""
    table: dict[str, tuple[int, int]] = {}
    for tier, row in _sizes().VIDEO_PRESETS.items():
        for aspect, size in row.items():
            table[_preset_label(tier, aspect, size.width, size.height)] = (size.width, size.height)
    return table


PRESET_CHOICES = [CUSTOM, *preset_table()]


def check_size(width: int, height: int, frames: int) -> None:
    """Structural checks with the nearest valid values in the message."""
    sizes = _sizes()
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int) or value < sizes.SPATIAL_MULTIPLE:
            raise ValueError(f"{name} must be an integer of at least {sizes.SPATIAL_MULTIPLE}, got {value!r}")
        if value % sizes.SPATIAL_MULTIPLE:
            lo, hi = sizes.nearest_valid_sizes(value)
            raise ValueError(f"{name} {value} is not a multiple of {sizes.SPATIAL_MULTIPLE}; nearest valid values: {lo} or {hi}")
        if value > MAX_SIZE:
            raise ValueError(f"{name} {value} is above the maximum {MAX_SIZE}")
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise ValueError(f"frames must be a positive integer (1 for an image, 4k+1 for a video), got {frames!r}")
    if (frames - 1) % sizes.TEMPORAL_COMPRESSION:
        lo, hi = sizes.nearest_valid_frames(frames)
        raise ValueError(f"frames {frames} is not 1 or 4k+1 (1, 5, 9, …, 121, …); nearest valid values: {lo} or {hi}")
    if frames > MAX_FRAMES:
        raise ValueError(f"frames {frames} is above the maximum {MAX_FRAMES}")


def empty_latent(width: int, height: int, frames: int, batch_size: int = 1) -> dict:
    check_size(width, height, frames)
    c, t, h, w = _sizes().Geometry(frames, height, width).latent_shape(LATENT_CHANNELS)
    samples = torch.zeros((batch_size, c, t, h, w), dtype=torch.float32, device=_comfy.intermediate_device())
    return {"samples": samples}


class EmptyLatent(Node):
    NODE_ID = "C3MoTEmptyLatent"
    DISPLAY_NAME = "Empty Latent"
    CATEGORY = CATEGORY
    FUNCTION = "make"
    DESCRIPTION = (
        "Chooses the output size (a Cosmos3 resolution preset, or custom width/height) and frame count, and makes "
        "the empty latent for it: LATENT [1, 48, (frames−1)/4+1, height/16, width/16]. frames = 1 makes an image."
    )
    INPUTS = (
        Combo("preset", PRESET_CHOICES,
              "A Cosmos3 resolution preset (tier and aspect ratio, as trained), or 'custom' to use width and "
              "height below. Edge supports the 256p and 480p tiers; Nano/Super 256p to 720p (768p: Super "
              "text-to-image).", default=CUSTOM),
        Int("width", DEFAULT_WIDTH, "Width in pixels (multiple of 16); used when preset is 'custom'.",
            min=16, max=MAX_SIZE, step=16),
        Int("height", DEFAULT_HEIGHT, "Height in pixels (multiple of 16); used when preset is 'custom'.",
            min=16, max=MAX_SIZE, step=16),
        Int("frames", DEFAULT_FRAMES, "Number of frames: 1 for an image, 4k+1 for a video (e.g. 93, 121, 189).",
            min=1, max=MAX_FRAMES, step=4),
    )
    OUTPUTS = (
        Output("samples", LATENT, "Zero raw latents [1, 48, T, height/16, width/16] (float32)."),
        Output("width", INT, "The width in pixels actually used (from the preset or custom)."),
        Output("height", INT, "The height in pixels actually used."),
        Output("frames", INT, "The frame count."),
    )

    def make(self, preset, width, height, frames):
        if preset != CUSTOM:
            table = preset_table()
            if preset not in table:
                raise ValueError(f"unknown preset {preset!r}; choose 'custom' or one of: {', '.join(table)}")
            width, height = table[preset]
        return (empty_latent(width, height, frames), width, height, frames)


NODES = [EmptyLatent]
