"""Configuration of the 48-channel Wan 2.2 VAE and the public Wan 2.2 latent statistics.

The field names follow the diffusers ``AutoencoderKLWan`` ``config.json`` (``temperal_downsample`` is spelled
``temporal_downsample`` here). :func:`WanVAEConfig.from_diffusers` reads such a file's dict; the single-file
Wan 2.2 checkpoints carry no config, so :data:`WAN22_VAE_CONFIG` holds the Wan 2.2 defaults.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import Cosmos3Error

# Per-channel statistics of the raw Wan 2.2 posterior mean (48 channels), used for latent normalisation.
# Public numbers, cross-checked entry by entry in three independent places:
#   * diffusers  scripts/convert_wan_to_diffusers.py  `vae22_diffusers_config` (snapshot 58eb52c, 2026-08-23),
#     which writes them into the converted vae/config.json that the Cosmos3 repos ship;
#   * ComfyUI    comfy/latent_formats.py  class `Wan22` (snapshot a125cd8, 2025-10-12);
#   * our spec   shared/docs/cosmos3-model-spec.md §3.6 (first entries: mean -0.2289, -0.0052, -0.1323;
#     std 0.4765, 1.0364, 0.4514).
WAN22_LATENTS_MEAN: tuple[float, ...] = (
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557,
    -0.1382, 0.0542, 0.2813, 0.0891, 0.1570, -0.0098, 0.0375, -0.1825,
    -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
    -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230,
    -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.0520, 0.3748,
    0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
)  # fmt: skip
WAN22_LATENTS_STD: tuple[float, ...] = (
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013,
    0.8158, 1.0344, 0.5894, 1.0901, 0.6885, 0.6165, 0.8454, 0.4978,
    0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093,
    0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887,
    0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
)  # fmt: skip


class VAEConfigError(Cosmos3Error):
    """A VAE configuration is inconsistent or describes a VAE this library does not implement."""


@dataclass(frozen=True)
class WanVAEConfig:
    """Hyper-parameters of the Wan 2.2 VAE (defaults = the real Wan 2.2 / Cosmos3 VAE).

    Channel widths: encoder ``base_dim * [1, *dim_mult]``, decoder ``decoder_base_dim * [dim_mult[-1],
    *reversed(dim_mult)]``. ``patch_size`` pixels are folded into channels before the encoder, so
    ``in_channels == out_channels == 3 * patch_size**2``.
    """

    base_dim: int = 160
    decoder_base_dim: int = 256
    z_dim: int = 48
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    temporal_downsample: tuple[bool, ...] = (False, True, True)
    in_channels: int = 12
    out_channels: int = 12
    patch_size: int = 2
    latents_mean: tuple[float, ...] = field(default=WAN22_LATENTS_MEAN)
    latents_std: tuple[float, ...] = field(default=WAN22_LATENTS_STD)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def temporal_factor(self) -> int:
        """Frames per latent frame after the first one (4 for Wan 2.2)."""
        levels = len(self.dim_mult) - 1
        return 2 ** sum(bool(t) for t in self.temporal_downsample[:levels])

    @property
    def spatial_factor(self) -> int:
        """Pixels per latent pixel along H and W (16 for Wan 2.2)."""
        return self.patch_size * 2 ** (len(self.dim_mult) - 1)

    @property
    def pixel_channels(self) -> int:
        return self.in_channels // (self.patch_size**2)

    def validate(self) -> None:
        """Raise :class:`VAEConfigError` if the numbers cannot describe a Wan 2.2-style VAE."""
        problems = []
        for name in ("base_dim", "decoder_base_dim", "z_dim", "num_res_blocks", "patch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                problems.append(f"{name} must be a positive integer (got {value!r})")
        if not self.dim_mult or any((not isinstance(m, int)) or m < 1 for m in self.dim_mult):
            problems.append(f"dim_mult must be a non-empty list of positive integers (got {list(self.dim_mult)})")
        if len(self.temporal_downsample) != len(self.dim_mult) - 1:
            problems.append(
                f"temporal_downsample needs exactly {len(self.dim_mult) - 1} entries, one per down-sampling level "
                f"(got {list(self.temporal_downsample)})"
            )
        if not problems:
            p2 = self.patch_size**2
            if self.in_channels % p2 or self.out_channels % p2 or self.in_channels != self.out_channels:
                problems.append(
                    f"in_channels ({self.in_channels}) and out_channels ({self.out_channels}) must be equal and a "
                    f"multiple of patch_size**2 ({p2})"
                )
            for name in ("latents_mean", "latents_std"):
                values = getattr(self, name)
                if len(values) != self.z_dim:
                    problems.append(f"{name} has {len(values)} entries but z_dim is {self.z_dim}")
                elif not all(math.isfinite(v) for v in values):
                    problems.append(f"{name} contains non-finite values")
            if len(self.latents_std) == self.z_dim and any(v <= 0 for v in self.latents_std):
                problems.append("latents_std must be positive")
        if problems:
            raise VAEConfigError("invalid Wan VAE config: " + "; ".join(problems))

    def with_changes(self, **changes: Any) -> WanVAEConfig:
        return replace(self, **changes)

    @classmethod
    def from_diffusers(cls, config: Mapping[str, Any], source: str = "config") -> WanVAEConfig:
        """Build from a diffusers ``AutoencoderKLWan`` ``config.json`` dict.

        Keys missing from the dict take diffusers' own class defaults (which are the Wan 2.1 ones), so an
        incomplete file fails validation instead of silently becoming Wan 2.2. Only the residual (Wan 2.2)
        architecture is implemented; ``attn_scales`` and ``dropout`` do not affect it (diffusers ignores them too).
        ``clip_output`` is accepted and ignored: diffusers (0.42 and the 2026-08 main branch) clamps decoded
        pixels to [-1, 1] regardless of it, and so do we.
        """
        where = f"{source}: " if source else ""
        class_name = config.get("_class_name", "AutoencoderKLWan")
        if class_name != "AutoencoderKLWan":
            raise VAEConfigError(f"{where}expected an AutoencoderKLWan config, found _class_name {class_name!r}")
        if not config.get("is_residual", False):
            raise VAEConfigError(
                f"{where}is_residual is false/missing: this describes the 16-channel Wan 2.1 VAE; Cosmos3 uses "
                "the 48-channel Wan 2.2 VAE (is_residual true, z_dim 48)"
            )
        missing = [k for k in ("latents_mean", "latents_std") if k not in config]
        if missing:
            raise VAEConfigError(f"{where}missing {', '.join(missing)} (needed for latent normalisation)")
        base_dim = int(config.get("base_dim", 96))
        decoder_base_dim = config.get("decoder_base_dim")
        patch_size = config.get("patch_size")
        try:
            cfg = cls(
                base_dim=base_dim,
                decoder_base_dim=int(decoder_base_dim) if decoder_base_dim is not None else base_dim,
                z_dim=int(config.get("z_dim", 16)),
                dim_mult=tuple(int(m) for m in config.get("dim_mult", (1, 2, 4, 4))),
                num_res_blocks=int(config.get("num_res_blocks", 2)),
                temporal_downsample=tuple(bool(t) for t in config.get("temperal_downsample", (False, True, True))),
                in_channels=int(config.get("in_channels", 3)),
                out_channels=int(config.get("out_channels", 3)),
                patch_size=int(patch_size) if patch_size is not None else 1,
                latents_mean=tuple(float(v) for v in config["latents_mean"]),
                latents_std=tuple(float(v) for v in config["latents_std"]),
            )
        except VAEConfigError as exc:
            raise VAEConfigError(f"{where}{exc}") from None
        except (TypeError, ValueError) as exc:
            raise VAEConfigError(f"{where}malformed value in VAE config ({exc})") from None
        derived_factors = (("scale_factor_temporal", cfg.temporal_factor), ("scale_factor_spatial", cfg.spatial_factor))
        for key, derived in derived_factors:
            stated = config.get(key)
            if stated is not None and int(stated) != derived:
                raise VAEConfigError(f"{where}{key} is {stated} but the architecture gives {derived}")
        return cfg

    def to_diffusers(self) -> dict[str, Any]:
        """The equivalent diffusers ``AutoencoderKLWan`` config dict."""
        return {
            "_class_name": "AutoencoderKLWan",
            "base_dim": self.base_dim,
            "decoder_base_dim": self.decoder_base_dim,
            "z_dim": self.z_dim,
            "dim_mult": list(self.dim_mult),
            "num_res_blocks": self.num_res_blocks,
            "attn_scales": [],
            "temperal_downsample": list(self.temporal_downsample),
            "dropout": 0.0,
            "is_residual": True,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "patch_size": self.patch_size,
            "scale_factor_temporal": self.temporal_factor,
            "scale_factor_spatial": self.spatial_factor,
            "latents_mean": list(self.latents_mean),
            "latents_std": list(self.latents_std),
        }


WAN22_VAE_CONFIG = WanVAEConfig()
