"""FP8 (e4m3) weight storage: per-tensor (or per-output-channel) scaled weights, upcast per layer on the fly.

:class:`Fp8Linear` stores ``weight`` as ``float8_e4m3fn`` plus an fp32 ``weight_scale`` so that
``W ≈ weight.float() * weight_scale``. The forward pass upcasts the fp8 weight to the activation dtype
(exact: every e4m3 value is representable in fp16/bf16), applies the scale and runs an ordinary GEMM, so
compute stays in the activation dtype and only one layer's upcast weight exists at a time.

On CUDA GPUs with compute capability >= 8.9 (Ada/Hopper/Blackwell) ``Fp8Linear.fp8_matmul = True`` instead
runs ``torch._scaled_mm`` on fp8 operands (activations quantised per tensor: ModelOpt's static
``input_scale`` when the checkpoint has one, else the current amax). That path is off by default.

Checkpoint conventions (NVIDIA ModelOpt ``quant_algo: FP8``): next to ``<module>.weight`` (F8_E4M3) sit
``<module>.weight_scale`` (fp32 scalar; dequantised weight = ``weight * weight_scale``) and
``<module>.input_scale`` (fp32 scalar activation scale). Per-output-channel ``weight_scale`` ``[out]`` /
``[out, 1]`` is accepted too; block scales are not.

Only the Linear layers inside the decoder layers are stored in fp8; embeddings, norms, biases, the latent
``proj_in``/``proj_out`` and the timestep MLP keep the base dtype (:func:`fp8_module_names`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(FP8_DTYPE).max)  # 448
WEIGHT_STORAGES = ("default", "auto", "fp8_e4m3fn", "int8", "int4", "int4_g64")  # int*: cosmos3.model.quant
_STORAGE_ALIASES = {
    None: "default",
    "": "default",
    "fp8": "fp8_e4m3fn",
    "float8_e4m3fn": "fp8_e4m3fn",
    FP8_DTYPE: "fp8_e4m3fn",
}


def check_weight_storage(storage: str | torch.dtype | None) -> str:
    """Normalise a weight-storage name: ``"default"`` (the load dtype), ``"auto"`` (fp8 when the checkpoint is
    fp8, else the load dtype), ``"fp8_e4m3fn"``, ``"int8"``, ``"int4"`` (group 128) or ``"int4_g64"``. Raises
    ``ValueError`` listing the allowed names."""
    name = _STORAGE_ALIASES.get(storage, storage)
    if name not in WEIGHT_STORAGES:
        raise ValueError(
            f"weight storage {storage!r} is not supported; allowed: {', '.join(WEIGHT_STORAGES)} (or 'fp8')"
        )
    return name


def quantize_fp8(weight: torch.Tensor, per_channel: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale ``weight`` [out, in] into e4m3's range: returns ``(fp8 weight, fp32 scale)``.

    Per tensor (default) the scale is a 0-dim tensor ``amax / 448``; ``per_channel`` gives one scale per
    output row (shape ``[out]``). An all-zero tensor/row gets scale 1.
    """
    w = weight.detach().float()
    if per_channel:
        amax = w.abs().amax(dim=1)
    else:
        amax = w.abs().amax()
    scale = torch.where(amax > 0, amax / FP8_MAX, torch.ones_like(amax))
    scaled = w / (scale[:, None] if per_channel else scale)
    return scaled.clamp_(-FP8_MAX, FP8_MAX).to(FP8_DTYPE), scale.to(torch.float32)


def dequantize_fp8(weight: torch.Tensor, scale: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    """``weight.float() * scale`` rounded once to ``dtype`` (``scale`` 0-dim, [out] or [out, 1]; None = 1)."""
    w = weight.float()
    if scale is not None:
        scale = scale.float()
        w = w * (scale.reshape(-1, *([1] * (w.dim() - 1))) if scale.numel() > 1 else scale.reshape(()))
    return w.to(dtype)


def normalize_scale(scale: torch.Tensor, out_features: int, name: str) -> torch.Tensor:
    """Check a checkpoint scale: a scalar (any of ``[]``, ``[1]``) -> 0-dim, or per-channel -> ``[out]`` fp32."""
    if scale.numel() == 1:
        return scale.reshape(()).float()
    if scale.numel() == out_features and scale.dim() <= 2 and scale.shape[0] == out_features:
        return scale.reshape(out_features).float()
    raise ValueError(
        f"{name}: fp8 scale of shape {list(scale.shape)} is not supported (per-tensor scalar or one scale per "
        f"output channel [{out_features}] only; block-scaled FP8 checkpoints are not supported)"
    )


class Fp8Linear(nn.Module):
    """``y = x W^T + b`` with ``W`` stored in float8_e4m3fn and an fp32 scale; computed in ``x``'s dtype.

    Parameters/buffers: ``weight`` [out, in] fp8, ``weight_scale`` fp32 (0-dim or [out]), optional
    ``input_scale`` fp32 0-dim (ModelOpt static activation scale; used only by the fp8-matmul path), ``bias``
    [out] in the base dtype.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(
            torch.empty(out_features, in_features, device=device, dtype=FP8_DTYPE), requires_grad=False
        )
        self.register_buffer("weight_scale", torch.ones((), device=device, dtype=torch.float32))
        self.register_buffer("input_scale", None)
        if bias:
            self.bias = nn.Parameter(torch.empty(out_features, device=device, dtype=dtype), requires_grad=False)
        else:
            self.register_parameter("bias", None)
        self.fp8_matmul = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` [..., in] (fp16/bf16/fp32) -> [..., out] in ``x.dtype``."""
        if self.fp8_matmul and fp8_matmul_supported(x) and self._scaled_mm_shapes_ok():
            return self.forward_fp8_matmul(x)
        scale = self.weight_scale
        if scale.dim() == 0:
            # fp8 -> x.dtype is exact; a 0-dim fp32 scale keeps x.dtype and is applied in fp32 (one rounding).
            weight = self.weight.to(x.dtype) * scale
        else:
            weight = (self.weight.float() * scale[:, None]).to(x.dtype)
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        return F.linear(x, weight, bias)

    def _scaled_mm_shapes_ok(self) -> bool:
        return self.weight_scale.dim() == 0 and self.in_features % 16 == 0 and self.out_features % 16 == 0

    def forward_fp8_matmul(self, x: torch.Tensor) -> torch.Tensor:
        """fp8 x fp8 GEMM via ``torch._scaled_mm`` (activations quantised per tensor); output in ``x.dtype``.

        Called by :meth:`forward` only on supported GPUs when :attr:`fp8_matmul` is set; callable directly
        (e.g. on the CPU, where recent torch builds also implement ``_scaled_mm``) for testing.
        """
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        if self.input_scale is not None:
            x_scale = self.input_scale.float()
        else:
            amax = x2.abs().amax().float()
            x_scale = torch.where(amax > 0, amax / FP8_MAX, torch.ones_like(amax))
        x8 = (x2.float() / x_scale).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
        rows = x8.shape[0]
        pad = (-rows) % 16
        if pad:
            x8 = F.pad(x8.view(torch.uint8), (0, 0, 0, pad)).view(FP8_DTYPE)
        out_dtype = x.dtype if x.dtype in (torch.float16, torch.bfloat16, torch.float32) else torch.bfloat16
        bias = self.bias.to(out_dtype) if self.bias is not None and out_dtype != torch.float32 else None
        y = torch._scaled_mm(
            x8,
            self.weight.t(),
            scale_a=x_scale.reshape(()),
            scale_b=self.weight_scale.float().reshape(()),
            bias=bias,
            out_dtype=out_dtype,
        )
        if pad:
            y = y[:rows]
        if self.bias is not None and bias is None:
            y = y + self.bias.to(y.dtype)
        return y.reshape(*shape[:-1], self.out_features).to(x.dtype)

    @classmethod
    def from_linear(cls, linear: nn.Module, per_channel: bool = False) -> Fp8Linear:
        """Quantise a loaded ``nn.Linear``-like module (``weight`` [out, in], optional ``bias``)."""
        weight = linear.weight
        out_features, in_features = weight.shape
        bias = getattr(linear, "bias", None)
        module = cls(
            in_features, out_features, bias is not None, device="meta", dtype=bias.dtype if bias is not None else None
        )
        w8, scale = quantize_fp8(weight, per_channel=per_channel)
        module.weight = nn.Parameter(w8, requires_grad=False)
        module.weight_scale = scale
        if bias is not None:
            module.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)
        return module

    def extra_repr(self) -> str:
        scale = "per-channel" if self.weight_scale.dim() else "per-tensor"
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, {scale}"
        )


def fp8_matmul_supported(x: torch.Tensor) -> bool:
    """True for CUDA tensors on a GPU with fp8 tensor cores (compute capability >= 8.9)."""
    if not x.is_cuda or not hasattr(torch, "_scaled_mm"):
        return False
    return torch.cuda.get_device_capability(x.device) >= (8, 9)


def fp8_module_names(model: nn.Module) -> list[str]:
    """Names of the Linear-like modules stored in fp8: every 2-D-weight projection inside ``*.layers.N``
    of the text and generation towers (attention q/k/v/out and MLP)."""
    names = []
    for tower in ("text_tower", "gen_tower"):
        tower_module = getattr(model, tower, None)
        if tower_module is None:
            continue
        for name, module in tower_module.layers.named_modules():
            weight = getattr(module, "weight", None)
            if isinstance(weight, torch.Tensor) and weight.dim() == 2 and hasattr(module, "in_features"):
                names.append(f"{tower}.layers.{name}")
    return names


def swap_in_fp8_linears(model: nn.Module, names: Iterable[str] | None = None) -> list[str]:
    """Replace the modules ``names`` (default :func:`fp8_module_names`) by empty meta :class:`Fp8Linear`.

    For a model built on the meta device before loading; returns the replaced names.
    """
    names = list(fp8_module_names(model) if names is None else names)
    for name in names:
        parent_name, _, leaf = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        old = getattr(parent, leaf)
        bias = getattr(old, "bias", None)
        setattr(
            parent,
            leaf,
            Fp8Linear(
                old.in_features,
                old.out_features,
                bias is not None,
                device="meta",
                dtype=bias.dtype if bias is not None else None,
            ),
        )
    return names


def quantize_model_fp8(model: nn.Module, per_channel: bool = False) -> list[str]:
    """Convert an already loaded model's layer projections to :class:`Fp8Linear` in place; returns their names."""
    names = fp8_module_names(model)
    for name in names:
        parent_name, _, leaf = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, leaf, Fp8Linear.from_linear(getattr(parent, leaf), per_channel=per_channel))
    return names


def set_fp8_matmul(model: nn.Module, enabled: bool) -> int:
    """Switch the fp8-matmul path of every :class:`Fp8Linear` in ``model``; returns how many were switched."""
    count = 0
    for module in model.modules():
        if isinstance(module, Fp8Linear):
            module.fp8_matmul = bool(enabled)
            count += 1
    return count


def error_stats(reference: torch.Tensor, other: torch.Tensor) -> dict[str, float]:
    """``max_abs``, ``rel_l2`` (||a-b|| / ||a||) and ``psnr`` (dB, peak = max|reference|) of two tensors."""
    a, b = reference.detach().float(), other.detach().float()
    diff = a - b
    mse = diff.pow(2).mean().item()
    peak = a.abs().max().item()
    norm = a.norm().item()
    return {
        "max_abs": diff.abs().max().item(),
        "rel_l2": diff.norm().item() / norm if norm > 0 else float("inf"),
        "psnr": 10 * math.log10(peak * peak / mse) if mse > 0 else float("inf"),
    }
