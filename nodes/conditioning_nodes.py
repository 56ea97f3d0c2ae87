"""Conditioning: image-to-video (IMAGE + Wan 2.2 VAE -> clean first-frame latent) and video-to-video (IMAGE frames
-> the clean leading latent frames the reference keeps, taken from the start or the end of the clip).

Uses the reference preprocessing (:func:`cosmos3.sampling.conditioning.preprocess_image`: cover-resize with
antialias, centre crop with rounded offsets) and the VAE's own normalisation, so the result is identical to
:class:`cosmos3.pipeline.Cosmos3Pipeline`'s image-to-video condition. The VAE is loaded onto ComfyUI's VAE
device for the encode and moved back to its offload device afterwards.
"""

from __future__ import annotations

import torch

from ..cosmos3.geometry import Geometry
from ..cosmos3.sampling.conditioning import VIDEO_KEEP, encode_image_condition, encode_video_condition
from ..cosmos3.vae import tiling as vae_tiling
from . import _comfy
from ._comfy import io
from .common import C3MOT_IMAGE_COND, CATEGORY_ROOT, check_choice, frames_input, node_schema, side_input
from .vae_nodes import vae_input

CATEGORY = CATEGORY_ROOT + "/conditioning"
DEFAULT_WIDTH, DEFAULT_HEIGHT, DEFAULT_FRAMES = 832, 480, 121


def first_image(image) -> torch.Tensor:
    """The first frame of an IMAGE batch ``[N, H, W, C]`` (0..1) as ``[H, W, 3]``."""
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[-1] not in (3, 4) or image.shape[0] < 1:
        shape = list(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"image must be an IMAGE batch [N, H, W, 3] with at least one image, got {shape}")
    return image[0, ..., :3].float().cpu()


def encode_condition(vae_handle, image, *, width: int, height: int, frames: int):
    """:func:`cosmos3.sampling.conditioning.encode_image_condition` with the VAE loaded through ComfyUI."""
    geometry = Geometry(frames, height, width)
    if frames < 2:
        raise ValueError(f"image conditioning needs a video: frames must be 4k+1 with k >= 1 (5, 9, …), got {frames}")
    picture = first_image(image)
    return _with_vae(vae_handle, height, width, lambda vae, progress: encode_image_condition(
        vae, picture, geometry, progress=progress))


def encode_video(vae_handle, video, *, width: int, height: int, frames: int, condition_frames: int, keep: str):
    """:func:`cosmos3.sampling.conditioning.encode_video_condition` (latent frames ``0 .. condition_frames-1``)
    with the VAE loaded through ComfyUI."""
    check_choice("keep", keep, VIDEO_KEEP)
    geometry = Geometry(frames, height, width)
    if frames < 2:
        raise ValueError(f"video conditioning needs a video: frames must be 4k+1 with k >= 1 (5, 9, …), got {frames}")
    latent_frames = geometry.latent_frames
    if isinstance(condition_frames, bool) or not isinstance(condition_frames, int) or not (
        1 <= condition_frames < latent_frames
    ):
        raise ValueError(
            f"condition_frames must be from 1 to {latent_frames - 1} for {frames} frames ({latent_frames} latent "
            f"frames; at least one must be left to generate), got {condition_frames!r}"
        )
    if not isinstance(video, torch.Tensor) or video.ndim != 4 or video.shape[-1] not in (3, 4) or video.shape[0] < 1:
        shape = list(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
        raise ValueError(f"video must be an IMAGE batch of frames [N, H, W, 3], got {shape}")
    clip = video[..., :3].float().cpu()
    return _with_vae(vae_handle, height, width, lambda vae, progress: encode_video_condition(
        vae, clip, geometry, condition_frames=range(condition_frames), keep=keep, progress=progress))


def _with_vae(vae_handle, height: int, width: int, encode):
    """``encode(vae, progress)`` with the VAE loaded on ComfyUI's VAE device (moved back afterwards)."""
    patcher = vae_handle.patcher
    bar = _comfy.progress_bar(1)

    def progress(done: int, total: int) -> None:
        _comfy.throw_if_interrupted()
        bar.update_absolute(done, total)

    need = vae_tiling.estimate_bytes(vae_handle.vae, "encode", height // 16, width // 16)
    _comfy.load_models([patcher], memory_required=need, force_full_load=True)
    try:
        return encode(vae_handle.vae, progress)
    finally:
        _comfy.offload_models([patcher])


class ImageCondition(io.ComfyNode):
    """Image-to-video: resizes the image to cover width x height (antialiased) and centre-crops it, encodes it with the
    Wan 2.2 VAE and gives the sampler the clean first latent frame and its mask. Connect the output to the Sampler's
    image_cond; link width/height/frames from the Empty Latent node."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(cls, "C3MoTImageCondition", "Image Condition", CATEGORY, inputs=[
            vae_input(),
            io.Image.Input("image", tooltip="The first frame of the video (e.g. from LoadImage); only the first "
                           "image of a batch is used."),
            side_input("width", DEFAULT_WIDTH, "Video width in pixels (link it from Empty Latent's width); the "
                       "image is resized to cover it and centre-cropped."),
            side_input("height", DEFAULT_HEIGHT, "Video height in pixels (link it from Empty Latent's height)."),
            frames_input(DEFAULT_FRAMES, "Video frame count, 4k+1 (link it from Empty Latent's frames).",
                         video_only=True),
        ], outputs=[C3MOT_IMAGE_COND.Output(display_name="image_cond", tooltip=(
            "Clean first-frame latent and mask for the Sampler's image_cond input."))])

    @classmethod
    def execute(cls, vae, image, width, height, frames) -> io.NodeOutput:
        return io.NodeOutput(encode_condition(vae, image, width=width, height=height, frames=frames))


NODES = [ImageCondition]
