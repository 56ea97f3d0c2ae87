"""Tiny model files laid out like a ComfyUI install, shared by the stub tests and the real-server test.

:func:`install_fixtures` writes everything a test workflow may reference into a ``models/`` dir (and
test images into an ``input/`` dir) and returns a :class:`Fixtures` record whose ``names`` map the
placeholder names used in shipped workflows (``wan2.2_vae.safetensors`` …) to what was installed, so
workflows can be rewritten to the fixtures (:func:`rewrite_names`).

To add a model kind (e.g. the tiny Cosmos3 checkpoint), write an ``install_<kind>(models_dir)`` function
that returns ``{placeholder: installed name}`` and append it to :data:`INSTALLERS`.

Shipped workflows use real sizes (832x480, 121 frames, 35 steps …) and guardrail checks that need NVIDIA's
files; :data:`REWRITERS` (applied by :func:`rewrite_names`) scale them down to what the tiny fixtures can
run in seconds on a CPU.
"""

from __future__ import annotations

import functools
import json
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tiny_vae
import torch

# A Wan 2.2-architecture VAE at the smallest widths that still work (≈1M parameters).
TINY_VAE_CONFIG = dict(
    tiny_vae.diffusers_tiny_config(3, base_dim=8, decoder_base_dim=8), _class_name="AutoencoderKLWan"
)
VAE_FILE = "wan2.2_vae.safetensors"
TEST_IMAGE = "c3mot_test.png"


@functools.lru_cache(maxsize=1)
def tiny_vae_state() -> dict[str, torch.Tensor]:
    """Weights of the tiny VAE in the diffusers layout (built with cosmos3's own module; no diffusers import)."""
    from cosmos3.vae.config import WanVAEConfig
    from cosmos3.vae.model import WanVAE

    model = WanVAE(WanVAEConfig.from_diffusers(TINY_VAE_CONFIG))
    tiny_vae.randomize_(model, seed=3)
    return {k: v.detach().contiguous() for k, v in model.state_dict().items()}


def write_vae_folder(folder: Path, state: Mapping[str, torch.Tensor] | None = None) -> Path:
    """A diffusers ``AutoencoderKLWan`` folder (config.json + diffusion_pytorch_model.safetensors)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(dict(state or tiny_vae_state()), str(folder / "diffusion_pytorch_model.safetensors"))
    (folder / "config.json").write_text(json.dumps(TINY_VAE_CONFIG))
    return folder


def write_vae_file(path: Path, state: Mapping[str, torch.Tensor] | None = None) -> Path:
    """A single file with original Wan 2.2 key names (like ComfyUI's wan2.2_vae.safetensors) + config.json
    beside it (the tiny widths are not the Wan 2.2 defaults)."""
    return tiny_vae.write_original_layout_file(Path(path), dict(state or tiny_vae_state()), config=TINY_VAE_CONFIG)


def install_vae(models_dir: Path) -> dict[str, str]:
    """models/vae/wan2.2_vae.safetensors (tiny, original layout)."""
    write_vae_file(Path(models_dir) / "vae" / VAE_FILE)
    return {VAE_FILE: VAE_FILE}


def write_test_image(input_dir: Path, name: str = TEST_IMAGE, width: int = 32, height: int = 32, seed: int = 0) -> Path:
    """A smooth RGB test picture (PNG) in ComfyUI's input dir."""
    from PIL import Image

    gen = torch.Generator().manual_seed(seed)
    ys = torch.linspace(0, 1, height).view(height, 1, 1)
    xs = torch.linspace(0, 1, width).view(1, width, 1)
    rgb = torch.rand(1, 1, 3, generator=gen)
    pixels = ((0.5 * ys + 0.5 * xs) * rgb + 0.2 * torch.rand(height, width, 3, generator=gen)).clamp(0, 1)
    path = Path(input_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((pixels * 255).round().to(torch.uint8).numpy()).save(path)
    return path


# The tiny random Cosmos3 checkpoint (cosmos3.demo: runtime dependencies only, so it also loads in ComfyUI's
# venv), installed under the name the shipped workflows use.
CHECKPOINT_FOLDER = "Cosmos3-Nano"
CHECKPOINT_CHOICE = "cosmos3/" + CHECKPOINT_FOLDER
_demo_root: tempfile.TemporaryDirectory | None = None


def demo_checkpoint() -> Path:
    """A tiny Cosmos3 checkpoint folder built once per process (removed at exit); copy it, do not modify it."""
    global _demo_root
    if _demo_root is None:
        from cosmos3.demo import build_demo_checkpoint

        _demo_root = tempfile.TemporaryDirectory(prefix="c3mot_demo_checkpoint_")
        build_demo_checkpoint(Path(_demo_root.name) / CHECKPOINT_FOLDER)
    return Path(_demo_root.name) / CHECKPOINT_FOLDER


def install_cosmos3_checkpoint(models_dir: Path) -> dict[str, str]:
    """models/cosmos3/Cosmos3-Nano/ (tiny demo checkpoint: transformer/, vae/, text_tokenizer/, scheduler/)."""
    target = Path(models_dir) / "cosmos3" / CHECKPOINT_FOLDER
    if not target.exists():
        shutil.copytree(demo_checkpoint(), target)
    return {CHECKPOINT_CHOICE: CHECKPOINT_CHOICE}


LORA_PLACEHOLDER = "cosmos3_lora.safetensors"  # the name the shipped LoRA workflow uses
LORA_FILE = "cosmos3_tiny_lora.safetensors"


def install_lora(models_dir: Path) -> dict[str, str]:
    """models/loras/cosmos3_tiny_lora.safetensors (and the workflow's placeholder name): a random rank-2 LoRA
    for the tiny checkpoint (diffusers names, lora_A/lora_B) on one generation-tower and one text-tower projection."""
    from safetensors.torch import save_file

    from cosmos3.demo import DEMO_TRANSFORMER
    from cosmos3.model.config import TransformerConfig
    from cosmos3.model.transformer import Cosmos3Transformer

    model = Cosmos3Transformer(TransformerConfig.from_dict(dict(DEMO_TRANSFORMER)), device="meta")
    shapes = {name: p.shape for name, p in model.named_parameters()}
    gen = torch.Generator().manual_seed(4)
    state = {}
    for module, weight in (("transformer.layers.0.self_attn.add_q_proj", "gen_tower.layers.0.add_q_proj.weight"),
                           ("transformer.layers.0.self_attn.to_k", "text_tower.layers.0.to_k.weight")):
        out_features, in_features = shapes[weight]
        state[f"{module}.lora_B.weight"] = torch.randn(out_features, 2, generator=gen) * 0.1
        state[f"{module}.lora_A.weight"] = torch.randn(2, in_features, generator=gen) * 0.1
    path = Path(models_dir) / "loras" / LORA_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    # ... and under the shipped workflow's placeholder name, as a user who put their LoRA there has it (the
    # frontend checks a LoRA combo's value against the installed files; a missing file is reported, rightly)
    save_file(state, str(path.with_name(LORA_PLACEHOLDER)))
    return {LORA_PLACEHOLDER: LORA_FILE}


INSTALLERS: list[Callable[[Path], dict[str, str]]] = [install_vae, install_cosmos3_checkpoint, install_lora]

# Largest sizes the tiny fixtures run with (values are only ever reduced, never enlarged)
TINY_WIDTH, TINY_HEIGHT, TINY_VIDEO_FRAMES, TINY_STEPS = 64, 48, 9, 2
_SIZED_NODES = ("C3MoTEmptyLatent", "C3MoTTextEncode", "C3MoTImageCondition")
# Guardrail checks that need no downloaded files (better_profanity's word list only)
GUARDRAIL_WITHOUT_FILES = {"blocklist": "builtin", "llm_judge": "off", "face_blur": False, "content_filter": False}


def shrink_cosmos3_nodes(prompt: dict) -> None:
    """In place: width/height/frames of our sized nodes reduced to the tiny scale (a literal preset becomes
    'custom'), sampler steps to :data:`TINY_STEPS`, the guardrail loader to checks without files."""
    for node in prompt.values():
        kind, inputs = node.get("class_type"), node.get("inputs", {})
        if kind in _SIZED_NODES:
            if isinstance(inputs.get("preset"), str):
                inputs["preset"] = "custom"
            for key, limit in (("width", TINY_WIDTH), ("height", TINY_HEIGHT)):
                if isinstance(inputs.get(key), int):
                    inputs[key] = min(inputs[key], limit)
            frames = inputs.get("frames")
            if isinstance(frames, int) and frames > 1:
                inputs["frames"] = min(frames, TINY_VIDEO_FRAMES)
        elif kind in ("C3MoTSampler", "KSampler") and isinstance(inputs.get("steps"), int):
            inputs["steps"] = TINY_STEPS if inputs["steps"] == 0 else min(inputs["steps"], TINY_STEPS)
        elif kind == "C3MoTGuardrailLoader":
            inputs.update(GUARDRAIL_WITHOUT_FILES)


REWRITERS: list[Callable[[dict], None]] = [shrink_cosmos3_nodes]


@dataclass
class Fixtures:
    models_dir: Path
    input_dir: Path
    names: dict[str, str] = field(default_factory=dict)  # placeholder in workflows -> installed name


def install_fixtures(models_dir: Path, input_dir: Path) -> Fixtures:
    """Run every installer of :data:`INSTALLERS` and write the test image."""
    names: dict[str, str] = {}
    for installer in INSTALLERS:
        names.update(installer(Path(models_dir)))
    write_test_image(Path(input_dir))
    names.setdefault("example.png", TEST_IMAGE)
    return Fixtures(Path(models_dir), Path(input_dir), names)


def rewrite_names(prompt: Mapping[str, Any], names: Mapping[str, str], input_image: str = TEST_IMAGE) -> dict:
    """A copy of an API prompt with model file names replaced by the installed fixtures, every
    ``LoadImage`` pointed at the test image, and every :data:`REWRITERS` entry applied (Cosmos3 sizes and
    steps reduced to the tiny fixtures' scale; sizes below it are kept as they are)."""
    out = json.loads(json.dumps(prompt))
    for node in out.values():
        inputs = node.get("inputs", {})
        for key, value in list(inputs.items()):
            if isinstance(value, str) and value in names:
                inputs[key] = names[value]
        if node.get("class_type") == "LoadImage":
            inputs["image"] = input_image
    for rewrite in REWRITERS:
        rewrite(out)
    return out
