"""TeaCache-style step cache: off = exact, decisions and residual reuse, and its measured quality cost."""

from __future__ import annotations

import pytest
import torch
from tiny_transformer import build_reference, save_folder, tiny_config

from cosmos3 import load_transformer
from cosmos3.geometry import Geometry
from cosmos3.model.fp8 import error_stats
from cosmos3.runtime.step_cache import StepCache
from cosmos3.sampling.loop import sample
from cosmos3.sampling.schedulers import build_sampler
from cosmos3.text.encoding import EncodedPrompt

STEPS = 12


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = save_folder(build_reference(tiny_config("qwen128"), seed=14), tmp_path_factory.mktemp("cache"))
    model = load_transformer(folder, dtype=torch.float32)
    ids = torch.arange(5, 25)
    prompt = EncodedPrompt(
        model.encode_text(ids),
        model.encode_text(torch.arange(40, 47)),
        geometry=Geometry(5, 64, 64),
        style="framework",
        cond_text="a",
        uncond_text="b",
    )
    return model, prompt


KW = dict(guidance_scale=5.0, seed=3)


def test_threshold_zero_is_exact(setup):
    model, prompt = setup
    plain = sample(model, prompt, build_sampler("native", STEPS, 5.0), **KW)
    cache = StepCache(threshold=0.0, warmup_steps=0)
    assert torch.equal(sample(model, prompt, build_sampler("native", STEPS, 5.0), step_cache=cache, **KW), plain)
    assert cache.skipped_steps == [] and cache.computed_steps == STEPS


@pytest.mark.parametrize("cfg_batch", [False, True])
def test_skips_respect_warmup_final_and_max_consecutive(setup, cfg_batch):
    model, prompt = setup
    calls = []
    layer0 = model.gen_tower.layers[0]
    handle = layer0.register_forward_pre_hook(lambda m, a: calls.append(a[0].shape))
    cache = StepCache(threshold=10.0, warmup_steps=3, final_steps=2, max_consecutive=2)
    try:
        sample(model, prompt, build_sampler("native", STEPS, 5.0), step_cache=cache, cfg_batch=cfg_batch, **KW)
    finally:
        handle.remove()
    skipped = cache.skipped_steps
    assert skipped and min(skipped) >= 3 and max(skipped) < STEPS - 2
    runs = [s for s in range(STEPS) if s not in skipped]
    assert all(not {s, s + 1, s + 2} <= set(skipped) for s in skipped)  # at most 2 in a row
    passes_per_step = 1 if cfg_batch else 2
    assert len(calls) == passes_per_step * len(runs)  # skipped steps ran no layer at all, for either branch
    assert cache.computed_steps == len(runs)


def test_a_skipped_step_adds_the_last_residual(setup):
    model, prompt = setup
    cond = prompt.cond
    latents = torch.randn(1, 48, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    cache = StepCache(threshold=10.0, warmup_steps=1, final_steps=0)
    cache.reset(3)
    outs = []
    for step, t in enumerate((900, 899, 898)):
        cache.begin_step(step)
        outs.append(model.velocity(latents, t, cond, step_cache=cache, branch="cond"))
    assert cache.skipped_steps == [1, 2]
    full = model.velocity(latents, 899, cond)
    assert (outs[1] - full).abs().max() < 1e-2  # 1 timestep apart: the residual barely changes
    assert not torch.equal(outs[1], outs[0])  # the current input (timestep embedding) still enters
    # a branch without a fresh residual is computed even on a skipped step
    cache.begin_step(3)
    cache.total_steps = 10
    fresh = model.velocity(latents, 897, prompt.uncond, step_cache=cache, branch="uncond")
    assert torch.equal(fresh, model.velocity(latents, 897, prompt.uncond))


def test_quality_cost_is_measured_and_bounded(setup):
    """Final latents with the cache vs without (tiny random model, 12 steps, CFG 5)."""
    model, prompt = setup
    plain = sample(model, prompt, build_sampler("native", STEPS, 5.0), **KW)
    results = {}
    for threshold in (0.05, 0.2):
        cache = StepCache(threshold=threshold, warmup_steps=3)
        cached = sample(model, prompt, build_sampler("native", STEPS, 5.0), step_cache=cache, **KW)
        results[threshold] = (len(cache.skipped_steps), error_stats(plain, cached))
    few, strict = results[0.05]
    many, loose = results[0.2]
    assert many >= few
    assert strict["rel_l2"] <= loose["rel_l2"] + 1e-6
    assert loose["rel_l2"] < 0.5  # approximate by design; the bench reports the figures


def test_settings_are_checked():
    with pytest.raises(ValueError, match="threshold"):
        StepCache(threshold=-1)
    with pytest.raises(ValueError, match="warmup_steps"):
        StepCache(warmup_steps=1.5)
    with pytest.raises(ValueError, match="max_consecutive"):
        StepCache(max_consecutive=0)
    cache = StepCache(threshold=0.3, coefficients=[2.0, 0.0])  # rescaled change = 2x
    cache.reset(10)
    cache.begin_step(0)
    x = torch.ones(1, 4, 8)
    assert cache.lookup("cond", x, 1) is None
