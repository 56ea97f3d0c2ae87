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

The arithmetic of each update mirrors diffusers ``UniPCMultistepScheduler`` /
``FlowMatchEulerDiscreteScheduler`` operation by operation (float32 0-dim coefficients), so float32
trajectories agree to ~1e-7 and bf16 ones bit for bit. The sigma grids are in :mod:`.sigmas`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .sigmas import (
    DISTILLED_SIGMAS,
    NUM_TRAIN_TIMESTEPS,
    SamplerConfigError,
    truncated_timesteps,
)

_STATE_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


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
        """Advance ``sample`` from ``sigmas[index]`` to ``sigmas[index + 1]``; returns it in ``state_dtype``.

        ``generator`` feeds the fresh noise of stochastic samplers (deterministic ones ignore it).
        """
        self._begin_step(index)
        sample = sample.to(self.state_dtype)
        velocity = velocity.to(device=sample.device, dtype=self.state_dtype)
        out = self._update(velocity, index, sample, generator)
        self._next_index = index + 1
        return out

    def _update(
        self, velocity: torch.Tensor, index: int, sample: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        """One update on a state-dtype ``sample`` and ``velocity`` (the step order was checked by :meth:`step`)."""
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

    def _update(
        self, velocity: torch.Tensor, index: int, sample: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
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
        return out


class FlowEulerSampler(FlowSampler):
    """Deterministic first-order flow ODE step ``x' = x + (σ' − σ)·v``."""

    kind = "flow_euler"

    def __init__(self, sigmas: np.ndarray, *, state_dtype: torch.dtype = torch.float32):
        super().__init__(sigmas, truncated_timesteps(sigmas), state_dtype=state_dtype)

    def _update(
        self, velocity: torch.Tensor, index: int, sample: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        sample = sample.to(_compute_dtype(self.state_dtype))  # diffusers upcasts this update to float32
        dt = self.sigmas[index + 1] - self.sigmas[index]
        return (sample + dt * velocity).to(self.state_dtype)


class DistilledSDESampler(FlowSampler):
    """Few-step sampler of the DMD2-distilled ``*-4Step`` checkpoints.

    Each step predicts ``x₀ = x − σ·v`` and re-noises it to the next sigma with fresh noise:
    ``x' = (1 − σ')·x₀ + σ'·ε``. Noise is drawn every step (also the last, where σ' = 0, so the generator
    advances exactly as in diffusers' stochastic FlowMatchEuler). Conditioned frames must be re-anchored
    by the caller after each step (:func:`cosmos3.sampling.loop.reanchor`); guidance is baked into the weights
    (use 1.0).
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

    def _update(
        self, velocity: torch.Tensor, index: int, sample: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        compute = _compute_dtype(self.state_dtype)  # float32 (float64 for a float64 state), as diffusers
        sample = sample.to(compute)
        sigma, sigma_next = self.sigmas[index], self.sigmas[index + 1]
        x0 = sample - sigma * velocity
        # Always drawn in the compute dtype: a bf16 draw would give different numbers for the same seed.
        noise = draw_noise(sample.shape, generator, sample.device, compute)
        return ((1.0 - sigma_next) * x0 + sigma_next * noise).to(self.state_dtype)
