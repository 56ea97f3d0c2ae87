"""Optional TeaCache-style step cache for the generation tower (off unless a :class:`StepCache` is passed).

Consecutive denoising steps change the generation tower's *input* (latent tokens + timestep embedding)
little in the middle of a schedule, and its *residual* (output − input) even less. Per step the cache
measures the relative L1 change of the input since the previous step, ``mean|x_t − x_{t−1}| / mean|x_{t−1}|``
(optionally rescaled by a polynomial, as TeaCache does with fitted coefficients), and accumulates it. While
the accumulated change stays below ``threshold`` the layers are skipped and the last computed residual is
added to the current input instead; otherwise the layers run, their residual is stored and the
accumulator resets. The first ``warmup_steps`` and the last ``final_steps`` steps always run.

Cosmos3 has no adaLN modulation, so the signal is the first layer's input itself (patch embedding plus
timestep embedding). The decision is made once per step and shared by the CFG branches; each branch
(``"cond"``, ``"uncond"``, or the batched ``"cfg"``) keeps its own residual, and a residual is reused only if
it was computed at the most recent computed step. Memory: one input-sized signal plus one residual per
branch (``[B, N, hidden]`` in the compute dtype).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch


@dataclass
class StepCache:
    """Settings and per-run state of the step cache.

    Args:
        threshold: accumulated relative-L1 input change below which a step reuses the cached residual
            (0 disables skipping; TeaCache-style values without coefficients: ~0.05-0.3).
        warmup_steps: leading steps that always run the full tower.
        final_steps: trailing steps that always run.
        max_consecutive: most skipped steps in a row (``None`` = unlimited).
        coefficients: optional polynomial (highest power first, like ``numpy.polyval``) applied to each
            step's relative change before accumulating.
    """

    threshold: float = 0.1
    warmup_steps: int = 3
    final_steps: int = 1
    max_consecutive: int | None = None
    coefficients: Sequence[float] | None = None
    # run state
    total_steps: int = 0
    step: int = -1
    skipped_steps: list[int] = field(default_factory=list)
    _decision: bool | None = None
    _accumulated: float = 0.0
    _consecutive: int = 0
    _previous: torch.Tensor | None = None
    _residuals: dict[str, tuple[int, torch.Tensor]] = field(default_factory=dict)
    _last_computed: int = -1

    def __post_init__(self) -> None:
        for name in ("warmup_steps", "final_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"StepCache.{name} must be an integer >= 0, got {value!r}")
        if (
            isinstance(self.threshold, bool)
            or not isinstance(self.threshold, (int, float))
            or not 0 <= self.threshold < 100
        ):
            raise ValueError(f"StepCache.threshold must be a number in [0, 100), got {self.threshold!r}")
        if self.max_consecutive is not None and (
            isinstance(self.max_consecutive, bool)
            or not isinstance(self.max_consecutive, int)
            or self.max_consecutive < 1
        ):
            raise ValueError(f"StepCache.max_consecutive must be None or an integer >= 1, got {self.max_consecutive!r}")

    # ------------------------------------------------------------------ sampler side
    def reset(self, total_steps: int) -> None:
        """Forget everything (call before a sampling run of ``total_steps`` steps)."""
        self.total_steps = int(total_steps)
        self.step = -1
        self.skipped_steps = []
        self._decision = None
        self._accumulated = 0.0
        self._consecutive = 0
        self._previous = None
        self._residuals = {}
        self._last_computed = -1

    def release(self) -> None:
        """Drop the stored signal and residuals (keeps the statistics of the run)."""
        self._previous = None
        self._residuals = {}

    def begin_step(self, index: int) -> None:
        """Mark the start of denoising step ``index`` (the decision is made on its first lookup)."""
        self.step = int(index)
        self._decision = None

    @property
    def computed_steps(self) -> int:
        return max(0, self.step + 1 - len(self.skipped_steps))

    # ------------------------------------------------------------------ model side
    def lookup(self, branch: str, hidden: torch.Tensor, batch: int) -> torch.Tensor | None:
        """Residual to add to ``hidden`` instead of running the layers, or ``None`` to run them.

        ``hidden``: the first layer's input ``[1 or B, N, H]``; ``batch``: rows the output must have.
        """
        if self._decision is None:
            self._decision = self._decide(hidden)
            if self._decision:
                self.skipped_steps.append(self.step)
        if not self._decision:
            return None
        stored = self._residuals.get(branch)
        if stored is None or stored[0] != self._last_computed:
            return None
        residual = stored[1]
        if residual.shape[0] != batch or residual.shape[1:] != hidden.shape[1:]:
            return None
        return residual

    def store(self, branch: str, residual: torch.Tensor) -> None:
        """Remember a freshly computed residual (output − input of the layers) for ``branch``."""
        self._residuals[branch] = (self.step, residual.detach())
        self._last_computed = self.step

    def _decide(self, hidden: torch.Tensor) -> bool:
        signal = hidden.detach()
        previous = self._previous
        self._previous = signal
        forced = (
            previous is None
            or previous.shape != signal.shape
            or self.step < self.warmup_steps
            or self.step >= self.total_steps - self.final_steps
            or self.threshold <= 0
            or (self.max_consecutive is not None and self._consecutive >= self.max_consecutive)
        )
        if not forced:
            change = (signal - previous).abs().float().mean() / previous.abs().float().mean().clamp_min(1e-12)
            change = float(change)
            if self.coefficients:
                value = 0.0
                for c in self.coefficients:
                    value = value * change + float(c)
                change = abs(value)
            self._accumulated += change
            if self._accumulated < self.threshold:
                self._consecutive += 1
                return True
        self._accumulated = 0.0
        self._consecutive = 0
        return False
