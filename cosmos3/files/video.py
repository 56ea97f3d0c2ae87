"""MP4 writing with an optional audio track (PyAV).

STUB (branch ``wsound``): a minimal stand-in with the same signature as the full writer being added on branch
``wcli`` (``write_video(path, frames, fps, *, audio=None, sample_rate=None)``); when merging, take ``wcli``'s
version of this file over this one.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .media import atomic_path, frames_to_uint8


def write_video(
    path: str | Path, frames: Any, fps: float, *, audio: Any = None, sample_rate: int | None = None
) -> Path:
    """Write float frames ``[T, H, W, 3]`` in [0, 1] to ``path`` as H.264 MP4 at ``fps``; ``audio`` float32
    ``[channels, samples]`` in [-1, 1] at ``sample_rate`` Hz becomes an AAC track. The file appears only complete."""
    import av

    path = Path(path)
    pixels = frames_to_uint8(frames if isinstance(frames, torch.Tensor) else torch.as_tensor(frames))
    sound = None
    if audio is not None:
        sound = torch.as_tensor(audio).detach().float().cpu().clamp(-1, 1).numpy()
        if sound.ndim != 2 or sound.shape[0] not in (1, 2) or not sample_rate:
            raise ValueError(f"{path}: audio must be [1 or 2 channels, samples] with a sample_rate, got {sound.shape}")
    with atomic_path(path) as tmp, av.open(str(tmp), mode="w", format="mp4") as container:
        video = container.add_stream("h264", rate=Fraction(fps).limit_denominator(1000))
        video.width, video.height, video.pix_fmt = pixels.shape[2], pixels.shape[1], "yuv420p"
        track = None
        if sound is not None:  # every stream is added before the first packet is muxed
            layout = "stereo" if sound.shape[0] == 2 else "mono"
            track = container.add_stream("aac", rate=int(sample_rate), layout=layout)
        for frame in pixels:
            container.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(video.encode(None))
        if track is not None:
            interleaved = np.ascontiguousarray(sound.T.reshape(1, -1))
            chunk = av.AudioFrame.from_ndarray(interleaved, format="flt", layout=layout)
            chunk.sample_rate, chunk.pts = int(sample_rate), 0
            container.mux(track.encode(chunk))
            container.mux(track.encode(None))
    return path
