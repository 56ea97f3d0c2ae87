"""The Model Loader with GGUF files (listed from models/unet and models/diffusion_models) and int8/int4 storage,
against the ComfyUI stub on the tiny demo checkpoint."""

from __future__ import annotations

import sys

import pytest
import torch

pytest.importorskip("cosmos3.vae.model")
gguf = pytest.importorskip("gguf")
from tiny_models import CHECKPOINT_CHOICE, install_cosmos3_checkpoint, install_vae  # noqa: E402

from cosmos3.convert import convert  # noqa: E402

TOKENIZER = f"{CHECKPOINT_CHOICE}/text_tokenizer"


@pytest.fixture
def nodes(comfy_pack, comfy_stub):
    install_cosmos3_checkpoint(comfy_stub.models_dir)
    install_vae(comfy_stub.models_dir)
    return sys.modules[f"{comfy_pack.__name__}.nodes.model_nodes"]


def test_gguf_files_are_listed_and_load(nodes, comfy_stub):
    models = comfy_stub.models_dir
    source = models / "cosmos3" / "Cosmos3-Nano" / "transformer"
    (models / "unet").mkdir(exist_ok=True)
    convert(source, models / "unet" / "c3_q8.gguf", "gguf", "Q8_0")
    (models / "diffusion_models").mkdir(exist_ok=True)
    convert(source, models / "diffusion_models" / "c3_bf16.gguf", "gguf", "BF16")
    writer = gguf.GGUFWriter(str(models / "unet" / "llama.gguf"), "llama")  # another architecture: not listed
    writer.add_tensor("x", torch.zeros(4).numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    (models / "unet" / "broken.gguf").write_bytes(b"GGUF")  # unreadable: not listed
    options = nodes.ModelLoader.INPUT_TYPES()["required"]["checkpoint"][1]["options"]
    assert "c3_q8.gguf" in options and "c3_bf16.gguf" in options
    assert "llama.gguf" not in options and "broken.gguf" not in options
    model, info = nodes.ModelLoader.execute("c3_q8.gguf", "fp32", TOKENIZER)[:2]
    quantised = [m for m in model.transformer.modules() if type(m).__name__ == "QuantLinear"]  # the pack's class
    assert quantised and {m.fmt for m in quantised} == {"Q8_0"}
    assert model.info.name == "c3_q8" and "c3_q8.gguf" in info
    with pytest.raises(FileNotFoundError, match="no tokenizer"):
        nodes.ModelLoader.execute("c3_bf16.gguf", "fp32", "auto")


@pytest.mark.parametrize("storage", ["int8", "int4", "int4_g64"])
def test_int_storage_choices(nodes, storage):
    model = nodes.ModelLoader.execute(CHECKPOINT_CHOICE, "fp32", "auto", storage)[0]
    layer = model.transformer.gen_tower.layers[0]
    assert type(layer.add_q_proj).__name__ == "QuantLinear" and layer.add_q_proj.fmt == storage.split("_")[0]
    assert layer.norm_added_q.weight.dtype == torch.float32
