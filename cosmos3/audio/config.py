"""Configuration of the Cosmos3 sound tokenizer (the AVAE audio autoencoder in ``sound_tokenizer/``).

Field names follow the diffusers ``Cosmos3AVAEAudioTokenizer`` ``config.json``. Only the decoder side is
described here (the generation pipeline never encodes audio): latent width ``vocoder_input_dim`` (must equal
the transformer's ``sound_dim``), Oobleck-style decoder widths ``dec_dim * dec_c_mults`` and upsampling strides
``dec_strides`` (applied in reverse order), ``dec_out_channels`` output channels at ``sampling_rate`` Hz.
One latent frame covers ``hop_size`` samples (default ``prod(dec_strides)``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import Cosmos3Error

# Options of the diffusers class that only have one supported value (the shipped AVAE configuration).
_FIXED_OPTIONS = {
    "model_type": "autoencoder_v2",
    "dec_type": "oobleck",
    "dec_use_snake": True,
    "dec_final_tanh": False,
    "dec_anti_aliasing": False,
    "dec_use_nearest_upsample": False,
    "dec_use_tanh_at_final": False,
    "bottleneck_type": "vae",
    "activation": "snakebeta",
    "snake_logscale": True,
    "anti_aliasing": False,
    "latent_mean": None,
    "latent_std": None,
}


class SoundConfigError(Cosmos3Error):
    """A sound tokenizer configuration is invalid or describes an audio decoder this library does not implement."""


@dataclass(frozen=True)
class SoundTokenizerConfig:
    """Decoder hyper-parameters of the sound tokenizer (defaults = the shipped Cosmos3 AVAE)."""

    sampling_rate: int = 48000
    vocoder_input_dim: int = 64
    dec_dim: int = 320
    dec_c_mults: tuple[int, ...] = (1, 2, 4, 8, 16)
    dec_strides: tuple[int, ...] = (2, 4, 5, 6, 8)
    dec_out_channels: int = 2
    hop_size: int | None = None

    def __post_init__(self) -> None:
        ints = {"sampling_rate": self.sampling_rate, "vocoder_input_dim": self.vocoder_input_dim,
                "dec_dim": self.dec_dim, "dec_out_channels": self.dec_out_channels}
        if self.hop_size is not None:
            ints["hop_size"] = self.hop_size
        for name, value in ints.items():
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise SoundConfigError(f"sound tokenizer config: '{name}' must be a positive integer, got {value!r}")
        for name in ("dec_c_mults", "dec_strides"):
            value = getattr(self, name)
            if not value or any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in value):
                raise SoundConfigError(
                    f"sound tokenizer config: '{name}' must be a non-empty list of positive integers, got {value!r}"
                )
        if len(self.dec_c_mults) != len(self.dec_strides):
            raise SoundConfigError(
                f"sound tokenizer config: 'dec_c_mults' ({len(self.dec_c_mults)} entries) and 'dec_strides' "
                f"({len(self.dec_strides)} entries) must have the same length"
            )

    @property
    def samples_per_latent(self) -> int:
        """Waveform samples per latent frame (``hop_size``, default the product of the decoder strides)."""
        return self.hop_size if self.hop_size is not None else math.prod(self.dec_strides)

    @property
    def upsampling(self) -> int:
        """Samples the decoder actually produces per latent frame (the product of its strides)."""
        return math.prod(self.dec_strides)

    def latent_frames(self, num_frames: int, fps: float) -> int:
        """Sound latent length for a clip of ``num_frames`` at ``fps``: ``ceil(int(F / fps * rate) / hop)``."""
        samples = int(num_frames / fps * self.sampling_rate)
        hop = self.samples_per_latent
        return (samples + hop - 1) // hop

    @classmethod
    def from_diffusers(cls, raw: Mapping[str, Any], source: str = "sound tokenizer config") -> SoundTokenizerConfig:
        """Read a diffusers ``Cosmos3AVAEAudioTokenizer`` config dict; refuse unsupported decoder options."""
        if not isinstance(raw, Mapping):
            raise SoundConfigError(f"{source}: expected a JSON object, got {type(raw).__name__}")
        class_name = raw.get("_class_name")
        if class_name is not None and class_name != "Cosmos3AVAEAudioTokenizer":
            raise SoundConfigError(f"{source}: expected a Cosmos3AVAEAudioTokenizer config, got {class_name!r}")
        for name, allowed in _FIXED_OPTIONS.items():
            if name in raw and raw[name] != allowed:
                raise SoundConfigError(
                    f"{source}: '{name}' = {raw[name]!r} is not supported (only {allowed!r}, the shipped AVAE)"
                )
        bottleneck = raw.get("bottleneck")
        if isinstance(bottleneck, Mapping) and bottleneck.get("type", "vae") != "vae":
            raise SoundConfigError(f"{source}: only the 'vae' bottleneck is supported, got {bottleneck.get('type')!r}")
        defaults = cls()
        values: dict[str, Any] = {}
        for name in ("sampling_rate", "vocoder_input_dim", "dec_dim", "dec_out_channels", "hop_size"):
            values[name] = raw.get(name, getattr(defaults, name))
        for name in ("dec_c_mults", "dec_strides"):
            value = raw.get(name, getattr(defaults, name))
            if not isinstance(value, (list, tuple)):
                raise SoundConfigError(f"{source}: '{name}' must be a list of integers, got {value!r}")
            values[name] = tuple(value)
        try:
            return cls(**values)
        except SoundConfigError as exc:
            raise SoundConfigError(f"{source}: {exc}") from None
