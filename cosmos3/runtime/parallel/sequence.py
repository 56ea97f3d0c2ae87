"""Sequence-parallel attention of the generation stream: Ulysses (all-to-all over heads), ring, or both (USP).

The whole generation sequence — every token :meth:`Cosmos3Transformer._run_gen_layers` receives (video, and
any other stream appended to it), with RoPE tables already built for the *global* positions — is cut into
``S = U * R`` equal shards at one point, before the first generation layer, and gathered after the last one.
A count that does not divide is padded at the end with zero tokens (zero RoPE rows); padded keys are never
attended (their block is cut off), padded queries are dropped by the gather.

Inside each layer only the attention communicates:

* **Ulysses** (``U > 1``): ``q``/``k``/``v`` trade token slices for head slices (``all_to_all_single``), so each
  rank attends the full sequence with ``nh / U`` query heads; then the inverse trade. Key/value heads are split
  (``nkv % U == 0``) or each repeated ``U / nkv`` times first (``U % nkv == 0``); the cached text K/V (the same on
  every rank) is cut to the same heads locally. With ``R == 1`` the attention is one call to the configured
  kernel, masks for padded prompts included, exactly as in a single process.
* **Ring** (``R > 1``): each rank keeps its queries and passes its key/value block to the next rank ``R - 1``
  times, attending every block as it arrives; the partial results are merged by their log-sum-exp
  (online softmax). The cached text is one more block, attended locally.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ...model.attention import KeyPadding, attention, repeat_kv
from .config import kv_heads_per_rank
from .groups import ParallelRuntime

# Score-matrix budget of the fallback log-sum-exp attention (elements per chunk of queries).
_LSE_CHUNK_ELEMENTS = 1 << 26


def attention_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention plus its log-sum-exp: ``q`` [B, h, Lq, d], ``k``/``v`` [B, hkv, Lk, d] (GQA)
    -> ``(out [B, h, Lq, d], lse [B, h, Lq])`` both float32 (scale ``1/sqrt(d)``)."""
    groups = q.shape[-3] // k.shape[-3]
    k, v = repeat_kv(k, groups), repeat_kv(v, groups)
    length = q.shape[-2]
    try:
        if q.device.type == "cpu":
            out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v)
            return out.float(), lse.float()
        if q.is_cuda:
            out, lse = torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, None, True)[:2]
            return out.float(), lse[..., :length].float()
    except (RuntimeError, AttributeError, NotImplementedError):
        pass
    return _math_lse(q, k, v)


def _math_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference path in float32, a chunk of queries at a time (bounded score memory)."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    rows = max(1, _LSE_CHUNK_ELEMENTS // max(1, q.shape[0] * q.shape[1] * k.shape[-2]))
    outs, lses = [], []
    kf, vf = k.float(), v.float()
    for start in range(0, q.shape[-2], rows):
        scores = (q[..., start:start + rows, :].float() @ kf.transpose(-1, -2)) * scale
        lse = scores.logsumexp(dim=-1)
        outs.append((scores - lse[..., None]).exp() @ vf)
        lses.append(lse)
    return torch.cat(outs, dim=-2), torch.cat(lses, dim=-1)


def merge_partial(
    out: torch.Tensor | None, lse: torch.Tensor | None, part_out: torch.Tensor, part_lse: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Combine two softmax-normalised partial attentions over disjoint key sets by their log-sum-exp."""
    if out is None:
        return part_out, part_lse
    new_lse = torch.logaddexp(lse, part_lse)
    return out * (lse - new_lse).exp()[..., None] + part_out * (part_lse - new_lse).exp()[..., None], new_lse


class SequenceParallel:
    """Shard / attend / gather of the generation sequence for one rank (see the module docstring).

    Install on a transformer with ``model.sequence_parallel = SequenceParallel(runtime, nh, nkv)``; the model
    calls :meth:`shard`, passes :meth:`attend` to every generation layer and calls :meth:`gather`.
    """

    def __init__(self, runtime: ParallelRuntime, num_heads: int, num_kv_heads: int) -> None:
        runtime.config.check(num_heads=num_heads, num_kv_heads=num_kv_heads)
        self.runtime = runtime
        self.num_heads, self.num_kv_heads = num_heads, num_kv_heads
        self.total = 0  # true token count of the current forward
        self.block = 0  # tokens per shard (padded)

    @property
    def degree(self) -> int:
        return self.runtime.config.sequence_degree

    # ------------------------------------------------------------------ shard / gather
    def shard(
        self, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``hidden`` [Bh, N, H] and global RoPE tables [(B,) N, hd] -> this rank's shard of each (padded)."""
        total = hidden.shape[1]
        block = -(-total // self.degree)
        self.total, self.block = total, block
        start = self.runtime.sequence_index * block

        def cut(t: torch.Tensor) -> torch.Tensor:
            pad = block * self.degree - total
            if pad:
                t = F.pad(t, (0, 0, 0, pad))  # zero tokens / zero RoPE rows at the end of dim -2
            return t[..., start:start + block, :]

        return cut(hidden), cut(cos), cut(sin)

    def gather(self, hidden: torch.Tensor) -> torch.Tensor:
        """This rank's ``[B, block, H]`` output -> the full ``[B, N, H]`` (the same on every rank of the group)."""
        parts = self.runtime.gather_sequence(hidden)
        self.runtime.bytes_sent += hidden.numel() * hidden.element_size() * (self.degree - 1)
        return torch.cat(parts, dim=1)[:, : self.total]

    # ------------------------------------------------------------------ attention
    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        text_k: torch.Tensor,
        text_v: torch.Tensor,
        backend: str,
        key_padding: KeyPadding | None,
    ) -> torch.Tensor:
        """``q`` [B, n, nh, hd], ``k``/``v`` [B, n, nkv, hd] (this rank's tokens, rotated), ``text_k``/``text_v``
        [B, nkv, Lt, hd] (the whole cached text) -> attention output [B, n, nh, hd] for this rank's tokens."""
        cfg = self.runtime.config
        u, r = cfg.ulysses, cfg.ring
        if u > 1:
            repeat, per_rank = kv_heads_per_rank(self.num_kv_heads, u)
            q = self._all_to_all(q, scatter_heads=True)
            if repeat > 1:
                k, v = k.repeat_interleave(repeat, dim=2), v.repeat_interleave(repeat, dim=2)
            k = self._all_to_all(k, scatter_heads=True)
            v = self._all_to_all(v, scatter_heads=True)
            first = self.runtime.ulysses_index * per_rank // repeat
            text_k = text_k[:, first:first + per_rank]
            text_v = text_v[:, first:first + per_rank]
        chunk = q.shape[1]  # tokens of this rank's contiguous chunk (U shards after the all-to-all)
        qh, kh, vh = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if r == 1:
            keys = torch.cat([text_k, kh[:, :, : self.total]], dim=2)
            values = torch.cat([text_v, vh[:, :, : self.total]], dim=2)
            out = attention(qh, keys, values, causal=False, backend=backend, key_padding=key_padding)
        else:
            out = self._ring(qh, kh, vh, text_k, text_v, key_padding, chunk)
        out = out.transpose(1, 2)
        if u > 1:
            out = self._all_to_all(out.contiguous(), scatter_heads=False)
        return out

    def _all_to_all(self, x: torch.Tensor, scatter_heads: bool) -> torch.Tensor:
        """Ulysses trade. ``scatter_heads``: [B, n, h, d] (my tokens, all heads) -> [B, U*n, h/U, d];
        otherwise the inverse [B, U*n, h/U, d] -> [B, n, h, d]."""
        u = self.runtime.config.ulysses
        b, n, h, d = x.shape
        if scatter_heads:
            send = x.reshape(b, n, u, h // u, d).permute(2, 0, 1, 3, 4).contiguous()  # [U, B, n, h/U, d]
        else:
            send = x.reshape(b, u, n // u, h, d).permute(1, 0, 2, 3, 4).contiguous()  # [U, B, n/U, h, d]
        recv = torch.empty_like(send)
        with self.runtime.guard("all_to_all (ulysses)"):
            dist.all_to_all_single(recv, send, group=self.runtime.ulysses_group)
        self.runtime.bytes_sent += send.numel() * send.element_size() * (u - 1) // u
        if scatter_heads:  # recv[j] = rank j's tokens, my heads
            return recv.permute(1, 0, 2, 3, 4).reshape(b, u * n, h // u, d)
        return recv.permute(1, 2, 0, 3, 4).reshape(b, n // u, u * h, d)  # recv[j] = my tokens, head slice j

    def _ring(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        text_k: torch.Tensor,
        text_v: torch.Tensor,
        key_padding: KeyPadding | None,
        chunk: int,
    ) -> torch.Tensor:
        """Ring attention of ``q`` [B, h, chunk, d] over the text block and every rank's ``k``/``v`` block."""
        rt = self.runtime
        ring, me = rt.config.ring, rt.ring_index
        if key_padding is None:
            out, lse = attention_lse(q, text_k, text_v)
        else:  # left-padded prompts: each row attends its own valid text keys
            parts = [
                attention_lse(q[b:b + 1], text_k[b:b + 1, :, s:], text_v[b:b + 1, :, s:])
                for b, s in enumerate(key_padding.starts)
            ]
            out, lse = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        nxt = rt.global_rank(rt.cfg_index, (me + 1) % ring, rt.ulysses_index)
        prv = rt.global_rank(rt.cfg_index, (me - 1) % ring, rt.ulysses_index)
        current = torch.stack([k, v]).contiguous()
        for step in range(ring):
            pending, incoming = None, None
            if step < ring - 1:
                incoming = torch.empty_like(current)
                with rt.guard("ring send/recv"):
                    pending = dist.batch_isend_irecv(
                        [dist.P2POp(dist.isend, current, nxt), dist.P2POp(dist.irecv, incoming, prv)]
                    )
                self.runtime.bytes_sent += current.numel() * current.element_size()
            source = (me - step) % ring
            valid = min(max(self.total - source * chunk, 0), chunk)
            if valid:
                part = attention_lse(q, current[0][:, :, :valid], current[1][:, :, :valid])
                out, lse = merge_partial(out, lse, *part)
            if pending is not None:
                with rt.guard("ring send/recv"):
                    for work in pending:
                        work.wait()
                current = incoming
        return out.to(q.dtype)
