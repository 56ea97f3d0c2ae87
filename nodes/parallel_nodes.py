"""Parallel: run the Sampler on several GPUs (or CPU processes) from one ComfyUI process.

The ``C3MoTParallel`` node outputs a ``C3MOT_PARALLEL`` layout; the Sampler's optional ``parallel`` input takes
it. ComfyUI's own process is rank 0 (its device, its loaded generation tower); ranks 1..W-1 are worker processes
(:class:`cosmos3.runtime.parallel.workers.ParallelWorkers`) started once per loaded model and layout, each
loading the generation tower onto its own device. Cancel stops every rank between two steps; a crashed worker,
a stalled collective (timeout) or releasing the model ends every worker with an error naming them.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..cosmos3.model.fp8 import Fp8Linear
from ..cosmos3.runtime.parallel import ParallelConfig, ParallelConfigError
from ..cosmos3.runtime.parallel.workers import ParallelWorkers, WorkerModel
from ..cosmos3.sampling.loop import sample
from ._comfy import io
from .common import C3MOT_PARALLEL, CATEGORY_ROOT, node_schema

log = logging.getLogger("cosmos3_mot")

CATEGORY = CATEGORY_ROOT + "/sampling"
MAX_DEGREE = 16
_POOLS: dict[int, tuple[tuple, ParallelWorkers]] = {}


@dataclass(frozen=True)
class ParallelSettings:
    """What travels on a ``C3MOT_PARALLEL`` socket."""

    config: ParallelConfig
    devices: str = "auto"
    timeout_s: float = 600.0


def resolve_devices(settings: ParallelSettings, main: torch.device) -> list[str]:
    """One device per rank, rank 0 = ``main`` (ComfyUI's device). ``auto``: the other CUDA devices in order
    (every rank on the CPU when ComfyUI runs on the CPU)."""
    world = settings.config.world_size
    if settings.devices.strip() in ("", "auto"):
        if main.type != "cuda":
            return [str(main)] * world
        count = torch.cuda.device_count()
        first = main.index if main.index is not None else torch.cuda.current_device()
        devices = [f"cuda:{first}"] + [f"cuda:{i}" for i in range(count) if i != first]
        settings.config.check(devices=count)
        return devices[:world]
    devices = [d.strip() for d in settings.devices.split(",") if d.strip()]
    if len(devices) != world or torch.device(devices[0]) != torch.device(main):
        raise ParallelConfigError(
            f"parallel devices {settings.devices!r}: {settings.config.describe()} needs {world} devices, the first "
            f"being ComfyUI's device {main}; got {len(devices)}"
        )
    return devices


def _weight_storage(transformer) -> str | None:
    return "fp8_e4m3fn" if any(isinstance(m, Fp8Linear) for m in transformer.modules()) else None


def workers_for(model, settings: ParallelSettings, attention: str) -> ParallelWorkers:
    """The worker pool of ``model`` for ``settings`` (started on first use; a new layout replaces the old pool)."""
    cfg = model.transformer.config
    settings.config.check(num_heads=cfg.num_attention_heads, num_kv_heads=cfg.num_key_value_heads)
    devices = resolve_devices(settings, torch.device(model.device))
    key = (settings.config, tuple(devices), settings.timeout_s, attention)
    entry = _POOLS.get(id(model))
    if entry is not None and entry[0] == key:
        return entry[1]
    release(model)
    recipe = WorkerModel(path=model.source, dtype=model.dtype, weight_storage=_weight_storage(model.transformer),
                         attention_backend=attention)
    pool = ParallelWorkers(settings.config, recipe, devices, timeout_s=settings.timeout_s)
    _POOLS[id(model)] = (key, pool)
    weakref.finalize(model, _release_id, id(model))  # the model is released: end its workers
    log.info("[Cosmos3 MoT] parallel %s on %s", settings.config.describe(), ", ".join(devices))
    return pool


def release(model) -> None:
    """End ``model``'s workers (if any)."""
    _release_id(id(model))


def _release_id(key: int) -> None:
    entry = _POOLS.pop(key, None)
    if entry is not None:
        entry[1].close()


class Parallel(io.ComfyNode):
    """Splits each sampling step over several GPUs: ulysses and ring shard the video tokens (sequence parallel),
    cfg runs the positive and negative passes on different GPUs. Connect it to the Sampler's parallel input. GPUs
    used = ulysses x ring x (2 if cfg else 1); ComfyUI's GPU is the first, each other GPU gets a worker process
    holding its own copy of the generation tower."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(
            cls, "C3MoTParallel", "Parallel", CATEGORY,
            inputs=[
                io.Int.Input("ulysses", default=2, min=1, max=MAX_DEGREE, step=1, tooltip=(
                    "Ulysses degree: the tokens are split over this many GPUs and traded for attention heads. "
                    "Must divide the attention heads (Nano 32, Super 64, Edge 16).")),
                io.Int.Input("ring", default=1, min=1, max=MAX_DEGREE, step=1, tooltip=(
                    "Ring degree: the tokens are split over this many GPUs that pass key/value blocks around; "
                    "any degree (for GPU counts Ulysses cannot take).")),
                io.Boolean.Input("cfg", default=False, tooltip=(
                    "Positive and negative passes on different GPUs (doubles the GPU count; only helps when "
                    "cfg != 1).")),
                io.String.Input("devices", default="auto", tooltip=(
                    "'auto' = ComfyUI's GPU, then the other GPUs in order; or a list such as cuda:0,cuda:2 "
                    "(the first must be ComfyUI's device).")),
                io.Float.Input("timeout", default=600.0, min=5.0, max=86400.0, step=1.0, tooltip=(
                    "Seconds before a stalled exchange between GPUs fails the run (then every worker is ended).")),
            ],
            outputs=[C3MOT_PARALLEL.Output(display_name="parallel", tooltip="For the Sampler's parallel input.")],
        )

    @classmethod
    def execute(cls, ulysses, ring, cfg, devices="auto", timeout=600.0) -> io.NodeOutput:
        config = ParallelConfig(ulysses=int(ulysses), ring=int(ring), cfg=2 if cfg else 1)
        return io.NodeOutput(ParallelSettings(config, str(devices), float(timeout)))


NODES = [Parallel]


def sampler_for(model, settings: ParallelSettings | None, attention: str, step_cache) -> Callable:
    """:func:`cosmos3.sampling.loop.sample`, or (with ``settings``) the same call spread over the worker ranks.
    Checks the layout against the model and the devices now, before any weights move."""
    if settings is None:
        return sample
    if not isinstance(settings, ParallelSettings):
        raise TypeError(f"parallel must come from the Cosmos3 MoT Parallel node, got {type(settings).__name__}")
    if step_cache is not None:
        raise ValueError("step_cache cannot be combined with parallel sampling (set step_cache to 0)")
    cfg = model.transformer.config
    settings.config.check(num_heads=cfg.num_attention_heads, num_kv_heads=cfg.num_key_value_heads)
    resolve_devices(settings, torch.device(model.device))

    def run(transformer, prompt, sampler, *, callback=None, step_cache=None, **kwargs):
        pool = workers_for(model, settings, attention)
        return pool.sample(transformer, callback=callback, prompt=prompt, sampler=sampler, attention=attention,
                           **kwargs)

    return run
