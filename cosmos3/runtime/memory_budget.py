"""Refuse a request that cannot fit in memory before any weight is loaded or any tensor allocated.

The size checks of the trained envelope do not apply to custom checkpoints or ``strict_sizes=False``, so a
typo such as ``--height 100000`` would otherwise allocate until the machine swaps or the process is killed.
The estimate is a lower bound (one generation-tower step's activations plus the latents on the device, the
decoded frames on the host; weights not counted, since block swap / offload can keep them elsewhere), so a
refusal is certain to be right; requests that pass may still run out of memory for other reasons.
"""

from __future__ import annotations

import os

import torch

from ..errors import Cosmos3Error
from ..geometry import Geometry
from ..model.config import TransformerConfig
from ..sampling.plan import estimate_sampling_bytes

TEXT_TOKENS_ESTIMATE = 256  # a typical prompt with its metadata sentences


class MemoryEstimateError(Cosmos3Error):
    """The request needs more memory than the device (or the host) has, by the estimate in the message."""


def format_bytes(n: int) -> str:
    """``1536`` -> ``"1.5 KiB"`` (binary units up to PiB)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{value:.1f} PiB"


def host_memory_bytes() -> int | None:
    """Physical RAM of this machine (``None`` where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def device_memory_bytes(device: torch.device | str) -> int | None:
    """Total memory of ``device`` (host RAM for the CPU; ``None`` when unknown)."""
    device = torch.device(device)
    if device.type == "cpu":
        return host_memory_bytes()
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_properties(device).total_memory
    return None


def estimate_request_bytes(
    config: TransformerConfig, geometry: Geometry, dtype: torch.dtype, *, guidance: bool = True
) -> tuple[int, int]:
    """``(device_bytes, host_bytes)``: a lower bound of the sampling memory on the device (one step's
    activations, cached text K/V, sampler state) and of the decoded frames on the host (the VAE's output in
    ``dtype`` plus the float32 frames ``[F, H, W, 3]``)."""
    device_bytes = estimate_sampling_bytes(config, geometry, TEXT_TOKENS_ESTIMATE, dtype, guidance=guidance)
    pixels = geometry.frames * geometry.height * geometry.width * 3
    host_bytes = pixels * (torch.empty((), dtype=dtype).element_size() + 4)
    return device_bytes, host_bytes


def check_request_memory(
    config: TransformerConfig,
    geometry: Geometry,
    dtype: torch.dtype,
    device: torch.device | str,
    *,
    guidance: bool = True,
) -> None:
    """Raise :class:`MemoryEstimateError` with the figures when the request cannot fit (see the module doc)."""
    device = torch.device(device)
    device_bytes, host_bytes = estimate_request_bytes(config, geometry, dtype, guidance=guidance)
    host = host_memory_bytes()
    on_device = device_memory_bytes(device)
    if device.type == "cpu":
        device_bytes, on_device = device_bytes + host_bytes, host
    checks = [(device_bytes, on_device, f"{device.type} memory" if device.type != "cpu" else "RAM")]
    if device.type != "cpu":
        checks.append((host_bytes, host, "RAM (decoded frames)"))
    for need, have, where in checks:
        if have is not None and need > have:
            raise MemoryEstimateError(
                f"{geometry.describe()} needs at least {format_bytes(need)} of {where} (estimate, weights not "
                f"counted) but this machine has {format_bytes(have)}; choose a smaller size or fewer frames"
            )
