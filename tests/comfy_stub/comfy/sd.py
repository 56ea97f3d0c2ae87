"""Stand-in for ``comfy.sd.load_lora_for_models`` (the model half: what ``LoraLoaderModelOnly`` calls)."""

from __future__ import annotations

import logging

import comfy.lora


def load_lora_for_models(model, clip, lora, strength_model, strength_clip):
    key_map = comfy.lora.model_lora_keys_unet(model.model, {}) if model is not None else {}
    loaded = comfy.lora.load_lora(lora, key_map)
    new_modelpatcher = None
    if model is not None:
        new_modelpatcher = model.clone()
        k = set(new_modelpatcher.add_patches(loaded, strength_model))
        for x in loaded:
            if x not in k:
                logging.warning("NOT LOADED %s", x)
    return (new_modelpatcher, None)
