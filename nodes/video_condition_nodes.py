"""Video Condition node (video-to-video): IMAGE frames -> the clean leading latent frames the reference keeps.

Registered after the nodes saved workflows know (its own module, last in :data:`nodes.registry.NODE_MODULES`);
the encoding is :func:`nodes.conditioning_nodes.encode_video` (the library's ``encode_video_condition`` with the
VAE loaded through ComfyUI). Its output goes to the Sampler's ``image_cond`` input like Image Condition's.
"""

from __future__ import annotations

from ..cosmos3.geometry import MAX_FRAMES, Geometry
from ..cosmos3.sampling.conditioning import VIDEO_KEEP
from ._comfy import io
from .common import C3MOT_IMAGE_COND, frames_input, node_schema, side_input
from .conditioning_nodes import CATEGORY, DEFAULT_FRAMES, DEFAULT_HEIGHT, DEFAULT_WIDTH, encode_video
from .vae_nodes import vae_input


class VideoCondition(io.ComfyNode):
    """Video-to-video: keeps the first (or last) frames of a clip as clean latent frames and generates the rest, e.g.
    to continue a clip from its last frames or re-imagine it from its first. The frames are resized to cover width x
    height and centre-cropped like Image Condition's image, then encoded with the Wan 2.2 VAE. Connect the output to
    the Sampler's image_cond; link width/height/frames from the Empty Latent node."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(cls, "C3MoTVideoCondition", "Video Condition", CATEGORY, inputs=[
            vae_input(),
            io.Image.Input("video", tooltip="The source clip's frames [N, H, W, 3] (e.g. from a video loader or "
                           "LoadImage); a clip shorter than needed is padded with its last frame."),
            side_input("width", DEFAULT_WIDTH, "Video width in pixels (link it from Empty Latent's width); the "
                       "frames are resized to cover it and centre-cropped."),
            side_input("height", DEFAULT_HEIGHT, "Video height in pixels (link it from Empty Latent's height)."),
            frames_input(DEFAULT_FRAMES, "Frame count of the generated video, 4k+1 (link it from Empty Latent's "
                         "frames).", video_only=True),
            io.Int.Input("condition_frames", default=2, min=1, max=geometry_max_latent_frames(), step=1, tooltip=(
                "Latent frames kept from the source (the reference's default is 2): k latent frames = the first "
                "4(k-1)+1 video frames (1 → 1 frame, 2 → 5, 3 → 9); the rest is generated. Must leave at least "
                "one latent frame to generate.")),
            io.Combo.Input("keep", options=list(VIDEO_KEEP), default="first", tooltip=(
                "Which end of the source clip is kept: 'first' re-imagines the clip from its first frames; 'last' "
                "continues it from its last frames (they become the start of the new video).")),
        ], outputs=[C3MOT_IMAGE_COND.Output(display_name="video_cond", tooltip=(
            "Clean leading latent frames and their mask for the Sampler's image_cond input."))])

    @classmethod
    def execute(cls, vae, video, width, height, frames, condition_frames, keep) -> io.NodeOutput:
        return io.NodeOutput(encode_video(vae, video, width=width, height=height, frames=frames,
                                          condition_frames=condition_frames, keep=keep))


def geometry_max_latent_frames() -> int:
    """Latent frames of the longest video (:data:`cosmos3.geometry.MAX_FRAMES`)."""
    return Geometry(MAX_FRAMES, 16, 16).latent_frames


NODES = [VideoCondition]
