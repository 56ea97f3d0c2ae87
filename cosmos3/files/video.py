"""Write a video as H.264 (yuv420p) in an MP4 through PyAV, optionally with an AAC sound track.

H.264 in MP4 is what browsers and ComfyUI's own video nodes play and write (ComfyUI uses PyAV too); OpenCV's
``mp4v`` (MPEG-4 Part 2) does not play in browsers. The file is written through a hidden temporary beside the
target and renamed at the end (:mod:`cosmos3.files.atomic`), so a failed or interrupted write leaves nothing.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import Cosmos3Error
from .atomic import atomic_path, check_output_folder, hide_temp_name

# Frame rates the writers accept (MP4 and animated WebP). WebP stores whole milliseconds per frame (so at most
# 1000 fps); below 0.01 fps (100 s per frame) players misbehave and it is certainly a mistake.
MIN_VIDEO_FPS, MAX_VIDEO_FPS = 0.01, 1000.0
# Sample rates of the AAC encoder (MPEG-4 audio sampling frequency table).
AAC_SAMPLE_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)
AUDIO_LAYOUTS = {1: "mono", 2: "stereo"}
VIDEO_CODEC, CRF = "libx264", 19  # visually near lossless at a modest size (ComfyUI's own default is 19 too)


class VideoWriteError(Cosmos3Error):
    """The frames, frame rate or sound cannot be written as an MP4 (named value and allowed range)."""


def check_video_fps(fps: Any, what: str = "fps") -> float:
    """``fps`` as a float when the writers can store it, else :class:`VideoWriteError` naming ``what``."""
    if isinstance(fps, bool) or not isinstance(fps, (int, float, np.floating, np.integer)):
        raise VideoWriteError(f"{what} must be a number, got {fps!r}")
    value = float(fps)
    if not math.isfinite(value) or not MIN_VIDEO_FPS <= value <= MAX_VIDEO_FPS:
        raise VideoWriteError(
            f"{what} {value:g} cannot be stored in a video file; allowed: {MIN_VIDEO_FPS:g} to {MAX_VIDEO_FPS:g}"
        )
    return value


def frames_to_uint8(frames: Any) -> np.ndarray:
    """Frames ``[T, H, W, 3]`` (uint8, or float in [0, 1]; torch or numpy) -> uint8 numpy (round to nearest).

    Float values outside [0, 1] are clipped (the VAE's output range); NaN/Inf are refused.
    """
    array = frames.detach().cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if array.ndim != 4 or array.shape[-1] != 3:
        raise VideoWriteError(f"frames must be [T, H, W, 3] (RGB), got shape {tuple(array.shape)}")
    if array.shape[0] == 0:
        raise VideoWriteError("frames: got 0 frames")
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if not np.issubdtype(array.dtype, np.floating):
        raise VideoWriteError(f"frames must be uint8 or float in [0, 1], got dtype {array.dtype}")
    array = array.astype(np.float32, copy=False)
    if not np.isfinite(array).all():
        raise VideoWriteError("frames contain NaN or Inf values")
    return (np.clip(array, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def _check_audio(audio: Any, sample_rate: Any) -> np.ndarray:
    array = audio.detach().cpu().float().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio)
    if array.ndim != 2 or array.shape[0] not in AUDIO_LAYOUTS or array.shape[1] == 0:
        raise VideoWriteError(
            f"audio must be float [channels, samples] with 1 or 2 channels, got shape {tuple(array.shape)}"
        )
    if not np.issubdtype(array.dtype, np.floating):
        raise VideoWriteError(f"audio must be float32 samples in [-1, 1], got dtype {array.dtype}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise VideoWriteError("audio contains NaN or Inf samples")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)):
        raise VideoWriteError(f"sample_rate must be an integer (Hz) with audio, got {sample_rate!r}")
    if int(sample_rate) not in AAC_SAMPLE_RATES:
        raise VideoWriteError(
            f"sample_rate {sample_rate} is not an AAC rate; allowed: {', '.join(map(str, AAC_SAMPLE_RATES))}"
        )
    return array


def _encode(target: Path, frames: np.ndarray, fps: float, audio: np.ndarray | None, sample_rate: int | None) -> None:
    import av

    height, width = frames.shape[1:3]
    with av.open(str(target), mode="w", format="mp4") as container:
        rate = Fraction(fps).limit_denominator(1001)
        video = container.add_stream(VIDEO_CODEC, rate=rate, options={"crf": str(CRF)})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = None
        if audio is not None:
            sound = container.add_stream("aac", rate=int(sample_rate))
            sound.layout = AUDIO_LAYOUTS[audio.shape[0]]
        for index, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = index
            frame.time_base = 1 / rate
            container.mux(video.encode(frame))
        container.mux(video.encode())
        if sound is not None:
            chunk = av.AudioFrame.from_ndarray(audio, format="fltp", layout=AUDIO_LAYOUTS[audio.shape[0]])
            chunk.sample_rate = int(sample_rate)
            chunk.pts = 0
            container.mux(sound.encode(chunk))
            container.mux(sound.encode(None))


def write_video(
    path: str | Path, frames: Any, fps: float, *, audio: Any = None, sample_rate: int | None = None
) -> Path:
    """Write ``frames`` ``[T, H, W, 3]`` (uint8, or float in [0, 1]) to ``path`` as H.264 MP4 at ``fps``.

    ``audio``: float32 ``[channels, samples]`` (1 or 2 channels, values in [-1, 1]) at ``sample_rate`` Hz,
    stored as an AAC track. H.264's yuv420p needs an even width and height: odd sizes are refused (crop or pad
    the frames first). Everything is checked before the file is created; the file appears only complete.
    """
    path = Path(path)
    if path.suffix.lower() != ".mp4":
        raise VideoWriteError(f"{path}: write_video writes .mp4 files, got {path.suffix or '(no extension)'!r}")
    fps = check_video_fps(fps)
    pixels = frames_to_uint8(frames)
    height, width = pixels.shape[1:3]
    if height % 2 or width % 2:
        raise VideoWriteError(
            f"{path}: H.264 (yuv420p) needs an even width and height, got {width}x{height}; "
            "crop or pad the frames to even sizes"
        )
    sound = None
    if audio is not None:
        sound = _check_audio(audio, sample_rate)
    elif sample_rate is not None:
        raise VideoWriteError("sample_rate was given without audio")
    check_output_folder(path)
    import av

    with atomic_path(path) as tmp:
        try:
            _encode(tmp, pixels, fps, sound, sample_rate)
        except (av.FFmpegError, OSError) as exc:
            raise OSError(f"{path}: writing the video failed: {hide_temp_name(str(exc), tmp, path)}") from None
    return path
