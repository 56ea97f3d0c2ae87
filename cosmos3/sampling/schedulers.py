"""Building a sampler: from a schedule name (:func:`build_sampler`), a kind and grid (:func:`make_sampler`) or a
diffusers ``scheduler_config.json`` (:func:`sampler_from_scheduler_config`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..files.json_files import read_json_object
from .samplers import (
    DistilledSDESampler,
    FlowEulerSampler,
    FlowSampler,
    FlowUniPCSampler,
)
from .sigmas import (
    DISTILLED_SIGMAS,
    KARRAS_SIGMA_MAX,
    KARRAS_SIGMA_MIN,
    MAX_SHIFT,
    MAX_STEPS,
    MIN_STEPS,
    NUM_TRAIN_TIMESTEPS,
    SIGMA_GRIDS,
    SamplerConfigError,
    _check_shift,
    _check_steps,
    _flow_branch,
    diffusers_flow_sigmas,
    karras_flow_sigmas,
    native_base_sigmas,
    native_flow_sigmas,
)

SAMPLER_KINDS = ("flow_unipc", "flow_euler", "distilled_sde")
_KIND_ALIASES = {
    "unipc": "flow_unipc",
    "flow_unipc": "flow_unipc",
    "euler": "flow_euler",
    "flow_euler": "flow_euler",
    "distilled": "distilled_sde",
    "distilled_sde": "distilled_sde",
    "sde": "distilled_sde",
}
SCHEDULES = ("native", "euler", "diffusers", "checkpoint", "distilled")
SCHEDULE_HELP = {
    "native": "flow UniPC (bh2, order 2) on the framework's native sigma grid with shift (default)",
    "euler": "flow Euler on the native grid with shift",
    "diffusers": "flow UniPC on diffusers' default flow grid with shift (karras off)",
    "checkpoint": "the checkpoint's scheduler_config.json as shipped (Karras sigmas: shift has no effect)",
    "distilled": "the 4-step FlowMatch SDE of *-4Step checkpoints (fixed sigmas, guidance 1)",
}


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
        unsupported = (
            "use_dynamic_shifting", "use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "invert_sigmas"
        )
        for key in unsupported:
            if cfg.get(key):
                raise SamplerConfigError(f"distilled scheduler config with {key}=true is not supported")
        if float(cfg.get("shift", 1.0)) != 1.0 or cfg.get("shift_terminal"):
            raise SamplerConfigError("distilled scheduler config must have shift 1.0 and no shift_terminal")
        return make_sampler("distilled_sde", steps, sigmas=t_list, state_dtype=state_dtype)

    if class_name not in ("UniPCMultistepScheduler", "Cosmos3EdgeUniPCMultistepScheduler"):
        raise SamplerConfigError(
            f"unsupported scheduler class {class_name!r}; "
            "allowed: UniPCMultistepScheduler, FlowMatchEulerDiscreteScheduler"
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


def build_sampler(
    schedule: str,
    steps: int | None,
    shift: float | None,
    *,
    scheduler_config: Mapping[str, Any] | str | None = None,
    native_flow_schedule: bool = False,
    distilled_sigmas: Sequence[float] | None = None,
    state_dtype: torch.dtype = torch.float32,
) -> FlowSampler:
    """Sampler for a schedule name (see :data:`SCHEDULE_HELP`)."""
    if schedule == "native":
        return make_sampler("flow_unipc", steps, shift=shift, grid="native", state_dtype=state_dtype)
    if schedule == "euler":
        return make_sampler("flow_euler", steps, shift=shift, grid="native", state_dtype=state_dtype)
    if schedule == "diffusers":
        return make_sampler("flow_unipc", steps, shift=shift, grid="diffusers", state_dtype=state_dtype)
    if schedule == "checkpoint":
        if scheduler_config is None:
            raise SamplerConfigError("schedule 'checkpoint' needs the checkpoint's scheduler/scheduler_config.json")
        config = read_scheduler_config(scheduler_config)
        if shift is not None and config.get("use_karras_sigmas", False):
            raise SamplerConfigError(
                "schedule 'checkpoint' uses the shipped Karras sigmas, where shift has no effect; "
                "leave shift empty or use schedule 'native'"
            )
        overrides = {"flow_shift": float(shift)} if shift is not None else None
        return sampler_from_scheduler_config(
            config, steps, native_flow_schedule=native_flow_schedule, overrides=overrides, state_dtype=state_dtype
        )
    if schedule == "distilled":
        if shift is not None:
            raise SamplerConfigError("schedule 'distilled' has fixed sigmas; shift must be empty")
        return make_sampler("distilled_sde", steps, sigmas=distilled_sigmas, state_dtype=state_dtype)
    raise SamplerConfigError(f"unknown schedule {schedule!r}; allowed: {', '.join(SCHEDULES)}")
