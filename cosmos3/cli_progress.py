"""What the ``generate`` command tells the user while it works (all on stderr).

The resolved settings first, then a line per stage (prompt encoding, condition encoding, sampling, decoding)
with its duration; sampling and decoding report per step / per chunk with the time per step and the estimated
time left. On a terminal the running lines are rewritten in place; in a log each report is its own line.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

_STAGE_NAMES = {
    "encode_prompt": "text encoding (text tower, once per prompt)",
    "encode_condition": "encoding the condition (VAE)",
    "decode": "VAE decode",
}


def format_seconds(seconds: float) -> str:
    """``75.2`` -> ``"1:15"``; under a minute ``"12.3s"``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def describe_request(plan, variant: str, device, dtype) -> str:
    """One line with everything the run will use: mode, size, frames, fps, steps, guidance, shift, schedule."""
    g = plan.geometry
    what = f"{g.width}x{g.height}, " + ("1 frame" if g.is_image else f"{g.frames} frames at {g.fps:g} fps")
    steps = "fixed (distilled)" if plan.steps is None else str(plan.steps)
    shift = "-" if plan.shift is None else f"{plan.shift:g}"
    auto = f"; defaults used for: {', '.join(plan.chosen)}" if plan.chosen else ""
    return (
        f"{plan.mode.value} on Cosmos3 {variant}: {what}; steps {steps}, guidance {plan.guidance:g}, "
        f"shift {shift}, schedule {plan.schedule}; {str(dtype).replace('torch.', '')} on {device}{auto}"
    )


class Progress:
    """Callbacks for :meth:`cosmos3.pipeline.Cosmos3Pipeline.generate` (``callback`` and ``stage_callback``)."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self._stage_start: dict[str, float] = {}
        self._sampling_start = self._last = time.perf_counter()

    def line(self, text: str, *, running: bool = False) -> None:
        if self.live and running:
            print(f"\r\033[K{text}", end="", file=self.stream, flush=True)
        else:
            print(("\r\033[K" if self.live else "") + text, file=self.stream, flush=True)

    def stage(self, name: str, done: int, total: int) -> None:
        """``stage_callback``: ``(name, 0, n)`` starts a stage, ``(name, n, n)`` ends it."""
        label = _STAGE_NAMES.get(name, name)
        now = self._last = time.perf_counter()
        if done == 0:
            self._stage_start[name] = now
            self.line(f"  {label} ...")
            return
        elapsed = now - self._stage_start.get(name, now)
        if done >= total:
            self.line(f"  {label}: done in {format_seconds(elapsed)}")
        else:
            eta = elapsed / done * (total - done)
            self.line(f"  {label}: {done}/{total} ({100 * done // total}%), ETA {format_seconds(eta)}", running=True)

    def step(self, index: int, total: int, _latents=None) -> None:
        """``callback`` of the denoising loop: time of this step, elapsed and estimated time left."""
        now = time.perf_counter()
        if index == 0:
            self._sampling_start = self._last
        step_time, self._last = now - self._last, now
        done = index + 1
        elapsed = now - self._sampling_start
        eta = elapsed / done * (total - done)
        self.line(
            f"  sampling: step {done}/{total}, {step_time:.2f} s/step, elapsed {format_seconds(elapsed)}, "
            f"ETA {format_seconds(eta)}",
            running=done < total,
        )
