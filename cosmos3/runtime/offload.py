"""Weight residency: block swap for the generation layers and text-tower eviction.

**Block swap** (:func:`enable_block_swap`): the first ``L - N`` generation layers (and the latent in/out
projections, final norm and timestep MLP) stay on the compute device; the last ``N`` live in host memory
(optionally pinned) and are copied to the device just before they run, with ``prefetch`` layers copied ahead
on a side CUDA stream so the transfer overlaps the previous layer's compute. Host copies are the masters:
"releasing" a layer only drops its device copy, nothing is copied back. After the last layer the first
swapped layers are prefetched again for the next pass. Device-resident weight bytes are bounded by the
resident layers plus ``prefetch + 1`` swapped layers.

The scheduling (:class:`BlockSwap`) is device-agnostic; the transfers live in a :class:`LayerMover`.
:class:`DeviceMover` uses a side stream + events on CUDA and plain synchronous copies elsewhere (on a
CPU-only machine the "device" and host are the same, so layers run in place through the same schedule).

**Text-tower eviction** (:class:`TextTowerResidency`): the text tower is needed only to encode a prompt.
``"offload"`` moves it to host memory after encoding and back for the next new prompt; ``"drop"`` frees it and
reloads its weights from the checkpoint for the next new prompt; ``"keep"`` leaves it where it is.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import torch
from torch import nn

from ..model.transformer import (
    Cosmos3Transformer,
    TextKVCache,
    TextTower,
    module_nbytes,
)

TEXT_TOWER_MODES = ("keep", "offload", "drop")


def _tensors(layer: nn.Module) -> Iterator[tuple[nn.Module, str, bool]]:
    """(owner module, name, is_parameter) for every parameter and buffer of ``layer``."""
    for module in layer.modules():
        for name, value in module._parameters.items():
            if value is not None:
                yield module, name, True
        for name, value in module._buffers.items():
            if value is not None:
                yield module, name, False


def _set(module: nn.Module, name: str, is_param: bool, tensor: torch.Tensor) -> None:
    if is_param:
        module._parameters[name].data = tensor  # keeps the Parameter object (hooks, compiled-graph inputs)
    else:
        module._buffers[name] = tensor


class LayerMover(Protocol):
    """Moves one layer's weights between host storage and the compute device."""

    def prepare(self, layer: nn.Module) -> None:
        """Once per swapped layer: put its weights in host storage (the masters)."""

    def load(self, layer: nn.Module) -> Any:
        """Start copying ``layer`` to the device (may be asynchronous); returns a handle for :meth:`wait`."""

    def wait(self, layer: nn.Module, handle: Any) -> None:
        """Make the compute stream wait until ``layer``'s copy (``handle``) has landed."""

    def release(self, layer: nn.Module) -> None:
        """Point ``layer`` back at its host masters (dropping the device copies)."""

    def restore(self, layer: nn.Module) -> None:
        """Undo :meth:`prepare`: put the layer on the device for good."""


class DeviceMover:
    """:class:`LayerMover` for a real device.

    On CUDA the copies run on a side stream (``non_blocking`` from pinned memory is truly asynchronous) and
    the compute stream waits on an event; the device tensors are ``record_stream``-ed on the compute stream
    so the caching allocator never hands their memory to the next prefetch while a kernel still reads it.
    Elsewhere copies are synchronous. ``copy=True`` forces a fresh copy even when host and device coincide
    (tests use it to exercise the swap on a CPU-only machine).
    """

    def __init__(
        self,
        device: torch.device | str,
        offload_device: torch.device | str = "cpu",
        pin_memory: bool = False,
        non_blocking: bool = True,
        copy: bool = False,
    ):
        self.device = torch.device(device)
        self.offload_device = torch.device(offload_device)
        self.cuda = self.device.type == "cuda" and torch.cuda.is_available()
        # Pinning needs a CUDA runtime; without one the flag is ignored (nothing would use it).
        self.pin_memory = bool(pin_memory) and self.cuda and self.offload_device.type == "cpu"
        self.non_blocking = bool(non_blocking) and self.cuda
        self.copy = copy
        self.stream = torch.cuda.Stream(self.device) if self.cuda else None
        self._host: dict[int, list[tuple[nn.Module, str, bool, torch.Tensor]]] = {}
        self.bytes_copied = 0

    def prepare(self, layer: nn.Module) -> None:
        entries = []
        for module, name, is_param in _tensors(layer):
            current = module._parameters[name] if is_param else module._buffers[name]
            host = current.detach().to(self.offload_device)
            if self.pin_memory and not host.is_pinned():
                host = host.pin_memory()
            _set(module, name, is_param, host)
            entries.append((module, name, is_param, host))
        self._host[id(layer)] = entries

    def load(self, layer: nn.Module) -> Any:
        entries = self._host[id(layer)]
        copies = []
        context = torch.cuda.stream(self.stream) if self.stream is not None else contextlib.nullcontext()
        with context:
            for module, name, is_param, host in entries:
                if self.copy or host.device != self.device:
                    device_tensor = host.to(self.device, non_blocking=self.non_blocking, copy=True)
                    self.bytes_copied += host.numel() * host.element_size()
                else:
                    device_tensor = host
                _set(module, name, is_param, device_tensor)
                copies.append(device_tensor)
            if self.stream is None:
                return None
            event = torch.cuda.Event()
            event.record(self.stream)
        return event, copies

    def wait(self, layer: nn.Module, handle: Any) -> None:
        if handle is None:
            return
        event, copies = handle
        compute = torch.cuda.current_stream(self.device)
        compute.wait_event(event)
        for tensor in copies:
            tensor.record_stream(compute)

    def release(self, layer: nn.Module) -> None:
        for module, name, is_param, host in self._host[id(layer)]:
            _set(module, name, is_param, host)

    def restore(self, layer: nn.Module) -> None:
        for module, name, is_param, host in self._host.pop(id(layer), []):
            _set(module, name, is_param, host.to(self.device))


class BlockSwap:
    """Schedule for running ``layers`` with the last ``blocks_to_swap`` streamed through ``mover``.

    Attributes after runs: ``peak_loaded`` (most swapped layers on the device at once), ``peak_swapped_bytes``
    (their bytes), ``log`` (when ``record=True``: ``("load"|"wait"|"run"|"release", index)`` events).
    """

    def __init__(
        self, layers: nn.ModuleList, blocks_to_swap: int, mover: LayerMover, prefetch: int = 1, record: bool = False
    ):
        count = len(layers)
        if isinstance(blocks_to_swap, bool) or not isinstance(blocks_to_swap, int) or not 0 <= blocks_to_swap <= count:
            raise ValueError(f"blocks_to_swap must be an integer in [0, {count}], got {blocks_to_swap!r}")
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or not 0 <= prefetch <= count:
            raise ValueError(f"prefetch must be an integer in [0, {count}], got {prefetch!r}")
        self.layers = layers
        self.mover = mover
        self.prefetch = prefetch
        self.order = list(range(count - blocks_to_swap, count))  # swapped layers, in execution order
        self.swapped = frozenset(self.order)
        self.layer_bytes = {i: module_nbytes(layers[i]) for i in self.order}
        self.record = record
        self.log: list[tuple[str, int]] = []
        self._inflight: dict[int, Any] = {}
        self.peak_loaded = 0
        self.peak_swapped_bytes = 0
        for index in self.order:
            mover.prepare(layers[index])

    @property
    def blocks_to_swap(self) -> int:
        return len(self.order)

    def _event(self, kind: str, index: int) -> None:
        if self.record:
            self.log.append((kind, index))

    def _load(self, index: int) -> None:
        if index not in self._inflight:
            self._inflight[index] = self.mover.load(self.layers[index])
            self._event("load", index)
            self.peak_loaded = max(self.peak_loaded, len(self._inflight))
            self.peak_swapped_bytes = max(self.peak_swapped_bytes, sum(self.layer_bytes[i] for i in self._inflight))

    def _upcoming(self, after: int) -> list[int]:
        return [i for i in self.order if i > after][: self.prefetch]

    def schedule(self, layers: nn.ModuleList | None = None) -> Iterator[tuple[int, nn.Module]]:
        """Yield ``(index, layer)`` in order, each swapped layer on the device while it is yielded."""
        layers = self.layers if layers is None else layers
        if layers is not self.layers:
            raise ValueError("BlockSwap.schedule: these are not the layers this schedule was built for")
        for index, layer in enumerate(layers):
            if index in self.swapped:
                self._load(index)  # not prefetched (prefetch 0, or the first pass)
                self.mover.wait(layer, self._inflight[index])
                self._event("wait", index)
            for ahead in self._upcoming(index):
                self._load(ahead)
            self._event("run", index)
            yield index, layer
            if index in self.swapped:
                self.mover.release(layer)
                del self._inflight[index]
                self._event("release", index)
        for ahead in self.order[: self.prefetch]:  # ready for the next pass
            self._load(ahead)

    def device_bytes(self, tower: nn.Module) -> int:
        """Peak weight bytes of ``tower`` on the device under this schedule (resident part + swapped peak)."""
        swapped = sum(self.layer_bytes.values())
        return module_nbytes(tower) - swapped + self.peak_swapped_bytes

    def unload_all(self) -> None:
        """Drop every prefetched device copy (e.g. before handing the memory to the VAE)."""
        for index in list(self._inflight):
            self.mover.release(self.layers[index])
            del self._inflight[index]

    def remove(self) -> None:
        """Put every swapped layer back on the device permanently."""
        self.unload_all()
        for index in self.order:
            self.mover.restore(self.layers[index])


def enable_block_swap(
    model: Cosmos3Transformer,
    blocks_to_swap: int,
    device: torch.device | str | None = None,
    *,
    offload_device: torch.device | str = "cpu",
    pin_memory: bool = False,
    prefetch: int = 1,
    non_blocking: bool = True,
    mover: LayerMover | None = None,
    record: bool = False,
) -> BlockSwap:
    """Stream the last ``blocks_to_swap`` generation layers from ``offload_device`` during :meth:`velocity`.

    Everything else of the generation tower is moved to ``device`` (default: where ``proj_in`` is now).
    Replaces an existing block swap. ``blocks_to_swap=0`` still installs the (no-op) schedule.
    """
    disable_block_swap(model)
    tower = model.gen_tower
    device = torch.device(device) if device is not None else tower.proj_in.weight.device
    mover = mover or DeviceMover(device, offload_device, pin_memory=pin_memory, non_blocking=non_blocking)
    count = len(tower.layers)
    if isinstance(blocks_to_swap, bool) or not isinstance(blocks_to_swap, int) or not 0 <= blocks_to_swap <= count:
        raise ValueError(f"blocks_to_swap must be an integer in [0, {count}], got {blocks_to_swap!r}")
    for name, child in tower.named_children():
        if name != "layers":
            child.to(device)
    for value in list(tower._parameters.values()):
        if value is not None:
            value.data = value.data.to(device)
    for index in range(count - blocks_to_swap):
        tower.layers[index].to(device)
    swap = BlockSwap(tower.layers, blocks_to_swap, mover, prefetch=prefetch, record=record)
    model.block_swap = swap
    return swap


def disable_block_swap(model: Cosmos3Transformer) -> None:
    """Remove block swap (swapped layers go back to the device for good)."""
    swap = model.block_swap
    if swap is not None:
        swap.remove()
        model.block_swap = None


# ---------------------------------------------------------------------------------------------- text tower


class TextTowerResidency:
    """Keep the text tower on the compute device only while prompts are encoded.

    Args:
        model: the transformer.
        mode: ``"keep"`` (never move), ``"offload"`` (to ``offload_device`` after encoding, back on demand) or
            ``"drop"`` (free after encoding; ``reload()`` rebuilds it for the next new prompt).
        device: where encoding runs (default: the generation tower's device).
        reload: returns a loaded :class:`~cosmos3.model.layers.TextTower` (needed for ``"drop"``), e.g.
            ``lambda: load_text_tower(path, dtype=..., device=...)``.

    ``loads`` counts how often the tower was brought (back) to the device after an eviction.
    """

    def __init__(
        self,
        model: Cosmos3Transformer,
        mode: str = "offload",
        device: torch.device | str | None = None,
        offload_device: torch.device | str = "cpu",
        reload: Callable[[], TextTower] | None = None,
    ):
        if mode not in TEXT_TOWER_MODES:
            raise ValueError(f"text tower mode {mode!r} is not supported; allowed: {', '.join(TEXT_TOWER_MODES)}")
        if mode == "drop" and reload is None:
            raise ValueError("text tower mode 'drop' needs a reload() function to rebuild the tower for a new prompt")
        self.model = model
        self.mode = mode
        self.device = torch.device(device) if device is not None else None
        self.offload_device = torch.device(offload_device)
        self.reload = reload
        self.loads = 0
        self.evictions = 0

    def _device(self) -> torch.device:
        return self.device if self.device is not None else self.model.gen_tower.proj_in.weight.device

    @property
    def resident(self) -> bool:
        """Whether the text tower's weights are on the compute device now."""
        tower = self.model.text_tower
        return tower is not None and tower.embed_tokens.weight.device == self._device()

    def ensure_loaded(self) -> None:
        """Bring the text tower to the compute device (reloading it when it was dropped)."""
        if self.mode == "keep":
            return
        model = self.model
        if model.text_tower is None:
            if self.reload is None:
                raise RuntimeError("the text tower was dropped and no reload() function is set")
            model.text_tower = self.reload().to(self._device())
            self.loads += 1
        elif not self.resident:
            model.text_tower.to(self._device())
            self.loads += 1

    def evict(self) -> None:
        """Move (``"offload"``) or free (``"drop"``) the text tower; no-op for ``"keep"`` or when already gone."""
        model = self.model
        if self.mode == "keep" or model.text_tower is None:
            return
        if self.mode == "offload":
            if self.resident and self.offload_device != self._device():
                model.text_tower.to(self.offload_device)
                self.evictions += 1
            return
        model.drop_text_tower()
        self.evictions += 1
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def encode(self, input_ids: torch.Tensor) -> TextKVCache:
        """:meth:`~cosmos3.model.transformer.Cosmos3Transformer.encode_text` with the tower brought in first (it
        stays until :meth:`evict`, so the cond and uncond prompts share one load)."""
        self.ensure_loaded()
        return self.model.encode_text(input_ids)

    @contextlib.contextmanager
    def session(self) -> Iterator[TextTowerResidency]:
        """``with residency.session(): ...`` — evicts on exit (the tower is loaded lazily by :meth:`encode`)."""
        try:
            yield self
        finally:
            self.evict()


def device_weight_bytes(model: nn.Module, device: torch.device | str) -> int:
    """Bytes of ``model``'s parameters and buffers currently on ``device``."""
    device = torch.device(device)
    tensors = [*model.parameters(), *model.buffers()]
    return sum(
        t.numel() * t.element_size()
        for t in tensors
        if t.device.type == device.type and (device.index is None or t.device.index == device.index)
    )
