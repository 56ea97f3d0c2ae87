"""Prompt nodes: the offline Prompt Upsampler (a local instruct LLM writes the structured JSON prompt) and the
Structured Prompt builder (fields -> JSON, no LLM). Both output a STRING for Text Encode's prompt (or the
Guardrail Prompt Check first: it checks whatever text it is given, so it can check the upsampled caption).

Upsampler models are transformers folders under ``models/LLM`` (the folder most ComfyUI LLM/VLM packs use)
or ``models/text_encoders``. The model is wrapped in a ComfyUI ``ModelPatcher``: ComfyUI loads it on its
text-encoder device, may evict it under memory pressure, and the ``after`` choice offloads it (default),
keeps it loaded or frees it after each run.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..cosmos3.text import structured_prompt as sp
from ..cosmos3.text import upsampler as up
from . import _comfy
from ._comfy import io
from .common import CATEGORY_ROOT, MAX_SEED, check_choice, frames_input, node_schema, side_input
from .text_nodes import DEFAULT_FPS, DEFAULT_FRAMES, DEFAULT_HEIGHT, DEFAULT_WIDTH, MAX_FPS, MIN_FPS

log = logging.getLogger("cosmos3_mot")

CATEGORY = CATEGORY_ROOT + "/conditioning"
LLM_FOLDER_KEYS = ("LLM", "text_encoders")
# Always offered (like the guardrail loader's default), so example workflows hold a valid choice; Qwen3-VL-8B is
# the Nano backbone, loads with transformers and looks at the i2v image.
DEFAULT_LLM = "LLM/Qwen3-VL-8B-Instruct"
AFTER_CHOICES = ("offload", "keep", "unload")
_GPU_MARGIN = 1024**3  # activations + K/V of a few thousand tokens

_loaded: dict[str, tuple[up.PromptUpsampler, object]] = {}  # one upsampler at a time: {folder: (it, patcher)}


def _register() -> None:
    _comfy.register_model_folder("LLM", "LLM", set(_comfy.SAFETENSORS_EXTENSIONS))


def _is_llm_folder(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors")) and (
        (path / "tokenizer.json").is_file() or (path / "tokenizer.model").is_file() or (path / "vocab.json").is_file())


def llm_folders() -> dict[str, Path]:
    """``{"LLM/<name>" or "text_encoders/<name>": path}`` of the loadable-looking model folders."""
    _register()
    found: dict[str, Path] = {}
    for key in LLM_FOLDER_KEYS:
        for name, path in _comfy.list_model_folders([key], _is_llm_folder).items():
            found.setdefault(f"{key}/{name}", path)
    return found


def llm_choices() -> list[str]:
    return [DEFAULT_LLM] + [name for name in llm_folders() if name != DEFAULT_LLM]


class _Holder(torch.nn.Module):
    """Gives ComfyUI a module it may assign ``.device`` on (transformers models make it read-only)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.llm = model


def _upsampler(choice: str) -> tuple[up.PromptUpsampler, object]:
    folders = llm_folders()
    if choice not in folders:
        roots = ", ".join(p for k in LLM_FOLDER_KEYS for p in _comfy.model_folder_paths(k)) or "models/LLM"
        raise FileNotFoundError(f"upsampler model {choice!r} not found; put a transformers instruct model folder "
                                f"(e.g. Qwen/Qwen3-VL-8B-Instruct, a Cosmos3 *-Reasoner or a Qwen3 Instruct) in one "
                                f"of: {roots}")
    key = str(folders[choice])
    if key not in _loaded:
        for _, patcher in _loaded.values():
            _comfy.offload_models([patcher])
        _loaded.clear()
        device, offload = _comfy.text_encoder_device(), _comfy.text_encoder_offload_device()
        dtype = torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
        upsampler = up.load_upsampler(folders[choice], device=offload, dtype=dtype)
        _loaded[key] = (upsampler, _comfy.model_patcher(_Holder(upsampler.model), device, offload))
    return _loaded[key]


def release(after: str) -> None:
    """Apply the ``after`` choice to the loaded upsampler."""
    check_choice("after", after, AFTER_CHOICES)
    if after == "keep":
        return
    for key, (_, patcher) in list(_loaded.items()):
        _comfy.offload_models([patcher])
        if after == "unload":
            del _loaded[key]
    if after == "unload":
        _comfy.soft_empty_cache()


class PromptUpsampler(io.ComfyNode):
    """Expands a short prompt into the structured JSON caption Cosmos3 was trained on, with a local instruct model
    (Cosmos3 Reasoner, Qwen3-VL or Qwen3 folder in models/LLM), offline. Greedy decoding: same inputs, same
    caption. An unusable answer falls back to {"temporal_caption": prompt} and says so in the report."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(cls, "C3MoTPromptUpsampler", "Prompt Upsampler", CATEGORY, inputs=[
            io.Combo.Input("model_folder", options=llm_choices(), default=DEFAULT_LLM, tooltip=(
                "A transformers instruct model folder under models/LLM or models/text_encoders: NVIDIA's "
                "Cosmos3 *-Reasoner, a Qwen3-VL Instruct (can look at the i2v image) or a Qwen3 Instruct. "
                "Safetensors only; nothing is downloaded.")),
            io.String.Input("prompt", default="", multiline=True, dynamic_prompts=False,
                            tooltip="The short prompt to expand."),
            io.Combo.Input("mode", options=list(sp.UPSAMPLE_MODES), default="t2v", tooltip=(
                "t2v / i2v (connect the first-frame image) / t2i (image caption fields).")),
            side_input("width", DEFAULT_WIDTH, "Width of the clip (link it from Empty Latent)."),
            side_input("height", DEFAULT_HEIGHT, "Height of the clip (link it from Empty Latent)."),
            frames_input(DEFAULT_FRAMES, "Frame count of the clip (sets the timeline's duration)."),
            io.Float.Input("fps", default=DEFAULT_FPS, min=MIN_FPS, max=MAX_FPS, step=1.0,
                           tooltip="Frame rate of the clip (sets the timeline's duration)."),
            io.Int.Input("seed", default=0, min=0, max=MAX_SEED, step=1, control_after_generate=False, tooltip=(
                "Sampling seed; only used when temperature > 0 (greedy decoding ignores it).")),
            io.Int.Input("max_new_tokens", default=up.DEFAULT_MAX_NEW_TOKENS, min=64, max=up.MAX_NEW_TOKENS_LIMIT,
                         step=64, tooltip=(
                             "Longest answer in tokens; a cut-off answer is repaired or falls back.")),
            io.Float.Input("temperature", default=0.0, min=0.0, max=2.0, step=0.05, tooltip=(
                "0 = greedy (deterministic, as NVIDIA's native upsampler); above 0 samples with the seed.")),
            io.Combo.Input("after", options=list(AFTER_CHOICES), default="offload", tooltip=(
                "After the run: 'offload' moves the model to RAM, 'keep' leaves it on the GPU (ComfyUI may "
                "still evict it), 'unload' frees it.")),
            io.Image.Input("image", optional=True, tooltip="First frame for mode i2v (shown to VL models)."),
            io.String.Input("audio_description", default="", multiline=True, optional=True, tooltip=(
                "Sound checkpoints: the soundtrack you want; kept verbatim in the caption.")),
        ], outputs=[
            io.String.Output(display_name="prompt", tooltip="The structured JSON prompt for Text Encode."),
            io.String.Output(display_name="report", tooltip="Fields written, repairs and warnings."),
        ])

    @classmethod
    def execute(cls, model_folder, prompt, mode, width, height, frames, fps, seed, max_new_tokens, temperature,
                after, image=None, audio_description="") -> io.NodeOutput:
        check_choice("mode", mode, sp.UPSAMPLE_MODES)
        check_choice("after", after, AFTER_CHOICES)
        upsampler, patcher = _upsampler(model_folder)
        _comfy.load_models([patcher], memory_required=_GPU_MARGIN, force_full_load=True)
        try:
            result = upsampler.upsample(
                prompt, mode, width=width, height=height, frames=frames, fps=fps, image=image,
                audio_description=audio_description or None, seed=seed, max_new_tokens=max_new_tokens,
                temperature=temperature)
        finally:
            release(after)
        log.info("[Cosmos3 MoT] prompt upsampler (%s, %s): %d fields%s", upsampler.name, mode, len(result.fields),
                 " (FALLBACK)" if result.fallback else "")
        return io.NodeOutput(result.text, f"model: {model_folder}\n" + result.report())


def _lines(text: str) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def _actions(text: str) -> list[dict[str, str]]:
    """``0:00-0:02: the ball rolls`` per line -> ``{"time", "description"}`` (no time -> description only)."""
    out = []
    for line in _lines(text):
        head, sep, rest = line.partition(": ")
        if sep and head and head[0].isdigit() and ":" in head:
            out.append({"time": head.strip(), "description": rest.strip()})
        else:
            out.append({"description": line})
    return out


class StructuredPrompt(io.ComfyNode):
    """Builds a structured JSON prompt from fields, without an LLM (one subject / action per line; 'extra_json'
    merges any other schema fields). Empty fields are left out."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        def text(name, tooltip):
            return io.String.Input(name, default="", multiline=True, dynamic_prompts=False, tooltip=tooltip)

        return node_schema(cls, "C3MoTStructuredPrompt", "Structured Prompt", CATEGORY, inputs=[
            io.Combo.Input("mode", options=["video", "image"], default="video",
                           tooltip="video: caption -> temporal_caption; image: caption -> comprehensive_t2i_caption."),
            text("caption", "The main description (for video: what happens over time, ideally with M:SS times)."),
            text("subjects", "One subject description per line."),
            text("background_setting", "The setting / environment."),
            text("lighting", "Lighting conditions."),
            text("camera", "Camera: motion for video, framing for images."),
            text("style", "Style and medium (e.g. 'photoreal live-action', 'cel-shaded animation')."),
            text("actions", "Video: one action per line, optionally timed: '0:00-0:02: the ball starts rolling'."),
            text("audio_description", "Video: the soundtrack (sound checkpoints)."),
            text("extra_json", "Optional JSON object with more schema fields (merged last, overrides)."),
        ], outputs=[io.String.Output(display_name="prompt", tooltip="The JSON prompt for Text Encode.")])

    @classmethod
    def execute(cls, mode, caption, subjects, background_setting, lighting, camera, style, actions,
                audio_description, extra_json) -> io.NodeOutput:
        check_choice("mode", mode, ["video", "image"])
        video = mode == "video"
        fields = {
            ("temporal_caption" if video else "comprehensive_t2i_caption"): caption,
            "subjects": [{"description": s} for s in _lines(subjects)],
            "background_setting": background_setting,
            "lighting": {"conditions": lighting.strip()} if lighting.strip() else None,
            "cinematography": {("camera_motion" if video else "framing"): camera.strip()} if camera.strip() else None,
            "style_medium": style,
        }
        if video:
            fields.update(actions=_actions(actions), audio_description=audio_description)
        elif _lines(actions) or audio_description.strip():
            raise ValueError("actions and audio_description are video fields; leave them empty in image mode")
        if extra_json.strip():
            extra = sp.parse_answer(extra_json)[0]
            if extra is None:
                raise ValueError("extra_json must be a JSON object, e.g. {\"context\": \"...\"}")
            fields.update(extra)
        return io.NodeOutput(sp.build_structured_prompt("t2v" if video else "t2i", **fields))


NODES = [PromptUpsampler, StructuredPrompt]
