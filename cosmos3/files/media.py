"""Reading conditioning media and writing results atomically (temp file + rename, never a partial file)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

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


def check_output_path(path: str | Path, num_frames: int | None = None) -> Path:
    """Validate an output path before any work is done (extension, folder, single-image formats)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise ValueError(
            f"unsupported output extension {path.suffix or '(none)'!r} for {path}; use one of {OUTPUT_FORMATS}"
        )
    if not path.parent.is_dir():
        raise ValueError(f"output folder {path.parent} does not exist")
    if suffix == ".png" and num_frames is not None and num_frames != 1:
        raise ValueError(
            f"{path}: .png holds one image but {num_frames} frames were requested; use .mp4, .webp or .npy"
        )
    return path


def frames_to_uint8(frames: torch.Tensor) -> np.ndarray:
    """Float frames ``[F, H, W, 3]`` in [0, 1] -> uint8 ``[F, H, W, 3]`` (round to nearest)."""
    if frames.dim() != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [F, H, W, 3], got {tuple(frames.shape)}")
    return (frames.detach().float().cpu().clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path beside ``path`` (same extension); rename it onto ``path`` only on success."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if not tmp_path.is_file() or tmp_path.stat().st_size == 0:
            raise OSError(f"writing {path} produced no data")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; give the result normal file permissions
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _write_mp4(frames: np.ndarray, target: Path, fps: float) -> None:
    import cv2

    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (width, height))
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot open an mp4 writer for {target} (codec mp4v)")
    try:
        for frame in frames:
            writer.write(np.ascontiguousarray(frame[:, :, ::-1]))  # RGB -> BGR
    finally:
        writer.release()


def write_frames(frames: torch.Tensor, path: str | Path, fps: float = 24.0) -> Path:
    """Write float frames ``[F, H, W, 3]`` in [0, 1] to ``.mp4`` / ``.png`` / ``.webp`` / ``.npy`` atomically.

    ``.npy`` stores the float32 array as is; the image/video formats store 8-bit RGB.
    """
    path = check_output_path(path, frames.shape[0] if frames.dim() == 4 else None)
    suffix = path.suffix.lower()
    with atomic_path(path) as tmp:
        if suffix == ".npy":
            with open(tmp, "wb") as fh:
                np.save(fh, frames.detach().float().cpu().numpy())
        elif suffix == ".mp4":
            _write_mp4(frames_to_uint8(frames), tmp, fps)
        else:
            from PIL import Image

            images = [Image.fromarray(f) for f in frames_to_uint8(frames)]
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
