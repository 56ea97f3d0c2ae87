"""Rectified-flow samplers for Cosmos3: flow UniPC (bh2), flow Euler and the distilled 4-step SDE.

Conventions (shared by every sampler here):

* ``x_σ = (1 − σ)·x₀ + σ·ε`` with σ ∈ [0, 1] (σ = 1 is pure noise); the network predicts the velocity
  ``v = ε − x₀``, so ``x₀ = x_σ − σ·v``.
* ``sampler.sigmas`` holds N + 1 float32 values ending in 0; ``sampler.timesteps`` holds the N values the
  transformer receives. For the UniPC/Euler grids they are **int64, truncated** ``int(σ·1000)`` (computed
  from the float64 σ before it is stored as float32, exactly like diffusers and the framework). The
  distilled SDE keeps float32 timesteps ``σ·1000``.
* ``sampler.step(velocity, index, sample, generator=None)`` advances the sample from ``sigmas[index]`` to
  ``sigmas[index + 1]``. Steps must be taken in order; ``index == 0`` starts a fresh trajectory.
* The sampler state (sample, stored x₀ predictions) is kept in ``state_dtype`` — float32 by default, like
  the framework. ``torch.bfloat16`` reproduces older diffusers pipelines that kept latents in bf16.

Sigma grids:

* ``"native"`` (framework ground truth): ``linspace(1 − 1/1000, 0, N + 1)[:−1]`` then shifted,
  ``σ' = s·σ / (1 + (s − 1)·σ)``; equals diffusers ``use_native_flow_schedule``.
* ``"diffusers"``: diffusers' default flow grid ``linspace(1, 1/1000, N + 1)[:−1]`` shifted, first σ
  nudged below 1 by 1e-6.
* ``"karras"``: what the shipped ``scheduler_config.json`` (``use_karras_sigmas: true``, sigma_min 0.147,
  sigma_max 200) gives: EDM Karras ρ = 7 sigmas mapped by σ/(1 + σ). Shift has no effect there.

The arithmetic of each update mirrors diffusers ``UniPCMultistepScheduler`` /
``FlowMatchEulerDiscreteScheduler`` operation by operation (float32 0-dim coefficients), so float32
trajectories agree to ~1e-7 and bf16 ones bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import Cosmos3Error
from ..files.json_files import read_json_object

NUM_TRAIN_TIMESTEPS = 1000
SAMPLER_KINDS = ("flow_unipc", "flow_euler", "distilled_sde")
SIGMA_GRIDS = ("native", "diffusers", "karras")
_KIND_ALIASES = {
    "unipc": "flow_unipc",
    "flow_unipc": "flow_unipc",
    "euler": "flow_euler",
    "flow_euler": "flow_euler",
    "distilled": "distilled_sde",
    "distilled_sde": "distilled_sde",
    "sde": "distilled_sde",
}
MIN_STEPS, MAX_STEPS = 1, 1000
MIN_SHIFT_EXCLUSIVE, MAX_SHIFT = 0.0, 100.0
# The shipped (non-distilled) checkpoints' scheduler_config.json values.
KARRAS_SIGMA_MIN = 0.147
KARRAS_SIGMA_MAX = 200.0
KARRAS_RHO = 7.0
# The distilled *-4Step checkpoints' fixed schedule (``fixed_step_sampler_config.t_list``); 0 is appended.
DISTILLED_SIGMAS = (1.0, 0.9375, 0.8333333333333334, 0.625)
_STATE_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


class SamplerConfigError(Cosmos3Error):
    """A sampler was requested with an unknown kind, an out-of-range value or an unsupported config."""


# ----------------------------------------------------------------------------------------------------
# Sigma grids (float64 numpy, N values, without the terminal 0)


def _check_steps(steps: Any) -> int:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise SamplerConfigError(f"steps must be an integer in [{MIN_STEPS}, {MAX_STEPS}], got {steps!r}")
    if not MIN_STEPS <= int(steps) <= MAX_STEPS:
        raise SamplerConfigError(f"steps must be in [{MIN_STEPS}, {MAX_STEPS}], got {steps}")
    return int(steps)


def _check_shift(shift: Any) -> float:
    if isinstance(shift, bool) or not isinstance(shift, (int, float, np.floating, np.integer)):
        raise SamplerConfigError(f"shift must be a number in (0, {MAX_SHIFT:g}], got {shift!r}")
    value = float(shift)
    if not math.isfinite(value) or not MIN_SHIFT_EXCLUSIVE < value <= MAX_SHIFT:
        raise SamplerConfigError(f"shift must be in (0, {MAX_SHIFT:g}], got {shift!r}")
    return value


def shift_sigmas(sigmas: np.ndarray, shift: float) -> np.ndarray:
    """Apply the rectified-flow time shift ``s·σ / (1 + (s − 1)·σ)`` (float64)."""
    sigmas = np.asarray(sigmas, dtype=np.float64)
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def native_base_sigmas(steps: int, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> np.ndarray:
    """The framework's unshifted grid ``linspace(1 − 1/T, 0, N + 1)[:−1]`` (diffusers' ``sigmas=`` input)."""
    steps = _check_steps(steps)
    return np.linspace(1.0 - 1.0 / num_train_timesteps, 0.0, steps + 1)[:-1]


def native_flow_sigmas(steps: int, shift: float) -> np.ndarray:
    """Shifted native grid (N float64 values), as diffusers' flow branch sees it (incl. its σ≈1 nudge)."""
    return _flow_branch(native_base_sigmas(steps), _check_shift(shift))


def diffusers_flow_sigmas(steps: int, shift: float, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> np.ndarray:
    """diffusers' default flow grid (karras off, no explicit sigmas), shifted."""
    steps = _check_steps(steps)
    base = np.linspace(1.0, 1.0 / num_train_timesteps, steps + 1)[:-1]
    return _flow_branch(base, _check_shift(shift))


def karras_flow_sigmas(
    steps: int, sigma_min: float = KARRAS_SIGMA_MIN, sigma_max: float = KARRAS_SIGMA_MAX, rho: float = KARRAS_RHO
) -> np.ndarray:
    """Karras (EDM) sigmas from ``sigma_max`` to ``sigma_min`` mapped to flow sigmas ``σ/(1 + σ)``."""
    steps = _check_steps(steps)
    if not (0 < sigma_min < sigma_max):
        raise SamplerConfigError(
            f"karras needs 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}"
        )
    ramp = np.linspace(0, 1, steps)
    min_inv_rho = sigma_min ** (1 / rho)
    max_inv_rho = sigma_max ** (1 / rho)
    edm = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho
    return edm / (edm + 1)


def _flow_branch(base: np.ndarray, shift: float) -> np.ndarray:
    sigmas = shift_sigmas(base, shift)
    if abs(sigmas[0] - 1) < 1e-6:  # diffusers keeps log(σ) finite in the first UniPC update
        sigmas[0] -= 1e-6
    return sigmas


def truncated_timesteps(sigmas: np.ndarray, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> torch.Tensor:
    """Integer model timesteps ``int64(σ·T)`` (truncation toward zero of the float64 product)."""
    return torch.from_numpy(np.asarray(sigmas, dtype=np.float64) * num_train_timesteps).to(torch.int64)


# ----------------------------------------------------------------------------------------------------
# Noise, re-anchoring and CFG helpers


def draw_noise(
    shape: Sequence[int],
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normal noise drawn the way diffusers' ``randn_tensor`` draws it (so seeds reproduce).

    A CPU generator draws on the CPU and the result is moved to ``device``; a generator on another device
    must match ``device``; without a generator the global RNG of ``device`` is used.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    rand_device = device
    if generator is not None:
        gen_type = generator.device.type
        if gen_type != device.type:
            if gen_type != "cpu":
                raise ValueError(
                    f"cannot draw {device.type} noise from a {gen_type} generator; use a cpu or {device.type} generator"
                )
            rand_device = torch.device("cpu")
    return torch.randn(tuple(shape), generator=generator, device=rand_device, dtype=dtype).to(device)


def reanchor(sample: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Put the clean conditioning latents back: ``mask·reference + (1 − mask)·sample`` (mask 1 = conditioned)."""
    mask = mask.to(device=sample.device, dtype=sample.dtype)
    return mask * reference.to(device=sample.device, dtype=sample.dtype) + (1.0 - mask) * sample


def cfg_combine(v_cond: torch.Tensor, v_uncond: torch.Tensor, guidance: float) -> torch.Tensor:
    """Classifier-free guidance in the canonical order ``u + g·(c − u)`` (other rewrites round differently)."""
    return v_uncond + guidance * (v_cond - v_uncond)


def guidance_active(timestep: float | int | torch.Tensor, interval: Sequence[float] | None) -> bool:
    """Whether CFG applies at ``timestep`` (0..1000 scale) given an optional ``(low, high)`` interval.

    Follows the framework: strictly inside, ``low < t < high``. ``None`` means always.
    """
    if interval is None:
        return True
    if len(interval) != 2:
        raise ValueError(f"guidance interval must be (low, high), got {interval!r}")
    t = float(timestep.item() if isinstance(timestep, torch.Tensor) else timestep)
    return float(interval[0]) < t < float(interval[1])


# ----------------------------------------------------------------------------------------------------
# Samplers


def _compute_dtype(state_dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if state_dtype == torch.float64 else torch.float32


class FlowSampler:
    """Common interface: ``timesteps``, ``sigmas``, ``step(velocity, index, sample, generator=None)``."""

    kind: str = ""
    stochastic: bool = False

    def __init__(self, sigmas: np.ndarray, timesteps: torch.Tensor, *, state_dtype: torch.dtype = torch.float32):
        if state_dtype not in _STATE_DTYPES:
            raise SamplerConfigError(f"state_dtype must be one of {[str(d) for d in _STATE_DTYPES]}, got {state_dtype}")
        sig = np.concatenate([np.asarray(sigmas, dtype=np.float64), [0.0]]).astype(np.float32)
        self.sigmas: torch.Tensor = torch.from_numpy(sig)  # [N + 1] float32, CPU
        self.timesteps: torch.Tensor = timesteps  # [N]
        self.state_dtype = state_dtype
        self._next_index = 0

    @property
    def num_steps(self) -> int:
        return int(self.timesteps.shape[0])

    def reset(self) -> None:
        """Forget the trajectory so the next call must be ``step(..., index=0, ...)``."""
        self._next_index = 0

    def _begin_step(self, index: int) -> None:
        if index == 0:
            self.reset()
        if not 0 <= index < self.num_steps:
            raise IndexError(f"step index must be in [0, {self.num_steps - 1}], got {index}")
        if index != self._next_index:
            raise RuntimeError(
                f"steps must be taken in order: expected index {self._next_index}, got {index} "
                "(index 0 or reset() starts a new trajectory)"
            )

    def step(
        self,
        velocity: torch.Tensor,
        index: int,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, steps={self.num_steps}, state_dtype={self.state_dtype})"


class FlowUniPCSampler(FlowSampler):
    """Multistep UniPC (predict-x₀, flow prediction) with the UniC corrector; bh2/order 2 by default."""

    kind = "flow_unipc"

    def __init__(
        self,
        sigmas: np.ndarray,
        *,
        state_dtype: torch.dtype = torch.float32,
        solver_order: int = 2,
        solver_type: str = "bh2",
        lower_order_final: bool = True,
        disable_corrector: Sequence[int] = (),
        timesteps: torch.Tensor | None = None,
    ):
        if solver_order not in (1, 2):
            raise SamplerConfigError(f"solver_order must be 1 or 2, got {solver_order}")
        if solver_type not in ("bh1", "bh2"):
            raise SamplerConfigError(f"solver_type must be 'bh1' or 'bh2', got {solver_type!r}")
        if timesteps is None:
            timesteps = truncated_timesteps(sigmas)
        super().__init__(sigmas, timesteps, state_dtype=state_dtype)
        self.solver_order = solver_order
        self.solver_type = solver_type
        self.lower_order_final = lower_order_final
        self.disable_corrector = frozenset(int(i) for i in disable_corrector)
        self.reset()

    def reset(self) -> None:
        super().reset()
        self._x0_history: list[torch.Tensor] = []  # newest last, at most solver_order entries
        self._last_sample: torch.Tensor | None = None
        self._this_order = 0
        self._lower_order_nums = 0

    def _lambda(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        alpha = 1 - sigma
        return alpha, sigma, torch.log(alpha) - torch.log(sigma)

    def _phi(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        hh = -h  # predict-x0 form
        h_phi_1 = torch.expm1(hh)
        b_h = hh if self.solver_type == "bh1" else torch.expm1(hh)
        return hh, h_phi_1, b_h

    def _b_vector(self, hh: torch.Tensor, h_phi_1: torch.Tensor, b_h: torch.Tensor, order: int) -> list[torch.Tensor]:
        h_phi_k = h_phi_1 / hh - 1
        factorial = 1
        b = []
        for k in range(1, order + 1):
            b.append(h_phi_k * factorial / b_h)
            factorial *= k + 1
            h_phi_k = h_phi_k / hh - 1 / factorial
        return b

    def _predict(self, sample: torch.Tensor, index: int, order: int) -> torch.Tensor:
        """UniP: from σ[index] to σ[index + 1] using the stored x₀ predictions."""
        device = sample.device
        m0 = self._x0_history[-1]
        alpha_t, sigma_t, lambda_t = self._lambda(self.sigmas[index + 1].to(device))
        _, sigma_s0, lambda_s0 = self._lambda(self.sigmas[index].to(device))
        h = lambda_t - lambda_s0
        hh, h_phi_1, b_h = self._phi(h)
        x_t = sigma_t / sigma_s0 * sample - alpha_t * h_phi_1 * m0
        if order == 2:
            _, _, lambda_s1 = self._lambda(self.sigmas[index - 1].to(device))
            rk = (lambda_s1 - lambda_s0) / h
            d1 = (self._x0_history[-2] - m0) / rk
            rho = torch.ones(1, dtype=sample.dtype, device=device) * 0.5  # UniP-2 uses ρ = 1/2
            x_t = x_t - alpha_t * b_h * (rho[0] * d1)
        else:
            x_t = x_t - alpha_t * b_h * 0
        return x_t.to(sample.dtype)

    def _correct(self, x0_now: torch.Tensor, sample: torch.Tensor, index: int, order: int) -> torch.Tensor:
        """UniC: refine the sample at σ[index] with the new x₀ prediction made there."""
        last = self._last_sample
        device = sample.device
        m0 = self._x0_history[-1]
        alpha_t, sigma_t, lambda_t = self._lambda(self.sigmas[index].to(device))
        _, sigma_s0, lambda_s0 = self._lambda(self.sigmas[index - 1].to(device))
        h = lambda_t - lambda_s0
        hh, h_phi_1, b_h = self._phi(h)
        b = self._b_vector(hh, h_phi_1, b_h, order)
        x_t_ = sigma_t / sigma_s0 * last - alpha_t * h_phi_1 * m0
        d1_t = x0_now - m0
        if order == 1:
            rhos_c = torch.ones(1, dtype=last.dtype, device=device) * 0.5
            return (x_t_ - alpha_t * b_h * (0 + rhos_c[-1] * d1_t)).to(last.dtype)
        _, _, lambda_s1 = self._lambda(self.sigmas[index - 2].to(device))
        rk = (lambda_s1 - lambda_s0) / h
        d1 = (self._x0_history[-2] - m0) / rk
        rks = torch.stack([rk, torch.ones((), device=device)])
        r_mat = torch.stack([torch.pow(rks, 0), torch.pow(rks, 1)])
        rhos_c = torch.linalg.solve(r_mat, torch.stack(b)).to(device).to(last.dtype)
        corr = rhos_c[0] * d1
        return (x_t_ - alpha_t * b_h * (corr + rhos_c[-1] * d1_t)).to(last.dtype)

    def step(
        self,
        velocity: torch.Tensor,
        index: int,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Advance ``sample`` from ``sigmas[index]`` to ``sigmas[index + 1]`` (``generator`` is unused)."""
        self._begin_step(index)
        sample = sample.to(self.state_dtype)
        velocity = velocity.to(device=sample.device, dtype=self.state_dtype)
        x0 = sample - self.sigmas[index] * velocity
        use_corrector = index > 0 and (index - 1) not in self.disable_corrector and self._last_sample is not None
        if use_corrector:
            sample = self._correct(x0, sample, index, self._this_order)
        self._x0_history = (self._x0_history + [x0])[-self.solver_order :]
        order = self.solver_order
        if self.lower_order_final:
            order = min(order, self.num_steps - index)
        self._this_order = min(order, self._lower_order_nums + 1)
        self._last_sample = sample
        out = self._predict(sample, index, self._this_order)
        self._lower_order_nums = min(self._lower_order_nums + 1, self.solver_order)
        self._next_index = index + 1
        return out


class FlowEulerSampler(FlowSampler):
    """Deterministic first-order flow ODE step ``x' = x + (σ' − σ)·v``."""

    kind = "flow_euler"

    def __init__(self, sigmas: np.ndarray, *, state_dtype: torch.dtype = torch.float32):
        super().__init__(sigmas, truncated_timesteps(sigmas), state_dtype=state_dtype)

    def step(
        self,
        velocity: torch.Tensor,
        index: int,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Advance ``sample`` from ``sigmas[index]`` to ``sigmas[index + 1]`` (``generator`` is unused)."""
        self._begin_step(index)
        compute = _compute_dtype(self.state_dtype)  # diffusers upcasts this update to float32
        sample = sample.to(self.state_dtype).to(compute)
        velocity = velocity.to(device=sample.device, dtype=self.state_dtype)
        dt = self.sigmas[index + 1] - self.sigmas[index]
        self._next_index = index + 1
        return (sample + dt * velocity).to(self.state_dtype)


class DistilledSDESampler(FlowSampler):
    """Few-step sampler of the DMD2-distilled ``*-4Step`` checkpoints.

    Each step predicts ``x₀ = x − σ·v`` and re-noises it to the next sigma with fresh noise:
    ``x' = (1 − σ')·x₀ + σ'·ε``. Noise is drawn every step (also the last, where σ' = 0, so the generator
    advances exactly as in diffusers' stochastic FlowMatchEuler). Conditioned frames must be re-anchored
    by the caller after each step (:func:`reanchor`); guidance is baked into the weights (use 1.0).
    """

    kind = "distilled_sde"
    stochastic = True

    def __init__(self, sigmas: Sequence[float] = DISTILLED_SIGMAS, *, state_dtype: torch.dtype = torch.float32):
        values = [float(s) for s in sigmas]
        if values and values[-1] == 0.0:  # tolerate a t_list that already carries the terminal 0
            values = values[:-1]
        if not values:
            raise SamplerConfigError("distilled sigmas must hold at least one value in (0, 1]")
        if any(not (0.0 < s <= 1.0) for s in values) or any(a <= b for a, b in zip(values, values[1:])):
            raise SamplerConfigError(
                f"distilled sigmas must be strictly decreasing values in (0, 1], got {list(sigmas)}"
            )
        sig32 = torch.from_numpy(np.asarray(values, dtype=np.float32))
        super().__init__(np.asarray(values), sig32 * NUM_TRAIN_TIMESTEPS, state_dtype=state_dtype)

    def step(
        self,
        velocity: torch.Tensor,
        index: int,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Advance ``sample`` to ``sigmas[index + 1]`` with fresh noise drawn from ``generator``."""
        self._begin_step(index)
        compute = _compute_dtype(self.state_dtype)  # float32 (float64 for a float64 state), as diffusers
        sample = sample.to(self.state_dtype).to(compute)
        velocity = velocity.to(device=sample.device, dtype=self.state_dtype)
        sigma, sigma_next = self.sigmas[index], self.sigmas[index + 1]
        x0 = sample - sigma * velocity
        # Always drawn in the compute dtype: a bf16 draw would give different numbers for the same seed.
        noise = draw_noise(sample.shape, generator, sample.device, compute)
        self._next_index = index + 1
        return ((1.0 - sigma_next) * x0 + sigma_next * noise).to(self.state_dtype)


# ----------------------------------------------------------------------------------------------------
# Factories


def _canonical_kind(kind: str) -> str:
    canonical = _KIND_ALIASES.get(str(kind).lower()) if isinstance(kind, str) else None
    if canonical is None:
        raise SamplerConfigError(f"unknown sampler kind {kind!r}; allowed: {', '.join(SAMPLER_KINDS)}")
    return canonical


def make_sampler(
    kind: str = "flow_unipc",
    steps: int | None = None,
    *,
    shift: float | None = None,
    grid: str = "native",
    sigmas: Sequence[float] | None = None,
    karras_sigma_min: float = KARRAS_SIGMA_MIN,
    karras_sigma_max: float = KARRAS_SIGMA_MAX,
    state_dtype: torch.dtype = torch.float32,
    solver_order: int = 2,
    lower_order_final: bool = True,
) -> FlowSampler:
    """Build a sampler.

    * ``flow_unipc`` / ``flow_euler``: ``steps`` in [1, 1000]; ``grid`` "native" (default, framework) or
      "diffusers" needs ``shift`` in (0, 100]; "karras" uses ``karras_sigma_min/max`` and takes no shift.
    * ``distilled_sde``: fixed ``sigmas`` (default :data:`DISTILLED_SIGMAS`); ``steps`` must be omitted or
      equal ``len(sigmas)``; no shift.
    """
    kind = _canonical_kind(kind)
    if kind == "distilled_sde":
        values = list(DISTILLED_SIGMAS if sigmas is None else sigmas)
        n = len(values) - (1 if values and float(values[-1]) == 0.0 else 0)
        if steps is not None and steps != n:
            raise SamplerConfigError(
                f"the distilled sampler has a fixed step count of {n} (its sigmas); got steps={steps}"
            )
        if shift is not None and float(shift) != 1.0:
            raise SamplerConfigError("the distilled sampler uses fixed sigmas; shift must be omitted (or 1.0)")
        return DistilledSDESampler(values, state_dtype=state_dtype)
    if sigmas is not None:
        raise SamplerConfigError(f"explicit sigmas are only accepted by 'distilled_sde', not {kind!r}")
    if steps is None:
        raise SamplerConfigError(f"{kind} needs steps in [{MIN_STEPS}, {MAX_STEPS}]")
    if grid == "native" or grid == "diffusers":
        if shift is None:
            raise SamplerConfigError(
                f"the {grid!r} grid needs an explicit shift in (0, {MAX_SHIFT:g}] "
                "(framework defaults: 10 for video, 3 for images; see cosmos3.defaults.generation_defaults)"
            )
        grid_sigmas = native_flow_sigmas(steps, shift) if grid == "native" else diffusers_flow_sigmas(steps, shift)
    elif grid == "karras":
        if shift is not None:
            raise SamplerConfigError(
                "the 'karras' grid ignores shift; omit it (diffusers silently ignores flow_shift there)"
            )
        grid_sigmas = karras_flow_sigmas(steps, karras_sigma_min, karras_sigma_max)
    else:
        raise SamplerConfigError(f"unknown sigma grid {grid!r}; allowed: {', '.join(SIGMA_GRIDS)}")
    if kind == "flow_euler":
        return FlowEulerSampler(grid_sigmas, state_dtype=state_dtype)
    return FlowUniPCSampler(
        grid_sigmas, state_dtype=state_dtype, solver_order=solver_order, lower_order_final=lower_order_final
    )


def read_scheduler_config(source: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """Load a ``scheduler_config.json`` (a dict, the file, or the folder holding it) into a dict."""
    if isinstance(source, Mapping):
        return dict(source)
    path = Path(source)
    if path.is_dir():
        path = path / "scheduler_config.json"
    if not path.is_file():
        raise FileNotFoundError(f"scheduler config not found: {path}")
    return read_json_object(path, SamplerConfigError, "scheduler config")


def sampler_from_scheduler_config(
    config: Mapping[str, Any] | str | Path,
    steps: int | None = None,
    *,
    native_flow_schedule: bool = False,
    overrides: Mapping[str, Any] | None = None,
    state_dtype: torch.dtype = torch.float32,
) -> FlowSampler:
    """Reproduce diffusers ``from_config(config, **overrides)`` + ``set_timesteps(steps[, sigmas=native])``.

    ``native_flow_schedule`` mirrors the pipeline flag of that name: the framework's unshifted grid is
    passed as ``sigmas``. Like diffusers, with ``use_karras_sigmas`` on neither that nor ``flow_shift`` has
    any effect (the shipped Cosmos3 config has karras on: pitfall 8). A ``FlowMatchEulerDiscreteScheduler``
    config with ``fixed_step_sampler_config`` (distilled checkpoints) gives the distilled SDE sampler.
    """
    cfg = read_scheduler_config(config)
    if overrides:
        cfg.update(overrides)
    class_name = cfg.get("_class_name", "UniPCMultistepScheduler")
    if cfg.get("num_train_timesteps", NUM_TRAIN_TIMESTEPS) != NUM_TRAIN_TIMESTEPS:
        raise SamplerConfigError(f"num_train_timesteps must be {NUM_TRAIN_TIMESTEPS}, got {cfg['num_train_timesteps']}")

    if class_name == "FlowMatchEulerDiscreteScheduler":
        fixed = cfg.get("fixed_step_sampler_config") or {}
        t_list = fixed.get("t_list")
        if not t_list:
            raise SamplerConfigError(
                "FlowMatchEulerDiscreteScheduler config without fixed_step_sampler_config.t_list "
                "is not a Cosmos3 distilled config"
            )
        if not cfg.get("stochastic_sampling", False) or fixed.get("sample_type", "sde") != "sde":
            raise SamplerConfigError("only the stochastic ('sde') distilled sampler is supported")
        unsupported = ("use_dynamic_shifting", "use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "invert_sigmas")
        for key in unsupported:
            if cfg.get(key):
                raise SamplerConfigError(f"distilled scheduler config with {key}=true is not supported")
        if float(cfg.get("shift", 1.0)) != 1.0 or cfg.get("shift_terminal"):
            raise SamplerConfigError("distilled scheduler config must have shift 1.0 and no shift_terminal")
        return make_sampler("distilled_sde", steps, sigmas=t_list, state_dtype=state_dtype)

    if class_name not in ("UniPCMultistepScheduler", "Cosmos3EdgeUniPCMultistepScheduler"):
        raise SamplerConfigError(
            f"unsupported scheduler class {class_name!r}; allowed: UniPCMultistepScheduler, FlowMatchEulerDiscreteScheduler"
        )
    if cfg.get("prediction_type", "epsilon") != "flow_prediction" or not cfg.get("use_flow_sigmas", False):
        raise SamplerConfigError(
            "only flow-matching UniPC configs are supported (prediction_type='flow_prediction', use_flow_sigmas=true)"
        )
    for key in ("use_exponential_sigmas", "use_beta_sigmas", "use_dynamic_shifting", "thresholding", "shift_terminal"):
        if cfg.get(key):
            raise SamplerConfigError(f"UniPC config with {key} set is not supported")
    if not cfg.get("predict_x0", True):
        raise SamplerConfigError("UniPC config with predict_x0=false is not supported")
    if cfg.get("final_sigmas_type", "zero") != "zero":
        raise SamplerConfigError("only final_sigmas_type='zero' is supported")
    if cfg.get("solver_p") is not None:
        raise SamplerConfigError("UniPC config with solver_p is not supported")
    steps = _check_steps(steps)
    if cfg.get("use_karras_sigmas", False):
        sigma_min, sigma_max = cfg.get("sigma_min"), cfg.get("sigma_max")
        if sigma_min is None or sigma_max is None:
            raise SamplerConfigError(
                "karras UniPC configs need sigma_min and sigma_max (the Cosmos3 configs set 0.147 and 200)"
            )
        sigmas = karras_flow_sigmas(steps, float(sigma_min), float(sigma_max))
    else:
        shift = _check_shift(cfg.get("flow_shift", 1.0))
        if native_flow_schedule:
            base = native_base_sigmas(steps)
        else:
            base = np.linspace(1.0, 1.0 / NUM_TRAIN_TIMESTEPS, steps + 1)[:-1]
        sigmas = _flow_branch(base, shift)
    return FlowUniPCSampler(
        sigmas,
        state_dtype=state_dtype,
        solver_order=int(cfg.get("solver_order", 2)),
        solver_type=str(cfg.get("solver_type", "bh2")),
        lower_order_final=bool(cfg.get("lower_order_final", True)),
        disable_corrector=cfg.get("disable_corrector") or (),
    )
