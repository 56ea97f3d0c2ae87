"""Sampler parity with diffusers (the numerical oracle) on random latents and a fake velocity field."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from cosmos3.sampling.loop import cfg_combine, guidance_active, reanchor
from cosmos3.sampling.samplers import DistilledSDESampler, FlowEulerSampler, FlowUniPCSampler, draw_noise
from cosmos3.sampling.schedulers import make_sampler, read_scheduler_config, sampler_from_scheduler_config
from cosmos3.sampling.sigmas import DISTILLED_SIGMAS, SamplerConfigError, native_base_sigmas

diffusers = pytest.importorskip("diffusers")
from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler  # noqa: E402
from diffusers.utils.torch_utils import randn_tensor  # noqa: E402

# diffusers' karras branch builds a numpy array from a torch tensor (numpy 2 deprecation, not ours)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SHIPPED_CONFIG = {
    "_class_name": "UniPCMultistepScheduler",
    "_diffusers_version": "0.38.0",
    "use_karras_sigmas": True,
    "use_flow_sigmas": True,
    "prediction_type": "flow_prediction",
    "sigma_max": 200.0,
    "sigma_min": 0.147,
}
DISTILLED_CONFIG = {
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "num_train_timesteps": 1000,
    "shift": 1.0,
    "use_dynamic_shifting": False,
    "use_karras_sigmas": False,
    "invert_sigmas": False,
    "stochastic_sampling": True,
    "fixed_step_sampler_config": {"t_list": list(DISTILLED_SIGMAS), "sample_type": "sde"},
    "fixed_step_requires_explicit_sigmas": True,
}
C = 6
SHAPE = (C, 3, 6, 10)  # [C, T', H, W] latents; diffusers gets a leading batch dim


class FakeVelocity:
    """v = W·x (channel mixing) + small timestep-dependent drift: deterministic, x- and t-dependent."""

    def __init__(self, seed: int = 1):
        g = torch.Generator().manual_seed(seed)
        self.w = torch.randn(C, C, generator=g) / math.sqrt(C)
        self.bias = torch.randn(C, 1, 1, 1, generator=g) * 0.1

    def __call__(self, x: torch.Tensor, t) -> torch.Tensor:
        t = float(t)
        w = self.w.to(x.dtype)
        return torch.einsum("ij,j...->i...", w, x) + (t / 1000.0) * self.bias.to(x.dtype)


def _latents(seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed)).to(dtype)


def _run_ours(sampler, x, vel, generator=None):
    traj = []
    for i, t in enumerate(sampler.timesteps):
        x = sampler.step(vel(x, t), i, x, generator=generator)
        traj.append(x.clone())
    return traj


def _run_diffusers(sched, x, vel, generator=None, **step_kwargs):
    traj = []
    x = x[None]
    for t in sched.timesteps:
        kwargs = dict(step_kwargs)
        if generator is not None:
            kwargs["generator"] = generator
        x = sched.step(vel(x[0], t)[None], t, x, return_dict=False, **kwargs)[0]
        traj.append(x[0].clone())
    return traj


def _max_diff(a, b) -> float:
    assert len(a) == len(b)
    return max((x.double() - y.double()).abs().max().item() for x, y in zip(a, b))


def _native_diffusers(steps: int, shift: float) -> UniPCMultistepScheduler:
    sched = UniPCMultistepScheduler(
        use_flow_sigmas=True, use_karras_sigmas=False, flow_shift=float(shift), prediction_type="flow_prediction"
    )
    sched.set_timesteps(steps, sigmas=np.linspace(1.0 - 1.0 / 1000, 0.0, steps + 1)[:-1])
    return sched


# ---------------------------------------------------------------------------------------------- grids


def test_native_grid_matches_spec_example():
    s = make_sampler("flow_unipc", 35, shift=10)
    assert s.timesteps.dtype == torch.int64
    assert s.timesteps[:4].tolist() == [999, 996, 993, 990]
    assert s.timesteps[-4:].tolist() == [563, 483, 377, 227]
    assert s.sigmas.dtype == torch.float32 and s.sigmas.shape == (36,) and s.sigmas[-1].item() == 0.0


def test_shipped_karras_config_matches_spec_example_and_ignores_shift_and_sigmas():
    s = sampler_from_scheduler_config(SHIPPED_CONFIG, 35)
    assert s.timesteps[:4].tolist() == [995, 994, 993, 992]
    assert s.timesteps[-3:].tolist() == [229, 174, 128]
    trapped = sampler_from_scheduler_config(
        SHIPPED_CONFIG, 35, native_flow_schedule=True, overrides={"flow_shift": 10.0}
    )
    assert torch.equal(trapped.timesteps, s.timesteps) and torch.equal(trapped.sigmas, s.sigmas)


def test_diffusers_default_flow_grid_matches_spec_example():
    s = sampler_from_scheduler_config(SHIPPED_CONFIG, 35, overrides={"use_karras_sigmas": False, "flow_shift": 10.0})
    assert s.timesteps[:4].tolist() == [999, 997, 993, 990]
    assert s.timesteps[-4:].tolist() == [565, 486, 381, 233]
    assert torch.equal(make_sampler("flow_unipc", 35, shift=10, grid="diffusers").timesteps, s.timesteps)


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 7, 35, 50, 200])
@pytest.mark.parametrize("shift", [1, 3, 5, 10])
def test_native_timesteps_and_sigmas_equal_diffusers(steps, shift):
    ours = make_sampler("flow_unipc", steps, shift=shift)
    ref = _native_diffusers(steps, shift)
    assert torch.equal(ours.timesteps, ref.timesteps)
    assert torch.equal(ours.sigmas, ref.sigmas)


# ---------------------------------------------------------------------------------------------- UniPC


@pytest.mark.parametrize("steps", [1, 2, 4, 35])
@pytest.mark.parametrize("shift", [1, 3, 5, 10])
def test_flow_unipc_native_trajectory_parity_fp32(steps, shift):
    vel = FakeVelocity()
    x = _latents(steps * 100 + shift)
    ours = _run_ours(make_sampler("flow_unipc", steps, shift=shift), x, vel)
    ref = _run_diffusers(_native_diffusers(steps, shift), x, vel)
    assert _max_diff(ours, ref) <= 1e-5
    assert ours[-1].dtype == torch.float32


@pytest.mark.parametrize("steps", [4, 35])
def test_flow_unipc_bf16_state_matches_bf16_diffusers(steps):
    vel = FakeVelocity()
    x = _latents(3, torch.bfloat16)
    sampler = make_sampler("flow_unipc", steps, shift=10, state_dtype=torch.bfloat16)
    ours = _run_ours(sampler, x, vel)
    ref = _run_diffusers(_native_diffusers(steps, 10), x, vel)
    assert ours[-1].dtype == torch.bfloat16
    assert _max_diff(ours, ref) == 0.0


@pytest.mark.parametrize("steps", [1, 2, 4, 35])
@pytest.mark.parametrize("native", [False, True])
def test_shipped_config_trajectory_parity(steps, native):
    vel = FakeVelocity(2)
    x = _latents(steps)
    ref = UniPCMultistepScheduler.from_config(SHIPPED_CONFIG)
    if native:
        ref.set_timesteps(steps, sigmas=native_base_sigmas(steps))
    else:
        ref.set_timesteps(steps)
    ours = sampler_from_scheduler_config(SHIPPED_CONFIG, steps, native_flow_schedule=native)
    assert torch.equal(ours.timesteps, ref.timesteps) and torch.equal(ours.sigmas, ref.sigmas)
    assert _max_diff(_run_ours(ours, x, vel), _run_diffusers(ref, x, vel)) <= 1e-5


@pytest.mark.parametrize(
    "overrides",
    [
        {"use_karras_sigmas": False, "flow_shift": 10.0},
        {"use_karras_sigmas": False, "flow_shift": 3.0, "solver_order": 1},
        {"use_karras_sigmas": False, "flow_shift": 5.0, "lower_order_final": False},
        {"use_karras_sigmas": False, "flow_shift": 5.0, "solver_type": "bh1", "disable_corrector": [0, 3]},
    ],
)
def test_config_variants_trajectory_parity(overrides, tmp_path):
    path = tmp_path / "scheduler"
    path.mkdir()
    (path / "scheduler_config.json").write_text(json.dumps({**SHIPPED_CONFIG, **overrides}))
    vel = FakeVelocity(3)
    x = _latents(5)
    ref = UniPCMultistepScheduler.from_config({**SHIPPED_CONFIG, **overrides})
    ref.set_timesteps(12)
    ours = sampler_from_scheduler_config(path, 12)
    assert torch.equal(ours.timesteps, ref.timesteps)
    assert _max_diff(_run_ours(ours, x, vel), _run_diffusers(ref, x, vel)) <= 1e-5


def test_single_step_unipc_and_euler_return_the_x0_prediction():
    vel = FakeVelocity()
    x = _latents(1)
    for kind in ("flow_unipc", "flow_euler"):
        s = make_sampler(kind, 1, shift=5)
        v = vel(x, s.timesteps[0])
        assert torch.allclose(s.step(v, 0, x), x - s.sigmas[0] * v, atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------------------------- Euler


@pytest.mark.parametrize("steps", [1, 2, 4, 35])
@pytest.mark.parametrize("shift", [1, 3, 5, 10])
def test_flow_euler_trajectory_parity(steps, shift):
    vel = FakeVelocity(4)
    x = _latents(steps + shift)
    ours_s = make_sampler("flow_euler", steps, shift=shift)
    ref = FlowMatchEulerDiscreteScheduler(shift=float(shift))
    ref.set_timesteps(sigmas=native_base_sigmas(steps))
    # same grid as UniPC (sigmas agree to float32 rounding); int timesteps like UniPC's
    assert torch.allclose(ours_s.sigmas, ref.sigmas, atol=1e-6, rtol=0)
    assert torch.equal(ours_s.timesteps, make_sampler("flow_unipc", steps, shift=shift).timesteps)
    ours = []
    xo = x
    for i, t in enumerate(ref.timesteps):  # feed both the same velocity inputs (diffusers' float t)
        xo = ours_s.step(vel(xo, t), i, xo)
        ours.append(xo)
    assert _max_diff(ours, _run_diffusers(ref, x, vel)) <= 1e-5


# ---------------------------------------------------------------------------------------------- distilled


def _distilled_reference() -> FlowMatchEulerDiscreteScheduler:
    cfg = {k: v for k, v in DISTILLED_CONFIG.items() if not k.startswith("fixed_step")}
    ref = FlowMatchEulerDiscreteScheduler.from_config(cfg)
    ref.set_timesteps(sigmas=list(DISTILLED_SIGMAS))
    return ref


def test_distilled_timesteps_are_float_and_equal_diffusers():
    ours = make_sampler("distilled_sde")
    ref = _distilled_reference()
    assert ours.timesteps.dtype == torch.float32
    assert torch.equal(ours.timesteps, ref.timesteps)
    assert torch.equal(ours.sigmas, ref.sigmas)
    assert ours.timesteps[:2].tolist() == [1000.0, 937.5]
    assert ours.num_steps == 4 and ours.stochastic


@pytest.mark.parametrize("from_config", [False, True])
def test_distilled_sde_trajectory_parity_with_seed(from_config):
    vel = FakeVelocity(5)
    ref = _distilled_reference()
    ref_noise = randn_tensor((1, *SHAPE), generator=torch.Generator().manual_seed(42), dtype=torch.float32)
    ours_noise = draw_noise(SHAPE, torch.Generator().manual_seed(42), "cpu")
    assert torch.equal(ours_noise, ref_noise[0])
    sampler = sampler_from_scheduler_config(DISTILLED_CONFIG) if from_config else make_sampler("distilled_sde", 4)
    assert isinstance(sampler, DistilledSDESampler)
    ours = _run_ours(sampler, ours_noise, vel, generator=torch.Generator().manual_seed(7))
    theirs = _run_diffusers(ref, ref_noise[0], vel, generator=torch.Generator().manual_seed(7))
    assert _max_diff(ours, theirs) <= 1e-6


def test_distilled_reanchor_keeps_conditioned_frames():
    vel = FakeVelocity(6)
    s = make_sampler("distilled_sde")
    ref = _latents(9)
    mask = torch.zeros(SHAPE[1], 1, 1)
    mask[0] = 1.0
    g = torch.Generator().manual_seed(0)
    x = reanchor(draw_noise(SHAPE, g), ref, mask)
    for i, t in enumerate(s.timesteps):
        x = reanchor(s.step(vel(x, t), i, x, generator=g), ref, mask)
        assert torch.equal(x[:, 0], ref[:, 0])


def test_distilled_custom_sigmas_and_terminal_zero():
    s = make_sampler("distilled_sde", sigmas=[1.0, 0.5, 0.0])
    assert s.num_steps == 2 and s.sigmas.tolist() == [1.0, 0.5, 0.0]


# ---------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("steps", [0, -1, 1001, 2.5, True, "10"])
def test_bad_steps_name_the_range(steps):
    with pytest.raises(SamplerConfigError, match=r"\[1, 1000\]"):
        make_sampler("flow_unipc", steps, shift=5)


@pytest.mark.parametrize("shift", [0, -2, float("nan"), float("inf"), 101, "5"])
def test_bad_shift_names_the_range(shift):
    with pytest.raises(SamplerConfigError, match=r"\(0, 100\]"):
        make_sampler("flow_euler", 10, shift=shift)


def test_bad_kind_lists_the_allowed_kinds():
    with pytest.raises(SamplerConfigError, match="flow_unipc, flow_euler, distilled_sde"):
        make_sampler("ddim", 10, shift=5)


def test_missing_or_ignored_parameters_are_errors():
    with pytest.raises(SamplerConfigError, match="explicit shift"):
        make_sampler("flow_unipc", 10)
    with pytest.raises(SamplerConfigError, match="ignores shift"):
        make_sampler("flow_unipc", 10, shift=5, grid="karras")
    with pytest.raises(SamplerConfigError, match="fixed step count of 4"):
        make_sampler("distilled_sde", 35)
    with pytest.raises(SamplerConfigError, match="allowed: native, diffusers, karras"):
        make_sampler("flow_unipc", 10, shift=5, grid="cosine")
    with pytest.raises(SamplerConfigError, match="strictly decreasing"):
        make_sampler("distilled_sde", sigmas=[0.5, 0.9])
    with pytest.raises(SamplerConfigError, match="not supported"):
        sampler_from_scheduler_config({**SHIPPED_CONFIG, "use_karras_sigmas": False, "thresholding": True}, 10)
    with pytest.raises(SamplerConfigError, match="flow_prediction"):
        sampler_from_scheduler_config({"_class_name": "UniPCMultistepScheduler"}, 10)
    with pytest.raises(SamplerConfigError, match="state_dtype"):
        make_sampler("flow_unipc", 10, shift=5, state_dtype=torch.int32)


def test_steps_must_be_taken_in_order():
    s = make_sampler("flow_unipc", 5, shift=5)
    x = _latents()
    v = torch.zeros_like(x)
    x1 = s.step(v, 0, x)
    with pytest.raises(RuntimeError, match="expected index 1, got 2"):
        s.step(v, 2, x1)
    with pytest.raises(IndexError, match=r"\[0, 4\]"):
        s.step(v, 5, x1)
    # index 0 starts over and reproduces the same first step
    assert torch.equal(s.step(v, 0, x), x1)


def test_zero_velocity_keeps_conditioned_content_exact_in_fp32():
    # A latent frame whose velocity is masked to zero must survive the UniPC trajectory unchanged
    # only up to fp32 rounding; check the drift is tiny (documented: re-anchor for bit-exactness).
    s = make_sampler("flow_unipc", 35, shift=10)
    x = _latents(11)
    vel = FakeVelocity()
    mask = torch.ones(SHAPE[1], 1, 1)
    mask[0] = 0.0
    start = x[:, 0].clone()
    for i, t in enumerate(s.timesteps):
        x = s.step(vel(x, t) * mask, i, x)
    assert (x[:, 0] - start).abs().max().item() < 1e-4


def test_helpers():
    c, u = torch.tensor([2.0]), torch.tensor([1.0])
    assert cfg_combine(c, u, 6.0).item() == 7.0
    assert guidance_active(999, None)
    assert guidance_active(999, (400, 1000)) and not guidance_active(400, (400, 1000))
    assert not guidance_active(torch.tensor(300), (400, 1000))
    assert isinstance(make_sampler("unipc", 3, shift=1), FlowUniPCSampler)
    assert isinstance(make_sampler("euler", 3, shift=1), FlowEulerSampler)
    if torch.cuda.is_available():  # pragma: no cover - device runs only
        cuda_gen = torch.Generator("cuda").manual_seed(0)
        with pytest.raises(ValueError, match="generator"):
            draw_noise((2,), cuda_gen, "cpu")


def test_unreadable_scheduler_config_names_the_file(tmp_path):
    bad = tmp_path / "scheduler_config.json"
    bad.write_text("{not json")
    with pytest.raises(SamplerConfigError, match=rf"{bad}: unreadable scheduler config JSON"):
        read_scheduler_config(tmp_path)
    bad.write_text(json.dumps([1, 2]))
    with pytest.raises(SamplerConfigError, match="scheduler config must be a JSON object"):
        read_scheduler_config(bad)
