"""Prompt formatting for Cosmos3 generation (pure strings; tokenization lives in :mod:`cosmos3.text.tokenizer`).

Two styles:

``framework`` (default; what the checkpoints were trained with, NVIDIA cosmos-framework inference):

* no system prompt;
* a prompt that parses as a JSON **object** gets metadata fields set on it and is re-serialized with
  ``json.dumps`` (default separators, ASCII escapes): video → ``duration`` ``"<int(frames/fps)>s"``,
  ``fps`` (float), then ``resolution`` ``{"H": h, "W": w}`` and ``aspect_ratio`` (bucket such as
  ``"16,9"``); an image drops ``duration``/``fps``. Existing keys are overwritten in place (dict update
  keeps their position), new ones are appended in that order;
* any other prompt is stripped and gets prose sentences, each joined as ``text.rstrip(".") + ". " + s``:
  video ``"The video is {frames/fps:.1f} seconds long and is of {fps:.0f} FPS."`` then
  ``"This video is of {H}x{W} resolution."``; image only ``"This image is of {H}x{W} resolution."``;
* negative prompt, mode ``same`` (default): the same prose sentences are appended (JSON negatives are
  treated as plain text), then leading dots and whitespace are stripped — so an empty negative becomes
  just the metadata sentences. ``None`` selects the default: our structured negative
  (:data:`DEFAULT_VIDEO_NEGATIVE`, serialized with ``json.dumps``) for video and ``""`` for images.
  Mode ``inverse`` appends the "is not" sentences (always both, as the framework does, even for images);
  mode ``none`` uses the negative unchanged.

``diffusers`` (``Cosmos3OmniPipeline.tokenize_prompt``): system prompt on by default (mode-specific
strings, including the training-time "give"); the prose sentences are appended to every prompt (JSON
too) with ``base.rstrip(".")`` and no stripping of whitespace; the negative (``None`` → ``""``) gets the
inverse sentences.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..errors import Cosmos3Error
from ..geometry import Geometry, detect_aspect_ratio

PROMPT_STYLES = ("framework", "diffusers")
NEGATIVE_METADATA_MODES = ("same", "inverse", "none")

# Interface facts: the strings the checkpoints were trained with.
SYSTEM_PROMPT_VIDEO = "You are a helpful assistant who will generate videos from a give prompt."
SYSTEM_PROMPT_IMAGE = "You are a helpful assistant who will generate images from a give prompt."
DURATION_TEMPLATE = "The video is {duration:.1f} seconds long and is of {fps:.0f} FPS."
VIDEO_RESOLUTION_TEMPLATE = "This video is of {height}x{width} resolution."
IMAGE_RESOLUTION_TEMPLATE = "This image is of {height}x{width} resolution."
INVERSE_DURATION_TEMPLATE = "The video is not {duration:.1f} seconds long and is not of {fps:.0f} FPS."
INVERSE_VIDEO_RESOLUTION_TEMPLATE = "This video is not of {height}x{width} resolution."
INVERSE_IMAGE_RESOLUTION_TEMPLATE = "This image is not of {height}x{width} resolution."

# Our own default negative prompt for video, laid out like the structured captions the model was trained on
# (the schema's keys), describing the failure modes we want guidance to steer away from.
DEFAULT_VIDEO_NEGATIVE: dict[str, Any] = {
    "subjects": [
        {
            "description": "Smeared, half-formed figures whose outlines waver and whose proportions look wrong.",
            "appearance_details": "Waxy or plastic-looking surfaces, mottled blotches, repeated texture tiles, "
            "colors leaking across edges and details that dissolve into noise.",
            "relationship": "Figures pasted onto the scene, hovering above the ground or sliding through "
            "other objects.",
            "pose": "Broken joints, limbs bending the wrong way, bodies twisted into impossible positions.",
            "action": "Jerky, stuttering motion that freezes, skips or reverses without reason.",
            "state_changes": "Faces, clothing and objects that morph, swap identity or melt from frame to frame.",
            "expression": "Frozen, lifeless or grotesquely distorted faces with mismatched eyes.",
            "facial_features": "Asymmetric, sliding or duplicated eyes, noses and mouths; garbled teeth.",
            "number_of_arms": 3,
            "number_of_legs": 3,
        }
    ],
    "background_setting": "A muddled, incoherent environment whose geometry bends and shifts between frames, "
    "with warped straight lines, repeating patches and objects that pop in and out of existence.",
    "lighting": {
        "conditions": "Harsh, flat or muddy light with crushed blacks and clipped, blown-out highlights.",
        "direction": "Light that comes from nowhere and changes direction between frames.",
        "shadows": "Missing, doubled or detached shadows that disagree with the light sources.",
        "illumination_effect": "Flickering brightness, pulsing exposure and strobing color casts.",
    },
    "aesthetics": {
        "composition": "Cluttered, lopsided framing with subjects cut off awkwardly at the edges.",
        "color_scheme": "Oversaturated or washed-out colors, banding, heavy color noise and unnatural tints.",
        "mood_atmosphere": "Cheap, artificial and unsettling.",
        "patterns": "Compression blocks, moire, ringing halos and grid-like artifacts.",
    },
    "cinematography": {
        "camera_motion": "Shaky, wobbling or jittering camera, sudden lurches and unmotivated zooms.",
        "framing": "Unstable framing that drifts and crops the action.",
        "camera_angle": "Inconsistent perspective that jumps between viewpoints without a cut.",
        "depth_of_field": "Focus that hunts and breathes; everything soft or blurred.",
        "focus": "Out of focus, smeared by motion blur and ghosting trails.",
        "lens_focal_length": "Warped, fisheye-like distortion at the frame edges.",
    },
    "style_medium": "Low-resolution, heavily compressed video with visible artifacts.",
    "artistic_style": "Amateurish, glitchy, uncanny rendering.",
    "context": "Watermarks, logos, captions, borders, letterboxing and on-screen interface elements.",
    "actions": [
        {
            "time": "throughout",
            "description": "Motion that does not follow through: objects teleport, actions repeat in loops or "
            "stop halfway, and contacts between bodies and objects have no effect.",
        }
    ],
    "text_and_signage_elements": [
        {"text": "garbled, misspelled, warping letters", "description": "Illegible text that changes every frame."}
    ],
    "transitions": [{"type": "jump cut", "description": "Abrupt cuts, flashes and frame skips breaking continuity."}],
    "temporal_caption": "The clip lacks temporal coherence: shapes, colors and identities drift over time, "
    "frames flicker, and the scene resets or jumps instead of evolving smoothly.",
    "audio_description": "",
    "physical_realism": "Physics is violated: objects float or fall the wrong way, pass through each other, "
    "change size or mass, liquids and cloth behave like rigid solids, and reflections do not match the scene.",
}


def default_video_negative_prompt() -> str:
    """Our default structured negative prompt for video, serialized as the framework serializes JSON."""
    return json.dumps(DEFAULT_VIDEO_NEGATIVE)


class PromptError(Cosmos3Error):
    """Invalid prompt-formatting arguments."""


@dataclass(frozen=True)
class FormattedPrompts:
    """The texts fed to the chat template, with the system prompt (``None`` when absent)."""

    text: str
    negative_text: str
    system_prompt: str | None
    style: str
    prompt_is_json: bool


def parse_json_object(prompt: str) -> dict[str, Any] | None:
    """The parsed object iff ``prompt`` is a JSON object (arrays, strings, numbers… count as plain text)."""
    try:
        obj = json.loads(prompt)
    except (json.JSONDecodeError, TypeError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def _framework_prose(
    text: str,
    *,
    num_frames: int,
    fps: float,
    height: int,
    width: int,
    duration_template: str | None,
    resolution_template: str | None,
    force_duration: bool = False,
) -> str:
    text = text.strip()
    if duration_template is not None and (num_frames > 1 or force_duration):
        text = text.rstrip(".") + ". " + duration_template.format(duration=num_frames / fps, fps=fps)
    text = text.strip()
    if resolution_template is not None:
        text = text.rstrip(".") + ". " + resolution_template.format(height=height, width=width)
    return text


def inject_json_metadata(
    obj: dict[str, Any], *, num_frames: int, fps: float, height: int, width: int, aspect_ratio: str | None
) -> str:
    """Set duration/fps (video only; removed for images), resolution and aspect_ratio on a JSON prompt."""
    obj = dict(obj)
    metadata: dict[str, Any] = {}
    if num_frames > 1:
        metadata["duration"] = f"{int(num_frames / fps)}s"
        metadata["fps"] = float(fps)
    else:
        obj.pop("duration", None)
        obj.pop("fps", None)
    metadata["resolution"] = {"H": int(height), "W": int(width)}
    if aspect_ratio is not None:
        metadata["aspect_ratio"] = aspect_ratio
    obj.update(metadata)
    return json.dumps(obj)


def _diffusers_append(base: str, addition: str) -> str:
    base = base.rstrip(".")
    return f"{base}. {addition}" if base else addition


def format_prompts(
    prompt: str,
    negative_prompt: str | None = None,
    *,
    geometry: Geometry,
    style: str = "framework",
    aspect_ratio: str | None = None,
    negative_metadata: str | None = None,
    use_system_prompt: bool | None = None,
    add_duration: bool = True,
    add_resolution: bool = True,
) -> FormattedPrompts:
    """Apply the style's metadata rules to a prompt and its negative (see the module docstring).

    ``geometry``: the clip the prompt announces (frames, size, fps). ``aspect_ratio`` (framework JSON
    prompts) defaults to the bucket closest to ``width/height``.
    ``negative_metadata`` defaults to ``same`` (framework); the diffusers style only has ``inverse``.
    ``use_system_prompt`` defaults to False (framework) / True (diffusers). ``add_duration`` /
    ``add_resolution`` switch off the prose sentences (framework JSON injection is unaffected).
    """
    if style not in PROMPT_STYLES:
        raise PromptError(f"unknown prompt style {style!r}; allowed: {', '.join(PROMPT_STYLES)}")
    if not isinstance(prompt, str):
        raise PromptError(f"prompt must be a string, got {type(prompt).__name__}")
    if negative_prompt is not None and not isinstance(negative_prompt, str):
        raise PromptError(f"negative_prompt must be a string or None, got {type(negative_prompt).__name__}")
    num_frames, height, width, fps = geometry.frames, geometry.height, geometry.width, geometry.fps
    is_image = geometry.is_image
    if style == "diffusers":
        return _format_diffusers(
            prompt, negative_prompt, geometry, negative_metadata=negative_metadata,
            use_system_prompt=use_system_prompt, add_duration=add_duration, add_resolution=add_resolution,
        )

    mode = "same" if negative_metadata is None else negative_metadata
    if mode not in NEGATIVE_METADATA_MODES:
        raise PromptError(f"unknown negative_metadata {mode!r}; allowed: {', '.join(NEGATIVE_METADATA_MODES)}")
    duration_t = DURATION_TEMPLATE if add_duration else None
    resolution_t = (IMAGE_RESOLUTION_TEMPLATE if is_image else VIDEO_RESOLUTION_TEMPLATE) if add_resolution else None
    common = dict(num_frames=num_frames, fps=fps, height=height, width=width)

    obj = parse_json_object(prompt)
    if obj is not None:
        ratio = aspect_ratio if aspect_ratio is not None else detect_aspect_ratio(width, height)
        text = inject_json_metadata(obj, aspect_ratio=ratio, **common)
    else:
        text = _framework_prose(prompt, duration_template=duration_t, resolution_template=resolution_t, **common)

    if negative_prompt is None:
        negative_prompt = "" if is_image else default_video_negative_prompt()
    if mode == "same":
        negative = (
            _framework_prose(negative_prompt, duration_template=duration_t, resolution_template=resolution_t, **common)
            .lstrip(".")
            .strip()
        )
    elif mode == "inverse":
        # the framework's inverse templates are the video sentences for every mode, duration forced on
        negative = (
            _framework_prose(
                negative_prompt,
                duration_template=INVERSE_DURATION_TEMPLATE if add_duration else None,
                resolution_template=INVERSE_VIDEO_RESOLUTION_TEMPLATE if add_resolution else None,
                force_duration=True,
                **common,
            )
            .lstrip(".")
            .strip()
        )
    else:
        negative = negative_prompt
    system = (SYSTEM_PROMPT_IMAGE if is_image else SYSTEM_PROMPT_VIDEO) if use_system_prompt else None
    return FormattedPrompts(text, negative, system, "framework", obj is not None)


def _format_diffusers(
    prompt: str,
    negative_prompt: str | None,
    geometry: Geometry,
    *,
    negative_metadata: str | None,
    use_system_prompt: bool | None,
    add_duration: bool,
    add_resolution: bool,
) -> FormattedPrompts:
    if negative_metadata not in (None, "inverse"):
        raise PromptError(f"the diffusers style only supports negative_metadata 'inverse', got {negative_metadata!r}")
    num_frames, height, width, fps = geometry.frames, geometry.height, geometry.width, geometry.fps
    is_image = geometry.is_image

    def apply(text: str, negative: bool) -> str:
        if not is_image and add_duration:
            template = INVERSE_DURATION_TEMPLATE if negative else DURATION_TEMPLATE
            text = _diffusers_append(text, template.format(duration=num_frames / fps, fps=fps))
        if add_resolution:
            if is_image:
                template = INVERSE_IMAGE_RESOLUTION_TEMPLATE if negative else IMAGE_RESOLUTION_TEMPLATE
            else:
                template = INVERSE_VIDEO_RESOLUTION_TEMPLATE if negative else VIDEO_RESOLUTION_TEMPLATE
            text = _diffusers_append(text, template.format(height=height, width=width))
        return text

    use_system = True if use_system_prompt is None else bool(use_system_prompt)
    system = (SYSTEM_PROMPT_IMAGE if is_image else SYSTEM_PROMPT_VIDEO) if use_system else None
    text = apply(prompt, False)
    negative = apply("" if negative_prompt is None else negative_prompt, True)
    return FormattedPrompts(text, negative, system, "diffusers", parse_json_object(prompt) is not None)
