"""Writing a waveform to a ``.wav`` file (16-bit PCM, standard library ``wave``), atomically."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import torch

from ..errors import Cosmos3Error
from ..files.media import atomic_path


def write_wav(path: str | Path, waveform: torch.Tensor, sample_rate: int) -> Path:
    """Write float ``[channels, samples]`` in [-1, 1] (clipped) at ``sample_rate`` Hz as 16-bit PCM ``.wav``."""
    path = Path(path)
    if path.suffix.lower() != ".wav":
        raise Cosmos3Error(f"{path}: the sound output must be a .wav file")
    if not isinstance(waveform, torch.Tensor) or waveform.dim() != 2 or waveform.shape[1] < 1:
        shape = tuple(waveform.shape) if isinstance(waveform, torch.Tensor) else type(waveform).__name__
        raise Cosmos3Error(f"{path}: waveform must be [channels, samples], got {shape}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
        raise Cosmos3Error(f"{path}: sample_rate must be a positive integer, got {sample_rate!r}")
    if not path.parent.is_dir():
        raise Cosmos3Error(f"{path}: the folder {path.parent} does not exist")
    pcm = (waveform.detach().float().cpu().clamp(-1, 1) * 32767.0).round().to(torch.int16).numpy()
    with atomic_path(path) as tmp, wave.open(str(tmp), "wb") as out:
        out.setnchannels(pcm.shape[0])
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(np.ascontiguousarray(pcm.T).astype("<i2").tobytes())
    return path
