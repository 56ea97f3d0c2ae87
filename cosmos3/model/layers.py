"""The layers of the Cosmos3 MoT DiT: one text (UND) and one generation (GEN) parameter set per decoder layer.

Shapes: ``L`` text tokens, ``N`` latent tokens, ``H`` hidden size, ``nh``/``nkv`` query/key-value heads of
``hd`` channels. Keys and values are handed between the towers head-major (``[nkv, L, hd]`` per prompt,
``[B, nkv, L, hd]`` batched), as :mod:`cosmos3.model.text_kv` stores them.

Linear and Embedding layers are built through an ``operations`` namespace (default ``torch.nn``) so a host
application can substitute casting/quantised layers; the RMSNorms are always this package's own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .attention import KeyPadding, attention
from .config import TransformerConfig
from .norms import RMSNorm
from .rope import apply_rope

TIMESTEP_CHANNELS = 256
AttendFn = Callable[..., torch.Tensor]
_TIMESTEP_MAX_PERIOD = 10000


def _linear(ops: Any, fan_in: int, fan_out: int, bias: bool, factory: dict) -> nn.Module:
    return ops.Linear(fan_in, fan_out, bias=bias, **factory)


class FeedForward(nn.Module):
    """Gated SiLU MLP ``down(silu(gate x) * up x)`` or, for ``relu2``, ``down(relu(up x)^2)`` (no gate)."""

    def __init__(self, hidden: int, inner: int, act: str, ops: Any, factory: dict) -> None:
        super().__init__()
        self.act = act
        if act == "silu":
            self.gate_proj = _linear(ops, hidden, inner, False, factory)
        self.up_proj = _linear(ops, hidden, inner, False, factory)
        self.down_proj = _linear(ops, inner, hidden, False, factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., hidden]`` -> ``[..., hidden]`` in ``x``'s dtype."""
        if self.act == "relu2":
            return self.down_proj(torch.relu(self.up_proj(x)).square())
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class TextLayer(nn.Module):
    """UND (text) weights of one decoder layer: pre-norms, q/k/v/out projections, optional q/k norms, MLP.

    ``kv_only`` (the last layer): only what produces the layer's K/V is held. Its queries, attention output
    and MLP would only compute text hidden states that no later layer reads, so they are never loaded.
    """

    def __init__(self, cfg: TransformerConfig, ops: Any, factory: dict, kv_only: bool = False) -> None:
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
        self.heads = (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim)
        if kv_only:
            return
        self.to_q = _linear(ops, cfg.hidden_size, cfg.q_dim, bias, factory)
        self.to_out = _linear(ops, cfg.q_dim, cfg.hidden_size, bias, factory)
        self.norm_q = RMSNorm(cfg.head_dim, eps, flavour, **factory) if cfg.qk_norm_for_text else None
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, eps, flavour, **factory)
        self.mlp = FeedForward(cfg.hidden_size, cfg.intermediate_size, cfg.hidden_act, ops, factory)

    def forward(
        self, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, backend: str = "sdpa"
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One text layer: causal self-attention and MLP over the prompt tokens.

        Args:
            hidden: ``[L, H]`` text hidden states in the compute dtype.
            cos, sin: text RoPE tables ``[L, hd]``.

        Returns:
            ``(hidden, key, value)``: the updated ``[L, H]`` hidden states (returned unchanged by the ``kv_only``
            last layer), and the key the generation tower sees (q/k-normed, Edge ``k_norm_und_for_gen``,
            rotated) and the value, both ``[nkv, L, hd]`` contiguous.
        """
        length = hidden.shape[0]
        nh, nkv, hd = self.heads
        normed = self.input_layernorm(hidden)
        k = self.to_k(normed).view(length, nkv, hd)
        v = self.to_v(normed).view(length, nkv, hd)
        if self.norm_k is not None:
            k = self.norm_k(k)
        k_for_gen = self.k_norm_und_for_gen(k) if self.k_norm_und_for_gen is not None else k
        k_for_gen_rot = apply_rope(k_for_gen, cos, sin)
        key, value = k_for_gen_rot.transpose(0, 1).contiguous(), v.transpose(0, 1).contiguous()
        if self.kv_only:
            return hidden, key, value  # the last layer's text output feeds nothing the generator reads
        q = self.to_q(normed).view(length, nh, hd)
        if self.norm_q is not None:
            q = self.norm_q(q)
        q = apply_rope(q, cos, sin)
        k_rot = k_for_gen_rot if k_for_gen is k else apply_rope(k, cos, sin)
        out = attention(q.transpose(0, 1), k_rot.transpose(0, 1), v.transpose(0, 1), causal=True, backend=backend)
        hidden = hidden + self.to_out(out.transpose(0, 1).reshape(length, nh * hd))
        hidden = hidden + self.mlp(self.post_attention_layernorm(hidden))
        return hidden, key, value


class GenLayer(nn.Module):
    """GEN (latent) weights of one decoder layer."""

    def __init__(self, cfg: TransformerConfig, ops: Any, factory: dict) -> None:
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
        attend: AttendFn | None = None,
    ) -> torch.Tensor:
        """One generation layer over latent tokens attending to ``[text K/V ; latent K/V]``.

        Args:
            hidden: ``[Bh, N, hidden]`` with ``Bh`` 1 (shared by every prompt) or ``B``.
            text_k, text_v: ``[B, nkv, Lt, head_dim]`` cached text keys (normed, rotated) and values.
            cos, sin: RoPE tables ``[N, head_dim]`` (shared) or ``[B, N, head_dim]`` (per prompt).
            key_padding: left padding of the text part when the prompts have different lengths.
            attend: replaces the local attention when the sequence is sharded over ranks
                (:meth:`cosmos3.runtime.parallel.SequenceParallel.attend`): ``attend(q, k, v, text_k, text_v,
                backend, key_padding)`` with ``q`` [B, N, nh, hd], ``k``/``v`` [B, N, nkv, hd] -> [B, N, nh, hd].

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
        q = apply_rope(q, cos, sin)
        k = apply_rope(k, cos, sin)
        if q.shape[0] != batch:  # identical rows (first layer of a batched pass): project once, share
            q = q.expand(batch, -1, -1, -1)
            k = k.expand(batch, -1, -1, -1)
        if v.shape[0] != batch:
            v = v.expand(batch, -1, -1, -1)
        if attend is not None:
            attn = attend(q, k, v, text_k, text_v, backend, key_padding)  # [B, N, nh, hd]
        else:
            keys = torch.cat([text_k, k.transpose(1, 2)], dim=2)
            values = torch.cat([text_v, v.transpose(1, 2)], dim=2)
            attn = attention(q.transpose(1, 2), keys, values, causal=False, backend=backend, key_padding=key_padding)
            attn = attn.transpose(1, 2)
        hidden = hidden + self.to_add_out(attn.reshape(batch, length, nh * hd))
        return hidden + self.mlp_moe_gen(self.post_attention_layernorm_moe_gen(hidden))


class TimestepEmbedder(nn.Module):
    """``linear_2(silu(linear_1(sinusoid)))``: [M, 256] -> [M, hidden]; parameters are kept in fp32."""

    def __init__(self, hidden: int, ops: Any, device: torch.device | str | None) -> None:
        super().__init__()
        factory = {"device": device, "dtype": torch.float32}
        self.linear_1 = _linear(ops, TIMESTEP_CHANNELS, hidden, True, factory)
        self.linear_2 = _linear(ops, hidden, hidden, True, factory)

    def forward(self, sinusoid: torch.Tensor) -> torch.Tensor:
        """``[M, 256]`` (in the MLP's dtype, fp32) -> ``[M, hidden]``."""
        return self.linear_2(F.silu(self.linear_1(sinusoid)))


class DomainAwareLinear(nn.Module):
    """Per-embodiment linear map (action heads): row ``d`` of ``fc`` is an input-major ``[in, out]`` matrix."""

    def __init__(self, fan_in: int, fan_out: int, domains: int, ops: Any, factory: dict) -> None:
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

    def __init__(self, cfg: TransformerConfig, ops: Any, factory: dict) -> None:
        super().__init__()
        self.embed_tokens = ops.Embedding(cfg.vocab_size, cfg.hidden_size, **factory)
        last = cfg.num_hidden_layers - 1
        self.layers = nn.ModuleList(
            TextLayer(cfg, ops, factory, kv_only=index == last) for index in range(cfg.num_hidden_layers)
        )


class GenTower(nn.Module):
    """The GEN weights of every layer plus the latent in/out projections, final norm and timestep MLP.

    Sound and action heads are held when the config enables them; :meth:`Cosmos3Transformer.velocity` drives the
    sound head when given sound latents (:mod:`cosmos3.model.sound_tokens`); the action heads only load.
    """

    def __init__(self, cfg: TransformerConfig, ops: Any, factory: dict) -> None:
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


def timestep_sinusoid(timestep: float, scale: float, device: torch.device | str | None = None) -> torch.Tensor:
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


def patchify_latent(latent: torch.Tensor, p: int, rows: int, cols: int) -> torch.Tensor:
    """[C, T, h, w] -> [T*rows*cols, p*p*C] tokens; zero-pads h/w up to ``rows*p`` / ``cols*p``.

    Token order is frame-major, then row, then column; feature ``(ph*p + pw)*C + c``.
    """
    _, _, height, width = latent.shape
    if (rows * p, cols * p) != (height, width):
        latent = F.pad(latent, (0, cols * p - width, 0, rows * p - height))
    return rearrange(latent, "c t (r ph) (q pw) -> (t r q) (ph pw c)", ph=p, pw=p)


def unpatchify_latent(tokens: torch.Tensor, p: int, frames: int, rows: int, cols: int) -> torch.Tensor:
    """[frames*rows*cols, p*p*C] -> [C, frames, rows*p, cols*p] (inverse of :func:`patchify_latent` before cropping)."""
    return rearrange(tokens, "(t r q) (ph pw c) -> c t (r ph) (q pw)", t=frames, r=rows, q=cols, ph=p, pw=p)
