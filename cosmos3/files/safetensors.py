"""Checked safetensors reading shared by every loader (transformer, VAE, guardrails).

Rules enforced here:

* safetensors only; anything else is refused with a message naming the file (never unpickled);
* headers are parsed and validated before any tensor is read, so a truncated or corrupt file fails with
  an error naming that file instead of a cryptic decoder error;
* tensors are read one at a time (memory-mapped), so a loader that assigns them into a meta-device
  module never holds two copies of the weights;
* key mismatches are reported all at once (missing, unexpected, mis-shaped with expected vs found).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import Cosmos3Error

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")

_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}
_MAX_HEADER_BYTES = 100 * 1024 * 1024


class CheckpointError(Cosmos3Error):
    """A checkpoint file or folder is missing, unreadable, corrupt or of the wrong format."""


class CheckpointKeyError(CheckpointError):
    """The tensors in a checkpoint do not match what the model expects."""


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives and what it looks like, read from a safetensors header.

    ``start``/``end``: the tensor's absolute byte range in ``file`` (header included).
    """

    file: Path
    dtype: torch.dtype
    shape: tuple[int, ...]
    start: int
    end: int


def require_safetensors(path: Path) -> None:
    """Raise :class:`CheckpointError` unless ``path`` is an existing ``.safetensors``/``.sft`` file."""
    if path.suffix.lower() not in SAFETENSORS_SUFFIXES:
        raise CheckpointError(
            f"{path}: only safetensors files are supported (got a '{path.suffix or 'no'}' extension); "
            "pickle-based formats (.ckpt/.pt/.bin/.pth) are never loaded"
        )
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")


def read_header(path: Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Parse and validate the header of one safetensors file.

    Returns ``(tensors, metadata)``. Raises :class:`CheckpointError` naming the file when the header is
    unreadable, a dtype is unknown, or the data section is shorter than the header promises (truncation).
    """
    path = Path(path)
    require_safetensors(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        prefix = fh.read(8)
        if len(prefix) < 8:
            raise CheckpointError(f"{path}: not a safetensors file (only {size} bytes, truncated or empty)")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > _MAX_HEADER_BYTES or 8 + header_len > size:
            raise CheckpointError(
                f"{path}: corrupt or truncated safetensors header (header claims {header_len} bytes, "
                f"file has {size})"
            )
        raw = fh.read(header_len)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: corrupt safetensors header ({exc})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header (not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    data_start = 8 + header_len
    data_size = size - data_start
    tensors: dict[str, TensorInfo] = {}
    for key, entry in header.items():
        try:
            dtype_name = entry["dtype"]
            shape = tuple(int(d) for d in entry["shape"])
            start, end = (int(o) for o in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: corrupt safetensors header entry for tensor {key!r}") from None
        if dtype_name not in _DTYPES:
            raise CheckpointError(f"{path}: tensor {key!r} has unsupported dtype {dtype_name}")
        if end > data_size or start > end:
            raise CheckpointError(
                f"{path}: truncated file: tensor {key!r} needs bytes {start}..{end} of the data section "
                f"but only {data_size} bytes are present"
            )
        tensors[key] = TensorInfo(path, _DTYPES[dtype_name], shape, data_start + start, data_start + end)
    return tensors, metadata


def read_sharded_index(index_path: Path) -> list[Path]:
    """Return the shard files named by a ``*.safetensors.index.json`` file (validated to exist)."""
    try:
        index = json.loads(Path(index_path).read_text())
        weight_map = index["weight_map"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{index_path}: unreadable safetensors index ({exc})") from None
    shards = sorted({index_path.parent / name for name in weight_map.values()})
    missing = [str(s) for s in shards if not s.is_file()]
    if missing:
        raise CheckpointError(f"{index_path}: shard files listed in the index are missing: {', '.join(missing)}")
    return shards


def checkpoint_files(path: Path, preferred_stem: str | None = None) -> list[Path]:
    """Resolve a checkpoint location to its safetensors files.

    ``path`` may be one safetensors file, or a folder holding either a ``*.safetensors.index.json`` (sharded)
    or safetensors file(s). ``preferred_stem`` (e.g. ``"diffusion_pytorch_model"``) picks among several.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    if path.is_file():
        require_safetensors(path)
        return [path]
    indexes = sorted(path.glob("*.safetensors.index.json"))
    if preferred_stem is not None:
        preferred = [p for p in indexes if p.name.startswith(preferred_stem)]
        indexes = preferred or indexes
    if indexes:
        return read_sharded_index(indexes[0])
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in SAFETENSORS_SUFFIXES)
    if preferred_stem is not None:
        files = [p for p in files if p.stem == preferred_stem] or files
    if not files:
        others = sorted(p.name for p in path.iterdir() if p.suffix.lower() in (".bin", ".pt", ".pth", ".ckpt"))
        hint = f" (found {', '.join(others)}; pickle formats are not loaded)" if others else ""
        raise CheckpointError(f"{path}: no .safetensors weights in this folder{hint}")
    if len(files) > 1:
        raise CheckpointError(
            f"{path}: several safetensors files and no index json: {', '.join(p.name for p in files)}"
        )
    return files


class SafetensorsReader(Mapping[str, TensorInfo]):
    """Read-only view over the tensors of one or more safetensors files, loading tensors on demand."""

    def __init__(self, files: Iterable[Path]) -> None:
        self.files = [Path(f) for f in files]
        self._infos: dict[str, TensorInfo] = {}
        self.metadata: dict[str, str] = {}
        for file in self.files:
            infos, metadata = read_header(file)
            for key, info in infos.items():
                if key in self._infos:
                    raise CheckpointError(f"{file}: tensor {key!r} is also stored in {self._infos[key].file}")
                self._infos[key] = info
            self.metadata.update(metadata)
        self._handles: dict[Path, object] = {}

    def __getitem__(self, key: str) -> TensorInfo:
        return self._infos[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._infos)

    def __len__(self) -> int:
        return len(self._infos)

    def load(self, key: str) -> torch.Tensor:
        """Load one tensor onto the CPU (memory-mapped read; a fresh tensor each call)."""
        from safetensors import safe_open

        info = self._infos[key]
        handle = self._handles.get(info.file)
        if handle is None:
            try:
                handle = safe_open(str(info.file), framework="pt", device="cpu")
            except Exception as exc:  # noqa: BLE001 (safetensors raises its own error types)
                raise CheckpointError(f"{info.file}: cannot open safetensors file ({exc})") from None
            self._handles[info.file] = handle
        try:
            return handle.get_tensor(key)
        except Exception as exc:  # noqa: BLE001 (as above)
            raise CheckpointError(f"{info.file}: cannot read tensor {key!r} ({exc})") from None

    def load_copy(self, key: str) -> torch.Tensor:
        """Read one tensor into freshly allocated CPU memory with plain file reads (no memory map).

        Unlike :meth:`load`, the result owns its memory and the file's pages are never mapped into the
        process, so loading a whole model this way costs ~1x its size in resident memory.
        """
        info = self._infos[key]
        start, end = info.start, info.end
        out = torch.empty(info.shape, dtype=info.dtype)
        nbytes = out.numel() * out.element_size()
        if end - start != nbytes:
            raise CheckpointError(
                f"{info.file}: tensor {key!r} occupies {end - start} bytes but {info.dtype} {list(info.shape)} "
                f"needs {nbytes} (corrupt header)"
            )
        if nbytes:
            view = memoryview(out.view(-1).view(torch.uint8).numpy())
            with open(info.file, "rb") as fh:
                fh.seek(start)
                got = fh.readinto(view)
            if got != nbytes:
                raise CheckpointError(
                    f"{info.file}: truncated file while reading tensor {key!r} ({got} of {nbytes} bytes)"
                )
        return out

    def close(self) -> None:
        self._handles.clear()

    def __enter__(self) -> SafetensorsReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


MAX_LISTED_KEYS = 12  # per category in a key-mismatch error; the counts always cover everything


def resolve_component(
    path: str | Path,
    subfolder: str,
    what: str,
    read_config: Callable[[Path], Any],
    default_config: Any,
    missing_hint: str = "",
) -> tuple[list[Path], Any, str]:
    """``(safetensors files, config, description)`` of one diffusers component (e.g. ``vae/``): a folder holding
    ``config.json`` + ``diffusion_pytorch_model*.safetensors``, a checkpoint folder whose ``subfolder/`` holds
    them, or a single ``.safetensors`` file (config: a ``config.json`` beside it, else ``default_config``).
    ``what`` names the component in errors; ``missing_hint`` is appended to the no-such-path error."""
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder{missing_hint}")
    if path.is_dir():
        folder = path
        if not (folder / "config.json").is_file() and (folder / subfolder / "config.json").is_file():
            folder = folder / subfolder
        config_path = folder / "config.json"
        if not config_path.is_file():
            raise CheckpointError(
                f"{path}: not a {what} folder (no config.json here or in {subfolder}/); pass the folder holding "
                "config.json + diffusion_pytorch_model.safetensors, or a single .safetensors file"
            )
        config = read_config(config_path)
        return checkpoint_files(folder, preferred_stem="diffusion_pytorch_model"), config, str(folder)
    files = checkpoint_files(path)
    sibling = path.parent / "config.json"
    return files, (read_config(sibling) if sibling.is_file() else default_config), str(path)


def check_keys(
    expected: Mapping[str, tuple[int, ...]],
    found: Mapping[str, tuple[int, ...]],
    source: str,
    ignored_unexpected: Iterable[str] = (),
    *,
    summary: str | None = None,
    max_listed: int = MAX_LISTED_KEYS,
) -> None:
    """Compare expected and found ``{key: shape}`` maps; raise one error listing every problem.

    The message starts with one line saying what the file looks like — ``summary`` when the caller can tell
    (e.g. "not a Wan 2.2 VAE: 48-channel latent expected, file has 16") — and the counts, then at most
    ``max_listed`` keys per category. ``ignored_unexpected`` holds key prefixes that may be present without
    being expected (e.g. weights of unused heads that are deliberately skipped).
    """
    ignored = tuple(ignored_unexpected)
    missing = sorted(k for k in expected if k not in found)
    unexpected = sorted(k for k in found if k not in expected and not k.startswith(ignored))
    misshaped = sorted(k for k in expected if k in found and tuple(found[k]) != tuple(expected[k]))
    if not (missing or unexpected or misshaped):
        return
    counts = f"{len(missing)} missing, {len(unexpected)} unexpected, {len(misshaped)} mis-shaped of {len(expected)}"
    lines = [f"{source}: {summary or 'the checkpoint does not match the model'} ({counts} expected keys)"]

    def listing(title: str, keys: list[str], describe) -> None:
        if not keys:
            return
        lines.append(f"  {title} ({len(keys)}):")
        lines.extend(f"    {describe(k)}" for k in keys[:max_listed])
        if len(keys) > max_listed:
            lines.append(f"    ... and {len(keys) - max_listed} more")

    listing("missing keys", missing, lambda k: f"{k}  expected shape {list(expected[k])}")
    listing("unexpected keys", unexpected, lambda k: f"{k}  shape {list(found[k])}")
    listing("mis-shaped keys", misshaped, lambda k: f"{k}  expected {list(expected[k])}, found {list(found[k])}")
    raise CheckpointKeyError("\n".join(lines))


def assign_tensor(module: torch.nn.Module, name: str, tensor: torch.Tensor) -> None:
    """Replace parameter or buffer ``name`` (dotted path) of ``module`` with ``tensor`` (no copy).

    Used to fill a module created on the meta device, so no second copy of the weights ever exists.
    """
    owner_name, _, leaf = name.rpartition(".")
    owner = module.get_submodule(owner_name) if owner_name else module
    if leaf in owner._parameters:
        owner._parameters[leaf] = torch.nn.Parameter(tensor, requires_grad=False)
    elif leaf in owner._buffers:
        owner._buffers[leaf] = tensor
    else:
        raise KeyError(f"{type(owner).__name__} has no parameter or buffer {leaf!r} (full name {name!r})")


def module_shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """``{name: shape}`` of every parameter and persistent buffer of ``module``."""
    return {k: tuple(v.shape) for k, v in module.state_dict(keep_vars=True).items()}


def meta_leftovers(module: torch.nn.Module) -> list[str]:
    """Names of parameters/buffers still on the meta device (i.e. never assigned)."""
    return [k for k, v in module.state_dict(keep_vars=True).items() if v.is_meta]


def finish_loading(module: torch.nn.Module, source: str) -> None:
    """Check that every parameter/buffer of a meta-built ``module`` was assigned, then put it in inference mode
    (``eval``, no gradients)."""
    leftovers = meta_leftovers(module)
    if leftovers:  # pragma: no cover - check_keys guarantees completeness
        raise CheckpointKeyError(f"{source}: parameters never loaded: {', '.join(leftovers)}")
    module.eval()
    module.requires_grad_(False)
