"""What the prompt upsampler asks its model: the clip the caption is for, the chat messages (system + user
instructions with the JSON template) and the I2V image prepared for the model. No model here (see
:mod:`cosmos3.text.upsampler`).

Facts carried over from NVIDIA cosmos-framework's native upsampler (V4.2 templates, ``upsample_captions``):
the chat is a system message "You are a helpful assistant." and one user message holding the instructions,
the description, numbered constraints (the clip's duration as ``M:SS``, fps, aspect ratio and resolution)
and the JSON template; for I2V the first frame (resized and centre-cropped to the generation size) comes
before the text in the user message; decoding is greedy; ``<think>`` blocks and code fences are stripped;
the clip's ``duration`` (``"<seconds>s"``) is stamped on the result. Our wording is our own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import Cosmos3Error
from ..geometry import detect_aspect_ratio
from .structured_prompt import check_mode

SYSTEM_MESSAGE = "You are a helpful assistant."


class UpsamplerError(Cosmos3Error):
    """An unusable upsampler folder, input or prompt length."""


@dataclass(frozen=True)
class UpsampleTarget:
    """What the caption is for: ``mode`` (t2v / i2v / t2i) and the clip it will be encoded for."""

    mode: str
    width: int
    height: int
    frames: int = 121
    fps: float = 24.0

    def __post_init__(self) -> None:
        check_mode(self.mode)
        if self.width < 1 or self.height < 1 or self.frames < 1 or not self.fps > 0:
            raise UpsamplerError(f"invalid target size {self.width}x{self.height}, {self.frames} frames @ {self.fps}")

    @property
    def is_video(self) -> bool:
        return self.mode != "t2i"

    @property
    def aspect_ratio(self) -> str:
        return detect_aspect_ratio(self.width, self.height)

    @property
    def seconds(self) -> int:
        return int(self.frames / self.fps)

    def metadata(self) -> dict[str, Any]:
        """The fields stamped on the result (Text Encode re-sets them for the clip it encodes)."""
        meta: dict[str, Any] = {"resolution": {"H": self.height, "W": self.width}, "aspect_ratio": self.aspect_ratio}
        if self.is_video:
            meta.update(duration=f"{self.seconds}s", fps=float(self.fps))
        return meta


def format_duration(seconds: int) -> str:
    """Whole seconds as ``M:SS`` (the upsampler templates' time format)."""
    return f"{seconds // 60}:{seconds % 60:02d}"


_VIDEO_TEMPLATE = {
    "scene_imagination": "short planning notes, one string: the concrete facts, style, camera and timing plan",
    "temporal_caption": "timestamped playback timeline from 0:00 to the duration (e.g. 'At 0:00 ... At 0:02 ...')",
    "audio_description": "dialogue, music, effects and ambience, with M:SS times where they happen",
    "subjects": [{"description": "", "appearance_details": "", "relationship": "", "location": "",
                  "relative_size": "", "orientation": "", "pose": "", "action": "", "state_changes": "",
                  "clothing": "", "expression": "", "gender": "", "age": "", "skin_tone_and_texture": "",
                  "facial_features": "", "number_of_subjects": 1, "number_of_arms": 2, "number_of_legs": 2}],
    "background_setting": "", "lighting": {"conditions": "", "direction": "", "shadows": "", "illumination_effect": ""},
    "aesthetics": {"composition": "", "color_scheme": "", "mood_atmosphere": "", "patterns": ""},
    "cinematography": {"camera_motion": "", "framing": "", "camera_angle": "", "depth_of_field": "", "focus": "",
                       "lens_focal_length": ""},
    "style_medium": "", "artistic_style": "", "context": "",
    "actions": [{"time": "M:SS-M:SS", "description": ""}],
    "text_and_signage_elements": [{"text": "", "category": "", "appearance": "", "spatial_temporal": "",
                                   "context": ""}],
    "segments": [{"segment_index": 0, "time_range": "M:SS-M:SS", "description": "", "key_changes": "",
                  "camera": ""}],
    "transitions": [],
    "resolution": "see constraint 1", "aspect_ratio": "see constraint 1", "duration": "see constraint 1",
    "fps": "see constraint 1",
}
_IMAGE_TEMPLATE = {
    "scene_imagination": "short planning notes, one string: the concrete facts, style and framing",
    "comprehensive_t2i_caption": "one dense paragraph (80-200 words) starting with the subject, merging every "
                                 "visual detail below",
    "subjects": [{"description": "", "appearance_details": "", "relationship": "", "location": "",
                  "relative_size": "", "orientation": "", "pose": "", "clothing": "", "expression": "",
                  "gender": "", "age": "", "skin_tone_and_texture": "", "facial_features": "",
                  "number_of_subjects": 1, "number_of_arms": 2, "number_of_legs": 2, "number_of_hands": 2,
                  "number_of_fingers": 10}],
    "subject_details": {"<attribute>": ""}, "background_setting": "",
    "lighting": {"conditions": "", "direction": "", "shadows": "", "illumination_effect": ""},
    "aesthetics": {"composition": "", "color_scheme": "", "mood_atmosphere": "", "patterns": ""},
    "cinematography": {"framing": "", "camera_angle": "", "depth_of_field": "", "focus": "", "lens_focal_length": ""},
    "style_medium": "", "artistic_style": "", "context": "",
    "text_and_signage_elements": [{"text": "", "category": "", "appearance": "", "spatial": "", "context": ""}],
    "quadrant_scan": {"top_left": "", "top_right": "", "bottom_left": "", "bottom_right": "", "absolute_center": ""},
    "resolution": "see constraint 1", "aspect_ratio": "see constraint 1",
}


def instruction_text(prompt: str, target: UpsampleTarget, audio_description: str | None = None) -> str:
    """The user message: task, description, numbered constraints and the JSON template to fill."""
    video, i2v = target.is_video, target.mode == "i2v"
    kind = "image-to-video" if i2v else ("text-to-video" if video else "text-to-image")
    tag = "video_description" if video else "image_description"
    values = [f'aspect_ratio: "{target.aspect_ratio}"', f'resolution: {{"W": {target.width}, "H": {target.height}}}']
    if video:
        values = [f'duration: "{format_duration(target.seconds)}"', f"fps: {target.fps:g}", *values]
    rules = [
        "Copy these values into the matching keys, unchanged:\n   - " + "\n   - ".join(values),
        "Fill `scene_imagination` first: brief planning notes that every later field agrees with.",
    ]
    if video:
        rules += [
            "Then `temporal_caption`: the clip's visual timeline from 0:00 to the duration, a timestamped beat "
            "wherever something changes (actions, camera, light). No beat, action or segment may end after "
            "the duration. Write times as M:SS, ranges as M:SS-M:SS.",
            "Then `audio_description`: the soundtrack on the same beats (say so briefly if silent).",
        ]
    else:
        rules.append("Then `comprehensive_t2i_caption`: one literal paragraph of 80-200 words that starts with "
                     "the subject (never 'This image shows') and merges every detail of the other fields.")
    if i2v:
        rules.append("The attached image is the first frame. Appearance, setting, lighting and colours come from "
                     "it and must not contradict it; the motion and events come from the description.")
    if audio_description and audio_description.strip() and video:
        rules.append(f"The soundtrack must match: {audio_description.strip()}")
    rules += [
        "Stay faithful to the description: keep every element it names; add only details that fit its "
        "genre and physics (stylised scenes follow their own style).",
        "Use every key of the template once and no other key; empty values are \"\", 0, [] or {}, never null.",
        "Answer with the JSON object only, in one ```json code fence.",
    ]
    numbered = "\n".join(f"{i}. {rule}" for i, rule in enumerate(rules, start=1))
    template = json.dumps(_VIDEO_TEMPLATE if video else _IMAGE_TEMPLATE, indent=2)
    return (
        f"<instructions>\nYou expand a short request into the structured JSON prompt of a {kind} model. Read "
        f"the description, follow the numbered constraints and fill the JSON template.\n</instructions>\n\n"
        f"<{tag}>\n{prompt.strip()}\n</{tag}>\n\n<task_constraints>\n{numbered}\n</task_constraints>\n\n"
        f"<output_json_template>\n{template}\n</output_json_template>"
    )


def build_messages(prompt: str, target: UpsampleTarget, *, with_image: bool = False,
                   audio_description: str | None = None) -> list[dict[str, Any]]:
    """``[system, user]`` chat messages; with an image the user content is ``[image part, text part]`` (the
    image object itself is passed separately, see :meth:`PromptUpsampler.generate_text`)."""
    text = instruction_text(prompt, target, audio_description)
    user: Any = [{"type": "image"}, {"type": "text", "text": text}] if with_image else text
    return [{"role": "system", "content": SYSTEM_MESSAGE}, {"role": "user", "content": user}]


def fit_image(image: Any, width: int, height: int):
    """An image (PIL, or an array/tensor ``[H, W, 3]`` / ``[1, H, W, 3]`` with values 0..1 or 0..255) as an RGB
    PIL image resized to cover ``width x height`` and centre-cropped to it."""
    from PIL import Image, ImageOps

    if not isinstance(image, Image.Image):
        array = image.detach().float().cpu().numpy() if isinstance(image, torch.Tensor) else image
        import numpy as np

        array = np.asarray(array, dtype=np.float32)
        if array.ndim == 4 and array.shape[0] >= 1:
            array = array[0]
        if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
            raise UpsamplerError(f"image must be [H, W, 3] (or a batch [B, H, W, 3]), got shape {list(array.shape)}")
        if array.max(initial=0.0) <= 1.0:
            array = array * 255.0
        array = array[..., :3] if array.shape[-1] != 1 else np.repeat(array, 3, axis=-1)
        image = Image.fromarray(array.clip(0, 255).round().astype("uint8"))
    from ..files.media import pil_to_rgb

    return ImageOps.fit(pil_to_rgb(image), (int(width), int(height)), Image.BICUBIC)
