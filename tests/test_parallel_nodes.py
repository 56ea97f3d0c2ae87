"""The Parallel node + the Sampler's parallel input through the ComfyUI stub: worker processes on gloo (CPU)."""

from __future__ import annotations

import sys

import pytest
import torch
from tiny_models import CHECKPOINT_CHOICE, install_cosmos3_checkpoint, install_vae

W, H, F = 48, 80, 5  # latent 2 x 5 x 3 -> 2 x 3 x 2 = 12 tokens; with the text, padding for ring=... cases below


def _module(pack, name):
    return sys.modules[f"{pack.__name__}.nodes.{name}"]


@pytest.fixture
def m(comfy_pack):
    class Modules:
        model = _module(comfy_pack, "model_nodes")
        text = _module(comfy_pack, "text_nodes")
        sampler = _module(comfy_pack, "sampler_nodes")
        latent = _module(comfy_pack, "latent_nodes")
        parallel = _module(comfy_pack, "parallel_nodes")

    return Modules


@pytest.fixture
def model(m, comfy_stub):
    install_cosmos3_checkpoint(comfy_stub.models_dir)
    install_vae(comfy_stub.models_dir)
    loaded = m.model.ModelLoader.execute(CHECKPOINT_CHOICE, "fp32", "auto")[0]
    yield loaded
    m.parallel.release(loaded)


def _sample(m, model, parallel=None, **kw):
    text = m.text.TextEncode.execute(model, "a red ball rolls", "", "framework", "auto", W, H, F, 24.0)[0]
    latent = m.latent.EmptyLatent.execute("custom", W, H, F)[0]
    args = dict(seed=7, steps=2, cfg=6.0, shift=10.0, schedule="native", attention="sdpa", cfg_interval=False)
    args.update(kw)
    return m.sampler.Sampler.execute(model, text, latent, **args, parallel=parallel)[0]["samples"]


def test_parallel_sampler_equals_one_process_interrupt_crash_and_release(m, model, comfy_stub):
    torch.set_num_threads(1)
    single = _sample(m, model)
    layout = m.parallel.Parallel.execute(2, 1, False, "auto", 60.0)[0]
    spread = _sample(m, model, layout)
    assert (spread - single).abs().max().item() <= 1e-5
    pool = m.parallel._POOLS[id(model)][1]
    workers = list(pool._processes)
    assert len(workers) == 1 and workers[0].is_alive()

    # Cancel during step 1 stops every rank between steps; the worker stays up for the next run.
    def hook(value, total, preview, prompt_id=None, node_id=None):
        if value == 1:
            comfy_stub.interrupt()

    comfy_stub.utils.set_progress_bar_global_hook(hook)
    with pytest.raises(comfy_stub.mm.InterruptProcessingException):
        _sample(m, model, layout, steps=3)
    comfy_stub.utils.set_progress_bar_global_hook(None)
    comfy_stub.mm.interrupt_current_processing(False)
    assert workers[0].is_alive()
    assert torch.equal(_sample(m, model, layout), spread)  # same pool, same result

    # A worker crashing mid-run: the run fails with a clear error, no worker is left behind, the next run starts
    # afresh.
    def crash(value, total, preview, prompt_id=None, node_id=None):
        if value == 1:
            workers[0].kill()
            workers[0].join()

    comfy_stub.utils.set_progress_bar_global_hook(crash)
    with pytest.raises(RuntimeError, match=r"parallel .* failed on rank 0 of 2.*rank 1: exit code -9"):
        _sample(m, model, layout, steps=3)
    comfy_stub.utils.set_progress_bar_global_hook(None)
    assert not pool._processes and pool.runtime is None
    assert torch.equal(_sample(m, model, layout), spread)
    restarted = list(pool._processes)
    m.parallel.release(model)  # unloading the model ends its workers
    assert not any(p.is_alive() for p in restarted)


def test_bad_layout_fails_before_sampling(m, model):
    with pytest.raises(ValueError, match="ulysses=3 does not divide the 4 attention heads"):
        _sample(m, model, m.parallel.Parallel.execute(3, 1, False, "auto", 60.0)[0])
    with pytest.raises(ValueError, match="needs 2 devices"):
        _sample(m, model, m.parallel.Parallel.execute(2, 1, False, "cpu", 60.0)[0])
    with pytest.raises(ValueError, match="step_cache cannot be combined"):
        _sample(m, model, m.parallel.Parallel.execute(2, 1, False, "auto", 60.0)[0], step_cache=0.1)
    assert id(model) not in m.parallel._POOLS
