"""ComfyUI nodes for the Cosmos3 guardrails: loader, prompt check, frame check.

Thin adapters over :mod:`guardrails`; ComfyUI is touched only through :mod:`._comfy`, lazily.
Weights live under ``models/cosmos3_guardrail/`` (registered here with an explicit extension set).
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import _comfy

FOLDER_KEY = "cosmos3_guardrail"
FOLDER_EXTENSIONS = {".safetensors", ".sft"}
GUARDRAIL_TYPE = "C3MOT_GUARDRAIL"
CATEGORY = "Cosmos3 MoT/guardrails"

DEFAULT_RELEASE = "Cosmos-Guardrail1"
DEFAULT_QWEN3GUARD = "Qwen3Guard-Gen-0.6B"
DEFAULT_SIGLIP = "siglip-so400m-patch14-384"
BLOCKLIST_CHOICES = ["release", "release+builtin", "builtin", "off"]
ON_BLOCK_CHOICES = ["error", "black_frames"]
DEVICE_CHOICES = ["auto", "cpu"]
# Rough peak GPU memory a check needs (weights + activations); ComfyUI is asked to free this much first.
_TEXT_GPU_BYTES = 3 * 1024**3
_FRAME_GPU_BYTES = 6 * 1024**3


def _guardrails():
    """The :mod:`guardrails` package that sits next to this pack's ``nodes`` package."""
    from .. import guardrails

    return guardrails


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


def llm_choices() -> list[str]:
    return ["auto", "off"] + _subfolders(_is_model)


def siglip_choices() -> list[str]:
    return _with_default(DEFAULT_SIGLIP, _subfolders(_is_model))


def _auto_qwen3guard() -> Path:
    found = [n for n in _subfolders(_is_model) if n.lower().startswith("qwen3guard")]
    if not found:
        return _resolve(DEFAULT_QWEN3GUARD)  # absent: "auto" reports where it would be picked up
    name = DEFAULT_QWEN3GUARD if DEFAULT_QWEN3GUARD in found else found[0]
    return _resolve(name)


class GuardrailLoader:
    NODE_ID = "C3MoTGuardrailLoader"
    DISPLAY_NAME = "Guardrail Loader"
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = (GUARDRAIL_TYPE, "STRING")
    RETURN_NAMES = ("guardrail", "setup")
    OUTPUT_TOOLTIPS = (
        "The configured guardrail; connect it to the Prompt Check and Frame Check nodes.",
        "Which checks are on, and why the others are off.",
    )
    DESCRIPTION = (
        "Configures the Cosmos3 safety guardrails (keyword blocklist, Qwen3Guard prompt judge, face "
        "pixelation, optional content classifier) from models/cosmos3_guardrail/. Fails with one error "
        "listing every missing file of the enabled checks."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "release_folder": (release_choices(), {
                    "default": DEFAULT_RELEASE,
                    "tooltip": "Folder under models/cosmos3_guardrail/ holding NVIDIA's guardrail release "
                    "(nvidia/Cosmos-Guardrail1: blocklist/, face_blur_filter/, video_content_safety_filter/).",
                }),
                "blocklist": (BLOCKLIST_CHOICES, {
                    "default": "release",
                    "tooltip": "Keyword lists: 'release' = every file in blocklist/custom/ (NVIDIA's lists and "
                    "your own); 'release+builtin' adds better_profanity's list; 'builtin' = better_profanity's "
                    "list (plus blocklist/custom/ if present); 'off' disables the keyword check.",
                }),
                "llm_judge": (llm_choices(), {
                    "default": "auto",
                    "tooltip": "Qwen3Guard prompt judge: 'auto' uses a Qwen3Guard* folder under "
                    "models/cosmos3_guardrail/ when present (reported as off otherwise); a folder name "
                    "requires it (fails if unusable); 'off' disables it.",
                }),
                "controversial": (["allow", "block"], {
                    "default": "allow",
                    "tooltip": "What to do when Qwen3Guard labels a prompt 'Controversial' (upstream: allow).",
                }),
                "face_blur": ("BOOLEAN", {
                    "default": True,
                    "tooltip": "Pixelate faces found by RetinaFace in every generated frame "
                    "(needs face_blur_filter/retinaface_resnet50.safetensors).",
                }),
                "content_filter": ("BOOLEAN", {
                    "default": False,
                    "tooltip": "Per-frame SigLIP content classifier; off by default as in NVIDIA's release "
                    "(many false positives). Needs video_content_safety_filter/safety_filter.safetensors and "
                    "a SigLIP folder.",
                }),
                "siglip_folder": (siglip_choices(), {
                    "default": DEFAULT_SIGLIP,
                    "tooltip": "SigLIP model folder under models/cosmos3_guardrail/ (only used with content_filter).",
                }),
                "device": (DEVICE_CHOICES, {
                    "default": "auto",
                    "tooltip": "Where the guard models run: 'auto' = ComfyUI's GPU when there is one, else the CPU.",
                }),
                "keep_on_device": ("BOOLEAN", {
                    "default": False,
                    "tooltip": "Keep the guard models on the GPU between checks (faster, holds ~1.5 GB VRAM); "
                    "off moves them back to the CPU after each check.",
                }),
            }
        }

    def load(self, release_folder, blocklist, llm_judge, controversial, face_blur, content_filter,
             siglip_folder, device, keep_on_device):
        g = _guardrails()
        if llm_judge == "off":
            mode, qdir = "off", None
        elif llm_judge == "auto":
            mode, qdir = "auto", _auto_qwen3guard()
        else:
            mode, qdir = "on", _resolve(llm_judge)
        config = g.GuardrailConfig(
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
        guardrail = g.Guardrail.from_config(config)
        return (guardrail, guardrail.describe())


class GuardrailPromptCheck:
    NODE_ID = "C3MoTGuardrailPromptCheck"
    DISPLAY_NAME = "Guardrail Prompt Check"
    CATEGORY = CATEGORY
    FUNCTION = "check"
    RETURN_TYPES = ("STRING", "STRING", "STRING")
    RETURN_NAMES = ("prompt", "negative_prompt", "report")
    OUTPUT_TOOLTIPS = (
        "The prompt, unchanged, once it passed; connect it to the Cosmos3 text encode node.",
        "The negative prompt, unchanged.",
        "Which checks ran and what they found.",
    )
    DESCRIPTION = (
        "Checks the prompt before text encoding. Passes it through when safe; otherwise stops the "
        "workflow with an error naming the check that blocked. An enabled check that cannot run blocks too."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "guardrail": (GUARDRAIL_TYPE, {"tooltip": "From the Guardrail Loader."}),
                "prompt": ("STRING", {
                    "multiline": True,
                    "default": "",
                    "tooltip": "The prompt as typed by the user (checked before any templating).",
                }),
            },
            "optional": {
                "negative_prompt": ("STRING", {
                    "multiline": True,
                    "default": "",
                    "tooltip": "Negative prompt; passed through, and checked only when check_negative is on.",
                }),
                "check_negative": ("BOOLEAN", {
                    "default": False,
                    "tooltip": "Also check the negative prompt (off by default: negatives routinely list "
                    "unwanted content such as 'gore, nudity').",
                }),
            },
        }

    def check(self, guardrail, prompt, negative_prompt="", check_negative=False):
        if getattr(guardrail, "llm_judge", None) is not None:
            _comfy.free_memory(_TEXT_GPU_BYTES, guardrail.llm_judge.device)
        reports = guardrail.check_prompt(prompt, negative_prompt, bool(check_negative))
        text = "\n".join(r.text() for r in reports)
        if not all(r.safe for r in reports):
            raise _guardrails().GuardrailBlocked(reports)
        return (prompt, negative_prompt, text)


class GuardrailFrameCheck:
    NODE_ID = "C3MoTGuardrailFrameCheck"
    DISPLAY_NAME = "Guardrail Frame Check"
    CATEGORY = CATEGORY
    FUNCTION = "check"
    RETURN_TYPES = ("IMAGE", "BOOLEAN", "STRING")
    RETURN_NAMES = ("images", "is_safe", "report")
    OUTPUT_TOOLTIPS = (
        "The frames with faces pixelated (or black frames when blocked with on_block = black_frames).",
        "False when the frames were blocked (only reachable with on_block = black_frames).",
        "Which checks ran and what they found.",
    )
    DESCRIPTION = (
        "Checks decoded frames (IMAGE [N,H,W,3]) after VAE decode: optional content classifier, then "
        "face pixelation. Blocked frames never leave the node: it either raises or outputs black frames."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "guardrail": (GUARDRAIL_TYPE, {"tooltip": "From the Guardrail Loader."}),
                "images": ("IMAGE", {"tooltip": "Decoded frames [N,H,W,3], values 0..1 (video frames or one image)."}),
                "on_block": (ON_BLOCK_CHOICES, {
                    "default": "error",
                    "tooltip": "'error' stops the workflow with the report; 'black_frames' outputs black "
                    "frames of the same size and is_safe = False (for queues that must not abort).",
                }),
            }
        }

    def check(self, guardrail, images, on_block):
        if on_block not in ON_BLOCK_CHOICES:
            raise ValueError(f"on_block must be one of {ON_BLOCK_CHOICES}, got {on_block!r}")
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
            return (out.to(device), True, report.text())
        if on_block == "error":
            raise _guardrails().GuardrailBlocked(report)
        black = torch.zeros(tuple(images.shape), dtype=torch.float32, device=device)
        return (black, False, report.text() + "\n  note: output replaced by black frames (on_block = black_frames)")


NODES = [GuardrailLoader, GuardrailPromptCheck, GuardrailFrameCheck]
