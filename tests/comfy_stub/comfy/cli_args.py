"""Stand-in for ``comfy.cli_args``: the parsed-arguments namespace with the defaults of a plain start."""

from __future__ import annotations

import enum
from types import SimpleNamespace


class LatentPreviewMethod(enum.Enum):
    NoPreviews = "none"
    Auto = "auto"
    Latent2RGB = "latent2rgb"
    TAESD = "taesd"


def _defaults() -> dict:
    return dict(
        preview_method=LatentPreviewMethod.NoPreviews,  # the server default without --preview-method
        preview_size=512,
        cpu=True,
        gpu_only=False,
        cpu_vae=False,
        highvram=False,
        disable_metadata=False,
        base_directory=None,
    )


args = SimpleNamespace(**_defaults())


def _reset() -> None:
    args.__dict__.clear()
    args.__dict__.update(_defaults())
