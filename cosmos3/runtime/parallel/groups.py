"""Process groups of one parallel run on ``torch.distributed`` (NCCL on GPUs, gloo on the CPU).

:func:`init_parallel` joins (or reuses) the default process group — under ``torchrun`` from its environment
(``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT``), in tests from an explicit ``init_method`` — checks
the layout against it and builds the sub-groups every rank creates in the same order:

* one Ulysses group per (cfg, ring) index (``U`` neighbouring ranks), when ``ulysses > 1``;
* one sequence group per cfg index (``U * R`` ranks: gathers the sharded generation stream);
* one CFG pair group per sequence position, when ``cfg == 2``.

Ring neighbours talk point to point (global ranks). Every collective runs under :meth:`ParallelRuntime.guard`,
which turns a backend failure (a peer that died, or the collective timeout) into :class:`ParallelError` naming
the operation, the rank and the timeout. On NCCL the watchdog (``TORCH_NCCL_ASYNC_ERROR_HANDLING``) aborts a
rank whose collective exceeds the timeout instead of letting it hang.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from ...errors import Cosmos3Error
from .config import ParallelConfig, ParallelConfigError

DEFAULT_TIMEOUT_S = 600.0


class ParallelError(Cosmos3Error, RuntimeError):
    """A collective of a parallel run failed: another rank stopped, crashed or exceeded the timeout."""


class ParallelStopped(ParallelError):
    """Another rank asked every rank to stop between two steps (interrupt, or an error there); the process
    group is intact and can run the next job."""


@dataclass
class ParallelRuntime:
    """One rank's view of a parallel run: its coordinates, the sub-groups and the device it computes on."""

    config: ParallelConfig
    rank: int
    device: torch.device
    timeout_s: float
    ulysses_group: object | None = None
    sequence_group: object | None = None
    cfg_group: object | None = None
    owns_default_group: bool = False
    bytes_sent: int = 0  # payload bytes this rank sent (attention exchange, gathers, CFG exchange)
    _closed: bool = field(default=False, repr=False)

    # ------------------------------------------------------------------ coordinates
    @property
    def world_size(self) -> int:
        return self.config.world_size

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes outputs and decodes."""
        return self.rank == 0

    @property
    def cfg_index(self) -> int:
        return self.config.rank_coords(self.rank)[0]

    @property
    def ring_index(self) -> int:
        return self.config.rank_coords(self.rank)[1]

    @property
    def ulysses_index(self) -> int:
        return self.config.rank_coords(self.rank)[2]

    @property
    def sequence_index(self) -> int:
        """Position of this rank's shard in the generation sequence (``ring_index * U + ulysses_index``)."""
        return self.rank % self.config.sequence_degree

    def global_rank(self, cfg_index: int, ring_index: int, ulysses_index: int) -> int:
        c = self.config
        return cfg_index * c.sequence_degree + ring_index * c.ulysses + ulysses_index

    # ------------------------------------------------------------------ failures
    @contextlib.contextmanager
    def guard(self, operation: str) -> Iterator[None]:
        """Run a collective; a backend error becomes :class:`ParallelError` (peer gone or timeout)."""
        if self._closed:
            raise ParallelError(f"parallel run already closed; cannot {operation}")
        try:
            yield
        except ParallelError:
            raise
        except (RuntimeError, OSError, dist.DistError) as exc:
            detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise ParallelError(
                f"parallel {operation} failed on rank {self.rank} of {self.world_size} "
                f"({self.config.describe()}): another rank stopped, crashed or exceeded the "
                f"{self.timeout_s:g}s collective timeout ({detail})"
            ) from exc

    # ------------------------------------------------------------------ collectives used outside attention
    def gather_sequence(self, shard: torch.Tensor) -> list[torch.Tensor]:
        """All-gather ``shard`` over this rank's sequence group (sequence order)."""
        if self.sequence_group is None:
            return [shard]
        parts = [torch.empty_like(shard) for _ in range(self.config.sequence_degree)]
        with self.guard("all_gather (sequence)"):
            dist.all_gather(parts, shard.contiguous(), group=self.sequence_group)
        return parts

    def exchange_cfg(self, mine: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """All-gather this rank's branch output over its CFG pair -> ``(cond, uncond)``, identical on both ranks."""
        if self.cfg_group is None:
            raise ParallelError("exchange_cfg needs cfg=2")
        parts = [torch.empty_like(mine) for _ in range(2)]
        self.bytes_sent += mine.numel() * mine.element_size()
        with self.guard("all_gather (cfg)"):
            dist.all_gather(parts, mine.contiguous(), group=self.cfg_group)
        return parts[0], parts[1]

    def agree(self, ok: bool) -> bool:
        """Whether every rank says ``ok`` (all-reduce MIN over the world): the per-step go/stop signal."""
        flag = torch.tensor([1 if ok else 0], dtype=torch.int32, device=self.device)
        with self.guard("all_reduce (step signal)"):
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item())

    def barrier(self) -> None:
        with self.guard("barrier"):
            dist.barrier()

    def broadcast_object(self, value: object) -> object:
        """Rank 0's ``value`` on every rank (small Python objects: errors, flags)."""
        box = [value]
        with self.guard("broadcast"):
            dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        """Destroy the sub-groups and, when :func:`init_parallel` created it, the default group (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if dist.is_initialized():
            for group in {id(g): g for g in (self.ulysses_group, self.sequence_group, self.cfg_group) if g}.values():
                with contextlib.suppress(Exception):
                    dist.destroy_process_group(group)
            if self.owns_default_group:
                with contextlib.suppress(Exception):
                    dist.destroy_process_group()

    def __enter__(self) -> ParallelRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def init_parallel(
    config: ParallelConfig,
    *,
    rank: int | None = None,
    world_size: int | None = None,
    device: torch.device | str | None = None,
    init_method: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    num_heads: int | None = None,
    num_kv_heads: int | None = None,
) -> ParallelRuntime:
    """Join the process group of a parallel run and build its sub-groups; returns this rank's runtime.

    ``rank``/``world_size`` default to ``RANK``/``WORLD_SIZE`` (torchrun). ``device`` defaults to
    ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU (gloo). ``num_heads``/``num_kv_heads`` (the model's)
    are checked with the world size and device count before any collective runs
    (:class:`~cosmos3.runtime.parallel.config.ParallelConfigError`, one line naming the numbers).
    """
    if not isinstance(config, ParallelConfig):
        raise TypeError(f"init_parallel needs a ParallelConfig, got {type(config).__name__}")
    if not (isinstance(timeout_s, (int, float)) and timeout_s > 0):
        raise ParallelConfigError(f"parallel timeout_s must be a positive number of seconds, got {timeout_s!r}")
    if rank is None:
        rank = dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", 0))
    if world_size is None:
        world_size = dist.get_world_size() if dist.is_initialized() else int(os.environ.get("WORLD_SIZE", 1))
    if device is None:
        local = int(os.environ.get("LOCAL_RANK", rank))
        device = torch.device("cuda", local) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(device)
    devices = torch.cuda.device_count() if device.type == "cuda" else None
    config.check(num_heads=num_heads, num_kv_heads=num_kv_heads, world_size=world_size, devices=devices)
    if device.type == "cuda":
        torch.cuda.set_device(device)

    owns = False
    if not dist.is_initialized():
        kwargs = {"backend": _backend_for(device), "timeout": datetime.timedelta(seconds=float(timeout_s))}
        kwargs.update(rank=rank, world_size=world_size)
        if init_method is not None:
            kwargs["init_method"] = init_method
        if device.type == "cuda":
            kwargs["device_id"] = device
        dist.init_process_group(**kwargs)
        owns = True
    runtime = ParallelRuntime(config, rank, device, float(timeout_s), owns_default_group=owns)
    try:
        _build_groups(runtime, datetime.timedelta(seconds=float(timeout_s)))
    except Exception:
        runtime.close()
        raise
    return runtime


def _build_groups(runtime: ParallelRuntime, timeout: datetime.timedelta) -> None:
    """Every rank creates every sub-group in the same order (a torch.distributed requirement)."""
    c = runtime.config
    me = runtime.rank
    with runtime.guard("process group setup"):
        if c.ulysses > 1:
            for cfg in range(c.cfg):
                for ring in range(c.ring):
                    ranks = [runtime.global_rank(cfg, ring, u) for u in range(c.ulysses)]
                    group = dist.new_group(ranks, timeout=timeout)
                    if me in ranks:
                        runtime.ulysses_group = group
        if c.sequence_degree > 1:
            for cfg in range(c.cfg):
                ranks = [cfg * c.sequence_degree + s for s in range(c.sequence_degree)]
                group = dist.new_group(ranks, timeout=timeout)
                if me in ranks:
                    runtime.sequence_group = group
        if c.cfg > 1:
            for seq in range(c.sequence_degree):
                ranks = [seq, c.sequence_degree + seq]
                group = dist.new_group(ranks, timeout=timeout)
                if me in ranks:
                    runtime.cfg_group = group
