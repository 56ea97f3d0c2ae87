"""The Cosmos3 Mixture-of-Transformers DiT, split into a text tower and a generation tower.

Every decoder layer holds two parameter sets that share one attention:

* the *understanding* (UND, text) set runs causal self-attention over the prompt tokens only. Its keys and
  values never depend on the latents or the timestep, so :meth:`Cosmos3Transformer.encode_text` runs it
  once per prompt and returns a :class:`TextKVCache` with, per layer, the keys the generation stream sees
  (after q/k norm and RoPE) and the values;
* the *generation* (GEN) set runs on the patchified latent tokens; each GEN query attends, without a mask,
  to ``[cached text K/V ; latent K/V]``. :meth:`Cosmos3Transformer.velocity` runs only this set, so the
  text tower's weights can be offloaded, put on the meta device or dropped between prompts.

The two sets live in separately movable modules ``model.text_tower`` and ``model.gen_tower``. Linear and
Embedding layers are built through an ``operations`` namespace (default ``torch.nn``) so a host application
can substitute casting/quantised layers; the RMSNorms are always this package's own.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType, SimpleNamespace
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from .attention import KeyPadding, attention, check_backend
from .config import TransformerConfig
from .norms import RMSNorm
from .rope import (
    apply_rope,
    media_temporal_offset,
    rope_tables,
    text_position_ids,
    vision_position_ids,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..runtime.offload import BlockSwap
    from ..runtime.step_cache import StepCache

TIMESTEP_CHANNELS = 256
_TIMESTEP_MAX_PERIOD = 10000
_MAX_TIMESTEP = 1000.0
_ROPE_CACHE_SIZE = 8


# ---------------------------------------------------------------------------------------------- cache


class _PerLayerKV:
    """Shared behaviour of per-layer key/value lists (``keys[i]``, ``values[i]`` for layer ``i``)."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]

    @property
    def num_layers(self) -> int:
        return len(self.keys)

    @property
    def device(self) -> torch.device:
        return self.keys[0].device

    @property
    def dtype(self) -> torch.dtype:
        return self.keys[0].dtype

    @property
    def nbytes(self) -> int:
        """Bytes held by all cached tensors."""
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))

    def _moved(self, device: torch.device | str | None, dtype: torch.dtype | None) -> dict[str, list[torch.Tensor]]:
        return {
            "keys": [k.to(device=device, dtype=dtype) for k in self.keys],
            "values": [v.to(device=device, dtype=dtype) for v in self.values],
        }


@dataclass
class TextKVCache(_PerLayerKV):
    """Per-layer text keys/values as seen by the generation tower.

    ``keys[i]`` and ``values[i]``: ``[num_key_value_heads, text_len, head_dim]`` in the model's compute dtype;
    keys are already q/k-normalised (Edge: ``k_norm_und_for_gen``) and rotated with the text positions.
    """

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    text_len: int

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "TextKVCache":
        """Copy (if needed) onto ``device`` / ``dtype``; returns a new cache."""
        return TextKVCache(**self._moved(device, dtype), text_len=self.text_len)


@dataclass
class BatchedTextKV(_PerLayerKV):
    """Text K/V of several prompts for one batched generation-tower pass (e.g. cond + uncond for CFG).

    ``keys[i]``/``values[i]``: ``[B, nkv, Lmax, head_dim]``. Shorter prompts are *left*-padded with zeros; the
    padding is masked out of the attention (:class:`~cosmos3.model.attention.KeyPadding`). ``lengths``: true lengths.
    """

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    lengths: tuple[int, ...]

    @classmethod
    def from_caches(
        cls, caches: Sequence[TextKVCache], device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> "BatchedTextKV":
        """Stack ``caches`` (one per batch row); a single cache is wrapped without copying."""
        caches = list(caches)
        if not caches or not all(isinstance(c, TextKVCache) for c in caches):
            raise TypeError("BatchedTextKV.from_caches needs a non-empty sequence of TextKVCache")
        layers = {c.num_layers for c in caches}
        heads = {(tuple(c.keys[0].shape[:1]), tuple(c.keys[0].shape[2:])) for c in caches}
        if len(layers) != 1 or len(heads) != 1:
            raise ValueError("BatchedTextKV.from_caches: the caches come from different models")
        lengths = tuple(c.text_len for c in caches)
        if len(caches) == 1:
            cache = caches[0]
            return cls(
                keys=[k.to(device=device, dtype=dtype).unsqueeze(0) for k in cache.keys],
                values=[v.to(device=device, dtype=dtype).unsqueeze(0) for v in cache.values],
                lengths=lengths,
            )
        longest = max(lengths)

        def stack(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
            first = tensors[0]
            out = torch.zeros(
                (len(tensors), first.shape[0], longest, first.shape[2]),
                dtype=dtype or first.dtype, device=device if device is not None else first.device,
            )
            for row, t in enumerate(tensors):
                out[row, :, longest - t.shape[1]:] = t
            return out

        return cls(
            keys=[stack([c.keys[i] for c in caches]) for i in range(caches[0].num_layers)],
            values=[stack([c.values[i] for c in caches]) for i in range(caches[0].num_layers)],
            lengths=lengths,
        )

    @property
    def batch(self) -> int:
        return len(self.lengths)

    @property
    def text_len(self) -> int:
        """Padded text length (the longest prompt)."""
        return max(self.lengths)

    @property
    def padded(self) -> bool:
        return min(self.lengths) != max(self.lengths)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "BatchedTextKV":
        """Copy (if needed) onto ``device`` / ``dtype``; returns a new batch."""
        return BatchedTextKV(**self._moved(device, dtype), lengths=self.lengths)


# ---------------------------------------------------------------------------------------------- blocks


def _linear(ops: Any, fan_in: int, fan_out: int, bias: bool, factory: dict) -> nn.Module:
    return ops.Linear(fan_in, fan_out, bias=bias, **factory)


class FeedForward(nn.Module):
    """Gated SiLU MLP ``down(silu(gate x) * up x)`` or, for ``relu2``, ``down(relu(up x)^2)`` (no gate)."""

    def __init__(self, hidden: int, inner: int, act: str, ops: Any, factory: dict):
        super().__init__()
        self.act = act
        if act == "silu":
            self.gate_proj = _linear(ops, hidden, inner, False, factory)
        self.up_proj = _linear(ops, hidden, inner, False, factory)
        self.down_proj = _linear(ops, inner, hidden, False, factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.act == "relu2":
            return self.down_proj(torch.relu(self.up_proj(x)).square())
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class TextLayer(nn.Module):
    """UND (text) weights of one decoder layer: pre-norms, q/k/v/out projections, optional q/k norms, MLP.

    ``kv_only`` (the last layer): only what produces the layer's K/V is held. Its queries, attention output
    and MLP would only compute text hidden states that no later layer reads, so they are never loaded.
    """

    def __init__(self, cfg: TransformerConfig, ops: Any, factory: dict, kv_only: bool = False):
        super().__init__()
        eps, flavour, bias = cfg.rms_norm_eps, cfg.norm_flavour, cfg.attention_bias
        self.kv_only = kv_only
        self.input_layernorm = RMSNorm(cfg.hidden_size, eps, flavour, **factory)
        self.to_k = _linear(ops, cfg.hidden_size, cfg.kv_dim, bias, factory)
        self.to_v = _linear(ops, cfg.hidden_size, cfg.kv_dim, bias, factory)
        self.norm_k = RMSNorm(cfg.head_dim, eps, flavour, **factory) if cfg.qk_norm_for_text else None
        # Edge: the generation stream sees the raw text keys through their own norm.
        self.k_norm_und_for_gen = (
            RMSNorm(cfg.head_dim, eps, flavour, **factory) if cfg.use_und_k_norm_for_gen else None
        )
        if kv_only:
            return
        self.to_q = _linear(ops, cfg.hidden_size, cfg.q_dim, bias, factory)
        self.to_out = _linear(ops, cfg.q_dim, cfg.hidden_size, bias, factory)
        self.norm_q = RMSNorm(cfg.head_dim, eps, flavour, **factory) if cfg.qk_norm_for_text else None
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, eps, flavour, **factory)
        self.mlp = FeedForward(cfg.hidden_size, cfg.intermediate_size, cfg.hidden_act, ops, factory)


class GenLayer(nn.Module):
    """GEN (latent) weights of one decoder layer."""

    def __init__(self, cfg: TransformerConfig, ops: Any, factory: dict):
        super().__init__()
        eps, flavour, bias = cfg.rms_norm_eps, cfg.norm_flavour, cfg.attention_bias
        self.input_layernorm_moe_gen = RMSNorm(cfg.hidden_size, eps, flavour, **factory)
        self.add_q_proj = _linear(ops, cfg.hidden_size, cfg.q_dim, bias, factory)
        self.add_k_proj = _linear(ops, cfg.hidden_size, cfg.kv_dim, bias, factory)
        self.add_v_proj = _linear(ops, cfg.hidden_size, cfg.kv_dim, bias, factory)
        self.to_add_out = _linear(ops, cfg.q_dim, cfg.hidden_size, bias, factory)
        self.norm_added_q = RMSNorm(cfg.head_dim, eps, flavour, **factory)
        self.norm_added_k = RMSNorm(cfg.head_dim, eps, flavour, **factory)
        self.post_attention_layernorm_moe_gen = RMSNorm(cfg.hidden_size, eps, flavour, **factory)
        self.mlp_moe_gen = FeedForward(cfg.hidden_size, cfg.intermediate_size, cfg.hidden_act, ops, factory)
        self.heads = (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim)

    def forward(
        self,
        hidden: torch.Tensor,
        text_k: torch.Tensor,
        text_v: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        backend: str = "sdpa",
        key_padding: KeyPadding | None = None,
    ) -> torch.Tensor:
        """One generation layer over latent tokens attending to ``[text K/V ; latent K/V]``.

        Args:
            hidden: ``[Bh, N, hidden]`` with ``Bh`` 1 (shared by every prompt) or ``B``.
            text_k, text_v: ``[B, nkv, Lt, head_dim]`` cached text keys (normed, rotated) and values.
            cos, sin: RoPE tables ``[N, head_dim]`` (shared) or ``[B, N, head_dim]`` (per prompt).
            key_padding: left padding of the text part when the prompts have different lengths.

        Returns:
            ``[B, N, hidden]``.
        """
        rows, length, _ = hidden.shape
        batch = text_k.shape[0]
        nh, nkv, hd = self.heads
        normed = self.input_layernorm_moe_gen(hidden)
        q = self.norm_added_q(self.add_q_proj(normed).view(rows, length, nh, hd))
        k = self.norm_added_k(self.add_k_proj(normed).view(rows, length, nkv, hd))
        v = self.add_v_proj(normed).view(rows, length, nkv, hd)
        q = _rotate(q, cos, sin)
        k = _rotate(k, cos, sin)
        if q.shape[0] != batch:  # identical rows (first layer of a batched pass): project once, share
            q = q.expand(batch, -1, -1, -1)
            k = k.expand(batch, -1, -1, -1)
        if v.shape[0] != batch:
            v = v.expand(batch, -1, -1, -1)
        keys = torch.cat([text_k, k.transpose(1, 2)], dim=2)
        values = torch.cat([text_v, v.transpose(1, 2)], dim=2)
        attn = attention(q.transpose(1, 2), keys, values, causal=False, backend=backend, key_padding=key_padding)
        hidden = hidden + self.to_add_out(attn.transpose(1, 2).reshape(batch, length, nh * hd))
        return hidden + self.mlp_moe_gen(self.post_attention_layernorm_moe_gen(hidden))


class TimestepEmbedder(nn.Module):
    """``linear_2(silu(linear_1(sinusoid)))``: [M, 256] -> [M, hidden]; parameters are kept in fp32."""

    def __init__(self, hidden: int, ops: Any, device: torch.device | str | None):
        super().__init__()
        factory = {"device": device, "dtype": torch.float32}
        self.linear_1 = _linear(ops, TIMESTEP_CHANNELS, hidden, True, factory)
        self.linear_2 = _linear(ops, hidden, hidden, True, factory)

    def forward(self, sinusoid: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(sinusoid)))


class DomainAwareLinear(nn.Module):
    """Per-embodiment linear map (action heads): row ``d`` of ``fc`` is an input-major ``[in, out]`` matrix."""

    def __init__(self, fan_in: int, fan_out: int, domains: int, ops: Any, factory: dict):
        super().__init__()
        self.fan_in, self.fan_out = fan_in, fan_out
        self.fc = ops.Embedding(domains, fan_in * fan_out, **factory)
        self.bias = ops.Embedding(domains, fan_out, **factory)

    def forward(self, x: torch.Tensor, domain_id: int) -> torch.Tensor:
        """``x`` [N, in] -> [N, out] for one embodiment ``domain_id``."""
        weight = self.fc.weight[domain_id].view(self.fan_in, self.fan_out)
        return x @ weight.to(x.dtype) + self.bias.weight[domain_id].to(x.dtype)


class TextTower(nn.Module):
    """Token embedding + the UND weights of every layer. Only needed by :meth:`Cosmos3Transformer.encode_text`."""

    def __init__(self, cfg: TransformerConfig, ops: Any, factory: dict):
        super().__init__()
        self.embed_tokens = ops.Embedding(cfg.vocab_size, cfg.hidden_size, **factory)
        last = cfg.num_hidden_layers - 1
        self.layers = nn.ModuleList(
            TextLayer(cfg, ops, factory, kv_only=index == last) for index in range(cfg.num_hidden_layers)
        )


class GenTower(nn.Module):
    """The GEN weights of every layer plus the latent in/out projections, final norm and timestep MLP.

    Sound and action heads are held when the config enables them (so such checkpoints load), but
    :meth:`Cosmos3Transformer.velocity` only drives the vision path.
    """

    def __init__(self, cfg: TransformerConfig, ops: Any, factory: dict):
        super().__init__()
        hidden = cfg.hidden_size
        self.layers = nn.ModuleList(GenLayer(cfg, ops, factory) for _ in range(cfg.num_hidden_layers))
        self.norm_moe_gen = RMSNorm(hidden, cfg.rms_norm_eps, cfg.norm_flavour, **factory)
        self.proj_in = _linear(ops, cfg.patch_latent_dim, hidden, True, factory)
        self.proj_out = _linear(ops, hidden, cfg.patch_latent_dim, True, factory)
        self.time_embedder = TimestepEmbedder(hidden, ops, factory.get("device"))
        if cfg.sound_gen:
            self.audio_proj_in = _linear(ops, cfg.sound_dim, hidden, True, factory)
            self.audio_proj_out = _linear(ops, hidden, cfg.sound_dim, True, factory)
            self.audio_modality_embed = nn.Parameter(torch.zeros(hidden, **factory))
        if cfg.action_gen:
            domains = cfg.num_embodiment_domains
            self.action_proj_in = DomainAwareLinear(cfg.action_dim, hidden, domains, ops, factory)
            self.action_proj_out = DomainAwareLinear(hidden, cfg.action_dim, domains, ops, factory)
            self.action_modality_embed = nn.Parameter(torch.zeros(hidden, **factory))


def module_nbytes(module: nn.Module | None) -> int:
    """Bytes of all parameters and buffers of ``module`` that are not on the meta device."""
    if module is None:
        return 0
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors if not t.is_meta)


# ---------------------------------------------------------------------------------------------- model


class Cosmos3Transformer(nn.Module):
    """Cosmos3 MoT DiT with a cached text tower (one latent; several prompts via :meth:`velocity_batch`).

    Args:
        config: architecture.
        operations: namespace providing ``Linear`` and ``Embedding`` (``torch.nn`` signature); default ``torch.nn``.
        device: where parameters are created (``"meta"`` for loading without allocating).
        dtype: parameter and compute dtype (the timestep MLP is always fp32).

    Runtime attributes: ``attention_backend`` (validated kernel name, default ``"sdpa"``), ``compute_dtype``
    (activation dtype; update it if you cast the weights by hand), ``time_embedding_per_token``,
    ``block_swap`` (see :mod:`cosmos3.runtime.offload`), ``split_padded_attention`` and ``compiled_layers``
    (see :mod:`cosmos3.runtime.compile`).
    """

    def __init__(
        self,
        config: TransformerConfig,
        operations: ModuleType | SimpleNamespace | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        self.config = config
        ops = nn if operations is None else operations
        factory = {"device": device, "dtype": dtype}
        self.compute_dtype = dtype or torch.get_default_dtype()
        self.text_tower: TextTower | None = TextTower(config, ops, factory)
        self.gen_tower = GenTower(config, ops, factory)
        self._attention_backend = "sdpa"
        # True: run the timestep MLP once per noisy token, like diffusers, instead of once per step. The
        # result is the same math; only a GEMM's row-count-dependent fp32 rounding changes, which makes
        # bf16 outputs bit-identical to diffusers at the cost of an [N, hidden] fp32 MLP per step.
        self.time_embedding_per_token = False
        # Block swap (cosmos3.runtime.offload.enable_block_swap): streams generation layers to the device per step.
        self.block_swap: BlockSwap | None = None
        # Batched prompts of different lengths: True = per-prompt attention calls instead of one masked call.
        self.split_padded_attention = False
        self.compiled_layers: dict | None = None  # set by cosmos3.runtime.compile.compile_generation_layers
        self._rope_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    # ------------------------------------------------------------------ settings
    @property
    def attention_backend(self) -> str:
        """Attention kernel name used by both towers (see :mod:`cosmos3.model.attention`)."""
        return self._attention_backend

    @attention_backend.setter
    def attention_backend(self, name: str) -> None:
        self._attention_backend = check_backend(name)

    def drop_text_tower(self) -> None:
        """Release the text tower (embedding + UND weights). :meth:`velocity` keeps working with existing caches."""
        self.text_tower = None

    # ------------------------------------------------------------------ text tower
    @torch.no_grad()
    def encode_text(self, input_ids: torch.Tensor) -> TextKVCache:
        """Run the text tower once over a prompt.

        Args:
            input_ids: LongTensor ``[L]`` (or ``[1, L]``) of token ids, ``L >= 1``.

        Returns:
            :class:`TextKVCache` with per-layer K/V ``[nkv, L, head_dim]`` on the text tower's device.
        """
        tower = self._require_text_tower()
        cfg = self.config
        ids = self._check_input_ids(input_ids)
        device = tower.embed_tokens.weight.device
        ids = ids.to(device)
        hidden = tower.embed_tokens(ids).to(self.compute_dtype)  # [L, H]
        length = ids.shape[0]
        positions = text_position_ids(length, float_positions=cfg.enable_fps_modulation)
        cos, sin = rope_tables(positions, cfg.head_dim, cfg.rope_theta, cfg.rope_axes_dim, hidden.dtype, device)

        keys: list[torch.Tensor] = []
        values: list[torch.Tensor] = []
        for layer in tower.layers:
            normed = layer.input_layernorm(hidden)
            k = layer.to_k(normed).view(length, cfg.num_key_value_heads, cfg.head_dim)
            v = layer.to_v(normed).view(length, cfg.num_key_value_heads, cfg.head_dim)
            if layer.norm_k is not None:
                k = layer.norm_k(k)
            k_for_gen = layer.k_norm_und_for_gen(k) if layer.k_norm_und_for_gen is not None else k
            k_for_gen_rot = apply_rope(k_for_gen, cos, sin)
            keys.append(k_for_gen_rot.transpose(0, 1).contiguous())
            values.append(v.transpose(0, 1).contiguous())
            if layer.kv_only:
                break  # the last layer's text output feeds nothing the generator reads
            q = layer.to_q(normed).view(length, cfg.num_attention_heads, cfg.head_dim)
            if layer.norm_q is not None:
                q = layer.norm_q(q)
            q = apply_rope(q, cos, sin)
            k_rot = k_for_gen_rot if k_for_gen is k else apply_rope(k, cos, sin)
            out = attention(
                q.transpose(0, 1), k_rot.transpose(0, 1), v.transpose(0, 1), causal=True,
                backend=self._attention_backend,
            )
            hidden = hidden + layer.to_out(out.transpose(0, 1).reshape(length, cfg.q_dim))
            hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
        return TextKVCache(keys=keys, values=values, text_len=length)

    # ------------------------------------------------------------------ generation tower
    @torch.no_grad()
    def velocity(
        self,
        latents: torch.Tensor,
        timestep: int | float | torch.Tensor,
        cache: TextKVCache,
        fps: float | None = 24.0,
        condition_frames: Iterable[int] = (),
        *,
        step_cache: "StepCache | None" = None,
        branch: str = "cond",
    ) -> torch.Tensor:
        """Predict the rectified-flow velocity ``noise - x0`` for one denoising step.

        Args:
            latents: ``[1, C, T, h, w]`` (C = latent_channel); any float dtype, cast to the compute dtype.
            timestep: scheduler timestep in [0, 1000] (int, or float for distilled samplers); the model sees
                ``timestep * timestep_scale`` computed in fp32.
            cache: text K/V from :meth:`encode_text` (moved to the generation tower's device if needed).
            fps: video frame rate (fps modulation of temporal positions; ignored for a single frame;
                ``None`` = integer frame positions, as when the config disables fps modulation).
            condition_frames: latent frame indices that are clean conditioning (no timestep embedding,
                zero velocity in the output).
            step_cache: optional :class:`~cosmos3.runtime.step_cache.StepCache` (may reuse the previous step's
                generation-tower residual instead of running the layers); ``branch`` keys its residual.

        Returns:
            ``[1, C, T, h, w]`` velocity in the compute dtype, zeros at conditioning frames.
        """
        checked = self._check_step_inputs(latents, timestep, fps, condition_frames)
        self._check_cache(cache)
        text = BatchedTextKV.from_caches([cache], device=self.gen_tower.proj_in.weight.device)
        return self._velocity(latents, checked, text, fps, step_cache, branch)

    @torch.no_grad()
    def velocity_batch(
        self,
        latents: torch.Tensor,
        timestep: int | float | torch.Tensor,
        caches: Sequence[TextKVCache] | BatchedTextKV,
        fps: float | None = 24.0,
        condition_frames: Iterable[int] = (),
        *,
        step_cache: "StepCache | None" = None,
        branch: str = "batch",
    ) -> torch.Tensor:
        """:meth:`velocity` for several prompts over the same latents in one batched pass (batched CFG).

        ``caches``: one :class:`TextKVCache` per output row, or a prebuilt :class:`BatchedTextKV` (build it
        once per sampling run with :meth:`BatchedTextKV.from_caches` to avoid re-stacking every step).
        Prompts of different lengths are left-padded and masked. Returns ``[B, C, T, h, w]``; row ``b``
        equals ``velocity(latents, timestep, caches[b], ...)`` up to floating-point reassociation.
        """
        checked = self._check_step_inputs(latents, timestep, fps, condition_frames)
        device = self.gen_tower.proj_in.weight.device
        if isinstance(caches, BatchedTextKV):
            self._check_batched(caches)
            text = caches if caches.device == device else caches.to(device)
        else:
            caches = list(caches)
            for cache in caches:
                self._check_cache(cache)
            text = BatchedTextKV.from_caches(caches, device=device)
        return self._velocity(latents, checked, text, fps, step_cache, branch)

    def _check_step_inputs(
        self, latents: torch.Tensor, timestep: int | float | torch.Tensor, fps: float | None, condition_frames: Iterable[int]
    ) -> tuple[tuple[int, int, int, int], list[int], int | float]:
        shape = self._check_latents(latents)
        noisy = self._noisy_frames(condition_frames, shape[1])
        t_value = self._check_timestep(timestep)
        if fps is not None and not (
            isinstance(fps, (int, float)) and not isinstance(fps, bool) and math.isfinite(fps) and fps > 0
        ):
            raise ValueError(f"velocity: fps must be a positive number or None, got {fps!r}")
        return shape, noisy, t_value

    def _velocity(
        self,
        latents: torch.Tensor,
        checked: tuple[tuple[int, int, int, int], list[int], int | float],
        text: BatchedTextKV,
        fps: float | None,
        step_cache: "StepCache | None",
        branch: str,
    ) -> torch.Tensor:
        cfg = self.config
        tower = self.gen_tower
        device = tower.proj_in.weight.device
        (channels, frames, height, width), noisy, t_value = checked
        dtype = self.compute_dtype
        batch = text.batch
        out = torch.zeros((batch, channels, frames, height, width), dtype=dtype, device=device)
        if not noisy:
            return out

        p = cfg.latent_patch_size
        rows, cols = -(-height // p), -(-width // p)
        per_frame = rows * cols
        tokens = _patchify(latents[0].to(device=device, dtype=dtype), p, rows, cols)  # [T*rows*cols, p*p*C]
        hidden = tower.proj_in(tokens)
        rows_t = len(noisy) * per_frame if self.time_embedding_per_token else 1
        t_emb = self._timestep_embedding(t_value, device, rows_t).to(hidden.dtype)  # [1 or N_noisy, H]
        hidden = hidden.view(frames, per_frame, -1)
        noisy_idx = torch.tensor(noisy, dtype=torch.long, device=device)
        hidden[noisy_idx] = hidden[noisy_idx] + t_emb.view(-1, per_frame if rows_t > 1 else 1, t_emb.shape[-1])
        hidden = hidden.view(1, frames * per_frame, -1)  # one row shared by every prompt of the batch

        fps = None if fps is None else float(fps)
        cos, sin = self._batch_rope(text.lengths, frames, rows, cols, fps, device, hidden.dtype)
        padding = None
        if text.padded:
            padding = KeyPadding.from_starts(
                [text.text_len - n for n in text.lengths], text.text_len + hidden.shape[1], device,
                split=self.split_padded_attention,
            )
        hidden = self._run_gen_layers(hidden, text, cos, sin, padding, step_cache, branch)
        if hidden.shape[0] != batch:
            hidden = hidden.expand(batch, -1, -1)
        hidden = tower.norm_moe_gen(hidden)

        count = len(noisy) * per_frame
        noisy_hidden = hidden.view(batch, frames, per_frame, -1)[:, noisy_idx].reshape(batch, count, -1)
        pred = tower.proj_out(noisy_hidden)
        for row in range(batch):
            grid = _unpatchify(pred[row], p, len(noisy), rows, cols, channels)
            out[row, :, noisy_idx] = grid[:, :, :height, :width].to(dtype)
        return out

    def _run_gen_layers(
        self,
        hidden: torch.Tensor,
        text: BatchedTextKV,
        cos: torch.Tensor,
        sin: torch.Tensor,
        padding: KeyPadding | None,
        step_cache: "StepCache | None",
        branch: str,
    ) -> torch.Tensor:
        """Run every generation layer (through the block-swap schedule when enabled) -> ``[B, N, H]``."""
        if step_cache is not None:
            residual = step_cache.lookup(branch, hidden, text.batch)
            if residual is not None:
                return hidden + residual
        start = hidden
        backend = self._attention_backend
        layers = self.gen_tower.layers
        swap = self.block_swap
        schedule = swap.schedule(layers) if swap is not None else enumerate(layers)
        with contextlib.closing(schedule) if swap is not None else contextlib.nullcontext():
            for index, layer in schedule:
                hidden = layer(hidden, text.keys[index], text.values[index], cos, sin, backend, padding)
        if step_cache is not None:
            step_cache.store(branch, hidden - start)
        return hidden

    # ------------------------------------------------------------------ helpers
    def _require_text_tower(self) -> TextTower:
        tower = self.text_tower
        if tower is None:
            raise RuntimeError("encode_text: the text tower was dropped (drop_text_tower); reload the model to encode prompts")
        if tower.embed_tokens.weight.is_meta or any(p.is_meta for p in tower.parameters()):
            raise RuntimeError("encode_text: the text tower's weights are on the meta device; load or move them first")
        return tower

    def _check_input_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        if not isinstance(input_ids, torch.Tensor):
            input_ids = torch.as_tensor(input_ids)
        if input_ids.dim() == 2 and input_ids.shape[0] == 1:
            input_ids = input_ids[0]
        if input_ids.dim() != 1 or input_ids.numel() == 0:
            raise ValueError(f"encode_text: input_ids must be a non-empty 1-D tensor [L], got shape {tuple(input_ids.shape)}")
        if input_ids.dtype.is_floating_point or input_ids.dtype == torch.bool:
            raise ValueError(f"encode_text: input_ids must be integer token ids, got {input_ids.dtype}")
        low, high = int(input_ids.min()), int(input_ids.max())
        if low < 0 or high >= self.config.vocab_size:
            raise ValueError(
                f"encode_text: token ids must be in [0, {self.config.vocab_size - 1}], got range [{low}, {high}]"
            )
        return input_ids.long()

    def _check_latents(self, latents: torch.Tensor) -> tuple[int, int, int, int]:
        cfg = self.config
        if not isinstance(latents, torch.Tensor) or latents.dim() != 5 or not latents.is_floating_point():
            shape = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
            raise ValueError(f"velocity: latents must be a float tensor [1, {cfg.latent_channel}, T, h, w], got {shape}")
        batch, channels, frames, height, width = latents.shape
        if batch != 1 or channels != cfg.latent_channel or min(frames, height, width) < 1:
            raise ValueError(
                f"velocity: latents must be [1, {cfg.latent_channel}, T, h, w] with T, h, w >= 1, "
                f"got {tuple(latents.shape)}"
            )
        return channels, frames, height, width

    @staticmethod
    def _noisy_frames(condition_frames: Iterable[int], frames: int) -> list[int]:
        conditioned = set()
        for index in condition_frames:
            if isinstance(index, torch.Tensor):
                index = index.item()
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < frames:
                raise ValueError(f"velocity: condition frame {index!r} is not an integer in [0, {frames - 1}]")
            conditioned.add(index)
        return [f for f in range(frames) if f not in conditioned]

    @staticmethod
    def _check_timestep(timestep: int | float | torch.Tensor) -> int | float:
        if isinstance(timestep, torch.Tensor):
            if timestep.numel() != 1:
                raise ValueError(f"velocity: timestep must be a scalar, got shape {tuple(timestep.shape)}")
            timestep = timestep.item()
        if isinstance(timestep, bool) or not isinstance(timestep, (int, float)):
            raise ValueError(f"velocity: timestep must be a number, got {type(timestep).__name__}")
        if not (math.isfinite(timestep) and 0 <= timestep <= _MAX_TIMESTEP):
            raise ValueError(f"velocity: timestep {timestep!r} is outside [0, {_MAX_TIMESTEP:g}]")
        return timestep

    def _check_cache(self, cache: TextKVCache) -> None:
        cfg = self.config
        if not isinstance(cache, TextKVCache):
            raise TypeError(f"velocity: cache must be a TextKVCache from encode_text, got {type(cache).__name__}")
        expected = (cfg.num_key_value_heads, cache.text_len, cfg.head_dim)
        if cache.num_layers != cfg.num_hidden_layers or any(
            tuple(t.shape) != expected for t in (*cache.keys, *cache.values)
        ):
            raise ValueError(
                f"velocity: cache does not fit this model (expected {cfg.num_hidden_layers} layers of {list(expected)}, "
                f"got {cache.num_layers} layers of {list(cache.keys[0].shape) if cache.keys else []})"
            )

    def _check_batched(self, text: BatchedTextKV) -> None:
        cfg = self.config
        if not isinstance(text, BatchedTextKV):
            raise TypeError(f"velocity_batch: expected TextKVCache list or BatchedTextKV, got {type(text).__name__}")
        expected = (text.batch, cfg.num_key_value_heads, text.text_len, cfg.head_dim)
        if text.num_layers != cfg.num_hidden_layers or any(
            tuple(t.shape) != expected for t in (*text.keys, *text.values)
        ):
            raise ValueError(
                f"velocity_batch: batched cache does not fit this model (expected {cfg.num_hidden_layers} layers "
                f"of {list(expected)}, got {text.num_layers} layers of {list(text.keys[0].shape) if text.keys else []})"
            )

    def _batch_rope(
        self, lengths: tuple[int, ...], frames: int, rows: int, cols: int, fps: float | None, device: torch.device,
        dtype: torch.dtype,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent RoPE tables: ``[N, hd]`` when every prompt has the same length, else ``[B, N, hd]``.

        The latent tokens' temporal positions start after the prompt, so prompts of different lengths see
        differently rotated latent queries/keys.
        """
        if len(set(lengths)) == 1:
            return self._gen_rope(lengths[0], frames, rows, cols, fps, device, dtype)
        key = ("batch", lengths, frames, rows, cols, fps, str(device), dtype)
        tables = self._rope_cache.get(key)
        if tables is None:
            per_prompt = [self._gen_rope(n, frames, rows, cols, fps, device, dtype) for n in lengths]
            tables = (torch.stack([c for c, _ in per_prompt]), torch.stack([s for _, s in per_prompt]))
            self._remember_rope(key, tables)
        return tables

    def _remember_rope(self, key: tuple, tables: tuple[torch.Tensor, torch.Tensor]) -> None:
        if len(self._rope_cache) >= _ROPE_CACHE_SIZE:
            self._rope_cache.pop(next(iter(self._rope_cache)))
        self._rope_cache[key] = tables

    def _timestep_embedding(self, timestep: int | float, device: torch.device, rows: int = 1) -> torch.Tensor:
        """[rows, hidden] fp32 (or the time MLP's dtype) embedding of ``timestep * timestep_scale`` (rows identical)."""
        embedder = self.gen_tower.time_embedder
        sinusoid = timestep_sinusoid(timestep, self.config.timestep_scale, device)
        if rows > 1:
            sinusoid = sinusoid.expand(rows, -1).contiguous()
        return embedder(sinusoid.to(embedder.linear_1.weight.dtype))

    def _gen_rope(
        self, text_len: int, frames: int, rows: int, cols: int, fps: float | None, device: torch.device,
        dtype: torch.dtype,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        use_fps = cfg.enable_fps_modulation and fps is not None and frames > 1
        key = (text_len, frames, rows, cols, fps if use_fps else None, str(device), dtype)
        tables = self._rope_cache.get(key)
        if tables is None:
            positions = vision_position_ids(
                frames, rows, cols,
                temporal_offset=media_temporal_offset(text_len, cfg.unified_3d_mrope_temporal_modality_margin),
                fps=fps if use_fps else None,
                base_fps=cfg.base_fps,
                temporal_compression=cfg.temporal_compression_factor,
                reset_spatial=cfg.unified_3d_mrope_reset_spatial_ids,
            )  # built on the CPU, like the reference pipeline, then moved
            tables = rope_tables(positions, cfg.head_dim, cfg.rope_theta, cfg.rope_axes_dim, dtype, device)
            self._remember_rope(key, tables)
        return tables


def timestep_sinusoid(timestep: int | float, scale: float, device: torch.device | str | None = None) -> torch.Tensor:
    """``[cos(t*f_i), sin(t*f_i)]`` of ``t = timestep * scale``: [1, 256] fp32, f_i = 10000^(-i/128).

    ``torch.full`` keeps an int timestep int64 (a float one float32) and the scale is applied as a tensor op,
    exactly like the reference, so e.g. 999 becomes the same fp32 value 0.999 on every path.
    """
    scaled = torch.full((1,), timestep, device=device) * scale
    half = TIMESTEP_CHANNELS // 2
    exponent = -math.log(_TIMESTEP_MAX_PERIOD) * torch.arange(0, half, dtype=torch.float32, device=device)
    frequencies = torch.exp(exponent / half)
    angles = scaled[:, None].float() * frequencies[None, :]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE (NeoX rotate-half) of ``x`` [..., N, heads, hd] with tables [N, hd] or [B, N, hd] (same op order as
    :func:`cosmos3.model.rope.apply_rope`, so batch-1 results are bit-identical)."""
    cos = cos.unsqueeze(-2)
    sin = sin.unsqueeze(-2)
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def _patchify(latent: torch.Tensor, p: int, rows: int, cols: int) -> torch.Tensor:
    """[C, T, h, w] -> [T*rows*cols, p*p*C]; zero-pads h/w up to multiples of ``p`` (feature = (ph*p+pw)*C + c)."""
    channels, frames, height, width = latent.shape
    if (rows * p, cols * p) != (height, width):
        latent = F.pad(latent, (0, cols * p - width, 0, rows * p - height))
    patches = latent.reshape(channels, frames, rows, p, cols, p).permute(1, 2, 4, 3, 5, 0)
    return patches.reshape(frames * rows * cols, p * p * channels)


def _unpatchify(tokens: torch.Tensor, p: int, frames: int, rows: int, cols: int, channels: int) -> torch.Tensor:
    """[frames*rows*cols, p*p*C] -> [C, frames, rows*p, cols*p] (inverse of :func:`_patchify` before cropping)."""
    grid = tokens.reshape(frames, rows, cols, p, p, channels).permute(5, 0, 1, 3, 2, 4)
    return grid.reshape(channels, frames, rows * p, cols * p)
