"""Text-tower eviction: sampling holds only the generation tower + K/V; the tower returns only for new prompts."""

from __future__ import annotations

import pytest
import torch

from cosmos3.demo import build_demo_checkpoint
from cosmos3.geometry import Geometry
from cosmos3.model.transformer import module_nbytes
from cosmos3.pipeline import Cosmos3Pipeline, text_tower_mode
from cosmos3.runtime.offload import TextTowerResidency, device_weight_bytes
from cosmos3.text.encoding import PromptKVCache

GEN = dict(num_frames=5, height=32, width=48, steps=2, seed=0, guidance_scale=3.0)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return build_demo_checkpoint(tmp_path_factory.mktemp("demo") / "Cosmos3-Demo")


@pytest.fixture(scope="module")
def baseline(checkpoint):
    pipe = Cosmos3Pipeline.from_pretrained(checkpoint, dtype=torch.float32)
    assert pipe.text_residency.mode == "keep" and pipe.prompt_cache is None
    return {p: pipe.generate(p, return_latents=True, **GEN) for p in ("a red ball", "a blue car")}


def test_drop_mode_frees_the_tower_and_reloads_it_only_for_new_prompts(checkpoint, baseline):
    pipe = Cosmos3Pipeline.from_pretrained(checkpoint, dtype=torch.float32, offload_text_tower="drop")
    model, residency = pipe.transformer, pipe.text_residency
    full_bytes = module_nbytes(model)
    seen_during_sampling = []
    original_velocity = model.velocity

    def spy(*args, **kwargs):
        seen_during_sampling.append((model.text_tower is None, module_nbytes(model)))
        return original_velocity(*args, **kwargs)

    model.velocity = spy
    try:
        first = pipe.generate("a red ball", return_latents=True, **GEN)
    finally:
        del model.velocity
    assert torch.equal(first, baseline["a red ball"])
    assert all(dropped for dropped, _ in seen_during_sampling)
    assert max(b for _, b in seen_during_sampling) == module_nbytes(model.gen_tower) < full_bytes
    assert model.text_tower is None and residency.evictions == 1 and residency.loads == 0

    again = pipe.generate("a red ball", return_latents=True, **GEN)  # cond + uncond K/V cached: no reload
    assert torch.equal(again, first)
    assert residency.loads == 0 and pipe.prompt_cache.hits == 2

    other = pipe.generate("a blue car", return_latents=True, **GEN)  # new prompt: reload once, evict again
    assert torch.equal(other, baseline["a blue car"])
    assert residency.loads == 1 and residency.evictions == 2 and model.text_tower is None
    assert pipe.prompt_cache.hits == 3  # the negative prompt was still cached


def test_offload_mode_on_a_cpu_only_machine_keeps_results(checkpoint, baseline):
    pipe = Cosmos3Pipeline.from_pretrained(checkpoint, dtype=torch.float32, offload_text_tower=True)
    assert pipe.text_residency.mode == "offload" and len(pipe.prompt_cache) == 0
    assert torch.equal(pipe.generate("a red ball", return_latents=True, **GEN), baseline["a red ball"])
    assert pipe.transformer.text_tower is not None  # host == device here: nothing to move


def test_modes_and_arguments():
    assert text_tower_mode(False) == "keep" and text_tower_mode(True) == "offload" and text_tower_mode("drop") == "drop"
    with pytest.raises(ValueError, match="offload_text_tower 'gpu' is not supported"):
        text_tower_mode("gpu")
    with pytest.raises(ValueError, match="needs a reload"):
        TextTowerResidency(torch.nn.Module(), "drop")
    with pytest.raises(ValueError, match="allowed: keep, offload, drop"):
        TextTowerResidency(torch.nn.Module(), "evict")
    with pytest.raises(ValueError, match="max_entries"):
        PromptKVCache(0)


def test_prompt_cache_is_lru(checkpoint):
    pipe = Cosmos3Pipeline.from_pretrained(
        checkpoint, dtype=torch.float32, offload_text_tower="offload", prompt_cache=2
    )
    kw = dict(geometry=Geometry(1, 32, 32))
    for text in ("a red ball", "a green cat", "a red ball"):
        pipe.encode_prompt(text, None, with_negative=False, **kw)
    assert len(pipe.prompt_cache) == 2 and pipe.prompt_cache.hits == 1
    pipe.encode_prompt("a blue car", None, with_negative=False, **kw)  # evicts "a green cat"
    pipe.encode_prompt("a green cat", None, with_negative=False, **kw)
    assert pipe.prompt_cache.misses == 4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_offload_mode_moves_the_tower_between_devices(checkpoint):  # pragma: no cover - GPU only
    pipe = Cosmos3Pipeline.from_pretrained(checkpoint, dtype=torch.bfloat16, device="cuda", offload_text_tower=True)
    model = pipe.transformer
    assert model.text_tower.embed_tokens.weight.device.type == "cpu"
    assert device_weight_bytes(model, "cuda") == module_nbytes(model.gen_tower)
    pipe.generate("a red ball", return_latents=True, **GEN)
    assert model.text_tower.embed_tokens.weight.device.type == "cpu" and pipe.text_residency.loads == 1
