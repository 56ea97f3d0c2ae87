"""Quantised decoder-layer projections: :class:`QuantTensor` (packed weight + scales) and :class:`QuantLinear`.

Formats (``QuantTensor.fmt``): ``"int8"`` / ``"int4"`` (:mod:`.intq`) and the GGML types ``"Q8_0"``, ``"Q6_K"``,
``"Q5_K"``, ``"Q4_K"`` (:mod:`.ggml`). :class:`QuantLinear` keeps the packed weight as its ``weight`` parameter
(so block swap, ``.to()`` and byte counts see the real storage) and dequantises it on every forward, on the
weight's device, into the activation dtype: only one layer's full-precision weight exists at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import ggml
from .intq import dequantize_int4, dequantize_int8, quantize_int4, quantize_int8

INT_FORMATS = ("int8", "int4")
FORMATS = (*INT_FORMATS, *ggml.QUANTIZED_TYPES)


@dataclass
class QuantTensor:
    """A packed 2-D weight of logical ``shape`` ``(out, in)``.

    ``data``: int8 ``[out, in]`` (int8), uint8 ``[out, in/2]`` (int4) or uint8 ``[out, row_bytes]`` (GGML);
    ``scale``: fp32 ``[out]`` (int8), fp16 ``[out, groups]`` (int4) or None (GGML: scales are in the blocks).
    """

    fmt: str
    data: torch.Tensor
    scale: torch.Tensor | None
    shape: tuple[int, int]

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return dequantize_weight(self.fmt, self.data, self.scale, self.shape, dtype)

    def to(self, device: torch.device | str) -> QuantTensor:
        scale = self.scale.to(device) if self.scale is not None else None
        return QuantTensor(self.fmt, self.data.to(device), scale, self.shape)

    @property
    def nbytes(self) -> int:
        scale = self.scale.numel() * self.scale.element_size() if self.scale is not None else 0
        return self.data.numel() * self.data.element_size() + scale


def dequantize_weight(
    fmt: str, data: torch.Tensor, scale: torch.Tensor | None, shape: tuple[int, ...], dtype: torch.dtype
) -> torch.Tensor:
    """The full-precision weight of a packed one, in ``dtype``."""
    if fmt == "int8":
        return dequantize_int8(data, scale, dtype)
    if fmt == "int4":
        return dequantize_int4(data, scale, dtype)
    return ggml.dequantize(data, fmt, shape).to(dtype)


def quantize_weight(weight: torch.Tensor, fmt: str, group_size: int = 128) -> QuantTensor:
    """Quantise a float ``[out, in]`` weight to ``fmt`` (``int8``, ``int4`` with ``group_size``, or a GGML type)."""
    shape = (int(weight.shape[0]), int(weight.shape[1]))
    if fmt == "int8":
        return QuantTensor(fmt, *quantize_int8(weight), shape)
    if fmt == "int4":
        return QuantTensor(fmt, *quantize_int4(weight, group_size), shape)
    if fmt in ggml.QUANTIZED_TYPES:
        return QuantTensor(fmt, torch.from_numpy(ggml.quantize(weight, fmt)), None, shape)
    raise ValueError(f"unknown weight format {fmt!r}; supported: {', '.join(FORMATS)}")


class QuantLinear(nn.Module):
    """``y = x W^T + b`` with ``W`` packed (:class:`QuantTensor`), dequantised per call in ``x``'s dtype.

    ``weight``: the packed data (a non-trainable Parameter); ``weight_scale``: buffer (None for GGML types);
    ``bias`` [out] in the base dtype.
    """

    def __init__(self, quant: QuantTensor, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        self.fmt = quant.fmt
        self.out_features, self.in_features = quant.shape
        self.weight = nn.Parameter(quant.data, requires_grad=False)
        self.register_buffer("weight_scale", quant.scale)
        if bias is not None:
            self.bias = nn.Parameter(bias.detach(), requires_grad=False)
        else:
            self.register_parameter("bias", None)

    def dequantized_weight(self, dtype: torch.dtype) -> torch.Tensor:
        """``[out, in]`` in ``dtype`` on the weight's device."""
        return dequantize_weight(self.fmt, self.weight, self.weight_scale, (self.out_features, self.in_features), dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` [..., in] -> [..., out] in ``x.dtype``."""
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        return F.linear(x, self.dequantized_weight(x.dtype), bias)

    @classmethod
    def from_linear(cls, linear: nn.Module, fmt: str, group_size: int = 128) -> QuantLinear:
        """Quantise a loaded ``nn.Linear``-like module."""
        return cls(quantize_weight(linear.weight, fmt, group_size), getattr(linear, "bias", None))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, " \
               f"format={self.fmt}"


def replace_with_quant(model: nn.Module, module_name: str, quant: QuantTensor) -> QuantLinear:
    """Swap ``model.<module_name>`` for a :class:`QuantLinear` holding ``quant`` (its bias, even on meta, is kept)."""
    parent_name, _, leaf = module_name.rpartition(".")
    parent = model.get_submodule(parent_name)
    old = getattr(parent, leaf)
    expected = (old.out_features, old.in_features)
    if tuple(quant.shape) != expected:
        raise ValueError(f"{module_name}: quantised weight has shape {list(quant.shape)}, expected {list(expected)}")
    module = QuantLinear(quant, getattr(old, "bias", None))
    setattr(parent, leaf, module)
    return module


def quantize_model(model: nn.Module, fmt: str, group_size: int = 128) -> list[str]:
    """Convert an already loaded model's decoder-layer projections to :class:`QuantLinear` in place."""
    from ..fp8 import fp8_module_names

    names = fp8_module_names(model)
    for name in names:
        parent_name, _, leaf = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, leaf, QuantLinear.from_linear(getattr(parent, leaf), fmt, group_size))
    return names
