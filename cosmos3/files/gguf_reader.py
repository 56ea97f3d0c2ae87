"""Checked, memory-mapped reading of Cosmos3 transformers stored as GGUF (parsing by the ``gguf`` package).

A Cosmos3 GGUF file (written by ``python -m cosmos3.convert --to gguf``) holds:

* metadata ``general.architecture = "cosmos3"``, ``cosmos3.variant`` (``nano``/``super``/``edge``/...) and
  ``cosmos3.config`` (the transformer's config as JSON, so no ``config.json`` is needed);
* tensors with diffusers or original cosmos-framework key names, in F32 / F16 / BF16 or the block formats
  Q8_0 / Q6_K / Q5_K / Q4_K (decoder-layer projections; see :mod:`cosmos3.model.quant.ggml`).

The file is mapped copy-on-write (``np.memmap`` mode ``c``): tensors handed out by :meth:`GGUFFileReader.load_mapped`
and :meth:`GGUFFileReader.quant` are views of the file's pages (file-backed, reclaimable), never anonymous copies.
Header problems, a foreign architecture, unsupported tensor types and truncation fail before any tensor is
used, with one error naming the file (and the tensors).
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

from ..model.quant import ggml
from ..model.quant.linear import QuantTensor
from .safetensors import CheckpointError, CheckpointKeyError

GGUF_SUFFIX = ".gguf"
ARCHITECTURE = "cosmos3"
VARIANT_KEY = "cosmos3.variant"
CONFIG_KEY = "cosmos3.config"


@dataclass(frozen=True)
class GGUFTensorInfo:
    """One tensor of a GGUF file: logical ``shape`` (PyTorch order), GGML ``qtype`` name, the torch ``dtype`` it
    loads as without dequantisation (``uint8`` for block formats) and its mapped ``data`` (numpy view)."""

    file: Path
    qtype: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    data: Any


def is_gguf(path: str | Path) -> bool:
    return Path(path).suffix.lower() == GGUF_SUFFIX


def _field_value(reader: Any, key: str) -> Any:
    field = reader.get_field(key)
    if field is None:
        return None
    try:
        return field.contents()
    except Exception:  # noqa: BLE001 (gguf raises plain errors for odd field types)
        return None


def _open(path: Path) -> Any:
    """``gguf.GGUFReader`` whose tensor table is bounds-checked first (truncation names the tensor)."""
    import gguf

    class CheckedReader(gguf.GGUFReader):
        def _build_tensors(self, start_offs: int, fields: list) -> None:
            size = len(self.data)
            for field in fields:
                _, name_data, _, dims, raw_dtype, offset = field.parts
                name = bytes(name_data).decode("utf-8", "replace")
                try:
                    qtype = gguf.GGMLQuantizationType(int(raw_dtype[0]))
                except ValueError:
                    raise CheckpointKeyError(
                        f"{path}: tensor {name!r} has an unknown GGML type id {int(raw_dtype[0])}"
                    ) from None
                block, type_size = gguf.GGML_QUANT_SIZES[qtype]
                end = start_offs + int(offset[0]) + math.prod(int(d) for d in dims) * type_size // block
                if end > size:
                    raise CheckpointError(
                        f"{path}: truncated file: tensor {name!r} needs bytes up to {end} but the file has {size}"
                    )
            super()._build_tensors(start_offs, fields)

    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        return CheckedReader(path, mode="c")
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 (gguf raises ValueError/IndexError/... on a bad header)
        raise CheckpointError(f"{path}: not a readable GGUF file (corrupt or truncated header: {exc})") from None


class GGUFFileReader(Mapping[str, GGUFTensorInfo]):
    """Read-only view of a Cosmos3 GGUF file's tensors (same interface as the safetensors readers)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        reader = _open(self.path)
        arch = _field_value(reader, "general.architecture")
        if arch != ARCHITECTURE:
            raise CheckpointError(
                f"{self.path}: GGUF architecture is {arch!r}, not {ARCHITECTURE!r}: this is not a Cosmos3 "
                "transformer (convert one with `python -m cosmos3.convert --to gguf`)"
            )
        self.variant = _field_value(reader, VARIANT_KEY)
        raw_config = _field_value(reader, CONFIG_KEY)
        self.config: dict[str, Any] | None = None
        if raw_config is not None:
            try:
                self.config = json.loads(raw_config)
            except (TypeError, json.JSONDecodeError) as exc:
                raise CheckpointError(f"{self.path}: metadata {CONFIG_KEY!r} is not valid JSON ({exc})") from None
        self.metadata = {"general.architecture": arch, VARIANT_KEY: self.variant}
        self._infos: dict[str, GGUFTensorInfo] = {}
        unsupported = []
        for tensor in reader.tensors:
            qtype = tensor.tensor_type.name
            shape = tuple(int(d) for d in reversed(tensor.shape.tolist()))
            if qtype not in ggml.SUPPORTED_TYPES:
                unsupported.append(f"    {tensor.name}: {qtype}")
                continue
            dtype = ggml.FLOAT_TYPES[qtype] if qtype in ("F32", "F16") else torch.uint8
            if qtype == "BF16":
                dtype = torch.bfloat16
            self._infos[tensor.name] = GGUFTensorInfo(self.path, qtype, shape, dtype, tensor.data)
        if unsupported:
            raise CheckpointKeyError(
                f"{self.path}: unsupported GGUF tensor types (supported: {', '.join(ggml.SUPPORTED_TYPES)}):\n"
                + "\n".join(unsupported)
            )

    def __getitem__(self, key: str) -> GGUFTensorInfo:
        return self._infos[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._infos)

    def __len__(self) -> int:
        return len(self._infos)

    def _raw(self, key: str) -> torch.Tensor:
        data = self._infos[key].data
        if not isinstance(data, np.ndarray):  # pragma: no cover - defensive
            raise CheckpointError(f"{self.path}: tensor {key!r} has no data")
        return torch.from_numpy(data)

    def quant_format(self, key: str) -> str | None:
        """The GGML block type of a quantised tensor (``"Q4_K"`` ...), None for float tensors."""
        qtype = self._infos[key].qtype
        return qtype if qtype in ggml.QUANTIZED_TYPES else None

    def quant(self, key: str) -> QuantTensor | None:
        """A block-format 2-D tensor as a file-backed :class:`QuantTensor`; None for float tensors."""
        info = self._infos[key]
        if info.qtype not in ggml.QUANTIZED_TYPES:
            return None
        if len(info.shape) != 2:
            raise CheckpointError(f"{self.path}: tensor {key!r} is {info.qtype} but not 2-D ({list(info.shape)})")
        return QuantTensor(info.qtype, self._raw(key), None, (info.shape[0], info.shape[1]))

    def load_mapped(self, key: str) -> torch.Tensor:
        """Float tensors as file-backed views; block formats dequantised to float32 (a fresh tensor)."""
        info = self._infos[key]
        raw = self._raw(key)
        if info.qtype in ("F32", "F16"):
            return raw.reshape(info.shape)
        if info.qtype == "BF16":
            return raw.view(torch.bfloat16).reshape(info.shape)
        return ggml.dequantize(raw, info.qtype, info.shape)

    def load_copy(self, key: str) -> torch.Tensor:
        """Like :meth:`load_mapped` but always a tensor owning its memory."""
        tensor = self.load_mapped(key)
        return tensor.clone() if self._infos[key].qtype in ggml.FLOAT_TYPES else tensor

    def close(self) -> None:
        pass

    def __enter__(self) -> GGUFFileReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
