"""What the node modules share: socket types, the schema helper, the size and dtype widgets and the checks.

Every node is a V3 ``io.ComfyNode``: ``define_schema()`` returns :func:`node_schema` (display name
``Cosmos3 MoT <title>``, the class docstring as description) and the classmethod ``execute`` returns an
``io.NodeOutput``. A node's public contract is its schema: node id (prefix ``C3MoT``, never renamed),
display name, category, input names and *order* (saved UI workflows store widget values by position: add
new inputs only at the end, as optional), widget defaults/limits/choices, tooltips and outputs.
``tests/fixtures/object_info_v1.json`` freezes it (``tests/test_node_schemas.py``).

Limits come from the library (:mod:`cosmos3.geometry`), so the widgets, the checks and the library agree.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from ..cosmos3 import geometry
from ..cosmos3.dtypes import DTYPES
from ..cosmos3.files.safetensors import CheckpointError, read_header
from ._comfy import io

CATEGORY_ROOT = "Cosmos3 MoT"
DISPLAY_PREFIX = "Cosmos3 MoT"
AUTO = "auto"
DTYPE_CHOICES = [AUTO, *DTYPES]  # the loaders' dtype widget: auto + the library's dtype names
MAX_SEED = 2**64 - 1

# Our custom sockets (prefixed so they never connect to another pack's sockets by accident)
C3MOT_MODEL = io.Custom("C3MOT_MODEL")  # the loaded Cosmos3 transformer (+ its ModelPatchers)
C3MOT_TEXT = io.Custom("C3MOT_TEXT")  # encoded prompt(s): text-tower K/V cache, token counts
C3MOT_VAE = io.Custom("C3MOT_VAE")  # the Wan 2.2 VAE (nodes.vae_nodes.VAEHandle)
C3MOT_IMAGE_COND = io.Custom("C3MOT_IMAGE_COND")  # image-to-video condition: clean frame-0 latent + mask
C3MOT_GUARDRAIL = io.Custom("C3MOT_GUARDRAIL")  # the configured guardrail (nodes.guardrail_nodes)
C3MOT_PARALLEL = io.Custom("C3MOT_PARALLEL")  # multi-GPU sampling layout (nodes.parallel_nodes)
CUSTOM_TYPES = (C3MOT_MODEL, C3MOT_TEXT, C3MOT_VAE, C3MOT_IMAGE_COND, C3MOT_GUARDRAIL, C3MOT_PARALLEL)


def display_name(name: str) -> str:
    return f"{DISPLAY_PREFIX} {name}"


def describe(node_class: type) -> str:
    """A node's description (the tooltip on the node): its class docstring on one line."""
    return " ".join((node_class.__doc__ or "").split())


def node_schema(node_class: type, node_id: str, title: str, category: str, *, inputs: list, outputs: list) -> io.Schema:
    """The ``io.Schema`` of one of our nodes: shown as ``Cosmos3 MoT <title>``, described by its docstring."""
    return io.Schema(node_id=node_id, display_name=display_name(title), category=category,
                     description=describe(node_class), inputs=inputs, outputs=outputs)


# ------------------------------------------------------------------------------------------------------
# Size widgets


def side_input(name: str, default: int, tooltip: str) -> io.Int.Input:
    """A width/height widget: multiples of 16 up to :data:`cosmos3.geometry.MAX_SIDE`."""
    return io.Int.Input(name, default=default, min=geometry.SPATIAL_MULTIPLE, max=geometry.MAX_SIDE,
                        step=geometry.SPATIAL_MULTIPLE, tooltip=tooltip)


def frames_input(default: int, tooltip: str, *, video_only: bool = False) -> io.Int.Input:
    """The ``frames`` widget: 1 (an image) or 4k+1 up to :data:`cosmos3.geometry.MAX_FRAMES`; ``video_only``
    starts at 5."""
    step = geometry.TEMPORAL_COMPRESSION
    return io.Int.Input("frames", default=default, min=step + 1 if video_only else 1, max=geometry.MAX_FRAMES,
                        step=step, tooltip=tooltip)


def dtype_input(tooltip: str) -> io.Combo.Input:
    """The loaders' ``dtype`` widget (see :func:`resolve_dtype`)."""
    return io.Combo.Input("dtype", options=DTYPE_CHOICES, default=AUTO, tooltip=tooltip)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto`` = bf16 on CUDA, fp32 elsewhere (CPUs have no fast bf16 matmuls or convolutions)."""
    if name == AUTO:
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    check_choice("dtype", name, DTYPE_CHOICES)
    return DTYPES[name]


# ------------------------------------------------------------------------------------------------------
# Checks (one wording for every node)


def side_problem(name: str, value) -> str | None:
    """What is wrong with a width/height in pixels (``None`` when it is valid)."""
    multiple = geometry.SPATIAL_MULTIPLE
    if isinstance(value, bool) or not isinstance(value, int) or value < multiple:
        return f"{name} must be an integer of at least {multiple}, got {value!r}"
    if value % multiple:
        lo, hi = geometry.nearest_valid_sizes(value)
        return f"{name} {value} is not a multiple of {multiple}; nearest valid values: {lo} or {hi}"
    if value > geometry.MAX_SIDE:
        return f"{name} {value} is above the maximum {geometry.MAX_SIDE}"
    return None


def frames_problem(frames) -> str | None:
    """What is wrong with a frame count (``None`` when it is 1 or 4k+1 within the maximum)."""
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        return f"frames must be a positive integer (1 for an image, 4k+1 for a video), got {frames!r}"
    if (frames - 1) % geometry.TEMPORAL_COMPRESSION:
        lo, hi = geometry.nearest_valid_frames(frames)
        return f"frames {frames} is not 1 or 4k+1 (1, 5, 9, …, 121, …); nearest valid values: {lo} or {hi}"
    if frames > geometry.MAX_FRAMES:
        return f"frames {frames} is above the maximum {geometry.MAX_FRAMES}"
    return None


def check_size(width: int, height: int, frames: int) -> None:
    """Structural checks of a requested size; ``ValueError`` with the nearest valid values."""
    for problem in (side_problem("width", width), side_problem("height", height), frames_problem(frames)):
        if problem:
            raise ValueError(problem)


_DECODE_HINT = " (a 4-D image latent from an SD/Flux-style node cannot be decoded by the Wan 2.2 VAE)"


def check_latents(samples, image_latent_hint: str = _DECODE_HINT) -> torch.Tensor:
    """The ``samples`` tensor of a LATENT, checked to be raw Wan 2.2 latents ``[B, 48, T, h, w]``;
    ``image_latent_hint`` is appended when a 4-D (image-model) latent arrives (what the caller's user should do)."""
    channels = geometry.LATENT_CHANNELS
    if isinstance(samples, dict):
        if "samples" not in samples:
            raise ValueError(f"LATENT has no 'samples' entry (keys: {sorted(samples)})")
        samples = samples["samples"]
    if not isinstance(samples, torch.Tensor) or not torch.is_floating_point(samples):
        raise ValueError(f"LATENT samples must be a floating point tensor, got {type(samples).__name__}")
    if samples.ndim != 5 or samples.shape[1] != channels:
        hint = image_latent_hint if samples.ndim == 4 else ""
        raise ValueError(
            f"LATENT samples must be raw Wan 2.2 latents [B, {channels}, T, H/16, W/16], "
            f"got shape {list(samples.shape)}{hint}"
        )
    if min(samples.shape) < 1:
        raise ValueError(f"LATENT samples are empty: shape {list(samples.shape)}")
    return samples


def check_choice(name: str, value, choices) -> None:
    """``ValueError`` naming the allowed values when ``value`` is not one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


# ------------------------------------------------------------------------------------------------------
# What a model file holds, for the loaders' file lists (probed once per file version)

_file_checks: dict[tuple[str, str, int, int], bool] = {}


def cached_file_check(path: str | os.PathLike, kind: str, check: Callable[[Path], bool]) -> bool:
    """``check(path)`` cached per ``kind`` and file version (path, size, modification time); a file that cannot be
    stat'ed, read or parsed (:class:`CheckpointError` / ``OSError`` from ``check``) is ``False``."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        return False
    key = (kind, str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _file_checks:
        try:
            _file_checks[key] = bool(check(path))
        except (CheckpointError, OSError):
            _file_checks[key] = False
    return _file_checks[key]


def safetensors_names(path: Path) -> list[str]:
    """The tensor names in a safetensors file's header (nothing else is read)."""
    return list(read_header(path)[0])
