"""What a pipeline needs to generate sound: whether the checkpoint can, the clip's sound latent length, decoding.

:class:`SoundStream` ties a transformer's sound head (``sound_gen``/``sound_dim``) to a sound tokenizer location
(the checkpoint's ``sound_tokenizer/`` folder, or a separate file). Nothing is loaded until :meth:`decode`;
:meth:`check` validates the tokenizer's config and file headers up front, so a missing folder, a latent width
that does not match ``sound_dim`` or a corrupt file fails before sampling starts.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import Cosmos3Error
from ..model.config import TransformerConfig
from .config import SoundTokenizerConfig
from .decoder import SoundDecoder
from .loading import FOLDER, inspect_sound_tokenizer, load_sound_decoder


class SoundUnavailableError(Cosmos3Error):
    """Sound was requested from a checkpoint (or mode) that cannot generate it."""


class SoundStream:
    """The sound side of a loaded checkpoint.

    Args:
        transformer_config: the transformer's config (``sound_gen`` / ``sound_dim``).
        location: the sound tokenizer folder or file, or ``None`` when the checkpoint has none.
        dtype, device: where the decoder is loaded when first needed.
        checkpoint: the checkpoint folder (only named in errors).
    """

    def __init__(
        self,
        transformer_config: TransformerConfig,
        location: str | Path | None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        checkpoint: str | Path | None = None,
    ) -> None:
        self.transformer_config = transformer_config
        self.location = Path(location) if location is not None else None
        self.dtype = dtype
        self.device = torch.device(device)
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self._config: SoundTokenizerConfig | None = None
        self.decoder: SoundDecoder | None = None

    @classmethod
    def for_checkpoint(
        cls, transformer_config: TransformerConfig, root: str | Path | None, dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> SoundStream:
        """The stream of a diffusers-layout checkpoint folder (its ``sound_tokenizer/``, if present)."""
        folder = Path(root) / FOLDER if root is not None else None
        return cls(transformer_config, folder if folder is not None and folder.exists() else None, dtype, device, root)

    @property
    def available(self) -> bool:
        """Whether the transformer has a sound head and a sound tokenizer location is known (not yet validated)."""
        return bool(self.transformer_config.sound_gen) and self.location is not None

    @property
    def config(self) -> SoundTokenizerConfig:
        """The sound tokenizer's config (checked against the transformer; raises if sound is unavailable)."""
        if self._config is None:
            self._config = self.check()
        return self._config

    @property
    def sample_rate(self) -> int | None:
        """Waveform sample rate in Hz, or ``None`` when this checkpoint cannot generate sound."""
        return self.config.sampling_rate if self.available else None

    def check(self) -> SoundTokenizerConfig:
        """Validate everything sound needs without loading weights; returns the tokenizer config.

        Raises :class:`SoundUnavailableError` (no sound head, no ``sound_tokenizer/``) or a
        :class:`~cosmos3.files.safetensors.CheckpointError` naming the file (bad config, width mismatch, keys).
        """
        where = f"{self.checkpoint}: " if self.checkpoint is not None else ""
        if not self.transformer_config.sound_gen:
            raise SoundUnavailableError(
                f"{where}this checkpoint has no sound stream (its transformer has no sound head: sound_gen is false "
                "and there are no audio_proj_in/out weights); generate without sound"
            )
        if self.location is None:
            raise SoundUnavailableError(
                f"{where}the transformer can generate sound but there is no sound tokenizer: expected a {FOLDER}/ "
                "folder (config.json + diffusion_pytorch_model.safetensors) in the checkpoint, or pass its location"
            )
        if self._config is None:
            self._config = inspect_sound_tokenizer(self.location, sound_dim=self.transformer_config.sound_dim)
        return self._config

    def latent_frames(self, num_frames: int, fps: float) -> int:
        """Sound latent length ``T_s`` of a clip of ``num_frames`` at ``fps`` (as the reference computes it)."""
        return self.config.latent_frames(num_frames, fps)

    def load(self) -> SoundDecoder:
        """Load (once) and return the decoder."""
        if self.decoder is None:
            self.check()
            self.decoder = load_sound_decoder(
                self.location, dtype=self.dtype, device=self.device, sound_dim=self.transformer_config.sound_dim
            )
        return self.decoder

    def unload(self) -> None:
        """Drop the decoder's weights (reloaded by the next :meth:`decode`)."""
        self.decoder = None

    def decode(self, sound_latents: torch.Tensor) -> torch.Tensor:
        """Sound latents ``[1, sound_dim, T_s]`` (or ``[sound_dim, T_s]``) -> waveform float32 ``[channels, N]``
        in [-1, 1] on the CPU."""
        latents = sound_latents[0] if sound_latents.dim() == 3 else sound_latents
        return self.load().decode(latents).float().cpu()
