"""The only place the node pack touches ComfyUI.

The V3 node API (``comfy_api.latest``: ``io`` and ``ComfyExtension``) is imported here at module level:
every node class derives from ``io.ComfyNode``, so the pack needs ComfyUI (0.3.64 or newer) to import.
Every runtime service (folders, devices, model management, progress, previews) is imported lazily and
degrades to a local fallback when ComfyUI's modules are missing. Tests replace ComfyUI with the
behavioural stand-in in ``tests/comfy_stub``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from comfy_api.latest import ComfyExtension, io  # noqa: F401  (re-exported: the V3 node API)

SAFETENSORS_EXTENSIONS = (".safetensors", ".sft")
GGUF_EXTENSIONS = (".gguf",)
# Our own key: Cosmos3 checkpoints as diffusers-layout *folders* (models/cosmos3/<name>/...).
COSMOS3_FOLDER_KEY = "cosmos3"
# Keys searched for checkpoint folders, in order (core's "diffusers" key lists folders too).
CHECKPOINT_FOLDER_KEYS = (COSMOS3_FOLDER_KEY, "diffusers")


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


# ------------------------------------------------------------------------------------------------------
# Model folders
#
# Single files reuse core keys ("diffusion_models", "vae"); diffusers-layout checkpoint folders live under
# our "cosmos3" key (models/cosmos3) or core's "diffusers" key. ComfyUI's get_filename_list lists files
# only, so folders are listed here. Every listing re-registers our key (idempotent): registration survives
# ComfyUI re-reading extra_model_paths.yaml and costs nothing.


def register_pack_folders() -> None:
    """Register ``models/cosmos3`` under the ``cosmos3`` key (safetensors only). No-op without ComfyUI."""
    register_model_folder(COSMOS3_FOLDER_KEY, COSMOS3_FOLDER_KEY, set(SAFETENSORS_EXTENSIONS))


def is_safetensors(name: str | os.PathLike) -> bool:
    return os.fspath(name).lower().endswith(SAFETENSORS_EXTENSIONS)


def list_model_files(key: str) -> list[str]:
    """Relative names of the ``.safetensors``/``.sft`` files ComfyUI lists for ``key`` (recursive, sorted);
    empty without ComfyUI or for an unknown key. Other extensions (``.ckpt``, ``.pt`` …) are never listed:
    they would be unpickled by ``torch.load``."""
    register_pack_folders()
    try:
        fp = importlib.import_module("folder_paths")
    except ImportError:
        return []
    try:
        names = fp.get_filename_list(key)
    except KeyError:
        return []
    return [n for n in names if is_safetensors(n)]


def list_gguf_files(key: str) -> dict[str, Path]:
    """``{relative name: absolute path}`` of the ``.gguf`` files under the folders of ``key`` (recursive, sorted;
    the first folder holding a name wins). ComfyUI's own listing filters by extension and has no ``.gguf`` for
    core keys, so these folders are walked here. Hidden files and directories are skipped."""
    found: dict[str, Path] = {}
    for root in model_folder_paths(key):
        base = Path(root)
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            rel = path.relative_to(base)
            if path.suffix.lower() in GGUF_EXTENSIONS and path.is_file() and not any(
                part.startswith(".") for part in rel.parts
            ):
                found.setdefault(rel.as_posix(), path)
    return dict(sorted(found.items()))


def model_file_path(key: str, name: str) -> Path:
    """Absolute path of a file listed by :func:`list_model_files`; ``FileNotFoundError`` naming the folders
    that were searched (and ``ValueError`` for a non-safetensors name)."""
    if not is_safetensors(name):
        raise ValueError(f"{name!r} is not a .safetensors/.sft file; only safetensors weights are loaded")
    register_pack_folders()
    fp = folder_paths()
    found = fp.get_full_path(key, name)
    if found is None:
        folders = ", ".join(model_folder_paths(key)) or f"(no folder registered for {key!r})"
        raise FileNotFoundError(f"model file {name!r} not found in the {key!r} model folders: {folders}")
    return Path(found)


def list_model_folders(keys: Iterable[str], predicate: Callable[[Path], bool], max_depth: int = 2) -> dict[str, Path]:
    """``{relative name: absolute path}`` of the directories under the folders of ``keys`` (searched in
    order; the first folder holding a name wins) that satisfy ``predicate``, down to ``max_depth`` levels
    (so ``org/model`` layouts are found). Hidden directories are skipped; a matching directory is not
    searched further. Names use ``/`` separators."""
    register_pack_folders()
    found: dict[str, Path] = {}
    for key in keys:
        for root in model_folder_paths(key):
            _collect_folders(Path(root), Path(root), predicate, max_depth, found)
    return dict(sorted(found.items()))


def _collect_folders(root: Path, folder: Path, predicate, depth: int, found: dict[str, Path]) -> None:
    if depth <= 0 or not folder.is_dir():
        return
    try:
        children = sorted(folder.iterdir())
    except OSError:
        return
    for child in children:
        if child.name.startswith(".") or not child.is_dir():
            continue
        if predicate(child):
            found.setdefault(child.relative_to(root).as_posix(), child)
        else:
            _collect_folders(root, child, predicate, depth - 1, found)


def is_checkpoint_folder(path: Path) -> bool:
    """A diffusers-layout Cosmos3 checkpoint: ``model_index.json`` or ``transformer/config.json``."""
    return (path / "model_index.json").is_file() or (path / "transformer" / "config.json").is_file()


def checkpoint_folders() -> dict[str, Path]:
    """Checkpoint folders under ``models/cosmos3`` then ``models/diffusers`` (see :func:`list_model_folders`)."""
    return list_model_folders(CHECKPOINT_FOLDER_KEYS, is_checkpoint_folder)


# ------------------------------------------------------------------------------------------------------
# Devices and memory


def _mm_or_none() -> ModuleType | None:
    try:
        return model_management()
    except ComfyUnavailable:
        return None


def _default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _device(accessor: str, fallback: Callable[[], torch.device]) -> torch.device:
    """``comfy.model_management.<accessor>()``, or ``fallback()`` without ComfyUI."""
    mm = _mm_or_none()
    return torch.device(getattr(mm, accessor)()) if mm is not None else fallback()


def _cpu() -> torch.device:
    return torch.device("cpu")


def vae_device() -> torch.device:
    """Where ComfyUI runs VAEs (``--cpu-vae`` → CPU); without ComfyUI, CUDA when available."""
    return _device("vae_device", _default_device)


def vae_offload_device() -> torch.device:
    return _device("vae_offload_device", _cpu)


def unet_offload_device() -> torch.device:
    """Where diffusion models rest between runs (the GPU only under ``--highvram``)."""
    return _device("unet_offload_device", _cpu)


def text_encoder_device() -> torch.device:
    return _device("text_encoder_device", _default_device)


def text_encoder_offload_device() -> torch.device:
    return _device("text_encoder_offload_device", _cpu)


def get_free_memory(device: torch.device) -> int | None:
    """Free bytes on ``device`` as ComfyUI counts them (``None`` without ComfyUI)."""
    mm = _mm_or_none()
    return None if mm is None else int(mm.get_free_memory(torch.device(device)))


def soft_empty_cache() -> None:
    """Return cached allocator blocks to the driver (ComfyUI's helper; ``torch.cuda.empty_cache`` without it)."""
    mm = _mm_or_none()
    if mm is not None:
        mm.soft_empty_cache()
    elif torch.cuda.is_available():
        torch.cuda.empty_cache()


def processing_interrupted() -> bool:
    """True when Cancel was pressed (peeks; does not reset the flag). False without ComfyUI."""
    mm = _mm_or_none()
    return bool(mm is not None and mm.processing_interrupted())


# ------------------------------------------------------------------------------------------------------
# Model patchers (VRAM management)


class LocalPatcher:
    """What :func:`model_patcher` returns without ComfyUI: the same attributes as ``ModelPatcher`` for the
    parts we use; :func:`load_models` / :func:`offload_models` move its module directly."""

    def __init__(self, model: torch.nn.Module, load_device, offload_device, size: int = 0):
        self.model = model
        self.load_device = torch.device(load_device)
        self.offload_device = torch.device(offload_device)
        self.size = size or sum(t.nelement() * t.element_size() for t in model.state_dict().values())
        self.model_options: dict[str, Any] = {"transformer_options": {}}
        self.parent = None

    def model_size(self) -> int:
        return self.size

    def clone(self) -> LocalPatcher:
        n = LocalPatcher(self.model, self.load_device, self.offload_device, self.size)
        n.model_options = {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.model_options.items()}
        n.parent = self
        return n


def model_patcher(module: torch.nn.Module, load_device, offload_device, size: int = 0):
    """``comfy.model_patcher.ModelPatcher(module, load_device, offload_device, size)`` (a :class:`LocalPatcher`
    without ComfyUI).

    ComfyUI *assigns* ``module.device`` when loading, so ``module`` must not expose ``device`` as a
    read-only property: wrap such models in a thin ``nn.Module`` holder.
    """
    try:
        mp = importlib.import_module("comfy.model_patcher")
    except ImportError:
        return LocalPatcher(module, load_device, offload_device, size)
    return mp.ModelPatcher(module, load_device=torch.device(load_device), offload_device=torch.device(offload_device),
                           size=size)


def load_models(patchers: list, memory_required: int = 0, force_full_load: bool = False) -> None:
    """``model_management.load_models_gpu(patchers, memory_required, force_full_load=...)``: ComfyUI frees
    VRAM (evicting other models) and moves each patcher's model to its load device. Without ComfyUI the
    modules are moved directly."""
    mm = _mm_or_none()
    if mm is None:
        for p in patchers:
            p.model.to(p.load_device)
        return
    mm.load_models_gpu(list(patchers), memory_required=int(memory_required), force_full_load=force_full_load)


def offload_models(patchers: list) -> None:
    """Move the patchers' models back to their offload devices now and drop them from ComfyUI's list of
    loaded models (instead of waiting for ComfyUI to evict them), then release cached VRAM."""
    mm = _mm_or_none()
    moved = False
    for p in patchers:
        if torch.device(p.load_device) == torch.device(p.offload_device):
            continue
        moved = True
        if mm is None:
            p.model.to(p.offload_device)
            continue
        ledger = getattr(mm, "current_loaded_models", None)
        entry = next((e for e in ledger if e.model is p), None) if ledger is not None else None
        if entry is not None:
            entry.model_unload()
            ledger.remove(entry)
        elif hasattr(p, "detach"):
            p.detach()
    if moved:
        soft_empty_cache()


# ------------------------------------------------------------------------------------------------------
# Layers, latent format and previews


def ops() -> Any:
    """Layer namespace for models ComfyUI should be able to load partially: ``comfy.ops.manual_cast``
    (layers with ``comfy_cast_weights``) inside ComfyUI, ``torch.nn`` otherwise."""
    try:
        return importlib.import_module("comfy.ops").manual_cast
    except ImportError:
        return torch.nn


def wan22_latent_format():
    """``comfy.latent_formats.Wan22()`` (48-channel latent→RGB factors, latents_mean/std); ``None`` without ComfyUI."""
    try:
        return importlib.import_module("comfy.latent_formats").Wan22()
    except ImportError:
        return None


def latent_previewer(device: torch.device | None = None):
    """ComfyUI's previewer for Wan 2.2 latents (per ``--preview-method``), or ``None`` (previews off, or no
    ComfyUI). Feed it *normalized* latents ``[B, 48, T, h, w]`` (frame 0 is shown) via :func:`preview_image`."""
    fmt = wan22_latent_format()
    if fmt is None:
        return None
    try:
        lp = importlib.import_module("latent_preview")
    except ImportError:
        return None
    return lp.get_previewer(device if device is not None else torch_device(), fmt)


def preview_image(previewer, x0: torch.Tensor):
    """``("JPEG", PIL.Image, max_size)`` for a progress-bar update, or ``None`` when there is no previewer."""
    if previewer is None:
        return None
    return previewer.decode_latent_to_preview_image("JPEG", x0)

