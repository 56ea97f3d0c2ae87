"""The only place the node pack touches ComfyUI.

Every accessor imports lazily, so the node modules import (and their classes can be inspected) without
ComfyUI. Tests replace ComfyUI with the behavioural stand-in in ``tests/comfy_stub``.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import torch


class ComfyUnavailable(RuntimeError):
    """Raised when a node needs a ComfyUI service but ComfyUI is not importable."""


def _module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ComfyUnavailable(f"ComfyUI module {name!r} is not importable ({exc}); run inside ComfyUI") from None


def available() -> bool:
    """True when ComfyUI's ``folder_paths`` and ``comfy`` can be imported."""
    try:
        importlib.import_module("folder_paths")
        importlib.import_module("comfy.model_management")
    except ImportError:
        return False
    return True


def folder_paths() -> ModuleType:
    return _module("folder_paths")


def model_management() -> ModuleType:
    return _module("comfy.model_management")


def register_model_folder(key: str, subfolder: str, extensions: set[str]) -> None:
    """Register ``models/<subfolder>`` under ``key`` with an explicit extension set.

    A new key created by ``add_model_folder_path`` would list every file; we always set extensions.
    Safe to call repeatedly and when ComfyUI is absent (then it does nothing).
    """
    try:
        fp = importlib.import_module("folder_paths")
    except ImportError:
        return
    path = os.path.join(fp.models_dir, subfolder)
    paths, exts = fp.folder_names_and_paths.get(key, ([], set()))
    if path not in paths:
        paths = [*paths, path]
    fp.folder_names_and_paths[key] = (paths, set(exts) | set(extensions))


def model_folder_paths(key: str) -> list[str]:
    """Directories registered under ``key`` (empty when ComfyUI is absent or the key is unknown)."""
    try:
        fp = importlib.import_module("folder_paths")
    except ImportError:
        return []
    try:
        return list(fp.get_folder_paths(key))
    except KeyError:
        return []


def intermediate_device() -> torch.device:
    """Where tensors passed between nodes live (CPU unless ComfyUI says otherwise)."""
    try:
        return model_management().intermediate_device()
    except ComfyUnavailable:
        return torch.device("cpu")


def throw_if_interrupted() -> None:
    """Raise ComfyUI's interrupt exception when the user pressed Cancel (no-op without ComfyUI)."""
    try:
        mm = model_management()
    except ComfyUnavailable:
        return
    mm.throw_exception_if_processing_interrupted()


def torch_device() -> torch.device:
    """ComfyUI's main compute device; without ComfyUI, CUDA when available, else the CPU."""
    try:
        return model_management().get_torch_device()
    except ComfyUnavailable:
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def free_memory(required_bytes: int, device: torch.device) -> None:
    """Ask ComfyUI to unload models until ``required_bytes`` are free on ``device`` (no-op without ComfyUI
    or on the CPU)."""
    if torch.device(device).type == "cpu":
        return
    try:
        mm = model_management()
    except ComfyUnavailable:
        return
    mm.free_memory(required_bytes, device)


class _NoProgress:
    def update_absolute(self, value: int, total: int | None = None, preview=None) -> None:
        pass


def progress_bar(total: int):
    """``comfy.utils.ProgressBar(total)``, or an object with the same ``update_absolute`` that does nothing."""
    try:
        utils = _module("comfy.utils")
    except ComfyUnavailable:
        return _NoProgress()
    return utils.ProgressBar(total)
