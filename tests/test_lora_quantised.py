"""A LoRA cannot be added to quantised (int8 / int4 / GGUF) or fp8 weights: one clear error, never packed data
silently changed."""

from __future__ import annotations

import pytest
import torch
from tiny_transformer import build_reference, save_folder, tiny_config

from cosmos3 import load_transformer
from cosmos3.model.lora import LoraError, parse_lora


@pytest.mark.parametrize("storage", ["int8", "int4", "fp8_e4m3fn"])
def test_lora_refuses_quantised_weights(tmp_path, storage):
    folder = save_folder(build_reference(tiny_config(), seed=5), tmp_path / "ckpt")
    model = load_transformer(folder, dtype=torch.float32, weight_storage=storage)
    out_f, in_f = 192, 128  # layers.0.mlp_moe_gen.up_proj of the tiny config
    state = {
        "transformer.layers.0.mlp_moe_gen.up_proj.lora_A.weight": torch.zeros(4, in_f),
        "transformer.layers.0.mlp_moe_gen.up_proj.lora_B.weight": torch.zeros(out_f, 4),
    }
    with pytest.raises(LoraError) as info:
        parse_lora(state, model, source="x.safetensors")
    message = str(info.value)
    assert "layers.0.mlp_moe_gen.up_proj" in message
    assert ("stored quantised" in message) if storage != "fp8_e4m3fn" else ("stored as fp8" in message)
