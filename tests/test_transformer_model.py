"""Tower split, cache object, injectable operations, attention backends and input validation."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from tiny_transformer import build_reference, reference_velocity, save_folder, tiny_config

from cosmos3 import Cosmos3Transformer, TextKVCache, TransformerConfig, load_transformer
from cosmos3.model.attention import attention, attention_backends, register_attention_backend
from cosmos3.model.transformer import module_nbytes


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    config = tiny_config("qwen128")
    reference = build_reference(config, seed=3)
    folder = save_folder(reference, tmp_path_factory.mktemp("model"))
    return reference, folder, config


def _fresh(loaded) -> Cosmos3Transformer:
    return load_transformer(loaded[1], dtype=torch.float32)


def _ids(n: int = 10) -> torch.Tensor:
    return torch.arange(3, 3 + n) % 300


def test_cache_layout_and_helpers(loaded):
    model = _fresh(loaded)
    cfg = model.config
    cache = model.encode_text(_ids(10))
    assert isinstance(cache, TextKVCache)
    assert cache.text_len == 10 and cache.num_layers == cfg.num_hidden_layers
    for k, v in zip(cache.keys, cache.values):
        assert tuple(k.shape) == tuple(v.shape) == (cfg.num_key_value_heads, 10, cfg.head_dim)
        assert k.is_contiguous() and v.is_contiguous()
    assert cache.nbytes == 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * 10 * cfg.head_dim * 4
    half = cache.to(dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16 and half.nbytes == cache.nbytes // 2 and half.text_len == 10
    assert model.encode_text(_ids(10).unsqueeze(0)).keys[0].equal(cache.keys[0])


def test_velocity_without_text_tower(loaded):
    reference = loaded[0]
    model = _fresh(loaded)
    ids = _ids(9)
    cache = model.encode_text(ids)
    latents = torch.randn(1, 48, 2, 4, 4)
    model.text_tower.to("meta")
    with pytest.raises(RuntimeError, match="meta device"):
        model.encode_text(ids)
    on_meta = model.velocity(latents, 999, cache)
    model.drop_text_tower()
    assert model.text_tower is None
    assert not any(name.startswith("text_tower") for name in model.state_dict())
    dropped = model.velocity(latents, 999, cache)
    expected = reference_velocity(reference, ids, latents, 999)
    assert (on_meta - expected).abs().max() <= 1e-5 and torch.equal(on_meta, dropped)
    with pytest.raises(RuntimeError, match="dropped"):
        model.encode_text(ids)


def test_towers_are_separate_units(loaded):
    model = _fresh(loaded)
    text, gen = module_nbytes(model.text_tower), module_nbytes(model.gen_tower)
    assert text > 0 and gen > 0 and text + gen == module_nbytes(model)
    names = set(model.state_dict())
    assert all(n.startswith(("text_tower.", "gen_tower.")) for n in names)
    assert "text_tower.embed_tokens.weight" in names and "text_tower.layers.0.norm_q.weight" in names
    assert "gen_tower.time_embedder.linear_1.weight" in names and "gen_tower.norm_moe_gen.weight" in names
    assert not any("lm_head" in n or n.endswith("tower.norm.weight") for n in names)


def test_meta_construction_has_no_buffers():
    cfg = TransformerConfig.from_dict(tiny_config("edge128"))
    model = Cosmos3Transformer(cfg, device="meta", dtype=torch.bfloat16)
    assert list(model.buffers()) == []
    assert all(p.is_meta for p in model.parameters())
    assert model.gen_tower.time_embedder.linear_2.weight.dtype == torch.float32
    assert model.gen_tower.proj_in.weight.dtype == torch.bfloat16


def test_layers_are_built_through_operations():
    made = {"Linear": 0, "Embedding": 0}

    class Linear(torch.nn.Linear):
        def __init__(self, *args, **kwargs):
            made["Linear"] += 1
            super().__init__(*args, **kwargs)

    class Embedding(torch.nn.Embedding):
        def __init__(self, *args, **kwargs):
            made["Embedding"] += 1
            super().__init__(*args, **kwargs)

    config = tiny_config("qwen_small", action_gen=True, action_dim=8, num_embodiment_domains=3)
    cfg = TransformerConfig.from_dict(config)
    model = Cosmos3Transformer(cfg, operations=SimpleNamespace(Linear=Linear, Embedding=Embedding), device="meta")
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    embeddings = [m for m in model.modules() if isinstance(m, torch.nn.Embedding)]
    assert linears and all(isinstance(m, Linear) for m in linears)
    # 7 per tower per layer, minus the last text layer's to_q/to_out/MLP (K/V only), + in/out/time MLP
    assert made["Linear"] == len(linears) == cfg.num_hidden_layers * 2 * (4 + 3) - 5 + 4
    assert made["Embedding"] == len(embeddings) == 1 + 4  # tokens + two DomainAwareLinear heads


def test_all_frames_conditioned_gives_zeros(loaded):
    model = _fresh(loaded)
    out = model.velocity(torch.randn(1, 48, 2, 3, 3), 500, model.encode_text(_ids(4)), condition_frames=(0, 1))
    assert out.shape == (1, 48, 2, 3, 3) and torch.count_nonzero(out) == 0


def test_velocity_rejects_bad_inputs(loaded):
    model = _fresh(loaded)
    cache = model.encode_text(_ids(5))
    good = torch.randn(1, 48, 2, 4, 4)
    with pytest.raises(ValueError, match=r"\[1, 48, T, h, w\]"):
        model.velocity(torch.randn(1, 16, 2, 4, 4), 10, cache)
    with pytest.raises(ValueError, match=r"\[1, 48, T, h, w\]"):
        model.velocity(torch.randn(2, 48, 2, 4, 4), 10, cache)
    with pytest.raises(ValueError, match=r"condition frame 2 .*\[0, 1\]"):
        model.velocity(good, 10, cache, condition_frames=(2,))
    with pytest.raises(ValueError, match=r"outside \[0, 1000\]"):
        model.velocity(good, 1001, cache)
    with pytest.raises(ValueError, match="fps"):
        model.velocity(good, 10, cache, fps=0)
    other = TextKVCache(keys=cache.keys[:1], values=cache.values[:1], text_len=5)
    with pytest.raises(ValueError, match="cache does not fit"):
        model.velocity(good, 10, other)
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 319\]"):
        model.encode_text(torch.tensor([1, 320]))
    with pytest.raises(ValueError, match="non-empty"):
        model.encode_text(torch.tensor([], dtype=torch.long))
    # A 0-dim tensor timestep (as scheduler.timesteps[i]) is accepted like the python number.
    assert torch.equal(model.velocity(good, torch.tensor(999), cache), model.velocity(good, 999, cache))


def test_attention_backend_selection(loaded):
    model = _fresh(loaded)
    assert {"sdpa", "math"} <= set(attention_backends())
    with pytest.raises(ValueError, match=r"unknown attention backend 'flash'; allowed: .*math.*sdpa"):
        model.attention_backend = "flash"
    assert model.attention_backend == "sdpa"
    with pytest.raises(ValueError, match="allowed"):
        attention(torch.zeros(2, 3, 8), torch.zeros(1, 3, 8), torch.zeros(1, 3, 8), causal=False, backend="nope")

    calls = []

    def spy(q, k, v, causal):
        calls.append(causal)
        return attention(q, k, v, causal, backend="math")

    register_attention_backend("spy_for_test", spy)
    model.attention_backend = "spy_for_test"
    cache = model.encode_text(_ids(6))
    model.velocity(torch.randn(1, 48, 1, 2, 2), 999, cache)
    n = model.config.num_hidden_layers
    assert calls == [True] * (n - 1) + [False] * n  # the last text layer skips its own attention


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("heads", [(4, 4), (4, 2), (6, 1)])
def test_attention_backends_agree_with_gqa(causal, heads):
    nh, nkv = heads
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(nh, 7, 16, generator=generator)
    k = torch.randn(nkv, 7, 16, generator=generator)
    v = torch.randn(nkv, 7, 16, generator=generator)
    sdpa, math_out = attention(q, k, v, causal, "sdpa"), attention(q, k, v, causal, "math")
    assert sdpa.shape == (nh, 7, 16)
    assert (sdpa - math_out).abs().max() < 1e-5
    # kv head j serves query heads j*g .. j*g+g-1
    g = nh // nkv
    scores = (q @ k.repeat_interleave(g, 0).transpose(-1, -2)) / 4.0
    if causal:
        scores = scores.masked_fill(torch.ones(7, 7, dtype=torch.bool).triu(1), float("-inf"))
    manual = scores.softmax(-1) @ v.repeat_interleave(g, 0)
    assert (sdpa - manual).abs().max() < 1e-5
    batched = attention(q[None], k[None], v[None], causal, "sdpa")[0]
    assert (batched - sdpa).abs().max() < 1e-6
