"""RMSNorm in the two rounding flavours Cosmos3 checkpoints were trained with.

Both compute the statistic in fp32. They differ in where the result is rounded back to the activation
dtype, which matters bit-for-bit in bf16:

* ``"qwen"`` (Nano/Super): ``x * rsqrt(mean(x²) + eps)`` in fp32, rounded to the weight dtype when that
  is half precision, *then* multiplied by the weight (two roundings in bf16).
* ``"nemotron"`` (Edge): the weight multiply also happens in fp32 and the product is rounded once to the
  input dtype.
"""

from __future__ import annotations

import torch
from torch import nn

NORM_FLAVOURS = ("qwen", "nemotron")
_HALF = (torch.float16, torch.bfloat16)


class RMSNorm(nn.Module):
    """Root-mean-square norm over the last dimension with a learned per-channel scale ``weight`` [dim]."""

    def __init__(
        self,
        dim: int,
        eps: float,
        flavour: str = "qwen",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if flavour not in NORM_FLAVOURS:
            raise ValueError(f"unknown RMSNorm flavour {flavour!r}; allowed: {', '.join(NORM_FLAVOURS)}")
        self.eps = float(eps)
        self.flavour = flavour
        self.weight = nn.Parameter(torch.ones(dim, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` [..., dim] in any float dtype -> same shape (dtype: see the module docstring)."""
        wide = x.float()
        normed = wide * torch.rsqrt(wide.pow(2).mean(-1, keepdim=True) + self.eps)
        weight = self.weight
        if self.flavour == "nemotron":
            return (weight.float() * normed).to(x.dtype)
        if weight.dtype in _HALF:
            normed = normed.to(weight.dtype)
        return normed * weight

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}, flavour={self.flavour}"
