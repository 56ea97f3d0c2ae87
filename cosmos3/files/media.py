"""Reading conditioning media and writing results atomically (temp file + rename, never a partial file)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import Cosmos3Error
from .atomic import atomic_path, check_output_folder, hide_temp_name
from .video import check_video_fps, frames_to_uint8, write_video

__all__ = ["OUTPUT_FORMATS", "atomic_path", "check_output_path", "pil_to_rgb", "read_image", "read_video",
           "write_frames"]

OUTPUT_FORMATS = (".mp4", ".png", ".webp", ".npy")
_WIDE_INTEGER_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")  # 16/32-bit greyscale (e.g. 16-bit PNG)


def pil_to_rgb(image: object) -> object:
    """A PIL image of any mode -> an 8-bit RGB PIL image, scaling wide integer modes instead of clipping them.

    PIL's own ``convert("RGB")`` clips 16-bit greyscale (mode ``I;16``/``I``) at 255, which turns a 16-bit PNG
    almost white; here such values are scaled from their bit depth (0..65535, or 0..2**32-1 when larger
    values occur) to 0..255. Every other mode (palette, RGBA, LA, CMYK, ...) goes through ``convert("RGB")``.
    """
    from PIL import Image

    if image.mode not in _WIDE_INTEGER_MODES:
        return image.convert("RGB")  # a loaded copy even for RGB (the caller may close the file)
    values = np.asarray(image, dtype=np.float64)
    top = 65535.0 if values.max(initial=0) <= 65535 else float(2**32 - 1)
    grey = np.clip(np.round(values / top * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(np.stack([grey] * 3, axis=-1), mode="RGB")


def check_output_path(path: str | Path, num_frames: int | None = None, fps: float | None = None) -> Path:
    """Validate an output path before any work is done: extension, folder (exists, writable), not a folder
    itself, one frame for ``.png``, and ``fps`` within the writers' range for ``.mp4``/``.webp``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise Cosmos3Error(
            f"unsupported output extension {path.suffix or '(none)'!r} for {path}; use one of {OUTPUT_FORMATS}"
        )
    check_output_folder(path)
    if suffix == ".png" and num_frames is not None and num_frames != 1:
        raise Cosmos3Error(
            f"{path}: .png holds one image but {num_frames} frames were requested; use .mp4, .webp or .npy"
        )
    if fps is not None and suffix in (".mp4", ".webp"):
        check_video_fps(fps)
    return path


def write_frames(frames: torch.Tensor, path: str | Path, fps: float = 24.0) -> Path:
    """Write float frames ``[F, H, W, 3]`` in [0, 1] to ``.mp4`` / ``.png`` / ``.webp`` / ``.npy`` atomically.

    ``.npy`` stores the float32 array as is; the image/video formats store 8-bit RGB (``.mp4``: H.264 through
    :func:`cosmos3.files.video.write_video`).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    animated = suffix == ".webp" and frames.dim() == 4 and frames.shape[0] > 1
    path = check_output_path(path, frames.shape[0] if frames.dim() == 4 else None, fps if animated else None)
    if suffix == ".mp4":
        return write_video(path, frames, fps)
    pixels = frames_to_uint8(frames) if suffix != ".npy" else None
    with atomic_path(path) as tmp:
        try:
            if suffix == ".npy":
                with open(tmp, "wb") as fh:
                    np.save(fh, frames.detach().float().cpu().numpy())
            else:
                from PIL import Image

                images = [Image.fromarray(f) for f in pixels]
                if suffix == ".png":
                    images[0].save(tmp, format="PNG")
                elif len(images) == 1:
                    images[0].save(tmp, format="WEBP", lossless=True)
                else:
                    images[0].save(
                        tmp,
                        format="WEBP",
                        save_all=True,
                        append_images=images[1:],
                        duration=int(round(1000 / fps)),
                        loop=0,  # noqa: RUF046 (fps may be a NumPy float)
                        lossless=False,
                        quality=90,
                    )
        except OSError as exc:  # name the requested file, not the hidden temporary
            raise OSError(f"{path}: writing failed: {hide_temp_name(str(exc), tmp, path)}") from None
    return path


def read_image(path: str | Path) -> object:
    """Open an image file as an RGB PIL image (clear error naming the file)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as img:
            return pil_to_rgb(img)
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"{path}: not a readable image ({exc})") from None


def read_video(path: str | Path) -> list[np.ndarray]:
    """Decode a video file into RGB uint8 frames ``[H, W, 3]`` (OpenCV)."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video not found: {path}")
    capture = cv2.VideoCapture(str(path))
    frames: list[np.ndarray] = []
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame[:, :, ::-1].copy())
    finally:
        capture.release()
    if not frames:
        raise ValueError(f"{path}: no frames could be decoded")
    return frames
