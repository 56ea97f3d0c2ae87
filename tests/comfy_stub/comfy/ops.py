"""Stand-in for ``comfy.ops``: ``disable_weight_init`` and ``manual_cast`` layer namespaces.

As in ComfyUI, each layer is the torch.nn class plus ``comfy_cast_weights`` / ``weight_function`` /
``bias_function``; ``reset_parameters`` does nothing (weights come from a checkpoint, so a freshly built
layer holds uninitialised memory — load or initialise weights explicitly); when casting is on (always
for ``manual_cast``) the weight and bias are cast to the input's dtype and device for each call and the
weight/bias functions are applied. Otherwise the forward is torch.nn's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class CastWeightBiasOp:
    comfy_cast_weights = False
    weight_function: list = []
    bias_function: list = []


def cast_bias_weight(s, input=None, dtype=None, device=None, bias_dtype=None):
    if input is not None:
        dtype = input.dtype if dtype is None else dtype
        device = input.device if device is None else device
    bias_dtype = dtype if bias_dtype is None else bias_dtype
    bias = None
    if getattr(s, "bias", None) is not None:
        bias = s.bias.to(device=device, dtype=bias_dtype)
        for f in s.bias_function:
            bias = f(bias)
    weight = s.weight.to(device=device, dtype=dtype)
    for f in s.weight_function:
        weight = f(weight)
    return weight, bias


def _casting(self) -> bool:
    return self.comfy_cast_weights or len(self.weight_function) > 0 or len(self.bias_function) > 0


class _CastConv(CastWeightBiasOp):
    """Shared body of the Conv1d/2d/3d layers (mixed in before the torch.nn conv class)."""

    def reset_parameters(self):
        return None

    def forward(self, input):
        if _casting(self):
            weight, bias = cast_bias_weight(self, input)
            return self._conv_forward(input, weight, bias)
        return super().forward(input)


class disable_weight_init:
    class Linear(torch.nn.Linear, CastWeightBiasOp):
        def reset_parameters(self):
            return None

        def forward(self, input, *args, **kwargs):
            if _casting(self):
                weight, bias = cast_bias_weight(self, input)
                return F.linear(input, weight, bias)
            return super().forward(input, *args, **kwargs)

    class Conv1d(_CastConv, torch.nn.Conv1d):
        pass

    class Conv2d(_CastConv, torch.nn.Conv2d):
        pass

    class Conv3d(_CastConv, torch.nn.Conv3d):
        pass

    class GroupNorm(torch.nn.GroupNorm, CastWeightBiasOp):
        def reset_parameters(self):
            return None

        def forward(self, input):
            if _casting(self):
                weight, bias = (cast_bias_weight(self, input) if self.weight is not None else (None, None))
                return F.group_norm(input, self.num_groups, weight, bias, self.eps)
            return super().forward(input)

    class LayerNorm(torch.nn.LayerNorm, CastWeightBiasOp):
        def reset_parameters(self):
            return None

        def forward(self, input):
            if _casting(self):
                weight, bias = (cast_bias_weight(self, input) if self.weight is not None else (None, None))
                return F.layer_norm(input, self.normalized_shape, weight, bias, self.eps)
            return super().forward(input)

    class RMSNorm(torch.nn.RMSNorm, CastWeightBiasOp):
        def reset_parameters(self):
            self.bias = None
            return None

        def forward(self, input):
            if _casting(self):
                weight = cast_bias_weight(self, input)[0] if self.weight is not None else None
                return F.rms_norm(input, self.normalized_shape, weight, self.eps)
            return super().forward(input)

    class Embedding(torch.nn.Embedding, CastWeightBiasOp):
        def reset_parameters(self):
            self.bias = None
            return None

        def forward(self, input, out_dtype=None):
            if _casting(self):
                dtype = None if self.weight.dtype in (torch.float16, torch.bfloat16) else out_dtype
                weight, _ = cast_bias_weight(self, device=input.device, dtype=dtype or self.weight.dtype)
                out = F.embedding(input, weight, self.padding_idx, self.max_norm, self.norm_type,
                                  self.scale_grad_by_freq, self.sparse)
                return out if out_dtype is None else out.to(dtype=out_dtype)
            return super().forward(input)

    @classmethod
    def conv_nd(cls, dims, *args, **kwargs):
        if dims == 2:
            return cls.Conv2d(*args, **kwargs)
        if dims == 3:
            return cls.Conv3d(*args, **kwargs)
        raise ValueError(f"unsupported dimensions: {dims}")


class manual_cast(disable_weight_init):
    class Linear(disable_weight_init.Linear):
        comfy_cast_weights = True

    class Conv1d(disable_weight_init.Conv1d):
        comfy_cast_weights = True

    class Conv2d(disable_weight_init.Conv2d):
        comfy_cast_weights = True

    class Conv3d(disable_weight_init.Conv3d):
        comfy_cast_weights = True

    class GroupNorm(disable_weight_init.GroupNorm):
        comfy_cast_weights = True

    class LayerNorm(disable_weight_init.LayerNorm):
        comfy_cast_weights = True

    class RMSNorm(disable_weight_init.RMSNorm):
        comfy_cast_weights = True

    class Embedding(disable_weight_init.Embedding):
        comfy_cast_weights = True
