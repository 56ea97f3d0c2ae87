"""One-time conversion of the guardrail release's pickled weights to safetensors.

This module is the ONLY place a pickle is opened, always with ``torch.load(weights_only=True)`` (plain
tensors and containers only; no arbitrary code). Run time loads the safetensors files exclusively.

Usage::

    python -m guardrails.convert <Cosmos-Guardrail1 folder>          # converts what is present
    python -m guardrails.convert --retinaface <file.pth> [--out <file.safetensors>]
    python -m guardrails.convert --safety-filter <file.pt> [--out <file.safetensors>]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch

from ._weights import check_state_keys
from .assets import (
    RETINAFACE_PICKLE,
    RETINAFACE_WEIGHTS,
    SAFETY_HEAD_PICKLE,
    SAFETY_HEAD_WEIGHTS,
)

_WRAPPERS = ("state_dict", "model", "net", "params")


class ConversionError(ValueError):
    """A pickle cannot be converted (unreadable, unexpected structure or keys)."""


def load_pickled_state(path: Path) -> dict[str, torch.Tensor]:
    """Read a ``.pth``/``.pt`` with ``weights_only=True`` and return a flat ``{key: tensor}`` state dict.

    Wrapper dicts (``{"state_dict": …}``, ``{"model": …}``) are unwrapped and a DataParallel
    ``module.`` prefix is removed.
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: file not found")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - report any unpickling refusal with the file name
        raise ConversionError(f"{path}: cannot be read with torch.load(weights_only=True): {exc}") from None
    for _ in range(3):
        if isinstance(obj, Mapping) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), Mapping)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, Mapping):
        raise ConversionError(f"{path}: expected a state dict, got {type(obj).__name__}")
    state: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise ConversionError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor")
        state[key[len("module.") :] if key.startswith("module.") else key] = value
    return state


def _file_mode() -> int:
    """The mode an ordinary new file gets: ``0o666`` less the process umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _save(state: Mapping[str, torch.Tensor], dst: Path, source: Path, kind: str) -> Path:
    """Write ``state`` to ``dst`` atomically (temp file beside it, then ``os.replace``).

    safetensors creates its output with mode 0600 and ``mkstemp`` does too, so the temp file is given the
    permissions of an ordinary new file (``0o666 & ~umask``) before it is renamed onto ``dst``.
    """
    from safetensors.torch import save_file

    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().clone() for k, v in state.items()}
    fd, name = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".partial", dir=dst.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        save_file(tensors, str(tmp), metadata={"format": "pt", "converted_from": source.name, "kind": kind})
        os.chmod(tmp, _file_mode())
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dst


def convert_retinaface(src: Path, dst: Path | None = None) -> Path:
    """``Resnet50_Final.pth`` → ``retinaface_resnet50.safetensors`` (strict key/shape check)."""
    from .video.retinaface import RetinaFaceNet

    src = Path(src)
    state = load_pickled_state(src)
    with torch.device("meta"):
        net = RetinaFaceNet()
    check_state_keys(net, {k: tuple(v.shape) for k, v in state.items()}, str(src))
    return _save(state, Path(dst) if dst else src.with_name(RETINAFACE_WEIGHTS.name), src, "retinaface_resnet50")


def convert_safety_filter(src: Path, dst: Path | None = None) -> Path:
    """``safety_filter.pt`` → ``safety_filter.safetensors`` (keys ``layers.*``; ``network.`` removed)."""
    from .video.content_filter import SafetyHead

    src = Path(src)
    state = {k[len("network.") :] if k.startswith("network.") else k: v for k, v in load_pickled_state(src).items()}
    first, last = state.get("layers.0.weight"), state.get("layers.6.weight")
    if first is None or last is None:
        raise ConversionError(
            f"{src}: not a content-safety classifier (no layers.0.weight / layers.6.weight); keys: {sorted(state)[:8]}"
        )
    with torch.device("meta"):
        head = SafetyHead(in_dim=first.shape[1], num_classes=last.shape[0])
    check_state_keys(head, {k: tuple(v.shape) for k, v in state.items()}, str(src))
    return _save(state, Path(dst) if dst else src.with_name(SAFETY_HEAD_WEIGHTS.name), src, "safety_filter")


def convert_release(assets_dir: Path) -> list[Path]:
    """Convert every known pickle present in a release folder; returns the files written."""
    assets_dir = Path(assets_dir)
    if not assets_dir.is_dir():
        raise ConversionError(f"{assets_dir}: not a folder")
    written = []
    if (assets_dir / RETINAFACE_PICKLE).is_file():
        written.append(convert_retinaface(assets_dir / RETINAFACE_PICKLE, assets_dir / RETINAFACE_WEIGHTS))
    if (assets_dir / SAFETY_HEAD_PICKLE).is_file():
        written.append(convert_safety_filter(assets_dir / SAFETY_HEAD_PICKLE, assets_dir / SAFETY_HEAD_WEIGHTS))
    if not written:
        raise ConversionError(
            f"{assets_dir}: nothing to convert "
            f"(looked for {RETINAFACE_PICKLE.as_posix()} and {SAFETY_HEAD_PICKLE.as_posix()})"
        )
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m guardrails.convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("assets_dir", nargs="?", type=Path, help="guardrail release folder (Cosmos-Guardrail1)")
    parser.add_argument("--retinaface", type=Path, help="a RetinaFace ResNet-50 .pth to convert")
    parser.add_argument("--safety-filter", type=Path, help="a safety_filter.pt to convert")
    parser.add_argument("--out", type=Path, help="output file (with --retinaface or --safety-filter)")
    args = parser.parse_args(argv)
    chosen = [a for a in (args.assets_dir, args.retinaface, args.safety_filter) if a is not None]
    if len(chosen) != 1:
        parser.error("give exactly one of: a release folder, --retinaface FILE, --safety-filter FILE")
    if args.out is not None and args.assets_dir is not None:
        parser.error("--out only applies to --retinaface or --safety-filter")
    try:
        if args.retinaface is not None:
            written = [convert_retinaface(args.retinaface, args.out)]
        elif args.safety_filter is not None:
            written = [convert_safety_filter(args.safety_filter, args.out)]
        else:
            written = convert_release(args.assets_dir)
    except (ConversionError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
