"""ComfyUI nodes for the Cosmos3 guardrails: loader, prompt check, frame check.

Thin adapters over :mod:`guardrails`; ComfyUI is touched only through :mod:`._comfy`.
Weights live under ``models/cosmos3_guardrail/`` (registered here with an explicit extension set).
"""

from __future__ import annotations

from pathlib import Path

import torch

from .. import guardrails
from . import _comfy
from ._comfy import io
from .common import C3MOT_GUARDRAIL, CATEGORY_ROOT, check_choice, node_schema

FOLDER_KEY = "cosmos3_guardrail"
FOLDER_EXTENSIONS = set(_comfy.SAFETENSORS_EXTENSIONS)
CATEGORY = CATEGORY_ROOT + "/guardrails"

DEFAULT_RELEASE = "Cosmos-Guardrail1"
DEFAULT_QWEN3GUARD = "Qwen3Guard-Gen-0.6B"
DEFAULT_SIGLIP = "siglip-so400m-patch14-384"
BLOCKLIST_CHOICES = ["release", "release+builtin", "builtin", "off"]
ON_BLOCK_CHOICES = ["error", "black_frames"]
DEVICE_CHOICES = ["auto", "cpu"]
CONTROVERSIAL_CHOICES = ["allow", "block"]
# Rough peak GPU memory a check needs (weights + activations); ComfyUI is asked to free this much first.
_TEXT_GPU_BYTES = 3 * 1024**3
_FRAME_GPU_BYTES = 6 * 1024**3


def _register() -> None:
    _comfy.register_model_folder(FOLDER_KEY, FOLDER_KEY, FOLDER_EXTENSIONS)


_register()


def _roots() -> list[Path]:
    _register()
    return [Path(p) for p in _comfy.model_folder_paths(FOLDER_KEY)]


def _subfolders(predicate) -> list[str]:
    names: list[str] = []
    for root in _roots():
        if not root.is_dir():
            continue
        for child in sorted(root.iterdir()):
            if child.is_dir() and not child.name.startswith(".") and predicate(child) and child.name not in names:
                names.append(child.name)
    return names


def _is_release(path: Path) -> bool:
    return (path / "blocklist").is_dir() or (path / "face_blur_filter").is_dir()


def _is_model(path: Path) -> bool:
    return (path / "config.json").is_file()


def _resolve(name: str) -> Path:
    """Absolute folder for a choice: the first root holding it, else where it should be created."""
    roots = _roots()
    for root in roots:
        if (root / name).is_dir():
            return root / name
    base = roots[0] if roots else Path("models") / FOLDER_KEY
    return base / name


def _with_default(default: str, found: list[str]) -> list[str]:
    return [default] + [n for n in found if n != default]


def release_choices() -> list[str]:
    return _with_default(DEFAULT_RELEASE, _subfolders(_is_release))


# "on" requires a Qwen3Guard* folder (the shipped default: the judge is part of NVIDIA's recipe, so running
# without it must be chosen, with "auto" or "off"); "auto" uses it when present and warns when it is not.
LLM_JUDGE_DEFAULT = "on"


def llm_choices() -> list[str]:
    return ["auto", "off", "on"] + _subfolders(_is_model)


def siglip_choices() -> list[str]:
    return _with_default(DEFAULT_SIGLIP, _subfolders(_is_model))


def _auto_qwen3guard() -> Path:
    found = [n for n in _subfolders(_is_model) if n.lower().startswith("qwen3guard")]
    if not found:
        return _resolve(DEFAULT_QWEN3GUARD)  # absent: "auto" reports where it would be picked up
    name = DEFAULT_QWEN3GUARD if DEFAULT_QWEN3GUARD in found else found[0]
    return _resolve(name)


class GuardrailLoader(io.ComfyNode):
    """Configures the Cosmos3 safety guardrails (keyword blocklist, Qwen3Guard prompt judge, face pixelation, optional
    content classifier) from models/cosmos3_guardrail/. Fails with one error listing every missing file of the
    enabled checks."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(cls, "C3MoTGuardrailLoader", "Guardrail Loader", CATEGORY, inputs=[
            io.Combo.Input("release_folder", options=release_choices(), default=DEFAULT_RELEASE, tooltip=(
                "Folder under models/cosmos3_guardrail/ holding NVIDIA's guardrail release "
                "(nvidia/Cosmos-Guardrail1: blocklist/, face_blur_filter/, video_content_safety_filter/).")),
            io.Combo.Input("blocklist", options=BLOCKLIST_CHOICES, default="release", tooltip=(
                "Keyword lists: 'release' = every file in blocklist/custom/ (NVIDIA's lists and your own); "
                "'release+builtin' adds better_profanity's list; 'builtin' = better_profanity's list (plus "
                "blocklist/custom/ if present); 'off' disables the keyword check.")),
            io.Combo.Input("llm_judge", options=llm_choices(), default=LLM_JUDGE_DEFAULT, tooltip=(
                "Qwen3Guard prompt judge (catches what keyword lists miss, e.g. non-English prompts): 'on' "
                "requires a Qwen3Guard* folder under models/cosmos3_guardrail/ (fails with a setup error when "
                "there is none); 'auto' uses it when present and otherwise runs without it, with a warning on "
                "the node, in the reports and as a toast; a folder name requires that folder; 'off' disables "
                "it.")),
            io.Combo.Input("controversial", options=CONTROVERSIAL_CHOICES, default="allow",
                           tooltip="What to do when Qwen3Guard labels a prompt 'Controversial' (upstream: allow)."),
            io.Boolean.Input("face_blur", default=True, tooltip=(
                "Pixelate faces found by RetinaFace in every generated frame "
                "(needs face_blur_filter/retinaface_resnet50.safetensors).")),
            io.Boolean.Input("content_filter", default=False, tooltip=(
                "Per-frame SigLIP content classifier; off by default as in NVIDIA's release (many false "
                "positives). Needs video_content_safety_filter/safety_filter.safetensors and a SigLIP folder.")),
            io.Combo.Input("siglip_folder", options=siglip_choices(), default=DEFAULT_SIGLIP, tooltip=(
                "SigLIP model folder under models/cosmos3_guardrail/ (only used with content_filter).")),
            io.Combo.Input("device", options=DEVICE_CHOICES, default="auto", tooltip=(
                "Where the guard models run: 'auto' = ComfyUI's GPU when there is one, else the CPU.")),
            io.Boolean.Input("keep_on_device", default=False, tooltip=(
                "Keep the guard models on the GPU between checks (faster, holds ~1.5 GB VRAM); off moves them "
                "back to the CPU after each check.")),
        ], outputs=[
            C3MOT_GUARDRAIL.Output(display_name="guardrail", tooltip=(
                "The configured guardrail; connect it to the Prompt Check and Frame Check nodes.")),
            io.String.Output(display_name="setup", tooltip="Which checks are on, and why the others are off."),
        ])

    @classmethod
    def execute(cls, release_folder, blocklist, llm_judge, controversial, face_blur, content_filter, siglip_folder,
                device, keep_on_device) -> io.NodeOutput:
        if llm_judge == "off":
            mode, qdir = "off", None
        elif llm_judge in ("auto", "on"):
            mode, qdir = llm_judge, _auto_qwen3guard()
        else:
            mode, qdir = "on", _resolve(llm_judge)
        config = guardrails.GuardrailConfig(
            assets_dir=_resolve(release_folder),
            blocklist=blocklist,
            qwen3guard=mode,
            qwen3guard_dir=qdir,
            block_controversial=controversial == "block",
            face_blur=bool(face_blur),
            content_filter=bool(content_filter),
            siglip_dir=_resolve(siglip_folder),
            device=str(_comfy.torch_device()) if device == "auto" else "cpu",
            keep_on_device=bool(keep_on_device),
        )
        try:
            guardrail = guardrails.Guardrail.from_config(config)
        except guardrails.GuardrailSetupError as exc:
            if llm_judge == "on" and any(p.startswith("Qwen3Guard") for p in exc.problems):
                raise guardrails.GuardrailSetupError(exc.problems + [JUDGE_REQUIRED_HINT]) from None
            raise
        _comfy.warn_user(guardrail.weakened)
        return io.NodeOutput(guardrail, guardrail.describe())


JUDGE_REQUIRED_HINT = (
    "llm_judge is 'on' (the default): the Qwen3Guard prompt judge is part of NVIDIA's guardrail recipe. Install "
    "it as above, or choose llm_judge 'auto' or 'off' in the Guardrail Loader to run without it (prompts are then "
    "checked by the keyword blocklist only; non-English prompts are effectively unchecked)"
)
_REPORT_TOOLTIP = "Which checks ran and what they found (and any warning that the checks are weaker than asked)."


def _guardrail_input() -> io.Input:
    return C3MOT_GUARDRAIL.Input("guardrail", tooltip="From the Guardrail Loader.")


class GuardrailPromptCheck(io.ComfyNode):
    """Checks the prompt before text encoding. Passes it through when safe; otherwise stops the workflow with an error
    naming the check that blocked. An enabled check that cannot run blocks too."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(cls, "C3MoTGuardrailPromptCheck", "Guardrail Prompt Check", CATEGORY, inputs=[
            _guardrail_input(),
            io.String.Input("prompt", multiline=True, default="", tooltip=(
                "The prompt as typed by the user (checked before any templating).")),
            io.String.Input("negative_prompt", multiline=True, default="", optional=True, tooltip=(
                "Negative prompt; passed through, and checked only when check_negative is on.")),
            io.Boolean.Input("check_negative", default=False, optional=True, tooltip=(
                "Also check the negative prompt (off by default: negatives routinely list unwanted content "
                "such as 'gore, nudity').")),
        ], outputs=[
            io.String.Output(display_name="prompt", tooltip=(
                "The prompt, unchanged, once it passed; connect it to the Cosmos3 text encode node.")),
            io.String.Output(display_name="negative_prompt", tooltip="The negative prompt, unchanged."),
            io.String.Output(display_name="report", tooltip=_REPORT_TOOLTIP),
        ])

    @classmethod
    def execute(cls, guardrail, prompt, negative_prompt="", check_negative=False) -> io.NodeOutput:
        if getattr(guardrail, "llm_judge", None) is not None:
            _comfy.free_memory(_TEXT_GPU_BYTES, guardrail.llm_judge.device)
        reports = guardrail.check_prompt(prompt, negative_prompt, bool(check_negative))
        text = "\n".join(r.text() for r in reports)
        if not all(r.safe for r in reports):
            raise guardrails.GuardrailBlocked(reports)
        _comfy.warn_user(getattr(guardrail, "weakened", []))
        return io.NodeOutput(prompt, negative_prompt, text)


class GuardrailFrameCheck(io.ComfyNode):
    """Checks decoded frames (IMAGE [N,H,W,3]) after VAE decode: optional content classifier, then face pixelation.
    Blocked frames never leave the node: it either raises or outputs black frames."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(cls, "C3MoTGuardrailFrameCheck", "Guardrail Frame Check", CATEGORY, inputs=[
            _guardrail_input(),
            io.Image.Input("images", tooltip="Decoded frames [N,H,W,3], values 0..1 (video frames or one image)."),
            io.Combo.Input("on_block", options=ON_BLOCK_CHOICES, default="error", tooltip=(
                "'error' stops the workflow with the report; 'black_frames' outputs black frames of the same "
                "size and is_safe = False (for queues that must not abort).")),
        ], outputs=[
            io.Image.Output(display_name="images", tooltip=(
                "The frames with faces pixelated (or black frames when blocked with on_block = black_frames).")),
            io.Boolean.Output(display_name="is_safe", tooltip=(
                "False when the frames were blocked (only reachable with on_block = black_frames).")),
            io.String.Output(display_name="report", tooltip=_REPORT_TOOLTIP),
        ])

    @classmethod
    def execute(cls, guardrail, images, on_block) -> io.NodeOutput:
        check_choice("on_block", on_block, ON_BLOCK_CHOICES)
        total = int(images.shape[0]) if isinstance(images, torch.Tensor) and images.ndim == 4 else 0
        bar = _comfy.progress_bar(max(total, 1))
        if getattr(guardrail, "face_blur", None) is not None and guardrail.config is not None:
            _comfy.free_memory(_FRAME_GPU_BYTES, torch.device(guardrail.config.device))

        def on_batch(done: int, total: int) -> None:
            _comfy.throw_if_interrupted()
            bar.update_absolute(done, total)

        out, report = guardrail.check_images(images, on_batch=on_batch)
        device = _comfy.intermediate_device()
        if out is not None:
            return io.NodeOutput(out.to(device), True, report.text())
        if on_block == "error":
            raise guardrails.GuardrailBlocked(report)
        black = torch.zeros(tuple(images.shape), dtype=torch.float32, device=device)
        note = "\n  note: output replaced by black frames (on_block = black_frames)"
        return io.NodeOutput(black, False, report.text() + note)


NODES = [GuardrailLoader, GuardrailPromptCheck, GuardrailFrameCheck]
