"""Optional torch.compile of the generation layers (regional: one graph shared by every layer)."""

from __future__ import annotations

import pytest
import torch
from tiny_transformer import build_reference, save_folder, tiny_config

from cosmos3 import load_transformer
from cosmos3.runtime.compile import compile_generation_layers, is_compiled, uncompile_generation_layers


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = save_folder(build_reference(tiny_config("qwen_small", num_hidden_layers=4), seed=13),
                         tmp_path_factory.mktemp("compile"))
    return load_transformer(folder, dtype=torch.float32, weight_storage="fp8")  # fp8 upcast inside the graph


def test_compiled_layers_give_the_same_result_and_share_one_graph(model):
    import torch._dynamo

    torch._dynamo.reset()
    cache = model.encode_text(torch.arange(2, 9))
    latents = torch.randn(1, 48, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    eager = model.velocity(latents, 800, cache)
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    assert compile_generation_layers(model, backend=counting_backend) == 4
    try:
        assert is_compiled(model) and model.compiled_layers["backend"] is counting_backend
        first = model.velocity(latents, 800, cache)
        assert (first - eager).abs().max() <= 1e-6
        compiled_once = len(graphs)
        assert compiled_once == 1, "every layer should reuse the first layer's graph"
        assert torch.equal(model.velocity(latents, 700, cache), model.velocity(latents, 700, cache))
        assert len(graphs) == compiled_once
        both = model.velocity_batch(latents, 800, [cache, model.encode_text(torch.arange(3, 6))])  # new shapes
        assert (both[:1] - eager).abs().max() <= 1e-5
    finally:
        uncompile_generation_layers(model)
    assert not is_compiled(model) and model.compiled_layers is None


def test_compile_arguments_are_checked(model):
    with pytest.raises(ValueError, match="compile mode 'turbo' is not supported"):
        compile_generation_layers(model, mode="turbo")
