"""Weight sources for the loader: memory-mapped safetensors (with pre-quantised int8/int4 tensors) and GGUF.

:func:`open_weights` returns a reader with the interface :func:`cosmos3.model.loading.load_transformer` uses:
``keys()``, ``reader[key].shape`` / ``.dtype`` (logical shape: an int4 weight reports ``[out, in]``),
``load_mapped(key)`` (file-backed where the stored bytes are usable as they are), ``load_copy(key)``,
``quant(key)`` (a :class:`~.linear.QuantTensor` for packed weights, else None) and ``config`` (a config
embedded in the file's metadata, or None).

Pre-quantised safetensors (written by ``python -m cosmos3.convert --to int8|int4``): next to ``<m>.weight``
sits ``<m>.weight_scale``; an int8 ``[out, in]`` weight with an fp32 ``[out]`` scale is int8, a uint8
``[out, in/2]`` weight with an fp16 ``[out, groups]`` scale is int4. Their scales are hidden from ``keys()``
(they belong to the weight). The metadata key ``cosmos3.config`` holds the transformer config as JSON.

Mapping: each file is mapped once, copy-on-write (``np.memmap`` mode ``c``); a tensor is a view of its bytes
when they are aligned for its dtype (safetensors' 8-byte aligned headers make that the rule), else it is read
into fresh memory.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...files.gguf_reader import GGUFFileReader, is_gguf
from ...files.safetensors import CheckpointError, SafetensorsReader, TensorInfo, checkpoint_files
from .linear import QuantTensor

CONFIG_KEY = "cosmos3.config"
FORMAT_KEY = "cosmos3.format"
SCALE_SUFFIX = ".weight_scale"


@dataclass(frozen=True)
class PackedInfo:
    """A pre-quantised weight: its logical ``shape``, format and the keys of its data and scale."""

    shape: tuple[int, ...]
    dtype: torch.dtype
    fmt: str
    scale_key: str


def map_tensor(info: TensorInfo, maps: dict[Path, np.memmap]) -> torch.Tensor | None:
    """A file-backed tensor view of ``info``'s bytes (None when its offset is misaligned for the dtype)."""
    itemsize = torch.empty((), dtype=info.dtype).element_size()
    if info.start % itemsize or (info.end - info.start) != math.prod(info.shape) * itemsize:
        return None
    if info.end == info.start:
        return torch.empty(info.shape, dtype=info.dtype)
    mapped = maps.get(info.file)
    if mapped is None:
        mapped = maps[info.file] = np.memmap(info.file, mode="c")
    return torch.from_numpy(mapped[info.start:info.end]).view(info.dtype).reshape(info.shape)


class MappedSafetensors(Mapping[str, Any]):
    """A :class:`SafetensorsReader` seen through the loader's interface (see the module docstring)."""

    def __init__(self, files: list[Path]) -> None:
        self.inner = SafetensorsReader(files)
        self.files = self.inner.files
        self._maps: dict[Path, np.memmap] = {}
        self._packed: dict[str, PackedInfo] = {}
        raw_config = self.inner.metadata.get(CONFIG_KEY)
        try:
            self.config = json.loads(raw_config) if raw_config else None
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{self.files[0]}: metadata {CONFIG_KEY!r} is not valid JSON ({exc})") from None
        for key, info in self.inner.items():
            scale_key = key[: -len(".weight")] + SCALE_SUFFIX if key.endswith(".weight") else None
            if scale_key is None or scale_key not in self.inner or info.dtype not in (torch.int8, torch.uint8):
                continue
            self._packed[key] = self._check_packed(key, info, scale_key)
        self._hidden = {p.scale_key for p in self._packed.values()}

    def _check_packed(self, key: str, info: TensorInfo, scale_key: str) -> PackedInfo:
        scale = self.inner[scale_key]
        where = f"{info.file}: tensor {key!r}"
        if len(info.shape) != 2:
            raise CheckpointError(f"{where}: a quantised weight must be 2-D, found {list(info.shape)}")
        rows, cols = info.shape
        if info.dtype == torch.int8:
            if tuple(scale.shape) not in ((rows,), (rows, 1)):
                raise CheckpointError(f"{where}: int8 scale {scale_key!r} has shape {list(scale.shape)}, "
                                      f"expected [{rows}]")
            return PackedInfo((rows, cols), torch.int8, "int8", scale_key)
        groups = scale.shape[1] if len(scale.shape) == 2 else 0
        if len(scale.shape) != 2 or scale.shape[0] != rows or groups == 0 or (2 * cols) % groups:
            raise CheckpointError(f"{where}: int4 scale {scale_key!r} has shape {list(scale.shape)}, expected "
                                  f"[{rows}, groups] with groups dividing {2 * cols}")
        return PackedInfo((rows, 2 * cols), torch.uint8, "int4", scale_key)

    def __getitem__(self, key: str) -> Any:
        if key in self._hidden:
            raise KeyError(key)
        return self._packed.get(key) or self.inner[key]

    def __iter__(self) -> Iterator[str]:
        return (k for k in self.inner if k not in self._hidden)

    def __len__(self) -> int:
        return len(self.inner) - len(self._hidden)

    def _tensor(self, key: str) -> torch.Tensor:
        mapped = map_tensor(self.inner[key], self._maps)
        return mapped if mapped is not None else self.inner.load_copy(key)

    def quant_format(self, key: str) -> str | None:
        """``"int8"``/``"int4"`` for a pre-quantised weight, else None."""
        packed = self._packed.get(key)
        return packed.fmt if packed is not None else None

    def quant(self, key: str) -> QuantTensor | None:
        packed = self._packed.get(key)
        if packed is None:
            return None
        scale = self._tensor(packed.scale_key)
        scale = scale.reshape(-1).float() if packed.fmt == "int8" else scale.half()
        return QuantTensor(packed.fmt, self._tensor(key), scale, packed.shape)

    def load_mapped(self, key: str) -> torch.Tensor:
        quant = self.quant(key)
        return quant.dequantize(torch.float32) if quant is not None else self._tensor(key)

    def load_copy(self, key: str) -> torch.Tensor:
        quant = self.quant(key)
        return quant.dequantize(torch.float32) if quant is not None else self.inner.load_copy(key)

    def close(self) -> None:
        self._maps.clear()
        self.inner.close()

    def __enter__(self) -> MappedSafetensors:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_weights(path: Path, preferred_stem: str = "diffusion_pytorch_model") -> MappedSafetensors | GGUFFileReader:
    """The loader's reader for a checkpoint file or folder: GGUF (``.gguf``) or safetensors (mapped)."""
    if is_gguf(path):
        return GGUFFileReader(path)
    return MappedSafetensors(checkpoint_files(path, preferred_stem=preferred_stem))


def merged_config(reader: Any, override: Any) -> Any:
    """The config override for the loader: the file's embedded config (if any) updated by ``override``."""
    embedded = getattr(reader, "config", None)
    if embedded is None:
        return override
    from ..config import load_config_source

    extra = load_config_source(override) if override is not None else {}
    return {**{k: v for k, v in embedded.items() if k != "quantization_config"}, **extra}
