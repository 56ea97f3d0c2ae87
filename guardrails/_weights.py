"""Safetensors loading for the guardrail networks, through the project's checked reader, and model-folder checks."""

from __future__ import annotations

from pathlib import Path

import torch

try:  # inside the ComfyUI pack (guardrails and cosmos3 are sibling sub-packages)
    from ..cosmos3.files import safetensors as _w
except ImportError:  # installed as the top-level package `guardrails` (pip install -e .)
    from cosmos3.files import safetensors as _w

CheckpointError = _w.CheckpointError
CheckpointKeyError = _w.CheckpointKeyError

_IGNORED_SUFFIX = "num_batches_tracked"  # BatchNorm counters: irrelevant in eval mode, not always saved


def expected_shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """``{key: shape}`` a checkpoint for ``module`` must provide (BatchNorm counters excluded)."""
    return {k: v for k, v in _w.module_shapes(module).items() if not k.endswith(_IGNORED_SUFFIX)}


def check_state_keys(module: torch.nn.Module, found: dict[str, tuple[int, ...]], source: str) -> None:
    """Raise :class:`CheckpointKeyError` listing every missing/unexpected/mis-shaped key."""
    found = {k: tuple(v) for k, v in found.items() if not k.endswith(_IGNORED_SUFFIX)}
    _w.check_keys(expected_shapes(module), found, source)


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Key → shape from a safetensors header (nothing else is read). Refuses non-safetensors files."""
    infos, _ = _w.read_header(Path(path))
    return {k: v.shape for k, v in infos.items()}


def load_safetensors_into(module: torch.nn.Module, path: Path) -> None:
    """Strictly load ``path`` (safetensors only) into ``module``; errors name the file and every bad key."""
    path = Path(path)
    with _w.SafetensorsReader([path]) as reader:
        check_state_keys(module, {k: reader[k].shape for k in reader}, str(path))
        state = {k: reader.load(k) for k in expected_shapes(module)}
    module.load_state_dict(state, strict=False)


def model_folder_problems(model_dir: Path) -> list[str]:
    """What a Hugging Face model folder lacks for loading: the folder, ``config.json``, safetensors weights.

    Empty when it looks loadable. Pickled ``*.bin`` weights are named in the message, never loaded.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return [f"folder {model_dir} does not exist"]
    problems = []
    if not (model_dir / "config.json").is_file():
        problems.append(f"{model_dir / 'config.json'} is missing")
    if not any(model_dir.glob("*.safetensors")):
        pickles = sorted(p.name for p in model_dir.glob("*.bin"))
        hint = f" (found {', '.join(pickles)}: pickle weights are not loaded)" if pickles else ""
        problems.append(f"{model_dir}: no *.safetensors weights{hint}")
    return problems
