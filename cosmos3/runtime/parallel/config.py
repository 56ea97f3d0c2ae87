"""Parallel layout of one run: ``ParallelConfig(ulysses=U, ring=R, cfg=C)`` and its checks.

World size = ``U * R * C``. Global rank ``g`` = ``c * (U*R) + r * U + u`` (``u`` Ulysses index, innermost so a
Ulysses group sits on neighbouring GPUs; ``r`` ring index; ``c`` CFG branch: 0 = cond, 1 = uncond).

Rules (checked by :meth:`ParallelConfig.check` before any work starts):

* ``cfg`` is 1 or 2 (cond and uncond on different rank groups);
* ``ulysses`` U must divide ``num_attention_heads``, and the key/value heads must split evenly (``nkv % U == 0``:
  each rank takes ``nkv / U`` K/V heads) or be replicated (``U % nkv == 0``: each K/V head is repeated
  ``U / nkv`` times so every rank holds the one K/V head its query heads use). The cached text K/V heads are
  split (or picked) by the same rule, locally, without communication;
* ``ring`` R takes any degree (all heads on every rank; key/value blocks travel around the ring);
* world size and, on GPUs, the visible device count must hold ``U * R * C`` ranks.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import Cosmos3Error

MAX_DEGREE = 1024


class ParallelConfigError(Cosmos3Error):
    """A parallel layout that the model, the world size or the devices cannot take."""


@dataclass(frozen=True)
class ParallelConfig:
    """Degrees of sequence parallelism (``ulysses`` x ``ring``) and CFG parallelism (``cfg``: 1 or 2)."""

    ulysses: int = 1
    ring: int = 1
    cfg: int = 1

    def __post_init__(self) -> None:
        for name in ("ulysses", "ring", "cfg"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_DEGREE:
                raise ParallelConfigError(f"parallel {name}={value!r}: must be an integer in [1, {MAX_DEGREE}]")
        if self.cfg not in (1, 2):
            raise ParallelConfigError(f"parallel cfg={self.cfg}: must be 1 or 2 (cond and uncond branches)")

    @property
    def world_size(self) -> int:
        """Processes this layout needs: ``ulysses * ring * cfg``."""
        return self.ulysses * self.ring * self.cfg

    @property
    def sequence_degree(self) -> int:
        """Ranks sharing one generation sequence: ``ulysses * ring``."""
        return self.ulysses * self.ring

    @classmethod
    def parse(cls, text: str) -> ParallelConfig:
        """``"ulysses=2,cfg=2"`` (keys ``ulysses``, ``ring``, ``cfg``; missing ones are 1) -> config."""
        values: dict[str, int] = {}
        for part in str(text).replace(" ", "").split(","):
            if not part:
                continue
            key, sep, value = part.partition("=")
            if not sep or key not in ("ulysses", "ring", "cfg") or key in values:
                raise ParallelConfigError(
                    f"parallel layout {text!r}: expected comma-separated ulysses=N, ring=N, cfg=N (each once), "
                    f"got {part!r}"
                )
            try:
                values[key] = int(value)
            except ValueError:
                raise ParallelConfigError(f"parallel layout {text!r}: {key}={value!r} is not an integer") from None
        return cls(**values)

    def describe(self) -> str:
        return f"ulysses={self.ulysses},ring={self.ring},cfg={self.cfg}"

    def rank_coords(self, rank: int) -> tuple[int, int, int]:
        """Global ``rank`` -> ``(cfg_index, ring_index, ulysses_index)``."""
        seq = self.sequence_degree
        return rank // seq, (rank % seq) // self.ulysses, rank % self.ulysses

    def check(
        self,
        *,
        num_heads: int | None = None,
        num_kv_heads: int | None = None,
        world_size: int | None = None,
        devices: int | None = None,
    ) -> ParallelConfig:
        """Raise one :class:`ParallelConfigError` naming every number that does not fit; returns ``self``."""
        problems = []
        u = self.ulysses
        if num_heads is not None and u > 1:
            if num_heads % u:
                problems.append(
                    f"ulysses={u} does not divide the {num_heads} attention heads (use a divisor of {num_heads}, "
                    f"or ring={u} which takes any degree)"
                )
            elif num_kv_heads is not None and num_kv_heads % u and u % num_kv_heads:
                problems.append(
                    f"ulysses={u} can neither split nor replicate the {num_kv_heads} key/value heads "
                    f"(need {num_kv_heads} % {u} == 0 or {u} % {num_kv_heads} == 0; or use ring={u})"
                )
        if world_size is not None and world_size != self.world_size:
            problems.append(
                f"{self.describe()} needs {self.world_size} processes (ulysses*ring*cfg), the world has {world_size}"
            )
        if devices is not None and devices < self.world_size:
            problems.append(f"{self.describe()} needs {self.world_size} GPUs, {devices} visible")
        if problems:
            raise ParallelConfigError(
                f"parallel layout {self.describe()} does not fit: {problems[0]}"
                + "".join(f"\n  also: {p}" for p in problems[1:])
            )
        return self


def kv_heads_per_rank(num_kv_heads: int, ulysses: int) -> tuple[int, int]:
    """``(repeat, heads_per_rank)``: each K/V head is repeated ``repeat`` times before the Ulysses split, so
    every rank gets ``heads_per_rank`` of them (``(1, nkv/U)`` when split, ``(U/nkv, 1)`` when replicated)."""
    if num_kv_heads % ulysses == 0:
        return 1, num_kv_heads // ulysses
    return ulysses // num_kv_heads, 1
