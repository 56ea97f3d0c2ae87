"""Text encode: prompt + negative prompt -> the text tower's K/V caches (``C3MOT_TEXT``).

The output is a :class:`cosmos3.text.encoding.EncodedPrompt`: one K/V cache per prompt (positive and
negative), kept on the intermediate device (the CPU) until the sampler moves it, plus the frames / size /
fps the prompt templates announced to the model. ComfyUI caches this node's output while its inputs are
unchanged, so re-queuing with a new seed (or steps, cfg …) never runs the text tower again.

The prompt templates state the clip's duration and resolution, so the encode must use the sampler's
frames and size: link ``width`` / ``height`` / ``frames`` from the Empty Latent node. The sampler refuses
a mismatch with an error naming both values.
"""

from __future__ import annotations

import logging

from . import _comfy
from .model_nodes import settle_on_device
from .spec import C3MOT_MODEL, C3MOT_TEXT, CATEGORY_ROOT, FLOAT, Combo, Float, Int, Node, Output, Socket, String

log = logging.getLogger("cosmos3_mot")

CATEGORY = CATEGORY_ROOT + "/conditioning"
PROMPT_STYLES = ("framework", "diffusers")
SYSTEM_PROMPT_CHOICES = ("auto", "on", "off")
MAX_SIZE = 8192
MAX_FRAMES = 1025
DEFAULT_WIDTH, DEFAULT_HEIGHT, DEFAULT_FRAMES = 832, 480, 121
DEFAULT_FPS = 24.0
MIN_FPS, MAX_FPS = 1.0, 120.0


def _use_system_prompt(choice: str, style: str, model) -> bool | None:
    """``auto``: framework style -> none (as trained); diffusers style -> the checkpoint's model_index flag."""
    if choice not in SYSTEM_PROMPT_CHOICES:
        raise ValueError(f"use_system_prompt must be one of {list(SYSTEM_PROMPT_CHOICES)}, got {choice!r}")
    if choice == "on":
        return True
    if choice == "off":
        return False
    return model.info.default_use_system_prompt if style == "diffusers" else None


def encode_text(model, prompt: str, negative_prompt: str, *, prompt_style: str = "framework",
                use_system_prompt: str = "auto", width: int, height: int, frames: int, fps: float = DEFAULT_FPS):
    """Run the text tower (loaded through ComfyUI) once per prompt; the caches end on the intermediate device."""
    from ..cosmos3.geometry import Geometry
    from ..cosmos3.text.encoding import encode_prompt

    if prompt_style not in PROMPT_STYLES:
        raise ValueError(f"prompt_style must be one of {list(PROMPT_STYLES)}, got {prompt_style!r}")
    if not isinstance(fps, (int, float)) or isinstance(fps, bool) or not MIN_FPS <= float(fps) <= MAX_FPS:
        raise ValueError(f"fps must be a number from {MIN_FPS:g} to {MAX_FPS:g}, got {fps!r}")
    geometry = Geometry(frames, height, width, float(fps))
    system = _use_system_prompt(use_system_prompt, prompt_style, model)
    negative = negative_prompt if negative_prompt and negative_prompt.strip() else None  # empty -> mode default
    _comfy.load_models([model.text_patcher])
    settle_on_device(model.text_patcher)
    encoded = encode_prompt(
        model.transformer, model.tokenizer, prompt, negative, geometry=geometry, prompt_style=prompt_style, use_system_prompt=system, with_negative=True,
        offload_device=_comfy.intermediate_device(),
    )
    log.info(
        "[Cosmos3 MoT] encoded %s prompt (%d tokens) and negative (%d tokens) for %dx%d, %d frame(s) @ %g fps; "
        "cache %.1f MB", encoded.mode, encoded.cond.text_len, encoded.uncond.text_len, width, height, frames,
        float(fps), encoded.nbytes / 1e6,
    )
    return encoded


class TextEncode(Node):
    NODE_ID = "C3MoTTextEncode"
    DISPLAY_NAME = "Text Encode"
    CATEGORY = CATEGORY
    FUNCTION = "encode"
    DESCRIPTION = (
        "Encodes the prompt and the negative prompt with the Cosmos3 text tower once and caches the result "
        "(K/V per layer, on the CPU), so re-running with another seed skips the text tower. The templates "
        "announce duration and resolution to the model: link width/height/frames from the Empty Latent node. "
        "frames = 1 encodes for an image."
    )
    INPUTS = (
        Socket("model", C3MOT_MODEL, "From the Cosmos3 MoT Model Loader."),
        String("prompt", "", "What to generate. Plain text, or a JSON object in Cosmos3's structured caption "
               "format (its metadata fields are filled in). Link it from the Guardrail Prompt Check to check it first.",
               multiline=True, dynamicPrompts=False),
        String("negative_prompt", "", "What to steer away from (used when cfg > 1). Leave empty for the default: "
               "a built-in structured description of video artifacts for videos, none for images.",
               multiline=True, dynamicPrompts=False),
        Combo("prompt_style", PROMPT_STYLES,
              "'framework' = exactly as the checkpoints were trained (NVIDIA cosmos-framework: metadata "
              "sentences, negative with the same metadata); 'diffusers' = diffusers' Cosmos3OmniPipeline "
              "templates (inverse metadata on the negative).", default="framework"),
        Combo("use_system_prompt", SYSTEM_PROMPT_CHOICES,
              "Prepend the Cosmos3 system prompt: 'auto' = off for the framework style (as trained), the "
              "checkpoint's default for the diffusers style.", default="auto"),
        Int("width", DEFAULT_WIDTH, "Width in pixels the prompt announces; must equal the sampler's (link it "
            "from Empty Latent's width).", min=16, max=MAX_SIZE, step=16),
        Int("height", DEFAULT_HEIGHT, "Height in pixels the prompt announces; must equal the sampler's (link it "
            "from Empty Latent's height).", min=16, max=MAX_SIZE, step=16),
        Int("frames", DEFAULT_FRAMES, "Frame count the prompt announces (1 = image, else 4k+1); must equal the "
            "sampler's (link it from Empty Latent's frames).", min=1, max=MAX_FRAMES, step=4),
        Float("fps", DEFAULT_FPS, "Frame rate of the video (announced in the prompt and used by the model's "
              "positions; recommended 10 to 30). Ignored for images. Link the 'fps' output to CreateVideo.",
              min=MIN_FPS, max=MAX_FPS, step=1.0),
    )
    OUTPUTS = (
        Output("text", C3MOT_TEXT, "Cached text K/V of the prompt and the negative prompt, with the frames/size/fps "
               "they were encoded for; connect it to the Sampler."),
        Output("fps", FLOAT, "The frame rate used, for CreateVideo's fps."),
    )

    def encode(self, model, prompt, negative_prompt, prompt_style, use_system_prompt, width, height, frames, fps):
        encoded = encode_text(model, prompt, negative_prompt, prompt_style=prompt_style,
                              use_system_prompt=use_system_prompt, width=width, height=height, frames=frames, fps=fps)
        return (encoded, float(fps))


NODES = [TextEncode]
