"""Empty latent / size node: picks a Cosmos3 generation size and makes the matching zero LATENT.

The LATENT is ``{"samples": zeros [1, 48, T, H/16, W/16]}`` float32 on the intermediate device (raw Wan 2.2
latent space, T = (frames − 1)/4 + 1); the size is also output as INTs for nodes that need it.
Only the structural rules are checked here (multiples of 16, 1 or 4k+1 frames); a model's trained range
is checked by the sampler, which knows the model.
"""

from __future__ import annotations

import torch

from ..cosmos3 import geometry
from . import _comfy
from ._comfy import io
from .common import CATEGORY_ROOT, check_size, frames_input, node_schema, side_input

CATEGORY = CATEGORY_ROOT + "/latent"
CUSTOM = "custom"
# Nano text-to-video defaults (cosmos3.defaults.generation_defaults): 1280x720, 189 frames
DEFAULT_WIDTH, DEFAULT_HEIGHT, DEFAULT_FRAMES = 1280, 720, 189


def _preset_label(tier: str, aspect: str, width: int, height: int) -> str:
    return f"{tier}p {aspect.replace(',', ':')} ({width}x{height})"


# Labels no longer offered because another label gives the same size; saved workflows that use one still load
# and run (EmptyLatent.validate_inputs accepts them, execute maps them). The 704p and 720p tiers share 1:1 960x960.
PRESET_ALIASES = {"704p 1:1 (960x960)": "720p 1:1 (960x960)"}


def preset_table() -> dict[str, tuple[int, int]]:
    """``{label: (width, height)}`` for every resolution tier and aspect ratio of :mod:`cosmos3.geometry`
    (video buckets, which include the image buckets), smallest tier first; one label per size and aspect
    (:data:`PRESET_ALIASES` are left out)."""
    table: dict[str, tuple[int, int]] = {}
    for tier, row in geometry.VIDEO_PRESETS.items():
        for aspect, size in row.items():
            label = _preset_label(tier, aspect, size.width, size.height)
            if label not in PRESET_ALIASES:
                table[label] = (size.width, size.height)
    return table


def resolve_preset(preset: str) -> tuple[int, int] | None:
    """``(width, height)`` of a preset label or an alias of one; ``None`` for ``custom``; ``ValueError`` else."""
    if preset == CUSTOM:
        return None
    table = preset_table()
    label = PRESET_ALIASES.get(preset, preset)
    if label not in table:
        raise ValueError(f"unknown preset {preset!r}; choose 'custom' or one of: {', '.join(table)}")
    return table[label]


PRESET_CHOICES = [CUSTOM, *preset_table()]


def empty_latent(width: int, height: int, frames: int, batch_size: int = 1) -> dict:
    check_size(width, height, frames)
    c, t, h, w = geometry.Geometry(frames, height, width).latent_shape(geometry.LATENT_CHANNELS)
    samples = torch.zeros((batch_size, c, t, h, w), dtype=torch.float32, device=_comfy.intermediate_device())
    return {"samples": samples}


class EmptyLatent(io.ComfyNode):
    """Chooses the output size (a Cosmos3 resolution preset, or custom width/height) and frame count, and makes the
    empty latent for it: LATENT [1, 48, (frames−1)/4+1, height/16, width/16]. frames = 1 makes an image."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(
            cls,
            "C3MoTEmptyLatent",
            "Empty Latent",
            CATEGORY,
            inputs=[
                io.Combo.Input(
                    "preset",
                    options=PRESET_CHOICES,
                    default=CUSTOM,
                    tooltip=(
                        "A Cosmos3 resolution preset (tier and aspect ratio, as trained), or 'custom' to use width and "
                        "height below. Edge supports the 256p and 480p tiers; Nano/Super 256p to 720p (768p: Super "
                        "text-to-image)."
                    ),
                ),
                side_input("width", DEFAULT_WIDTH, "Width in pixels (multiple of 16); used when preset is 'custom'."),
                side_input(
                    "height", DEFAULT_HEIGHT, "Height in pixels (multiple of 16); used when preset is 'custom'."
                ),
                frames_input(DEFAULT_FRAMES, "Number of frames: 1 for an image, 4k+1 for a video (e.g. 93, 121, 189)."),
            ],
            outputs=[
                io.Latent.Output(
                    display_name="samples", tooltip="Zero raw latents [1, 48, T, height/16, width/16] (float32)."
                ),
                io.Int.Output(
                    display_name="width", tooltip="The width in pixels actually used (from the preset or custom)."
                ),
                io.Int.Output(display_name="height", tooltip="The height in pixels actually used."),
                io.Int.Output(display_name="frames", tooltip="The frame count."),
            ],
        )

    @classmethod
    def validate_inputs(cls, preset) -> bool | str:
        """ComfyUI's check of ``preset`` (it then skips its own choice-list check for it): the offered labels and
        the retired aliases of saved workflows."""
        try:
            resolve_preset(preset)
        except ValueError as exc:
            return str(exc)
        return True

    @classmethod
    def execute(cls, preset, width, height, frames) -> io.NodeOutput:
        size = resolve_preset(preset)
        if size is not None:
            width, height = size
        return io.NodeOutput(empty_latent(width, height, frames), width, height, frames)


NODES = [EmptyLatent]
