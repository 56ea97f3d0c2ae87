"""Batched CFG: cond + uncond through the generation tower as one batch of two == two serial passes (fp32)."""

from __future__ import annotations

import pytest
import torch
from tiny_transformer import CONFIGS, build_reference, save_folder, tiny_config

from cosmos3 import load_transformer
from cosmos3.geometry import Geometry
from cosmos3.model.attention import attention, register_attention_backend
from cosmos3.model.transformer import BatchedTextKV
from cosmos3.sampling.loop import sample
from cosmos3.sampling.schedulers import build_sampler
from cosmos3.text.encoding import EncodedPrompt

TOL = 1e-5


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def model(request, tmp_path_factory):
    folder = save_folder(build_reference(tiny_config(request.param), seed=7), tmp_path_factory.mktemp(request.param))
    return load_transformer(folder, dtype=torch.float32)


def _ids(model, n, seed):
    return torch.randint(0, model.config.vocab_size, (n,), generator=torch.Generator().manual_seed(seed))


def _latents(frames, h, w, seed=0):
    return torch.randn(1, 48, frames, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("lengths", [(9, 9), (13, 5), (4, 11)])
@pytest.mark.parametrize("case", [(1, 6, 6, 24.0, (), 999), (3, 4, 5, 16.0, (0,), 500)])
def test_batch_equals_serial(model, lengths, case):
    frames, h, w, fps, cond_frames, t = case
    caches = [model.encode_text(_ids(model, n, seed=i)) for i, n in enumerate(lengths)]
    latents = _latents(frames, h, w)
    serial = [model.velocity(latents, t, c, fps=fps, condition_frames=cond_frames) for c in caches]
    batched = model.velocity_batch(latents, t, caches, fps=fps, condition_frames=cond_frames)
    assert batched.shape == (2, *latents.shape[1:])
    for row, expected in enumerate(serial):
        assert (batched[row : row + 1] - expected).abs().max().item() <= TOL, row
    # a prebuilt BatchedTextKV (as sample() builds once) gives the same result
    prebuilt = BatchedTextKV.from_caches(caches)
    assert prebuilt.padded == (lengths[0] != lengths[1]) and prebuilt.text_len == max(lengths)
    assert torch.equal(model.velocity_batch(latents, t, prebuilt, fps=fps, condition_frames=cond_frames), batched)


def test_padded_batch_split_mode_and_math_backend(model):
    caches = [model.encode_text(_ids(model, n, seed=10 + n)) for n in (12, 3)]
    latents = _latents(2, 4, 4, seed=2)
    serial = torch.cat([model.velocity(latents, 700, c, fps=24.0) for c in caches])
    try:
        model.split_padded_attention = True
        split = model.velocity_batch(latents, 700, caches, fps=24.0)
        model.split_padded_attention = False
        model.attention_backend = "math"
        masked_math = model.velocity_batch(latents, 700, caches, fps=24.0)
    finally:
        model.split_padded_attention = False
        model.attention_backend = "sdpa"
    assert (split - serial).abs().max().item() <= TOL
    assert (masked_math - serial).abs().max().item() <= TOL


def test_first_layer_projects_shared_rows_once(model):
    """Row 0 of the batch enters the first layer as one shared [1, N, H] tensor (no duplicated GEMMs)."""
    seen = []
    layer = model.gen_tower.layers[0]
    handle = layer.input_layernorm_moe_gen.register_forward_hook(lambda m, a, o: seen.append(a[0].shape[0]))
    try:
        caches = [model.encode_text(_ids(model, 6, seed=s)) for s in (1, 2)]
        model.velocity_batch(_latents(1, 4, 4), 999, caches)
    finally:
        handle.remove()
    assert seen == [1]


def test_batched_cache_validation(model):
    cache = model.encode_text(_ids(model, 5, seed=1))
    with pytest.raises(TypeError, match="non-empty sequence of TextKVCache"):
        BatchedTextKV.from_caches([])
    wrong = BatchedTextKV.from_caches([cache, cache])
    wrong.keys = wrong.keys[:1]
    with pytest.raises(ValueError, match="batched cache does not fit"):
        model.velocity_batch(_latents(1, 2, 2), 999, wrong)


def test_sample_with_cfg_batch_matches_serial(model):
    cond = model.encode_text(_ids(model, 10, seed=3))
    uncond = model.encode_text(_ids(model, 6, seed=4))
    prompt = EncodedPrompt(cond, uncond, geometry=Geometry(5, 64, 64), style="framework",
                           cond_text="a", uncond_text="b")
    kwargs = dict(guidance_scale=4.0, seed=1)
    serial = sample(model, prompt, build_sampler("native", 3, 3.0), **kwargs)
    batched = sample(model, prompt, build_sampler("native", 3, 3.0), cfg_batch=True, **kwargs)
    assert (batched - serial).abs().max().item() <= 1e-4
    # guidance 1 and steps outside the guidance interval fall back to the cond pass alone
    calls = []
    original = model.velocity_batch
    model.velocity_batch = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        sample(model, prompt, build_sampler("native", 3, 3.0), cfg_batch=True, guidance_interval=(0.0, 1.0), **kwargs)
    finally:
        del model.velocity_batch
    assert calls == []


def test_custom_backend_without_mask_support_gets_per_sample_calls(model):
    shapes = []

    def plain(q, k, v, causal):
        shapes.append(tuple(k.shape))
        return attention(q, k, v, causal, "math")

    register_attention_backend("plain_for_test", plain)
    caches = [model.encode_text(_ids(model, n, seed=n)) for n in (7, 2)]
    latents = _latents(1, 2, 4)
    serial = torch.cat([model.velocity(latents, 999, c) for c in caches])
    model.attention_backend = "plain_for_test"
    try:
        shapes.clear()
        out = model.velocity_batch(latents, 999, caches)
    finally:
        model.attention_backend = "sdpa"
    assert (out - serial).abs().max().item() <= TOL
    tokens = 1 * 1 * 2
    nkv = model.config.num_key_value_heads
    assert shapes[:2] == [(1, nkv, 7 + tokens, model.config.head_dim), (1, nkv, 2 + tokens, model.config.head_dim)]
