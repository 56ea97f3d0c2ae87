"""Stand-in for ``comfy.model_management`` (behaviour of ComfyUI v0.3.64 for what the pack uses; our code).

Devices default to the CPU (ComfyUI started with ``--cpu``). :func:`_configure` changes them and the
simulated memory. The ledger ``current_loaded_models`` works like ComfyUI's: ``load_models_gpu`` puts a
patcher's model on its load device and records it; ``free_memory`` evicts least-recently-used entries of
a device until enough (simulated) memory is free; ``LoadedModel.model_unload`` detaches a patcher to its
offload device. Every call is recorded in ``load_calls`` / ``free_calls`` / ``empty_cache_calls``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch

from comfy.cli_args import args


@dataclass
class _Config:
    torch_device: torch.device = torch.device("cpu")
    total_vram: int = 24 * 1024**3  # simulated accelerator memory (non-CPU devices only)
    free_ram: int = 64 * 1024**3  # what get_free_memory reports for the CPU


_config = _Config()
current_loaded_models: list[LoadedModel] = []
load_calls: list[dict] = []
free_calls: list[dict] = []
empty_cache_calls: list[bool] = []


def _configure(*, torch_device: str | torch.device | None = None, total_vram: int | None = None,
               free_ram: int | None = None) -> None:
    if torch_device is not None:
        _config.torch_device = torch.device(torch_device)
    if total_vram is not None:
        _config.total_vram = int(total_vram)
    if free_ram is not None:
        _config.free_ram = int(free_ram)


def _reset() -> None:
    global _config
    _config = _Config()
    current_loaded_models.clear()
    load_calls.clear()
    free_calls.clear()
    empty_cache_calls.clear()
    interrupt_current_processing(False)


# -- devices -------------------------------------------------------------------------------------------


def get_torch_device() -> torch.device:
    return _config.torch_device


def is_device_type(device, type_name: str) -> bool:
    return getattr(device, "type", None) == type_name


def is_device_cpu(device) -> bool:
    return is_device_type(device, "cpu")


def is_device_cuda(device) -> bool:
    return is_device_type(device, "cuda")


def is_device_mps(device) -> bool:
    return is_device_type(device, "mps")


def cpu_mode() -> bool:
    return get_torch_device().type == "cpu"


def unet_offload_device() -> torch.device:
    return get_torch_device() if args.highvram else torch.device("cpu")


def intermediate_device() -> torch.device:
    return get_torch_device() if args.gpu_only else torch.device("cpu")


def vae_device() -> torch.device:
    return torch.device("cpu") if args.cpu_vae else get_torch_device()


def vae_offload_device() -> torch.device:
    return get_torch_device() if args.gpu_only else torch.device("cpu")


def text_encoder_device() -> torch.device:
    return get_torch_device()


def text_encoder_offload_device() -> torch.device:
    return torch.device("cpu")


def should_use_bf16(device=None, model_params=0, prioritize_performance=True, manual_cast=False) -> bool:
    device = get_torch_device() if device is None else device
    return not is_device_cpu(device)


def should_use_fp16(device=None, model_params=0, prioritize_performance=True, manual_cast=False) -> bool:
    device = get_torch_device() if device is None else device
    return not is_device_cpu(device)


def device_supports_non_blocking(device) -> bool:
    return is_device_cuda(device)


# -- memory ----------------------------------------------------------------------------------------------


def module_size(module: torch.nn.Module) -> int:
    return sum(t.nelement() * t.element_size() for t in module.state_dict().values())


def get_total_memory(dev=None, torch_total_too=False):
    dev = get_torch_device() if dev is None else dev
    total = _config.free_ram if is_device_cpu(dev) else _config.total_vram
    return (total, total) if torch_total_too else total


def get_free_memory(dev=None, torch_free_too=False):
    """CPU: the configured free RAM. Other devices: simulated VRAM minus what loaded models occupy there."""
    dev = get_torch_device() if dev is None else torch.device(dev)
    if is_device_cpu(dev) or is_device_mps(dev):
        free = _config.free_ram
    else:
        used = sum(lm.model.loaded_size() for lm in current_loaded_models if lm.device == dev)
        free = max(0, _config.total_vram - used)
    return (free, 0) if torch_free_too else free


def soft_empty_cache(force: bool = False) -> None:
    empty_cache_calls.append(bool(force))


def extra_reserved_memory() -> int:
    return 400 * 1024 * 1024


def minimum_inference_memory() -> int:
    return 1024**3 + extra_reserved_memory()


class LoadedModel:
    """One ledger entry: a patcher loaded on ``device``."""

    def __init__(self, model):
        self.model = model
        self.device = model.load_device
        self.currently_used = True

    def model_memory(self) -> int:
        return self.model.model_size()

    def model_loaded_memory(self) -> int:
        return self.model.loaded_size()

    def model_offloaded_memory(self) -> int:
        return self.model.model_size() - self.model.loaded_size()

    def model_load(self, lowvram_model_memory=0, force_patch_weights=False):
        self.model.load(self.device, lowvram_model_memory=lowvram_model_memory,
                        force_patch_weights=force_patch_weights, full_load=True)
        return self.model.model

    def model_unload(self, memory_to_free=None, unpatch_weights=True) -> bool:
        self.model.detach(unpatch_weights)
        return True

    def __eq__(self, other):
        return isinstance(other, LoadedModel) and self.model is other.model

    __hash__ = object.__hash__


def free_memory(memory_required, device, keep_loaded=()):
    """Unload least-recently-used models on ``device`` until ``memory_required`` bytes are free."""
    device = torch.device(device)
    free_calls.append({"memory_required": memory_required, "device": device, "keep_loaded": list(keep_loaded)})
    unloaded = []
    for lm in reversed(list(current_loaded_models)):
        if lm.device != device or lm in keep_loaded:
            continue
        if get_free_memory(device) > memory_required:
            break
        lm.model_unload()
        current_loaded_models.remove(lm)
        unloaded.append(lm)
    if unloaded:
        soft_empty_cache()
    return unloaded


def load_models_gpu(models, memory_required=0, force_patch_weights=False, minimum_memory_required=None,
                    force_full_load=False):
    """Load each patcher's model on its load device (fully) and put it first in the ledger."""
    models = list(models)
    load_calls.append({
        "models": models,
        "memory_required": memory_required,
        "minimum_memory_required": minimum_memory_required,
        "force_full_load": force_full_load,
    })
    to_load = []
    for patcher in models:
        entry = LoadedModel(patcher)
        if entry in current_loaded_models:
            entry = current_loaded_models[current_loaded_models.index(entry)]
            entry.currently_used = True
        to_load.append(entry)
    for entry in to_load:  # another clone of the same weights is unloaded first, as in ComfyUI
        for other in list(current_loaded_models):
            if other is not entry and entry.model.is_clone(other.model):
                other.model.detach(unpatch_all=False)
                current_loaded_models.remove(other)
    for entry in to_load:
        if not is_device_cpu(entry.device):
            need = entry.model_memory() - (
                entry.model_loaded_memory() if entry.model.current_loaded_device() == entry.device else 0
            )
            free_memory(need * 1.1 + max(minimum_inference_memory(), memory_required + extra_reserved_memory()),
                        entry.device, keep_loaded=to_load)
    for entry in to_load:
        entry.model_load()
        if entry in current_loaded_models:
            current_loaded_models.remove(entry)
        current_loaded_models.insert(0, entry)


def load_model_gpu(model):
    return load_models_gpu([model])


def loaded_models(only_currently_used: bool = False):
    return [lm.model for lm in current_loaded_models if lm.currently_used or not only_currently_used]


def unload_all_models() -> None:
    free_memory(1e30, get_torch_device())


def cleanup_models() -> None:
    pass


def cleanup_models_gc() -> None:
    pass


# -- interrupt -------------------------------------------------------------------------------------------


class InterruptProcessingException(Exception):
    pass


interrupt_processing_mutex = threading.RLock()
interrupt_processing = False


def interrupt_current_processing(value: bool = True) -> None:
    global interrupt_processing
    with interrupt_processing_mutex:
        interrupt_processing = value


def processing_interrupted() -> bool:
    with interrupt_processing_mutex:
        return interrupt_processing


def throw_exception_if_processing_interrupted() -> None:
    """Raise :class:`InterruptProcessingException` once per Cancel (the flag is reset when it raises)."""
    global interrupt_processing
    with interrupt_processing_mutex:
        if interrupt_processing:
            interrupt_processing = False
            raise InterruptProcessingException()
