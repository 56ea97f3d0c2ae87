"""Start a parallel run's ranks as local processes (``torch.multiprocessing``, spawn) and never leave one behind.

Used by the tests, the benchmark and the ComfyUI workers; ``torchrun`` is the launcher for the CLI.
:func:`free_port` picks a loopback port for the rendezvous; :func:`run_local` starts ``fn(rank, world, *args)``
in ``world`` processes, waits for all of them up to a deadline and kills (then reaps) whatever is left.
"""

from __future__ import annotations

import pickle
import runpy
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch.multiprocessing as mp


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for ``tcp://127.0.0.1:PORT`` rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def reap(processes: list, grace_s: float = 5.0) -> None:
    """Terminate, then kill, every process still alive, and join them all (no zombies)."""
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
    deadline = time.monotonic() + grace_s
    for proc in processes:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join()


def run_local(fn: Callable[..., Any], world: int, args: tuple = (), timeout_s: float = 600.0) -> list[int | None]:
    """Run ``fn(rank, world, *args)`` in ``world`` spawned processes; returns their exit codes.

    A process still running after ``timeout_s`` is killed (its code is then negative). ``fn`` must be importable
    by reference (a module-level function).
    """
    ctx = mp.get_context("spawn")
    processes = [ctx.Process(target=fn, args=(rank, world, *args), daemon=True) for rank in range(world)]
    try:
        for proc in processes:
            proc.start()
        deadline = time.monotonic() + timeout_s
        for proc in processes:
            proc.join(max(0.0, deadline - time.monotonic()))
    finally:
        reap(processes)
    return [proc.exitcode for proc in processes]


def spawn_worker(ctx, fn: Callable[..., Any], args: tuple, inherited: tuple = (), name: str | None = None):
    """A (not yet started) spawn-context process running ``fn(*args, *inherited)``, importable under whatever
    module name this package has in the host (see :mod:`._spawn_entry`). ``args`` are pickled by value;
    ``inherited`` (queues, pipes) are handed over at spawn."""
    module = fn.__module__
    root = module.split(".cosmos3.", 1)[0] if ".cosmos3." in module else None
    folder = str(Path(__file__).resolve().parents[3])
    entry = str(Path(__file__).with_name("_spawn_entry.py"))
    init_globals = {
        "ROOT": root, "FOLDER": folder, "TARGET": (module, fn.__name__), "PAYLOAD": pickle.dumps(args),
        "INHERITED": tuple(inherited),
    }
    return ctx.Process(target=runpy.run_path, args=(entry,), kwargs={"init_globals": init_globals}, daemon=True,
                       name=name)
