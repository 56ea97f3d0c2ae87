"""fp8 GEMMs only in the middle of the schedule: the per-step switch and its CPU fallback (results unchanged)."""

from __future__ import annotations

import pytest
import torch

from cosmos3.demo import build_demo_checkpoint
from cosmos3.geometry import Geometry
from cosmos3.model.fp8 import Fp8Linear
from cosmos3.pipeline import Cosmos3Pipeline
from cosmos3.runtime.fp8_matmul import Fp8MatmulSchedule, disable_fp8_matmul, enable_fp8_matmul
from cosmos3.sampling.loop import sample
from cosmos3.sampling.schedulers import make_sampler


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    checkpoint = build_demo_checkpoint(tmp_path_factory.mktemp("demo") / "Cosmos3-Demo")
    return Cosmos3Pipeline.from_pretrained(checkpoint, dtype=torch.bfloat16, weight_storage="fp8_e4m3fn")


def test_schedule_keeps_first_and_last_steps_in_high_precision():
    schedule = Fp8MatmulSchedule(torch.nn.Sequential(), high_precision_first=2, high_precision_last=1)
    assert [schedule.fp8_at(i, 6) for i in range(6)] == [False, False, True, True, True, False]
    assert not any(schedule.fp8_at(i, 3) for i in range(3))
    with pytest.raises(ValueError, match="high_precision_first must be an integer >= 0"):
        Fp8MatmulSchedule(torch.nn.Sequential(), high_precision_first=-1)


def test_sampling_switches_per_step_and_the_cpu_falls_back_to_upcast(pipe):
    model = pipe.transformer
    layers = [m for m in model.modules() if isinstance(m, Fp8Linear)]
    assert layers
    encoded = pipe.encode_prompt("a cat", None, geometry=Geometry(5, 32, 32))

    def run():
        return sample(model, encoded, make_sampler("flow_unipc", 5, shift=3.0), guidance_scale=2.0, seed=3)

    plain = run()
    seen = []
    schedule = enable_fp8_matmul(model, high_precision_first=1, high_precision_last=1)
    original = schedule.begin_step

    def spy(index, total):
        original(index, total)
        seen.append(all(layer.fp8_matmul for layer in layers))

    schedule.begin_step = spy
    switched = run()
    assert seen == [False, True, True, True, False]
    assert not any(layer.fp8_matmul for layer in layers)  # back to the upcast path after sampling
    assert torch.equal(plain, switched)  # the CPU keeps the upcast path: same result
    disable_fp8_matmul(model)
    assert not hasattr(model, "fp8_matmul_schedule")
