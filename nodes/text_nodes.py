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

from ..cosmos3.geometry import Geometry
from ..cosmos3.text.encoding import encode_prompt
from ..cosmos3.text.prompt_checks import check_prompt_text
from . import _comfy
from ._comfy import io
from .common import C3MOT_MODEL, C3MOT_TEXT, CATEGORY_ROOT, check_choice, frames_input, node_schema, side_input
from .model_nodes import settle_on_device

log = logging.getLogger("cosmos3_mot")

CATEGORY = CATEGORY_ROOT + "/conditioning"
PROMPT_STYLES = ("framework", "diffusers")
SYSTEM_PROMPT_CHOICES = ("auto", "on", "off")
DEFAULT_WIDTH, DEFAULT_HEIGHT, DEFAULT_FRAMES = 832, 480, 121
DEFAULT_FPS = 24.0
MIN_FPS, MAX_FPS = 1.0, 120.0
EMPTY_PROMPT_HINT = (
    "type it in Text Encode's prompt box or connect a STRING (a bypassed Guardrail Prompt Check node passes "
    "nothing); switch allow_empty on to generate from an empty prompt on purpose"
)


def _use_system_prompt(choice: str, style: str, model) -> bool | None:
    """``auto``: framework style -> none (as trained); diffusers style -> the checkpoint's model_index flag."""
    check_choice("use_system_prompt", choice, SYSTEM_PROMPT_CHOICES)
    if choice == "on":
        return True
    if choice == "off":
        return False
    return model.info.default_use_system_prompt if style == "diffusers" else None


def encode_text(model, prompt: str, negative_prompt: str, *, prompt_style: str = "framework",
                use_system_prompt: str = "auto", width: int, height: int, frames: int, fps: float = DEFAULT_FPS,
                allow_empty: bool = False):
    """Run the text tower (loaded through ComfyUI) once per prompt; the caches end on the intermediate device.
    An empty prompt is refused unless ``allow_empty`` (it is almost always a wiring mistake)."""
    check_prompt_text(prompt, allow_empty=bool(allow_empty), where=EMPTY_PROMPT_HINT)
    check_choice("prompt_style", prompt_style, PROMPT_STYLES)
    if not isinstance(fps, (int, float)) or isinstance(fps, bool) or not MIN_FPS <= float(fps) <= MAX_FPS:
        raise ValueError(f"fps must be a number from {MIN_FPS:g} to {MAX_FPS:g}, got {fps!r}")
    geometry = Geometry(frames, height, width, float(fps))
    system = _use_system_prompt(use_system_prompt, prompt_style, model)
    negative = negative_prompt if negative_prompt and negative_prompt.strip() else None  # empty -> mode default
    _comfy.load_models([model.text_patcher])
    settle_on_device(model.text_patcher)
    encoded = encode_prompt(
        model.transformer, model.tokenizer, prompt, negative, geometry=geometry, prompt_style=prompt_style,
        use_system_prompt=system, with_negative=True, offload_device=_comfy.intermediate_device(),
        allow_empty_prompt=bool(allow_empty),
    )
    log.info(
        "[Cosmos3 MoT] encoded %s prompt (%d tokens) and negative (%d tokens) for %dx%d, %d frame(s) @ %g fps; "
        "cache %.1f MB", encoded.mode, encoded.cond.text_len, encoded.uncond.text_len, width, height, frames,
        float(fps), encoded.nbytes / 1e6,
    )
    return encoded


class TextEncode(io.ComfyNode):
    """Encodes the prompt and the negative prompt with the Cosmos3 text tower once and caches the result (K/V per
    layer, on the CPU), so re-running with another seed skips the text tower. The templates announce duration and
    resolution to the model: link width/height/frames from the Empty Latent node. frames = 1 encodes for an image."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(cls, "C3MoTTextEncode", "Text Encode", CATEGORY, inputs=[
            C3MOT_MODEL.Input("model", tooltip="From the Cosmos3 MoT Model Loader."),
            io.String.Input("prompt", default="", multiline=True, dynamic_prompts=False, tooltip=(
                "What to generate. Plain text, or a JSON object in Cosmos3's structured caption format (its "
                "metadata fields are filled in). Link it from the Guardrail Prompt Check to check it first.")),
            io.String.Input("negative_prompt", default="", multiline=True, dynamic_prompts=False, tooltip=(
                "What to steer away from (used when cfg > 1). Leave empty for the default: a built-in "
                "structured description of video artifacts for videos, none for images.")),
            io.Combo.Input("prompt_style", options=list(PROMPT_STYLES), default="framework", tooltip=(
                "'framework' = exactly as the checkpoints were trained (NVIDIA cosmos-framework: metadata "
                "sentences, negative with the same metadata); 'diffusers' = diffusers' Cosmos3OmniPipeline "
                "templates (inverse metadata on the negative).")),
            io.Combo.Input("use_system_prompt", options=list(SYSTEM_PROMPT_CHOICES), default="auto", tooltip=(
                "Prepend the Cosmos3 system prompt: 'auto' = off for the framework style (as trained), the "
                "checkpoint's default for the diffusers style.")),
            side_input("width", DEFAULT_WIDTH, "Width in pixels the prompt announces; must equal the sampler's "
                       "(link it from Empty Latent's width)."),
            side_input("height", DEFAULT_HEIGHT, "Height in pixels the prompt announces; must equal the "
                       "sampler's (link it from Empty Latent's height)."),
            frames_input(DEFAULT_FRAMES, "Frame count the prompt announces (1 = image, else 4k+1); must equal "
                         "the sampler's (link it from Empty Latent's frames)."),
            io.Float.Input("fps", default=DEFAULT_FPS, min=MIN_FPS, max=MAX_FPS, step=1.0, tooltip=(
                "Frame rate of the video (announced in the prompt and used by the model's positions; "
                "recommended 10 to 30). Ignored for images. Link the 'fps' output to CreateVideo.")),
            io.Boolean.Input("allow_empty", default=False, optional=True, tooltip=(
                "Generate even when the prompt is empty or only spaces. Off: an empty prompt stops the workflow "
                "(usually a bypassed or disconnected node upstream).")),
        ], outputs=[
            C3MOT_TEXT.Output(display_name="text", tooltip=(
                "Cached text K/V of the prompt and the negative prompt, with the frames/size/fps they were "
                "encoded for; connect it to the Sampler.")),
            io.Float.Output(display_name="fps", tooltip="The frame rate used, for CreateVideo's fps."),
        ])

    @classmethod
    def execute(cls, model, prompt, negative_prompt, prompt_style, use_system_prompt, width, height, frames,
                fps, allow_empty=False) -> io.NodeOutput:
        encoded = encode_text(model, prompt, negative_prompt, prompt_style=prompt_style,
                              use_system_prompt=use_system_prompt, width=width, height=height, frames=frames, fps=fps,
                              allow_empty=allow_empty)
        return io.NodeOutput(encoded, float(fps))


NODES = [TextEncode]
