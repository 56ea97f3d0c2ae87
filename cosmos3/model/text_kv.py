"""Per-layer text keys/values: what the text tower hands the generation tower.

:class:`TextKVCache` holds one prompt's K/V (made once per prompt by
:meth:`~cosmos3.model.transformer.Cosmos3Transformer.encode_text`); :class:`BatchedTextKV` stacks several
prompts' caches (left-padded) for one batched generation pass, e.g. cond + uncond for CFG.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


class _PerLayerKV:
    """Shared behaviour of per-layer key/value lists (``keys[i]``, ``values[i]`` for layer ``i``)."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]

    @property
    def num_layers(self) -> int:
        return len(self.keys)

    @property
    def device(self) -> torch.device:
        return self.keys[0].device

    @property
    def dtype(self) -> torch.dtype:
        return self.keys[0].dtype

    @property
    def nbytes(self) -> int:
        """Bytes held by all cached tensors."""
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))

    def _moved(self, device: torch.device | str | None, dtype: torch.dtype | None) -> dict[str, list[torch.Tensor]]:
        return {
            "keys": [k.to(device=device, dtype=dtype) for k in self.keys],
            "values": [v.to(device=device, dtype=dtype) for v in self.values],
        }


@dataclass
class TextKVCache(_PerLayerKV):
    """Per-layer text keys/values as seen by the generation tower.

    ``keys[i]`` and ``values[i]``: ``[num_key_value_heads, text_len, head_dim]`` in the model's compute dtype;
    keys are already q/k-normalised (Edge: ``k_norm_und_for_gen``) and rotated with the text positions.
    """

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    text_len: int

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> TextKVCache:
        """Copy (if needed) onto ``device`` / ``dtype``; returns a new cache."""
        return TextKVCache(**self._moved(device, dtype), text_len=self.text_len)


@dataclass
class BatchedTextKV(_PerLayerKV):
    """Text K/V of several prompts for one batched generation-tower pass (e.g. cond + uncond for CFG).

    ``keys[i]``/``values[i]``: ``[B, nkv, Lmax, head_dim]``. Shorter prompts are *left*-padded with zeros; the
    padding is masked out of the attention (:class:`~cosmos3.model.attention.KeyPadding`). ``lengths``: true lengths.
    """

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    lengths: tuple[int, ...]

    @classmethod
    def from_caches(
        cls, caches: Sequence[TextKVCache], device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> BatchedTextKV:
        """Stack ``caches`` (one per batch row); a single cache is wrapped without copying."""
        caches = list(caches)
        if not caches or not all(isinstance(c, TextKVCache) for c in caches):
            raise TypeError("BatchedTextKV.from_caches needs a non-empty sequence of TextKVCache")
        layers = {c.num_layers for c in caches}
        heads = {(tuple(c.keys[0].shape[:1]), tuple(c.keys[0].shape[2:])) for c in caches}
        if len(layers) != 1 or len(heads) != 1:
            raise ValueError("BatchedTextKV.from_caches: the caches come from different models")
        lengths = tuple(c.text_len for c in caches)
        if len(caches) == 1:
            cache = caches[0]
            return cls(
                keys=[k.to(device=device, dtype=dtype).unsqueeze(0) for k in cache.keys],
                values=[v.to(device=device, dtype=dtype).unsqueeze(0) for v in cache.values],
                lengths=lengths,
            )
        longest = max(lengths)

        def stack(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
            first = tensors[0]
            out = torch.zeros(
                (len(tensors), first.shape[0], longest, first.shape[2]),
                dtype=dtype or first.dtype, device=device if device is not None else first.device,
            )
            for row, t in enumerate(tensors):
                out[row, :, longest - t.shape[1]:] = t
            return out

        return cls(
            keys=[stack([c.keys[i] for c in caches]) for i in range(caches[0].num_layers)],
            values=[stack([c.values[i] for c in caches]) for i in range(caches[0].num_layers)],
            lengths=lengths,
        )

    @property
    def batch(self) -> int:
        """Number of prompts (rows)."""
        return len(self.lengths)

    @property
    def text_len(self) -> int:
        """Padded text length (the longest prompt)."""
        return max(self.lengths)

    @property
    def padded(self) -> bool:
        """Whether the prompts have different lengths (so the attention masks the left padding)."""
        return min(self.lengths) != max(self.lengths)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> BatchedTextKV:
        """Copy (if needed) onto ``device`` / ``dtype``; returns a new batch."""
        return BatchedTextKV(**self._moved(device, dtype), lengths=self.lengths)
