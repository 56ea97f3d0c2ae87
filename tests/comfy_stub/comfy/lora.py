"""Stand-in for ``comfy.lora``: the generic key map of a diffusion model (``model_lora_keys_unet``: every
``diffusion_model.*`` state-dict key, as ``diffusion_model.<name>`` and ``lora_unet_<name with _>``),
``load_lora`` (LoRA adapters only) and ``calculate_weight`` (applies a patch list to one weight)."""

from __future__ import annotations

import logging

import torch

from comfy import weight_adapter


def model_lora_keys_unet(model, key_map={}):  # noqa: B006 (ComfyUI's signature)
    for k in model.state_dict().keys():
        if k.startswith("diffusion_model."):
            if k.endswith(".weight"):
                key_lora = k[len("diffusion_model."):-len(".weight")].replace(".", "_")
                key_map[f"lora_unet_{key_lora}"] = k
                key_map[k[:-len(".weight")]] = k
            else:
                key_map[k] = k
    return key_map


def load_lora(lora, to_load, log_missing=True):
    patch_dict = {}
    loaded_keys = set()
    for x in to_load:
        alpha_name = f"{x}.alpha"
        alpha = None
        if alpha_name in lora:
            alpha = lora[alpha_name].item()
            loaded_keys.add(alpha_name)
        for adapter_cls in weight_adapter.adapters:
            adapter = adapter_cls.load(x, lora, alpha, None, loaded_keys)
            if adapter is not None:
                patch_dict[to_load[x]] = adapter
                loaded_keys.update(adapter.loaded_keys)
    if log_missing:
        for x in lora:
            if x not in loaded_keys:
                logging.warning("lora key not loaded: %s", x)
    return patch_dict


def calculate_weight(patches, weight, key, intermediate_dtype=torch.float32, original_weights=None):
    for p in patches:
        strength, v, strength_model, offset, function = p
        if function is None:
            function = lambda a: a  # noqa: E731
        if strength_model != 1.0:
            weight *= strength_model
        if isinstance(v, weight_adapter.WeightAdapterBase):
            weight = v.calculate_weight(weight, key, strength, strength_model, offset, function, intermediate_dtype,
                                        original_weights)
        elif len(v) == 1 or v[0] == "diff":
            diff = v[0] if len(v) == 1 else v[1][0]
            weight += function(strength * diff.to(weight.device, weight.dtype))
        else:
            raise NotImplementedError(f"stub: patch type {v[0]!r}")
    return weight
