"""Sound: the Cosmos3 sound tokenizer's decoder (sound latents -> stereo waveform) and its checked loading.

* :mod:`.config` — :class:`SoundTokenizerConfig` (diffusers ``sound_tokenizer/config.json``), the latent length of
  a clip;
* :mod:`.decoder` — :class:`SoundDecoder` (Oobleck-style Snake + weight-normed conv stack);
* :mod:`.loading` — :func:`load_sound_decoder` (meta device, safetensors only, one error per problem);
* :mod:`.stream` — :class:`SoundStream`: whether a loaded checkpoint can make sound, latent length, decoding;
* :mod:`.wav` — :func:`write_wav` (16-bit PCM).

The sound latents themselves are denoised by the transformer next to the video (see
:mod:`cosmos3.sampling.loop`).
"""

from .config import SoundConfigError, SoundTokenizerConfig
from .decoder import SoundDecoder
from .loading import (
    check_sound_dim,
    inspect_sound_tokenizer,
    load_sound_decoder,
    read_sound_config,
    sound_tokenizer_folder,
)
from .stream import SoundStream, SoundUnavailableError
from .wav import write_wav

__all__ = [
    "SoundConfigError",
    "SoundDecoder",
    "SoundStream",
    "SoundUnavailableError",
    "SoundTokenizerConfig",
    "check_sound_dim",
    "inspect_sound_tokenizer",
    "load_sound_decoder",
    "read_sound_config",
    "sound_tokenizer_folder",
    "write_wav",
]
