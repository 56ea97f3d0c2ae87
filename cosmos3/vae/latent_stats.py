"""Wan 2.2 latent statistics: raw VAE latents <-> the normalised space the transformer works in.

``normalised = (raw - mean) * inv_std`` and ``raw = normalised / inv_std + mean``, with ``mean`` and
``inv_std = 1 / std`` materialised in a *working dtype* (bf16 in the reference, which runs this step in
bf16) and the arithmetic done in that dtype; the result comes back in the input's dtype. This is the one
implementation: :meth:`cosmos3.vae.model.WanVAE.normalize` / ``denormalize`` delegate here with the VAE's
dtype, so a sampler that denormalises with the same statistics and dtype hands a VAE decoder the same raw
latents as the all-in-one pipeline does.

The statistics come from a checkpoint's ``vae/config.json`` (``latents_mean`` / ``latents_std``) or,
without one (a single transformer file), from the public Wan 2.2 numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import Cosmos3Error
from ..files.json_files import read_json_object

VAE_SUBFOLDER = "vae"
CONFIG_NAME = "config.json"


class LatentStatsError(Cosmos3Error):
    """Latent statistics are missing, malformed or do not match the latents."""


@dataclass(frozen=True)
class LatentStats:
    """Per-channel ``mean`` / ``std`` of raw Wan 2.2 latents (48 entries each) and where they came from."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str = "given"

    def __post_init__(self) -> None:
        mean, std = tuple(float(v) for v in self.mean), tuple(float(v) for v in self.std)
        if not mean or len(mean) != len(std):
            raise LatentStatsError(
                f"latent statistics ({self.source}): mean and std need the same non-zero length, "
                f"got {len(mean)} and {len(std)}"
            )
        if not all(math.isfinite(v) for v in mean + std) or any(v <= 0 for v in std):
            raise LatentStatsError(f"latent statistics ({self.source}): values must be finite and every std > 0")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @property
    def channels(self) -> int:
        return len(self.mean)

    # ------------------------------------------------------------------ sources
    @classmethod
    def wan22(cls) -> LatentStats:
        """The public Wan 2.2 statistics (what every Cosmos3 checkpoint's ``vae/config.json`` holds)."""
        from .config import WAN22_LATENTS_MEAN, WAN22_LATENTS_STD

        return cls(tuple(WAN22_LATENTS_MEAN), tuple(WAN22_LATENTS_STD), "Wan 2.2 defaults")

    @classmethod
    def from_config(cls, path: str | Path) -> LatentStats:
        """Read ``latents_mean`` / ``latents_std`` from a diffusers VAE ``config.json``."""
        data = read_json_object(path, LatentStatsError, "VAE config")
        if not all(k in data for k in ("latents_mean", "latents_std")):
            raise LatentStatsError(f"{path}: no latents_mean/latents_std in the VAE config")
        mean, std = data["latents_mean"], data["latents_std"]
        if not (isinstance(mean, list) and isinstance(std, list)):
            raise LatentStatsError(f"{path}: latents_mean/latents_std must be lists of numbers")
        return cls(tuple(mean), tuple(std), str(path))

    @classmethod
    def for_checkpoint(cls, root: str | Path | None) -> LatentStats:
        """A checkpoint folder's ``vae/config.json`` statistics when it has them, else :meth:`wan22`."""
        if root is not None:
            config = Path(root) / VAE_SUBFOLDER / CONFIG_NAME
            if config.is_file():
                return cls.from_config(config)
        return cls.wan22()

    # ------------------------------------------------------------------ maths
    def tensors(
        self, dtype: torch.dtype, device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, inv_std)`` shaped ``[1, C, 1, 1, 1]`` in ``dtype`` (``inv_std = 1 / std`` computed in ``dtype``)."""
        mean = torch.tensor(self.mean, dtype=dtype, device=device)
        inv_std = 1.0 / torch.tensor(self.std, dtype=dtype, device=device)
        return mean.view(1, -1, 1, 1, 1), inv_std.view(1, -1, 1, 1, 1)

    def _check(self, latents: torch.Tensor, what: str) -> None:
        if not isinstance(latents, torch.Tensor) or latents.ndim != 5 or latents.shape[1] != self.channels:
            shape = list(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
            raise LatentStatsError(f"{what}: expected latents [B, {self.channels}, T, h, w], got {shape}")

    def normalize(self, raw: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Raw -> normalised: ``(raw - mean) * inv_std`` computed in ``dtype``, returned in ``raw``'s dtype."""
        self._check(raw, "normalize")
        mean, inv_std = self.tensors(dtype, raw.device)
        return ((raw.to(dtype) - mean) * inv_std).to(raw.dtype)

    def denormalize(self, z: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Normalised -> raw: ``z / inv_std + mean`` computed in ``dtype``, returned in ``z``'s dtype."""
        self._check(z, "denormalize")
        mean, inv_std = self.tensors(dtype, z.device)
        return (z.to(dtype) / inv_std + mean).to(z.dtype)


def normalize(raw: torch.Tensor, mean: Sequence[float], std: Sequence[float], dtype: torch.dtype) -> torch.Tensor:
    """Function form of :meth:`LatentStats.normalize`."""
    return LatentStats(tuple(mean), tuple(std)).normalize(raw, dtype)


def denormalize(z: torch.Tensor, mean: Sequence[float], std: Sequence[float], dtype: torch.dtype) -> torch.Tensor:
    """Function form of :meth:`LatentStats.denormalize`."""
    return LatentStats(tuple(mean), tuple(std)).denormalize(z, dtype)
