"""Real fp8 GEMMs for fp8-stored weights during the middle steps of sampling.

:class:`~cosmos3.model.fp8.Fp8Linear` can multiply in fp8 (``torch._scaled_mm``, activations quantised per
tensor) on CUDA GPUs with fp8 tensor cores (compute capability >= 8.9); everywhere else it upcasts the weight
and runs the GEMM in the activation dtype. :func:`enable_fp8_matmul` turns the fp8 path on for the middle of the
schedule only: the first ``high_precision_first`` and last ``high_precision_last`` steps run the upcast path
(the early steps set the layout, the last ones the fine detail; fp8 activation rounding costs most there).
:func:`cosmos3.sampling.loop.sample` calls :meth:`Fp8MatmulSchedule.begin_step` before every step.

On a CPU (or an older GPU) the switch is harmless: ``Fp8Linear.forward`` keeps the upcast path, so results are
unchanged. The GPU path has not been measured in this repository (no GPU was available).
"""

from __future__ import annotations

from torch import nn

from ..model.fp8 import set_fp8_matmul

SCHEDULE_ATTRIBUTE = "fp8_matmul_schedule"


class Fp8MatmulSchedule:
    """Per-step switch of the fp8-matmul path of every ``Fp8Linear`` in ``model``.

    ``log`` lists, per step seen, whether the fp8 path was on (for tests and reports).
    """

    def __init__(self, model: nn.Module, high_precision_first: int = 2, high_precision_last: int = 2) -> None:
        for name, value in (("high_precision_first", high_precision_first),
                            ("high_precision_last", high_precision_last)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        self.model = model
        self.first, self.last = high_precision_first, high_precision_last
        self.log: list[bool] = []

    def fp8_at(self, index: int, total: int) -> bool:
        """Whether step ``index`` of ``total`` runs fp8 GEMMs."""
        return self.first <= index < total - self.last

    def begin_step(self, index: int, total: int) -> None:
        enabled = self.fp8_at(index, total)
        set_fp8_matmul(self.model, enabled)
        self.log.append(enabled)

    def end(self) -> None:
        """Back to the upcast path (e.g. after sampling)."""
        set_fp8_matmul(self.model, False)


def enable_fp8_matmul(
    model: nn.Module, high_precision_first: int = 2, high_precision_last: int = 2
) -> Fp8MatmulSchedule:
    """Attach a :class:`Fp8MatmulSchedule` to ``model`` (a :class:`~cosmos3.model.transformer.Cosmos3Transformer`
    with fp8 weights: ``weight_storage="fp8_e4m3fn"`` or a ModelOpt FP8 checkpoint); sampling then applies it."""
    schedule = Fp8MatmulSchedule(model, high_precision_first, high_precision_last)
    setattr(model, SCHEDULE_ATTRIBUTE, schedule)
    return schedule


def disable_fp8_matmul(model: nn.Module) -> None:
    """Remove the schedule; every layer uses the upcast path."""
    schedule = getattr(model, SCHEDULE_ATTRIBUTE, None)
    if schedule is not None:
        schedule.end()
        delattr(model, SCHEDULE_ATTRIBUTE)
