"""Stand-in for ``comfy.conds.CONDRegular`` (the base class model-specific conditioning objects derive from)."""

from __future__ import annotations

import torch


def _repeat_to_batch_size(tensor, batch_size):
    if tensor.shape[0] > batch_size:
        return tensor[:batch_size]
    if tensor.shape[0] < batch_size:
        return tensor.repeat([-(-batch_size // tensor.shape[0])] + [1] * (tensor.ndim - 1))[:batch_size]
    return tensor


class CONDRegular:
    def __init__(self, cond):
        self.cond = cond

    def _copy_with(self, cond):
        return self.__class__(cond)

    def process_cond(self, batch_size, **kwargs):
        return self._copy_with(_repeat_to_batch_size(self.cond, batch_size))

    def can_concat(self, other):
        return self.cond.shape == other.cond.shape and self.cond.device == other.cond.device

    def concat(self, others):
        return torch.cat([self.cond] + [x.cond for x in others])

    def size(self):
        return list(self.cond.size())
