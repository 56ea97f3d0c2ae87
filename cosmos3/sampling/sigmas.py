"""Sigma grids of Cosmos3's rectified-flow samplers (float64 numpy, N values, without the terminal 0).

* ``"native"`` (framework ground truth): ``linspace(1 − 1/1000, 0, N + 1)[:−1]`` then shifted,
  ``σ' = s·σ / (1 + (s − 1)·σ)``; equals diffusers ``use_native_flow_schedule``.
* ``"diffusers"``: diffusers' default flow grid ``linspace(1, 1/1000, N + 1)[:−1]`` shifted, first σ
  nudged below 1 by 1e-6.
* ``"karras"``: what the shipped ``scheduler_config.json`` (``use_karras_sigmas: true``, sigma_min 0.147,
  sigma_max 200) gives: EDM Karras ρ = 7 sigmas mapped by σ/(1 + σ). Shift has no effect there.

UniPC/Euler model timesteps are **int64, truncated** ``int(σ·1000)`` of the float64 σ (:func:`truncated_timesteps`),
exactly like diffusers and the framework.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..errors import Cosmos3Error

NUM_TRAIN_TIMESTEPS = 1000
SIGMA_GRIDS = ("native", "diffusers", "karras")
MIN_STEPS, MAX_STEPS = 1, 1000
MIN_SHIFT_EXCLUSIVE, MAX_SHIFT = 0.0, 100.0
# The shipped (non-distilled) checkpoints' scheduler_config.json values.
KARRAS_SIGMA_MIN = 0.147
KARRAS_SIGMA_MAX = 200.0
KARRAS_RHO = 7.0
# The distilled *-4Step checkpoints' fixed schedule (``fixed_step_sampler_config.t_list``); 0 is appended.
DISTILLED_SIGMAS = (1.0, 0.9375, 0.8333333333333334, 0.625)


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

