"""Convert a Cosmos3 transformer to GGUF or to int8/int4 safetensors, one tensor at a time.

    python -m cosmos3.convert --to gguf --quant Q8_0 SRC DST.gguf        # Q8_0 | Q6_K | Q5_K | Q4_K | F16 | BF16
    python -m cosmos3.convert --to int8 SRC DST.safetensors
    python -m cosmos3.convert --to int4 --group-size 64 SRC DST.safetensors

``SRC``: a diffusers ``transformer/`` folder (or the pipeline root), a single ``.safetensors`` file (diffusers or
cosmos-framework key names; bf16/fp32, ModelOpt fp8 or int8/int4) or a Cosmos3 ``.gguf``. Only the
decoder-layer projections are quantised (norms, embeddings, biases, the latent in/out projections and the
timestep MLP keep the base dtype: the source's float dtype, or ``--base-dtype``); a projection whose rows do
not fit the format's blocks stays in the base dtype. Key names are kept as in the source; ``lm_head.weight``
and vision-encoder tensors (never used for generation) are dropped. The transformer config and the variant are
written into the file's metadata, so a single file loads without ``config.json``.

Peak memory is one tensor (plus its quantised copy): the source is memory-mapped and the output is written
tensor by tensor to ``DST.partial``, renamed to ``DST`` only when complete (no half-written outputs).
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import Cosmos3Error
from .files.gguf_reader import ARCHITECTURE, CONFIG_KEY, VARIANT_KEY
from .model.fp8 import dequantize_fp8, normalize_scale
from .model.loading import (
    IGNORED_SCALE_SUFFIXES,
    SCALE_SUFFIXES,
    _resolve_config,
    checkpoint_name_map,
)
from .model.quant import ggml
from .model.quant.intq import int4_group
from .model.quant.linear import quantize_weight
from .model.quant.sources import FORMAT_KEY, merged_config, open_weights
from .variants import variant_from_config

TARGETS = ("gguf", "int8", "int4")
GGUF_QUANTS = ("Q8_0", "Q6_K", "Q5_K", "Q4_K", "F16", "BF16", "F32")
BASE_DTYPES = {"keep": None, "bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}
_DROPPED = ("lm_head.weight",)
_GGUF_FLOAT = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}
_ST_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int8: "I8",
              torch.uint8: "U8"}


class ConversionError(Cosmos3Error):
    """The conversion cannot be done (bad arguments or source); nothing was written."""


@dataclass
class Planned:
    """One output tensor: source key, output key, logical shape and what it becomes (a format or a dtype)."""

    src: str
    key: str
    shape: tuple[int, ...]
    fmt: str | None  # int8 / int4 / GGML block type; None = float
    dtype: torch.dtype


def _is_projection(name: str, shape: tuple[int, ...]) -> bool:
    return name.startswith("layers.") and name.endswith(".weight") and len(shape) == 2


def _source_config(src: Path, reader: Any, names: dict[str, str]) -> dict[str, Any]:
    shapes = {name: tuple(reader[key].shape) for name, key in names.items()}
    cfg = _resolve_config(src, shapes, merged_config(reader, None))
    return cfg.to_dict()


def plan(src: Path, reader: Any, to: str, quant: str | None, base_dtype: torch.dtype | None) -> list[Planned]:
    """What each kept source tensor becomes."""
    names = checkpoint_name_map(reader.keys(), source=str(src))
    planned = []
    for name, key in names.items():
        if name.endswith(SCALE_SUFFIXES + IGNORED_SCALE_SUFFIXES) or name in _DROPPED:
            continue
        info = reader[key]
        shape = tuple(int(d) for d in info.shape)
        dtype = base_dtype or (info.dtype if info.dtype in _GGUF_FLOAT else torch.bfloat16)
        fmt = None
        if _is_projection(name, shape):
            target = quant if to == "gguf" else to
            if target in ggml.QUANTIZED_TYPES and ggml.can_quantize(target, shape):
                fmt = target
            elif target in _GGUF_FLOAT.values():
                dtype = {v: k for k, v in _GGUF_FLOAT.items()}[target]
            elif to == "int8" or (to == "int4" and shape[1] % 8 == 0):
                fmt = to
        planned.append(Planned(key, key, shape, fmt, dtype))
    return planned


def _float_value(reader: Any, key: str) -> torch.Tensor:
    """The source tensor as a float tensor (ModelOpt fp8 weights dequantised with their scale)."""
    tensor = reader.load_mapped(key)
    if tensor.dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
        stem = key[: -len(".weight")] if key.endswith(".weight") else key
        scale = None
        if f"{stem}.weight_scale" in reader:
            scale = normalize_scale(reader.load_copy(f"{stem}.weight_scale"), tensor.shape[0], f"{stem}.weight_scale")
        tensor = dequantize_fp8(tensor, scale, torch.float32)
    return tensor


# ---------------------------------------------------------------------------------------------- writers


def _write_gguf(tmp: Path, reader: Any, items: list[Planned], config: dict[str, Any], variant: str, name: str) -> None:
    import gguf

    writer = gguf.GGUFWriter(str(tmp), ARCHITECTURE)
    writer.add_name(name)
    writer.add_string(VARIANT_KEY, variant)
    writer.add_string(CONFIG_KEY, json.dumps(config))
    kinds = []
    for item in items:
        qtype = item.fmt or _GGUF_FLOAT[item.dtype]
        kinds.append(qtype)
        if qtype in ("F32", "F16"):
            np_dtype = np.float32 if qtype == "F32" else np.float16
            writer.add_tensor_info(item.key, item.shape, np.dtype(np_dtype), int(np.prod(item.shape)) *
                                   np.dtype(np_dtype).itemsize)
        else:
            byte_shape = (*item.shape[:-1], ggml.row_bytes(qtype, item.shape[-1]))
            writer.add_tensor_info(item.key, byte_shape, np.dtype(np.uint8), int(np.prod(byte_shape)),
                                   raw_dtype=gguf.GGMLQuantizationType[qtype])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for item, qtype in zip(items, kinds):
        writer.write_tensor_data(np.ascontiguousarray(ggml.quantize(_float_value(reader, item.src), qtype)))
    writer.close()


def _safetensors_entries(reader: Any, item: Planned, group: int) -> list[tuple[str, torch.dtype, tuple[int, ...]]]:
    if item.fmt is None:
        return [(item.key, item.dtype, item.shape)]
    stem = item.key[: -len(".weight")]
    out, cols = item.shape
    if item.fmt == "int8":
        return [(item.key, torch.int8, (out, cols)), (f"{stem}.weight_scale", torch.float32, (out,))]
    if item.fmt == "int4":
        groups = cols // int4_group(cols, group)
        return [(item.key, torch.uint8, (out, cols // 2)), (f"{stem}.weight_scale", torch.float16, (out, groups))]
    return [(item.key, item.dtype, item.shape)]


def _write_safetensors(tmp: Path, reader: Any, items: list[Planned], metadata: dict[str, str], group: int) -> None:
    """A safetensors file written tensor by tensor (header first: every shape is known from the plan). Tensors keep
    the source order, a packed weight followed by its scale; with the even dimensions of real checkpoints every
    offset stays aligned for its dtype, so the loader can map them (a misaligned one is read into memory)."""
    entries = [(item, e) for item in items for e in _safetensors_entries(reader, item, group)]
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for _, (key, dtype, shape) in entries:
        nbytes = int(np.prod(shape, dtype=np.int64)) * torch.empty((), dtype=dtype).element_size()
        header[key] = {"dtype": _ST_DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    pending: torch.Tensor | None = None  # the scale of the weight just written
    with open(tmp, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        for item, (key, dtype, shape) in entries:
            if key != item.key:
                tensor, pending = pending, None
            elif item.fmt is None:
                tensor = _float_value(reader, item.src).to(item.dtype)
            else:
                quant = quantize_weight(_float_value(reader, item.src), item.fmt, group)
                tensor, pending = quant.data, quant.scale
            if tensor is None or tuple(tensor.shape) != tuple(shape) or tensor.dtype != dtype:
                raise ConversionError(f"{key}: produced {getattr(tensor, 'dtype', None)} "
                                      f"{list(getattr(tensor, 'shape', []))}, planned {dtype} {list(shape)}")
            fh.write(tensor.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())


# ---------------------------------------------------------------------------------------------- entry points


def convert(
    src: str | Path,
    dst: str | Path,
    to: str,
    quant: str | None = None,
    group_size: int = 128,
    base_dtype: str = "keep",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Convert ``src`` to ``dst`` (see the module docstring); returns a summary (tensor counts, bytes, formats).

    Raises :class:`ConversionError` for bad arguments (nothing written) and the loaders' errors for a bad source.
    """
    src, dst = Path(src), Path(dst)
    if to not in TARGETS:
        raise ConversionError(f"--to {to!r} is not supported; choose one of {', '.join(TARGETS)}")
    if to == "gguf" and quant not in GGUF_QUANTS:
        raise ConversionError(f"--quant {quant!r} is not supported for GGUF; choose one of {', '.join(GGUF_QUANTS)}")
    if base_dtype not in BASE_DTYPES:
        raise ConversionError(f"--base-dtype {base_dtype!r} is not supported; choose one of {', '.join(BASE_DTYPES)}")
    suffix = ".gguf" if to == "gguf" else ".safetensors"
    if dst.suffix.lower() != suffix:
        raise ConversionError(f"{dst}: the output of --to {to} must be a {suffix} file")
    if dst.exists() and not overwrite:
        raise ConversionError(f"{dst}: already exists (pass --overwrite to replace it)")
    if not src.exists():
        raise ConversionError(f"{src}: no such file or folder")
    if src.is_dir() and (src / "transformer").is_dir() and not (src / "config.json").is_file():
        src = src / "transformer"
    with open_weights(src) as reader:
        names = checkpoint_name_map(reader.keys(), source=str(src))
        config = _source_config(src, reader, names)
        variant = variant_from_config(config).value
        items = plan(src, reader, to, quant, BASE_DTYPES[base_dtype])
        tmp = dst.with_name(dst.name + ".partial")
        try:
            if to == "gguf":
                _write_gguf(tmp, reader, items, config, variant, src.stem if src.is_file() else src.name)
            else:
                metadata = {FORMAT_KEY: to, CONFIG_KEY: json.dumps(config), VARIANT_KEY: variant,
                            "cosmos3.group_size": str(group_size)}
                _write_safetensors(tmp, reader, items, metadata, group_size)
            os.replace(tmp, dst)
        finally:
            tmp.unlink(missing_ok=True)
    formats: dict[str, int] = {}
    for item in items:
        label = item.fmt or str(item.dtype).removeprefix("torch.")
        formats[label] = formats.get(label, 0) + 1
    return {"tensors": len(items), "formats": formats, "bytes": dst.stat().st_size, "variant": variant,
            "dst": str(dst)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cosmos3.convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("--to", required=True, choices=TARGETS, help="output format")
    parser.add_argument("--quant", default=None, choices=GGUF_QUANTS, help="GGUF type of the layer projections")
    parser.add_argument("--group-size", type=int, default=128, choices=(32, 64, 128, 256), help="int4 group size")
    parser.add_argument("--base-dtype", default="keep", choices=tuple(BASE_DTYPES),
                        help="dtype of the tensors that are not quantised (keep = the source's)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing DST")
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    args = parser.parse_args(argv)
    try:
        summary = convert(args.src, args.dst, args.to, args.quant, args.group_size, args.base_dtype, args.overwrite)
    except Cosmos3Error as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {summary['dst']}: {summary['tensors']} tensors ({summary['formats']}), "
          f"{summary['bytes'] / 2**20:.1f} MiB, variant {summary['variant']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
