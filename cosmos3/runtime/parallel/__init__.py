"""Several processes (GPUs) per generation: sequence parallel (Ulysses, ring) and CFG parallel.

* :class:`ParallelConfig` — the layout ``ulysses * ring * cfg`` and its checks (:mod:`.config`);
* :func:`init_parallel` / :class:`ParallelRuntime` — process groups on ``torch.distributed`` (:mod:`.groups`);
* :class:`SequenceParallel` — sharded generation-stream attention (:mod:`.sequence`);
* :func:`sequence_parallel_for` / :func:`use_sequence_parallel` — build it for a transformer / install it.

The sampling loop (:func:`cosmos3.sampling.loop.sample`, ``parallel=``) runs on every rank with the same seed and
the same latents; each rank computes its shard (and its CFG branch), so every rank ends with identical latents.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from .config import ParallelConfig, ParallelConfigError, kv_heads_per_rank
from .groups import DEFAULT_TIMEOUT_S, ParallelError, ParallelRuntime, ParallelStopped, init_parallel
from .sequence import SequenceParallel, attention_lse, merge_partial

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "ParallelConfig",
    "ParallelConfigError",
    "ParallelError",
    "ParallelRuntime",
    "ParallelStopped",
    "SequenceParallel",
    "attention_lse",
    "init_parallel",
    "kv_heads_per_rank",
    "merge_partial",
    "sequence_parallel_for",
    "use_sequence_parallel",
]


def sequence_parallel_for(transformer, runtime: ParallelRuntime | None) -> SequenceParallel | None:
    """The :class:`SequenceParallel` that shards ``transformer``'s generation stream over ``runtime``'s sequence
    group (``None`` without a runtime or with sequence degree 1)."""
    if runtime is None or runtime.config.sequence_degree == 1:
        return None
    cfg = transformer.config
    return SequenceParallel(runtime, cfg.num_attention_heads, cfg.num_key_value_heads)


@contextlib.contextmanager
def use_sequence_parallel(transformer, runtime: ParallelRuntime | None) -> Iterator[SequenceParallel | None]:
    """Install :func:`sequence_parallel_for` on ``transformer`` for the ``with`` block."""
    previous = transformer.sequence_parallel
    transformer.sequence_parallel = sp = sequence_parallel_for(transformer, runtime)
    try:
        yield sp
    finally:
        transformer.sequence_parallel = previous
