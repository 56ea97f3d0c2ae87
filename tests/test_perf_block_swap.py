"""Block swap: the schedule (order of loads/waits/releases, prefetch depth, residency bound) and results.

On this CPU-only machine the "device" and the host coincide; ``DeviceMover(copy=True)`` makes every load a
real copy so the swap genuinely replaces the layer's tensors, and a recording mover checks the protocol.
The CUDA side-stream path runs only where a GPU is present.
"""

from __future__ import annotations

import pytest
import torch
from tiny_transformer import build_reference, save_folder, tiny_config

from cosmos3 import load_transformer
from cosmos3.model.transformer import module_nbytes
from cosmos3.runtime.compile import compile_generation_layers, uncompile_generation_layers
from cosmos3.runtime.offload import BlockSwap, DeviceMover, disable_block_swap, enable_block_swap

LAYERS = 5


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_folder(build_reference(tiny_config("qwen_small", num_hidden_layers=LAYERS), seed=12),
                       tmp_path_factory.mktemp("swap"))


@pytest.fixture
def model(folder):
    return load_transformer(folder, dtype=torch.float32)


def _run(model, seed=0):
    ids = torch.arange(3, 12)
    cache = model.encode_text(ids)
    latents = torch.randn(1, 48, 2, 4, 4, generator=torch.Generator().manual_seed(seed))
    return model.velocity(latents, 900, cache, fps=24.0)


class RecordingMover(DeviceMover):
    """A CPU mover that copies for real and records the protocol calls."""

    def __init__(self):
        super().__init__("cpu", copy=True)
        self.calls = []

    def load(self, layer):
        self.calls.append(("load", layer))
        return super().load(layer)

    def wait(self, layer, handle):
        self.calls.append(("wait", layer))
        super().wait(layer, handle)

    def release(self, layer):
        self.calls.append(("release", layer))
        super().release(layer)


@pytest.mark.parametrize("swap, prefetch", [(2, 1), (LAYERS, 1), (3, 0), (4, 2), (0, 1)])
def test_results_are_identical_and_residency_is_bounded(model, swap, prefetch):
    expected = _run(model)
    schedule = enable_block_swap(model, swap, mover=DeviceMover("cpu", copy=True), prefetch=prefetch, record=True)
    for _ in range(2):  # second pass starts from the wrap-around prefetch
        assert torch.equal(_run(model), expected)
    assert schedule.peak_loaded <= min(swap, prefetch + 1)
    per_layer = module_nbytes(model.gen_tower.layers[-1])
    assert schedule.peak_swapped_bytes <= min(swap, prefetch + 1) * per_layer
    assert (
        schedule.device_bytes(model.gen_tower)
        <= module_nbytes(model.gen_tower) - max(0, swap - prefetch - 1) * per_layer
    )
    runs = [i for kind, i in schedule.log if kind == "run"]
    assert runs == list(range(LAYERS)) * 2
    disable_block_swap(model)
    assert model.block_swap is None and torch.equal(_run(model), expected)


def test_prefetch_one_overlaps_the_next_layer(model):
    schedule = enable_block_swap(model, 3, mover=DeviceMover("cpu", copy=True), prefetch=1, record=True)
    _run(model)
    log = list(schedule.log)
    # layers 2, 3, 4 are swapped: the first is requested before the resident layers run (overlapping them),
    # each later one while its predecessor runs; each is released right after it ran
    assert log == [
        ("load", 2), ("run", 0), ("run", 1),
        ("wait", 2), ("load", 3), ("run", 2), ("release", 2),
        ("wait", 3), ("load", 4), ("run", 3), ("release", 3),
        ("wait", 4), ("run", 4), ("release", 4),
        ("load", 2),  # wrap-around prefetch for the next pass
    ]
    assert schedule.peak_loaded == 2
    _run(model)
    assert schedule.log[len(log):] == log[1:]  # layer 2 is already in flight


def test_swapped_layers_point_back_at_host_masters(model):
    mover = RecordingMover()
    enable_block_swap(model, 2, mover=mover, prefetch=1)
    layer = model.gen_tower.layers[4]  # (layer 3 is prefetched again for the next pass at the end)
    host_ptr = layer.add_q_proj.weight.data_ptr()
    seen = []
    handle = layer.register_forward_pre_hook(lambda m, a: seen.append(m.add_q_proj.weight.data_ptr()))
    try:
        _run(model)
    finally:
        handle.remove()
    assert seen and seen[0] != host_ptr  # ran on the loaded copy
    assert layer.add_q_proj.weight.data_ptr() == host_ptr  # released afterwards
    assert [kind for kind, _ in mover.calls].count("wait") == 2
    assert all(called in (model.gen_tower.layers[3], model.gen_tower.layers[4]) for _, called in mover.calls)


def test_an_error_mid_pass_leaves_a_consistent_schedule(model):
    expected = _run(model)
    schedule = enable_block_swap(model, 3, mover=DeviceMover("cpu", copy=True), prefetch=1)

    class Boom(Exception):
        pass

    def explode(module, args):
        raise Boom

    handle = model.gen_tower.layers[3].register_forward_pre_hook(explode)
    with pytest.raises(Boom):
        _run(model)
    handle.remove()
    assert torch.equal(_run(model), expected)
    schedule.unload_all()
    assert not schedule._inflight


def test_arguments_are_checked(model):
    with pytest.raises(ValueError, match=r"blocks_to_swap must be an integer in \[0, 5\], got 6"):
        enable_block_swap(model, 6)
    with pytest.raises(ValueError, match=r"prefetch must be an integer in \[0, 5\], got -1"):
        BlockSwap(model.gen_tower.layers, 1, DeviceMover("cpu"), prefetch=-1)
    schedule = enable_block_swap(model, 1)
    with pytest.raises(ValueError, match="not the layers"):
        next(schedule.schedule(model.text_tower.layers))


def test_cpu_fallback_runs_layers_in_place(model):
    """The default mover on a CPU-only machine: no copies, no pinning, same schedule."""
    expected = _run(model)
    mover = DeviceMover("cpu", pin_memory=True)
    assert not mover.pin_memory and not mover.non_blocking and mover.stream is None
    enable_block_swap(model, 3, mover=mover)
    assert torch.equal(_run(model), expected)
    assert mover.bytes_copied == 0


def test_block_swap_with_compiled_layers(model):
    expected = _run(model)
    enable_block_swap(model, 2, mover=DeviceMover("cpu", copy=True))
    compile_generation_layers(model, backend="eager")
    try:
        assert torch.equal(_run(model), expected)
        assert torch.equal(_run(model, seed=0), expected)
    finally:
        uncompile_generation_layers(model)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (side-stream prefetch, pinned memory)")
@pytest.mark.parametrize("pin", [False, True])
def test_cuda_side_stream_prefetch(folder, pin):  # pragma: no cover - GPU only
    model = load_transformer(folder, dtype=torch.bfloat16, device="cuda")
    expected = _run(model)
    schedule = enable_block_swap(model, 4, "cuda", pin_memory=pin, prefetch=1)
    assert schedule.mover.stream is not None and schedule.mover.pin_memory == pin
    assert model.gen_tower.layers[-1].add_q_proj.weight.device.type == "cpu"
    for _ in range(3):
        assert torch.equal(_run(model), expected)
    assert schedule.peak_loaded == 2
    disable_block_swap(model)
    assert model.gen_tower.layers[-1].add_q_proj.weight.device.type == "cuda"


def test_sampling_with_block_swap_matches_and_releases_the_prefetch(model):
    from cosmos3.geometry import Geometry
    from cosmos3.sampling.loop import sample
    from cosmos3.sampling.schedulers import build_sampler
    from cosmos3.text.encoding import EncodedPrompt

    prompt = EncodedPrompt(model.encode_text(torch.arange(3, 12)), model.encode_text(torch.arange(20, 25)),
                           geometry=Geometry(5, 32, 32), style="framework", cond_text="a", uncond_text="b")
    kwargs = dict(guidance_scale=3.0)
    plain = sample(model, prompt, build_sampler("native", 2, 3.0), **kwargs)
    schedule = enable_block_swap(model, 3, mover=DeviceMover("cpu", copy=True), prefetch=1)
    assert torch.equal(sample(model, prompt, build_sampler("native", 2, 3.0), **kwargs), plain)
    assert not schedule._inflight  # the wrap-around prefetch was dropped for the VAE
