"""Stand-in for ``comfy.weight_adapter`` (LoRA only): ``LoRAAdapter(loaded_keys, weights)`` with ``weights =
(up, down, alpha, mid, dora_scale, reshape)`` and ComfyUI's merge ``W + strength * alpha / rank * up @ down``
computed in the intermediate dtype (fp32)."""

from __future__ import annotations

import torch


class WeightAdapterBase:
    name: str
    loaded_keys: set
    weights: tuple


class LoRAAdapter(WeightAdapterBase):
    name = "lora"

    def __init__(self, loaded_keys, weights):
        self.loaded_keys = loaded_keys
        self.weights = weights

    @classmethod
    def load(cls, x, lora, alpha, dora_scale, loaded_keys=None):
        loaded_keys = set() if loaded_keys is None else loaded_keys
        for up_suffix, down_suffix in ((".lora_up.weight", ".lora_down.weight"), (".lora_B.weight", ".lora_A.weight")):
            up, down = f"{x}{up_suffix}", f"{x}{down_suffix}"
            if up in lora:
                loaded_keys.update((up, down))
                return cls(loaded_keys, (lora[up], lora[down], alpha, None, dora_scale, None))
        return None

    def calculate_weight(self, weight, key, strength, strength_model, offset, function,
                         intermediate_dtype=torch.float32, original_weight=None):
        up, down, alpha, _, _, _ = self.weights
        up = up.to(weight.device, intermediate_dtype)
        down = down.to(weight.device, intermediate_dtype)
        scale = alpha / down.shape[0] if alpha is not None else 1.0
        diff = torch.mm(up.flatten(start_dim=1), down.flatten(start_dim=1)).reshape(weight.shape)
        weight += function(((strength * scale) * diff).type(weight.dtype))
        return weight


adapters = [LoRAAdapter]
