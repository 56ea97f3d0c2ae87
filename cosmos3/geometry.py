"""Geometry of a Cosmos3 request: frames, height, width, fps, and the structural rules they obey.

Rules (all variants):

* height and width are multiples of 16 (the Wan 2.2 VAE compresses 16x spatially);
* a video has 4k + 1 frames (4x temporal compression, the first frame is its own latent frame); an image
  has 1 frame. The framework rounds a request **up** to the next 4k + 1 (:func:`round_frames_up`);
  :func:`nearest_valid_frames` names the valid counts on either side.

Resolution presets (tiers 256 / 480 / 704 / 720 / 768 x aspect ratios) live here too; which tiers a variant
was trained on is :mod:`cosmos3.variants`' business.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from .errors import Cosmos3Error

SPATIAL_MULTIPLE = 16
TEMPORAL_COMPRESSION = 4
LATENT_CHANNELS = 48  # Wan 2.2 latent channels
# Largest height/width and frame count any entry point accepts (widget limits; the variant envelopes are tighter).
MAX_SIDE = 8192
MAX_FRAMES = 1025
ASPECT_RATIOS = ("1,1", "4,3", "3,4", "16,9", "9,16")


class SizeError(Cosmos3Error):
    """A height, width, frame count or fps is invalid or outside a variant's trained envelope."""


class Size(NamedTuple):
    height: int
    width: int


def _presets(table: Mapping[str, Mapping[str, tuple[int, int]]]) -> dict[str, dict[str, Size]]:
    # the framework lists (width, height); we store Size(height, width)
    return {tier: {ar: Size(h, w) for ar, (w, h) in row.items()} for tier, row in table.items()}


# [REF] cosmos_framework/data/generator/utils.py VIDEO_RES_SIZE_INFO / IMAGE_RES_SIZE_INFO (W, H)
_BUCKETS_WH = {
    "256": {"1,1": (256, 256), "4,3": (320, 256), "3,4": (256, 320), "16,9": (320, 192), "9,16": (192, 320)},
    "480": {"1,1": (640, 640), "4,3": (736, 544), "3,4": (544, 736), "16,9": (832, 480), "9,16": (480, 832)},
    "704": {"1,1": (960, 960), "4,3": (1088, 832), "3,4": (832, 1088), "16,9": (1280, 704), "9,16": (704, 1280)},
    "720": {"1,1": (960, 960), "4,3": (1104, 832), "3,4": (832, 1104), "16,9": (1280, 720), "9,16": (720, 1280)},
    "768": {"1,1": (1024, 1024), "4,3": (1184, 880), "3,4": (880, 1184), "16,9": (1360, 768), "9,16": (768, 1360)},
}
IMAGE_PRESETS: dict[str, dict[str, Size]] = _presets(_BUCKETS_WH)
VIDEO_PRESETS: dict[str, dict[str, Size]] = _presets({**_BUCKETS_WH, "480": {**_BUCKETS_WH["480"], "2,3": (512, 768)}})
TIERS = tuple(IMAGE_PRESETS)


# ----------------------------------------------------------------------------------------------------
# Rounding helpers


def round_frames_up(num_frames: int) -> int:
    """The framework's rule: the smallest 4k + 1 count ≥ ``num_frames`` (1 stays 1)."""
    n = _positive_int("num_frames", num_frames)
    return math.ceil((n - 1) / TEMPORAL_COMPRESSION) * TEMPORAL_COMPRESSION + 1


def nearest_valid_frames(num_frames: int) -> tuple[int, int]:
    """The valid 4k + 1 counts just below and just above ``num_frames`` (equal when it is valid)."""
    n = _positive_int("num_frames", num_frames)
    below = (n - 1) // TEMPORAL_COMPRESSION * TEMPORAL_COMPRESSION + 1
    return below, round_frames_up(n)


def round_size_up(value: int, multiple: int = SPATIAL_MULTIPLE) -> int:
    """The smallest multiple of 16 ≥ ``value``."""
    v = _positive_int("size", value)
    return math.ceil(v / multiple) * multiple


def nearest_valid_sizes(value: int, multiple: int = SPATIAL_MULTIPLE) -> tuple[int, int]:
    """The multiples of 16 just below and just above ``value`` (below is at least 16)."""
    v = _positive_int("size", value)
    return max(multiple, v // multiple * multiple), round_size_up(v, multiple)


def latent_frames(num_frames: int) -> int:
    """Latent frame count T' = (num_frames − 1) // 4 + 1."""
    return (_positive_int("num_frames", num_frames) - 1) // TEMPORAL_COMPRESSION + 1


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SizeError(f"{name} must be a positive integer, got {value!r}")
    return value


# ----------------------------------------------------------------------------------------------------
# Presets


def detect_aspect_ratio(width: int, height: int) -> str:
    """The closest bucket of :data:`ASPECT_RATIOS` by W/H (the framework's rule for input media)."""
    ratio = width / height
    values = {"16,9": 16 / 9, "4,3": 4 / 3, "1,1": 1.0, "3,4": 3 / 4, "9,16": 9 / 16}
    return min(values, key=lambda k: (values[k] - ratio) ** 2)


def preset_size(tier: str | int, aspect_ratio: str = "16,9", *, image: bool = False) -> Size:
    """Preset ``Size(height, width)`` of a tier ("256", "480", "704", "720", "768") and aspect ratio ("16,9" …)."""
    tier = str(tier)
    table = IMAGE_PRESETS if image else VIDEO_PRESETS
    if tier not in table:
        raise SizeError(f"unknown resolution tier {tier!r}; allowed: {', '.join(table)}")
    row = table[tier]
    if aspect_ratio not in row:
        raise SizeError(f"unknown aspect ratio {aspect_ratio!r} for tier {tier}; allowed: {', '.join(row)}")
    return row[aspect_ratio]



# ----------------------------------------------------------------------------------------------------
# Validation


def _check_structure(height: int, width: int, num_frames: int) -> None:
    """Multiples of 16 and 1 or 4k + 1 frames; errors name the nearest valid values."""
    for name, value in (("height", height), ("width", width)):
        v = _positive_int(name, value)
        if v % SPATIAL_MULTIPLE:
            lo, hi = nearest_valid_sizes(v)
            raise SizeError(f"{name} {v} is not a multiple of {SPATIAL_MULTIPLE}; nearest valid values: {lo} or {hi}")
    n = _positive_int("num_frames", num_frames)
    if n > 1 and (n - 1) % TEMPORAL_COMPRESSION:
        lo, hi = nearest_valid_frames(n)
        raise SizeError(
            f"num_frames {n} is not of the form 4k+1 (or 1 for an image); nearest valid values: {lo} or {hi}"
        )


@dataclass(frozen=True)
class Geometry:
    """What one run generates: ``frames`` x ``height`` x ``width`` pixels played at ``fps`` (1 frame = an image).

    Construction checks the structural rules (multiples of 16, 1 or 4k + 1 frames, a positive finite fps);
    errors name the nearest valid values. Whether a variant was trained on it is :mod:`cosmos3.variants`'.
    """

    frames: int
    height: int
    width: int
    fps: float = 24.0

    def __post_init__(self) -> None:
        _check_structure(self.height, self.width, self.frames)
        fps = self.fps
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not (math.isfinite(fps) and fps > 0):
            raise SizeError(f"fps must be a positive finite number, got {fps!r}")
        object.__setattr__(self, "fps", float(fps))

    @property
    def is_image(self) -> bool:
        return self.frames == 1

    @property
    def size(self) -> Size:
        return Size(self.height, self.width)

    @property
    def latent_frames(self) -> int:
        """T' = (frames - 1) // 4 + 1."""
        return latent_frames(self.frames)

    def latent_shape(self, channels: int = LATENT_CHANNELS) -> tuple[int, int, int, int]:
        """Latent ``(C, T', H/16, W/16)``."""
        return channels, self.latent_frames, self.height // SPATIAL_MULTIPLE, self.width // SPATIAL_MULTIPLE

    def same_clip(self, other: Geometry) -> bool:
        """Same frames and size, and the same fps unless both are images (an image has no frame rate)."""
        return (self.frames, self.height, self.width) == (other.frames, other.height, other.width) and (
            self.is_image or math.isclose(self.fps, other.fps)
        )

    def describe(self) -> str:
        if self.is_image:
            return f"one {self.width}x{self.height} image"
        return f"{self.frames} frames of {self.width}x{self.height} at {self.fps:g} fps"
