"""LoRA loader for both towers: ``C3MOT_MODEL`` + a LoRA file -> ``C3MOT_MODEL`` (+ core ``MODEL``).

The file is parsed by :mod:`cosmos3.model.lora` (diffusers or cosmos-framework names, ``lora_A/lora_B`` or
``lora_down/lora_up`` + alpha; unknown keys -> one error). Generation-tower updates become weight patches on a
clone of the generation-tower ``ModelPatcher`` (keys ``diffusion_model.<name>``, what core
``LoraLoaderModelOnly`` also patches), text-tower updates patches on a clone of the text-tower patcher; ComfyUI
merges them when it loads a tower and restores the weights when another clone is loaded. A text-tower change
gives the model a new ``text_weights`` tag: Text Encode records the tag in its K/V, and both samplers refuse
K/V whose tag differs from the model's, so K/V of other text weights are never reused. Strength 0 adds no
patch (the output is bitwise the model's).
"""

from __future__ import annotations

import dataclasses

from ..cosmos3.model.lora import LoraUpdate, parse_lora, read_lora_file
from . import _comfy, core_model
from ._comfy import io
from .common import C3MOT_MODEL, CATEGORY_ROOT, node_schema

CATEGORY = CATEGORY_ROOT + "/loaders"
LORA_KEY = "loras"  # core folder key: models/loras
MAX_STRENGTH = 100.0


DEFAULT_LORA = "cosmos3_lora.safetensors"  # shown when models/loras is empty (loading it names the folders)


def lora_choices() -> list[str]:
    return _comfy.list_model_files(LORA_KEY) or [DEFAULT_LORA]


def _patches(updates: list[LoraUpdate], tower: str, prefix: str) -> dict:
    """ComfyUI weight patches (``comfy.lora.load_lora`` adapters) for ``tower``'s updates, keyed by the
    patcher's state-dict names (``prefix`` + the name inside the tower)."""
    lora, key_map = {}, {}
    for update in updates:
        if update.tower != tower:
            continue
        stem = update.target[: -len(".weight")]
        lora[f"{stem}.lora_up.weight"] = update.up
        lora[f"{stem}.lora_down.weight"] = update.down
        if update.alpha is not None:
            lora[f"{stem}.alpha"] = core_tensor(update.alpha)
        key_map[stem] = prefix + update.target[len(tower) + 1:]
    return _comfy.load_lora_patches(lora, key_map) if lora else {}


def core_tensor(value: float):
    import torch

    return torch.tensor(float(value))


def apply_lora(model, lora_path, strength_generation: float, strength_text: float, name: str | None = None):
    """A new Cosmos3 model (cloned patchers) with the file's updates at the given strengths."""
    for label, value in (("strength_generation", strength_generation), ("strength_text", strength_text)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not -MAX_STRENGTH <= value <= MAX_STRENGTH:
            raise ValueError(f"{label} must be a number from {-MAX_STRENGTH:g} to {MAX_STRENGTH:g}, got {value!r}")
    name = name or str(lora_path)
    updates = parse_lora(read_lora_file(lora_path), model.transformer, source=name)
    gen, text, tag = model.gen_patcher, model.text_patcher, model.text_weights
    if strength_generation != 0:
        patches = _patches(updates, "gen_tower", "diffusion_model.")
        if patches:
            gen = gen.clone()
            gen.add_patches(patches, float(strength_generation))
    if strength_text != 0:
        patches = _patches(updates, "text_tower", "")
        if patches:
            text = text.clone()
            text.add_patches(patches, float(strength_text))
            tag = f"{tag}+{name}@{float(strength_text):g}"
    if tag != model.text_weights:
        if gen is model.gen_patcher:
            gen = gen.clone()
        gen.model_options.setdefault("transformer_options", {})[core_model.TEXT_WEIGHTS_OPTION] = tag
    counts = {t: sum(u.tower == t for u in updates) for t in ("gen_tower", "text_tower")}
    return dataclasses.replace(model, gen_patcher=gen, text_patcher=text, text_weights=tag), counts


class LoraLoader(io.ComfyNode):
    """Applies a LoRA (.safetensors from models/loras) to a Cosmos3 model: generation-tower updates with
    strength_generation, text-tower updates with strength_text (the Text Encode then computes new K/V). Accepts
    diffusers and original cosmos-framework module names, lora_A/lora_B or lora_down/lora_up (+alpha) keys;
    keys that match no Cosmos3 weight are an error. Also outputs the result as a core MODEL."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        strength = dict(default=1.0, min=-MAX_STRENGTH, max=MAX_STRENGTH, step=0.01)
        return node_schema(cls, "C3MoTLoraLoader", "LoRA Loader", CATEGORY, inputs=[
            C3MOT_MODEL.Input("model", tooltip="From the Cosmos3 MoT Model Loader (or another LoRA Loader)."),
            io.Combo.Input("lora_name", options=lora_choices(), tooltip=(
                "A .safetensors LoRA in models/loras (only safetensors files are listed and loaded).")),
            io.Float.Input("strength_generation", tooltip=(
                "Strength of the generation-tower updates (0 = leave that tower unchanged)."), **strength),
            io.Float.Input("strength_text", tooltip=(
                "Strength of the text-tower updates (0 = unchanged; otherwise the Text Encode re-encodes)."),
                **strength),
        ], outputs=[
            C3MOT_MODEL.Output(display_name="model", tooltip=(
                "The model with the LoRA; connect it to the Text Encode and the Sampler.")),
            io.Model.Output(display_name="MODEL", tooltip=(
                "The generation tower with the LoRA as a core MODEL (for core KSampler with this model's Text "
                "Encode CONDITIONING).")),
        ])

    @classmethod
    def execute(cls, model, lora_name, strength_generation, strength_text) -> io.NodeOutput:
        path = _comfy.model_file_path(LORA_KEY, lora_name)
        new, _ = apply_lora(model, path, strength_generation, strength_text, name=lora_name)
        return io.NodeOutput(new, new.gen_patcher)


NODES = [LoraLoader]
