"""Ranks 1..W-1 of a parallel run as worker processes of one host process (rank 0), e.g. ComfyUI.

:class:`ParallelWorkers` starts the workers once (``torch.multiprocessing``, spawn), each loading the generation
tower onto its own device from a :class:`WorkerModel` recipe (the text tower is dropped: the text K/V travel with
every job). :meth:`ParallelWorkers.sample` hands the job to every worker through a queue, runs
:func:`~cosmos3.sampling.loop.sample` as rank 0 with the host's own transformer, and waits for every worker's
reply. Failure handling — never a hang, never an orphan:

* an exception raised by rank 0's step callback (an interrupt) stops every rank between two steps
  (:class:`~cosmos3.runtime.parallel.ParallelStopped` there); the workers stay up for the next job;
* a worker that dies, or a collective that exceeds the timeout, fails rank 0 with
  :class:`~cosmos3.runtime.parallel.ParallelError`; then every worker is ended (terminate, kill, join) and the
  error names the exit codes; the next :meth:`sample` starts fresh workers;
* :meth:`close` (unload; also run when the pool is garbage-collected or the interpreter exits) ends them all;
  workers also exit on their own when the host process disappears.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import time
import traceback
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.multiprocessing as mp

from .config import ParallelConfig
from .groups import DEFAULT_TIMEOUT_S, ParallelError, ParallelRuntime, ParallelStopped, init_parallel
from .local import free_port, reap, spawn_worker

_POLL_S = 0.5
log = logging.getLogger("cosmos3")


@dataclass(frozen=True)
class WorkerModel:
    """How a worker loads the generation tower: :func:`cosmos3.model.loading.load_transformer` arguments."""

    path: str
    dtype: torch.dtype
    weight_storage: str | None = None
    attention_backend: str = "sdpa"

    def load(self, device: torch.device):
        from ...model.loading import load_transformer

        model = load_transformer(self.path, dtype=self.dtype, device=device, weight_storage=self.weight_storage,
                                 text_tower_device="cpu")
        model.drop_text_tower()  # workers get the text K/V with every job
        model.attention_backend = self.attention_backend
        return model


def _worker_main(rank, world, init, config, spec, device, timeout_s, jobs, replies) -> None:
    """One worker rank: join the group, load, then serve jobs until told to stop or the host is gone."""
    from ...sampling.loop import sample

    runtime = None
    try:
        runtime = init_parallel(config, rank=rank, world_size=world, device=device, init_method=init,
                                timeout_s=timeout_s)
        transformer = spec.load(runtime.device)
        replies.put((rank, "ready", None))
        parent = mp.parent_process()
        while True:
            try:
                job = jobs.get(timeout=_POLL_S)
            except queue.Empty:
                if parent is not None and not parent.is_alive():
                    return
                continue
            if job is None:
                return
            try:
                transformer.attention_backend = job.pop("attention", transformer.attention_backend)
                sample(transformer, parallel=runtime, device=runtime.device, **job)
                replies.put((rank, "done", None))
            except ParallelStopped as exc:
                replies.put((rank, "stopped", str(exc)))
            except ParallelError as exc:  # the group is broken: leave
                replies.put((rank, "failed", str(exc)))
                return
            except Exception:  # noqa: BLE001 - reported to rank 0, which raises it
                replies.put((rank, "error", traceback.format_exc(limit=8)))
    except BaseException:  # noqa: BLE001 - loading or joining failed: tell rank 0, then exit
        with contextlib.suppress(Exception):
            replies.put((rank, "failed", traceback.format_exc(limit=8)))
    finally:
        if runtime is not None:
            runtime.close()


class ParallelWorkers:
    """Worker ranks 1..W-1 for rank 0 = this process (see the module docstring).

    ``devices``: one device per rank (``devices[0]`` is this process's). ``start_timeout_s`` bounds joining and
    loading; ``timeout_s`` is the collective timeout.
    """

    def __init__(
        self,
        config: ParallelConfig,
        model: WorkerModel,
        devices: list[str | torch.device],
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        start_timeout_s: float = 900.0,
    ) -> None:
        if len(devices) != config.world_size:
            raise ParallelError(f"{config.describe()} needs {config.world_size} devices, got {len(devices)}")
        self.config, self.model = config, model
        self.devices = [torch.device(d) for d in devices]
        self.timeout_s, self.start_timeout_s = float(timeout_s), float(start_timeout_s)
        self.runtime: ParallelRuntime | None = None
        self._processes: list = []
        self._jobs: list = []
        self._replies = None
        self._finalizer = weakref.finalize(self, _shutdown, self._processes, self._jobs)

    @property
    def running(self) -> bool:
        return self.runtime is not None and all(p.is_alive() for p in self._processes)

    def start(self) -> None:
        """Spawn the workers and join them as rank 0 (waits until every worker has loaded its tower)."""
        if self.running:
            return
        if self._processes:
            log.warning("cosmos3 parallel: a worker had stopped (%s); starting them again", self._exit_report())
        self.close()
        world = self.config.world_size
        init = f"tcp://127.0.0.1:{free_port()}"
        if self.devices[0].type == "cuda":  # a stalled NCCL collective raises here instead of aborting the host
            os.environ.setdefault("TORCH_NCCL_BLOCKING_WAIT", "1")
        ctx = mp.get_context("spawn")
        self._replies = ctx.Queue()
        self._jobs[:] = [ctx.Queue() for _ in range(1, world)]
        self._processes[:] = [
            spawn_worker(
                ctx, _worker_main, (rank, world, init, self.config, self.model, str(self.devices[rank]),
                                    self.timeout_s), inherited=(self._jobs[rank - 1], self._replies),
                name=f"cosmos3-parallel-rank{rank}",
            )
            for rank in range(1, world)
        ]
        for proc in self._processes:
            proc.start()
        try:
            self.runtime = init_parallel(self.config, rank=0, world_size=world, device=self.devices[0],
                                         init_method=init, timeout_s=self.timeout_s)
            self._collect({"ready"}, self.start_timeout_s, "starting")
        except BaseException:
            self.close()
            raise

    def sample(self, transformer, callback: Callable | None = None, **job: Any) -> torch.Tensor:
        """Run :func:`~cosmos3.sampling.loop.sample` over every rank (``job``: its keyword arguments, the same for
        all ranks; tensors are sent from the CPU); returns rank 0's latents."""
        self.start()
        sent = {k: _to_cpu(v) for k, v in job.items() if k not in ("device",)}
        for jobs in self._jobs:
            jobs.put(dict(sent))
        interrupted: list[BaseException] = []

        def on_step(info) -> None:
            if callback is not None:
                try:
                    callback(info)
                except BaseException as exc:
                    interrupted.append(exc)
                    raise

        from ...sampling.loop import sample

        kwargs = {k: v for k, v in job.items() if k != "attention"}
        previous = transformer.attention_backend
        transformer.attention_backend = job.get("attention", previous)
        try:
            latents = sample(transformer, parallel=self.runtime, callback=on_step, **kwargs)
        except BaseException as exc:
            if interrupted and exc is interrupted[0]:  # a clean stop between steps: the workers stay up
                try:
                    self._collect({"stopped", "done"}, self.timeout_s, "stopping")
                except ParallelError:
                    self.close()
                raise
            report = self._exit_report()
            self.close()
            if isinstance(exc, ParallelError):
                raise ParallelError(f"{exc}; workers: {report}; every worker was ended") from exc
            raise
        finally:
            transformer.attention_backend = previous
        self._collect({"done"}, self.timeout_s, "finishing")
        return latents

    def _collect(self, accepted: set[str], timeout_s: float, what: str) -> None:
        """Wait for one reply per worker with a state in ``accepted``; a failure or a dead worker raises."""
        pending = set(range(1, self.config.world_size))
        deadline = time.monotonic() + timeout_s
        while pending:
            try:
                rank, state, detail = self._replies.get(timeout=_POLL_S)
            except queue.Empty:
                dead = [p for p in self._processes if not p.is_alive()]
                if dead or time.monotonic() > deadline:
                    report = self._exit_report()
                    self.close()
                    reason = "exited" if dead else f"did not answer within {timeout_s:g}s"
                    raise ParallelError(f"parallel worker {reason} while {what} ({report})") from None
                continue
            if state not in accepted:
                self.close()
                raise ParallelError(f"parallel worker rank {rank} {state} while {what}:\n{detail}")
            pending.discard(rank)

    def _exit_report(self) -> str:
        codes = [f"rank {i + 1}: {'running' if p.is_alive() else f'exit code {p.exitcode}'}"
                 for i, p in enumerate(self._processes)]
        return ", ".join(codes) or "no workers"

    def close(self) -> None:
        """End every worker and leave the process group (idempotent)."""
        _shutdown(self._processes, self._jobs)
        self._processes[:] = []
        self._jobs[:] = []
        if self.runtime is not None:
            self.runtime.close()
            self.runtime = None


def _shutdown(processes: list, jobs: list) -> None:
    for q in jobs:
        with contextlib.suppress(Exception):
            q.put(None)
    deadline = time.monotonic() + 5.0
    for proc in processes:
        proc.join(max(0.0, deadline - time.monotonic()))
    reap(processes)


def _to_cpu(value: Any) -> Any:
    from ...text.encoding import EncodedPrompt

    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, EncodedPrompt):
        return value.to("cpu")
    return value
