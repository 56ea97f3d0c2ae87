"""Sound: the Sampler's sound setting (off / auto / on) and the Audio Decode node (sound LATENT -> core AUDIO).

Sound-capable checkpoints (transformer ``sound_gen``) denoise a sound latent jointly with the video; the Sampler's
second output carries it as a LATENT ``{"samples": [1, sound_dim, T_s] float32, "type": "audio",
"cosmos3_sound_tokenizer": <its sound tokenizer location or None>}`` (``samples`` empty, ``[1, 0, 0]``, when no sound
was generated: a LATENT output always carries a tensor). Audio Decode turns it into ComfyUI's
``AUDIO`` (``{"waveform": [1, channels, samples] float32, "sample_rate": Hz}``) for core CreateVideo (``audio``)
-> SaveVideo, SaveAudio or PreviewAudio.

Sound tokenizer choices (Audio Decode's ``sound_tokenizer``): ``auto`` (the checkpoint's own
``sound_tokenizer/``, recorded in the latent), every checkpoint folder's ``sound_tokenizer/`` and single
``.safetensors`` files in ``models/vae`` whose header holds the AVAE decoder (for a sound tokenizer shipped as a
separate file).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..cosmos3.audio import SoundTokenizerConfig, SoundUnavailableError, load_sound_decoder, read_sound_config
from ..cosmos3.audio.loading import FOLDER as SOUND_FOLDER
from ..cosmos3.audio.loading import inspect_sound_tokenizer
from ..cosmos3.files.safetensors import CheckpointError
from . import _comfy
from ._comfy import io
from .common import AUTO, CATEGORY_ROOT, cached_file_check, check_choice, node_schema, safetensors_names

log = logging.getLogger("cosmos3_mot")

CATEGORY = CATEGORY_ROOT + "/sound"
SOUND_CHOICES = ["off", AUTO, "on"]
SOUND_FILE_KEY = "vae"
LATENT_KEY = "cosmos3_sound_tokenizer"
_DECODER_MARKER = "decoder.block.0.conv_t1."
_decoders: dict[tuple[str, torch.dtype], object] = {}

SOUND_INPUT_TOOLTIP = (
    "Generate sound with the video (sound-capable checkpoints): 'off' = video only (as before); 'auto' = sound "
    "when the checkpoint has a sound stream and the output is a video; 'on' = sound, or an error saying why not. "
    "The sound is denoised jointly with the video (so turning it on changes the video too); decode the 'sound' "
    "output with Cosmos3 MoT Audio Decode."
)
SOUND_OUTPUT_TOOLTIP = (
    "Sound latents [1, sound_dim, T] for Cosmos3 MoT Audio Decode (empty when no sound was generated)."
)


# ------------------------------------------------------------------------------------------------------
# Sampler side


def model_sound_location(model) -> Path | None:
    """The ``sound_tokenizer/`` folder of a loaded model's checkpoint (or beside a single file), if any."""
    source = Path(model.source)
    root = source if source.is_dir() else source.parent
    folder = root / SOUND_FOLDER
    return folder if folder.is_dir() else None


def plan_sound(model, sound: str, frames: int, fps: float) -> tuple[int | None, Path | None]:
    """``(sound latent frames or None, sound tokenizer location)`` for the Sampler's ``sound`` setting.

    The length follows the checkpoint's sound tokenizer config (the shipped AVAE's when there is none beside the
    model: 48 kHz, 1920 samples per latent frame); a tokenizer whose latent width does not fit is refused here,
    before sampling.
    """
    check_choice("sound", sound, SOUND_CHOICES)
    if sound == "off":
        return None, None
    config = model.config
    if not config.sound_gen or frames == 1:
        if sound == AUTO:
            return None, None
        why = (
            "this checkpoint has no sound stream (its transformer has no sound head)"
            if not config.sound_gen
            else "an image (frames = 1) has no duration to give sound"
        )
        raise SoundUnavailableError(f"sound is 'on' but {why}; set sound to 'off' or 'auto'")
    location = model_sound_location(model)
    if location is not None:
        tokenizer = inspect_sound_tokenizer(location, sound_dim=config.sound_dim)
    else:
        tokenizer = SoundTokenizerConfig(vocoder_input_dim=config.sound_dim)
        log.info("[Cosmos3 MoT] no %s/ beside the checkpoint: sound length from the shipped AVAE settings",
                 SOUND_FOLDER)
    return tokenizer.latent_frames(frames, fps), location


def sound_latent(samples: torch.Tensor, location: Path | None) -> dict:
    """The Sampler's sound LATENT (see the module docstring)."""
    return {"samples": samples.to(device=_comfy.intermediate_device(), dtype=torch.float32), "type": "audio",
            LATENT_KEY: str(location) if location is not None else None}


def split_outputs(result, sound_frames: int | None, location: Path | None) -> tuple[torch.Tensor, dict]:
    """``sample()``'s result -> (video latents, sound LATENT; an empty one when no sound was generated)."""
    if sound_frames is None:
        return result, sound_latent(torch.zeros((1, 0, 0)), None)
    latents, sound = result
    return latents, sound_latent(sound, location)


def sound_input() -> io.Combo.Input:
    """The Sampler's optional ``sound`` widget (appended after its other inputs)."""
    return io.Combo.Input("sound", options=SOUND_CHOICES, default="off", optional=True, tooltip=SOUND_INPUT_TOOLTIP)


def sound_output() -> io.Latent.Output:
    """The Sampler's ``sound`` output (appended after ``samples``)."""
    return io.Latent.Output(display_name="sound", tooltip=SOUND_OUTPUT_TOOLTIP)


# ------------------------------------------------------------------------------------------------------
# Sound tokenizer choices


def is_sound_tokenizer_file(path: Path) -> bool:
    """A safetensors file whose header holds the AVAE decoder (cached per size and modification time)."""
    return cached_file_check(path, "sound-tokenizer",
                             lambda p: any(name.startswith(_DECODER_MARKER) for name in safetensors_names(p)))


def sound_tokenizer_sources() -> dict[str, Path]:
    """``{choice: location}``: checkpoint folders' ``sound_tokenizer/`` then AVAE files in ``models/vae``."""
    sources: dict[str, Path] = {}
    for name, path in _comfy.checkpoint_folders().items():
        if (path / SOUND_FOLDER / "config.json").is_file():
            sources.setdefault(f"{name}/{SOUND_FOLDER}", path / SOUND_FOLDER)
    for name in _comfy.list_model_files(SOUND_FILE_KEY):
        try:
            path = _comfy.model_file_path(SOUND_FILE_KEY, name)
        except (FileNotFoundError, ValueError):
            continue
        if is_sound_tokenizer_file(path):
            sources.setdefault(name, path)
    return sources


def sound_tokenizer_choices() -> list[str]:
    return [AUTO, *sound_tokenizer_sources()]


def resolve_sound_tokenizer(choice: str, latent: dict) -> Path:
    """The tokenizer location for ``choice`` (``auto``: the one the Sampler recorded in the latent)."""
    if choice == AUTO:
        recorded = latent.get(LATENT_KEY)
        if not recorded:
            raise FileNotFoundError(
                f"sound_tokenizer 'auto' needs the checkpoint's {SOUND_FOLDER}/ folder, and the Sampler's checkpoint "
                "has none (a single transformer file?): pick the sound tokenizer in 'sound_tokenizer' (a "
                f"checkpoint's {SOUND_FOLDER}/ or an AVAE .safetensors in models/vae)"
            )
        return Path(recorded)
    sources = sound_tokenizer_sources()
    if choice not in sources:
        raise FileNotFoundError(
            f"sound tokenizer {choice!r} not found (available: {', '.join(sources) or 'none'}); choose 'auto' or a "
            "listed one"
        )
    return sources[choice]


# ------------------------------------------------------------------------------------------------------
# Decode


class SoundDecoderHolder(torch.nn.Module):
    """Holder handed to ComfyUI's ``ModelPatcher`` (which assigns ``.device``)."""

    def __init__(self, decoder: torch.nn.Module):
        super().__init__()
        self.decoder = decoder


def check_sound_latent(latent) -> torch.Tensor:
    """The ``[1, C, T]`` tensor of a sound LATENT; clear errors for anything else."""
    if latent is None or (isinstance(latent, dict) and isinstance(latent.get("samples"), torch.Tensor)
                          and latent["samples"].numel() == 0):
        raise ValueError(
            "no sound latents: the Sampler generated no sound (its 'sound' is 'off', or 'auto' on a checkpoint "
            "without a sound stream or for an image)"
        )
    samples = latent.get("samples") if isinstance(latent, dict) else None
    if not isinstance(samples, torch.Tensor) or not samples.is_floating_point() or samples.dim() != 3:
        shape = list(samples.shape) if isinstance(samples, torch.Tensor) else type(samples).__name__
        raise ValueError(f"sound LATENT samples must be float sound latents [1, C, T] from the Sampler, got {shape}")
    if samples.shape[0] != 1 or min(samples.shape) < 1:
        raise ValueError(f"sound LATENT samples must be [1, C, T] with C, T >= 1, got {list(samples.shape)}")
    return samples


def _patcher(location: Path):
    key = (str(location), torch.float32)
    patcher = _decoders.get(key)
    if patcher is None:
        device, offload = _comfy.vae_device(), _comfy.vae_offload_device()
        decoder = load_sound_decoder(location, dtype=torch.float32, device=offload)
        patcher = _comfy.model_patcher(SoundDecoderHolder(decoder), device, offload)
        _decoders.clear()  # keep one sound decoder
        _decoders[key] = patcher
    return patcher


def decode_sound(latent: dict, choice: str = AUTO) -> dict:
    """Sound LATENT -> core AUDIO ``{"waveform": [1, channels, N] float32 (CPU), "sample_rate": Hz}``."""
    samples = check_sound_latent(latent)
    location = resolve_sound_tokenizer(choice, latent)
    config = read_sound_config(location)
    if config.vocoder_input_dim != samples.shape[1]:
        raise CheckpointError(
            f"{location}: the sound tokenizer does not fit these sound latents: its latent width (vocoder_input_dim) "
            f"is {config.vocoder_input_dim} but the latents have {samples.shape[1]} channels"
        )
    patcher = _patcher(location)
    upsampled = samples.shape[2] * config.upsampling
    need = upsampled * config.dec_dim * 4 * 8  # a few full-rate activations of the widest last stage
    _comfy.load_models([patcher], memory_required=need, force_full_load=True)
    try:
        _comfy.throw_if_interrupted()
        waveform = patcher.model.decoder.decode(samples).float().cpu()
    finally:
        _comfy.offload_models([patcher])
    return {"waveform": waveform.contiguous(), "sample_rate": int(config.sampling_rate)}


class AudioDecode(io.ComfyNode):
    """Decodes the Sampler's sound latents into audio (AUDIO: stereo waveform at the sound tokenizer's sample rate)
    for core CreateVideo's audio input (-> SaveVideo, an mp4 with sound), SaveAudio or PreviewAudio."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(
            cls,
            "C3MoTAudioDecode",
            "Audio Decode",
            CATEGORY,
            inputs=[
                io.Latent.Input("sound", tooltip="The 'sound' output of the Cosmos3 MoT Sampler (sound on/auto)."),
                io.Combo.Input(
                    "sound_tokenizer",
                    options=sound_tokenizer_choices(),
                    default=AUTO,
                    tooltip=(
                        f"Which sound tokenizer decodes: 'auto' = the checkpoint's own {SOUND_FOLDER}/; or a "
                        f"checkpoint's {SOUND_FOLDER}/, or a sound tokenizer .safetensors in models/vae (with its "
                        "config.json beside it, else the shipped AVAE settings)."
                    ),
                ),
            ],
            outputs=[
                io.Audio.Output(
                    display_name="audio",
                    tooltip="Waveform [1, channels, samples] in -1..1 with its sample rate (48 kHz stereo for the "
                    "shipped checkpoints), as long as the video.",
                )
            ],
        )

    @classmethod
    def execute(cls, sound, sound_tokenizer=AUTO) -> io.NodeOutput:
        return io.NodeOutput(decode_sound(sound, sound_tokenizer))


NODES = [AudioDecode]
