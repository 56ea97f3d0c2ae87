"""Cached-text Cosmos3 transformer == diffusers' full joint forward (tiny random weights, fp32 and bf16)."""

from __future__ import annotations

import pytest
import torch
from tiny_transformer import CONFIGS, build_reference, reference_velocity, save_folder, tiny_config

from cosmos3 import load_transformer

TOL = 1e-5
# (frames, height, width, fps, condition_frames, timestep)
CASES = {
    "t2i": (1, 6, 6, 24.0, (), 999),
    "t2i_odd": (1, 5, 7, 24.0, (), 999),
    "t2v_fps16": (3, 4, 6, 16.0, (), 937),
    "t2v_fps24_odd": (3, 5, 3, 24.0, (), 500),
    "t2v_fps30_float_t": (2, 4, 4, 30.0, (), 937.5),
    "i2v": (3, 4, 4, 24.0, (0,), 999),
    "v2v_two_frames": (4, 3, 4, 16.0, (0, 1), 250),
}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def pair(request, tmp_path_factory):
    """(diffusers reference, our model loaded from its saved folder, config dict) in fp32."""
    config = tiny_config(request.param)
    reference = build_reference(config, seed=1)
    folder = save_folder(reference, tmp_path_factory.mktemp(request.param))
    return reference, load_transformer(folder, dtype=torch.float32), config


def _prompt(config: dict, length: int, seed: int) -> torch.Tensor:
    return torch.randint(0, config["vocab_size"], (length,), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("case", sorted(CASES))
def test_velocity_matches_diffusers(pair, case):
    reference, model, config = pair
    frames, height, width, fps, cond, timestep = CASES[case]
    latents = torch.randn(1, 48, frames, height, width, generator=torch.Generator().manual_seed(3))
    ids = _prompt(config, 13, seed=4)

    expected = reference_velocity(reference, ids, latents, timestep, fps, cond)
    got = model.velocity(latents, timestep, model.encode_text(ids), fps=fps, condition_frames=cond)

    assert got.shape == expected.shape == latents.shape
    noisy = [f for f in range(frames) if f not in cond]
    assert expected[:, :, noisy].std() > 0.2, "outputs too small for a meaningful parity check"
    assert (got - expected).abs().max().item() <= TOL
    for f in cond:
        assert torch.count_nonzero(got[:, :, f]) == 0


def test_cond_and_uncond_prompts_of_different_lengths(pair):
    reference, model, config = pair
    latents = torch.randn(1, 48, 3, 4, 6, generator=torch.Generator().manual_seed(5))
    cond_ids, uncond_ids = _prompt(config, 17, seed=6), _prompt(config, 5, seed=7)
    cond_cache, uncond_cache = model.encode_text(cond_ids), model.encode_text(uncond_ids)
    assert (cond_cache.text_len, uncond_cache.text_len) == (17, 5)
    outputs = []
    for ids, cache in ((cond_ids, cond_cache), (uncond_ids, uncond_cache)):
        expected = reference_velocity(reference, ids, latents, 999, 24.0)
        got = model.velocity(latents, 999, cache)
        assert (got - expected).abs().max().item() <= TOL
        outputs.append(got)
    # The prompt (and its length-dependent mRoPE offset) must actually matter.
    assert (outputs[0] - outputs[1]).abs().max() > 1e-2


def test_one_cache_serves_every_step(pair):
    """The text K/V computed once equals a fresh full forward at every timestep and latent state."""
    reference, model, config = pair
    ids = _prompt(config, 9, seed=8)
    cache = model.encode_text(ids)
    generator = torch.Generator().manual_seed(9)
    previous = None
    for timestep in (999, 700, 321, 0):
        latents = torch.randn(1, 48, 2, 4, 4, generator=generator)
        expected = reference_velocity(reference, ids, latents, timestep, 24.0)
        got = model.velocity(latents, timestep, cache)
        assert (got - expected).abs().max().item() <= TOL
        if previous is not None:
            assert (got - previous).abs().max() > 1e-2
        previous = got


def test_fps_changes_video_positions(pair):
    reference, model, config = pair
    ids = _prompt(config, 8, seed=10)
    latents = torch.randn(1, 48, 3, 4, 4, generator=torch.Generator().manual_seed(11))
    cache = model.encode_text(ids)
    at16, at24 = model.velocity(latents, 900, cache, fps=16.0), model.velocity(latents, 900, cache, fps=24.0)
    assert (at16 - at24).abs().max() > 1e-3
    assert (at16 - reference_velocity(reference, ids, latents, 900, 16.0)).abs().max() <= TOL


def test_per_token_time_embedding_matches_too(pair):
    reference, model, config = pair
    ids = _prompt(config, 6, seed=16)
    latents = torch.randn(1, 48, 3, 3, 4, generator=torch.Generator().manual_seed(17))
    model.time_embedding_per_token = True
    try:
        got = model.velocity(latents, 937.5, model.encode_text(ids), fps=16.0, condition_frames=(0,))
    finally:
        model.time_embedding_per_token = False
    assert (got - reference_velocity(reference, ids, latents, 937.5, 16.0, (0,))).abs().max().item() <= TOL


def test_no_fps_means_integer_frame_positions(pair):
    reference, model, config = pair
    ids = _prompt(config, 6, seed=18)
    latents = torch.randn(1, 48, 3, 2, 2, generator=torch.Generator().manual_seed(19))
    got = model.velocity(latents, 400, model.encode_text(ids), fps=None)
    assert (got - reference_velocity(reference, ids, latents, 400, None)).abs().max().item() <= TOL
    assert torch.equal(got, model.velocity(latents, 400, model.encode_text(ids), fps=24.0))  # 24 == base fps


def test_math_backend_matches_too(pair):
    reference, model, config = pair
    ids = _prompt(config, 7, seed=12)
    latents = torch.randn(1, 48, 2, 3, 5, generator=torch.Generator().manual_seed(13))
    model.attention_backend = "math"
    try:
        got = model.velocity(latents, 800, model.encode_text(ids), fps=16.0, condition_frames=(0,))
    finally:
        model.attention_backend = "sdpa"
    expected = reference_velocity(reference, ids, latents, 800, 16.0, (0,))
    assert (got - expected).abs().max().item() <= TOL


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_bf16_follows_the_same_rounding(name, tmp_path):
    """bf16 uses diffusers' cast points and op order: with the per-token timestep MLP the outputs are bitwise equal.

    The default (one timestep-MLP row per step) differs only by the fp32 rounding of a GEMM with a different
    row count; in bf16 that can flip an ulp of the embedding, hence the looser check for the default path.
    """
    from diffusers import Cosmos3OmniTransformer

    config = tiny_config(name, num_hidden_layers=4)
    folder = save_folder(build_reference(config, seed=2), tmp_path)
    reference = Cosmos3OmniTransformer.from_pretrained(str(folder), torch_dtype=torch.bfloat16).eval()
    model = load_transformer(folder, dtype=torch.bfloat16)
    assert reference.time_embedder.linear_1.weight.dtype == torch.float32
    assert model.gen_tower.time_embedder.linear_1.weight.dtype == torch.float32
    ids = _prompt(config, 12, seed=14)
    cache = model.encode_text(ids)
    generator = torch.Generator().manual_seed(15)
    for case in ("t2i_odd", "t2v_fps16", "i2v", "t2v_fps30_float_t"):
        frames, height, width, fps, cond, timestep = CASES[case]
        latents = torch.randn(1, 48, frames, height, width, generator=generator).bfloat16()
        expected = reference_velocity(reference, ids, latents, timestep, fps, cond)
        model.time_embedding_per_token = True
        exact = model.velocity(latents, timestep, cache, fps=fps, condition_frames=cond)
        model.time_embedding_per_token = False
        default = model.velocity(latents, timestep, cache, fps=fps, condition_frames=cond)
        assert exact.dtype == default.dtype == expected.dtype == torch.bfloat16
        assert torch.equal(exact, expected), case
        scale = expected.float().abs().max().item()
        assert (default.float() - expected.float()).abs().max().item() <= 0.05 * scale, case
