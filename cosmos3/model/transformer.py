"""The Cosmos3 Mixture-of-Transformers DiT, split into a text tower and a generation tower.

Every decoder layer holds two parameter sets that share one attention:

* the *understanding* (UND, text) set runs causal self-attention over the prompt tokens only. Its keys and
  values never depend on the latents or the timestep, so :meth:`Cosmos3Transformer.encode_text` runs it
  once per prompt and returns a :class:`~cosmos3.model.text_kv.TextKVCache` with, per layer, the keys the
  generation stream sees (after q/k norm and RoPE) and the values;
* the *generation* (GEN) set runs on the patchified latent tokens; each GEN query attends, without a mask,
  to ``[cached text K/V ; latent K/V]``. :meth:`Cosmos3Transformer.velocity` runs only this set, so the
  text tower's weights can be offloaded, put on the meta device or dropped between prompts.

The two sets live in separately movable modules ``model.text_tower`` and ``model.gen_tower`` (their layers
are in :mod:`cosmos3.model.layers`, the input checks in :mod:`cosmos3.model.inputs`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from types import ModuleType, SimpleNamespace
from typing import TYPE_CHECKING

import torch
from torch import nn

from .attention import KeyPadding, check_backend
from .config import TransformerConfig
from .inputs import (
    StepInputs,
    check_batched,
    check_cache,
    check_input_ids,
    check_step_inputs,
)
from .layers import (
    GenTower,
    TextTower,
    patchify_latent,
    timestep_sinusoid,
    unpatchify_latent,
)
from .rope import (
    media_temporal_offset,
    rope_tables,
    text_position_ids,
    vision_position_ids,
)
from .sound_tokens import check_sound_latents, embed_sound, read_sound, sound_position_ids
from .text_kv import BatchedTextKV, TextKVCache

if TYPE_CHECKING:  # pragma: no cover
    from ..runtime.offload import BlockSwap
    from ..runtime.parallel import SequenceParallel
    from ..runtime.step_cache import StepCache

_ROPE_CACHE_SIZE = 8


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
    ``block_swap`` (see :mod:`cosmos3.runtime.offload`), ``split_padded_attention``, ``compiled_layers``
    (see :mod:`cosmos3.runtime.compile`) and ``sequence_parallel`` (see :mod:`cosmos3.runtime.parallel`).
    """

    def __init__(
        self,
        config: TransformerConfig,
        operations: ModuleType | SimpleNamespace | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
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
        # Sequence parallel (cosmos3.runtime.parallel.SequenceParallel): shards the generation stream over ranks.
        self.sequence_parallel: SequenceParallel | None = None
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
        device = tower.embed_tokens.weight.device
        ids = check_input_ids(input_ids, cfg).to(device)
        hidden = tower.embed_tokens(ids).to(self.compute_dtype)  # [L, H]
        length = ids.shape[0]
        positions = text_position_ids(length, float_positions=cfg.enable_fps_modulation)
        cos, sin = rope_tables(positions, cfg.head_dim, cfg.rope_theta, cfg.rope_axes_dim, hidden.dtype, device)

        keys: list[torch.Tensor] = []
        values: list[torch.Tensor] = []
        for layer in tower.layers:
            hidden, key, value = layer(hidden, cos, sin, self._attention_backend)
            keys.append(key)
            values.append(value)
        return TextKVCache(keys=keys, values=values, text_len=length)

    # ------------------------------------------------------------------ generation tower
    @torch.no_grad()
    def velocity(
        self,
        latents: torch.Tensor,
        timestep: float | torch.Tensor,
        cache: TextKVCache,
        fps: float | None = 24.0,
        condition_frames: Iterable[int] = (),
        *,
        step_cache: StepCache | None = None,
        branch: str = "cond",
        sound: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
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
            sound: sound latents ``[1, sound_dim, T_s]`` of a sound-capable model (``config.sound_gen``); their
                tokens join the generation stream after the video tokens (:mod:`cosmos3.model.sound_tokens`).

        Returns:
            ``[1, C, T, h, w]`` velocity in the compute dtype, zeros at conditioning frames; with ``sound``, the
            pair ``(video velocity, sound velocity [1, sound_dim, T_s])``.
        """
        checked = check_step_inputs(self.config, latents, timestep, fps, condition_frames)
        check_cache(cache, self.config)
        text = BatchedTextKV.from_caches([cache], device=self.gen_tower.proj_in.weight.device)
        return self._velocity(latents, checked, text, fps, step_cache, branch, sound)

    @torch.no_grad()
    def velocity_batch(
        self,
        latents: torch.Tensor,
        timestep: float | torch.Tensor,
        caches: Sequence[TextKVCache] | BatchedTextKV,
        fps: float | None = 24.0,
        condition_frames: Iterable[int] = (),
        *,
        step_cache: StepCache | None = None,
        branch: str = "batch",
        sound: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """:meth:`velocity` for several prompts over the same latents in one batched pass (batched CFG).

        ``caches``: one :class:`TextKVCache` per output row, or a prebuilt :class:`BatchedTextKV` (build it
        once per sampling run with :meth:`BatchedTextKV.from_caches` to avoid re-stacking every step).
        Prompts of different lengths are left-padded and masked. Returns ``[B, C, T, h, w]``; row ``b``
        equals ``velocity(latents, timestep, caches[b], ...)`` up to floating-point reassociation. With ``sound``
        (``[1, sound_dim, T_s]``) returns ``(video [B, ...], sound [B, sound_dim, T_s])``.
        """
        checked = check_step_inputs(self.config, latents, timestep, fps, condition_frames)
        device = self.gen_tower.proj_in.weight.device
        if isinstance(caches, BatchedTextKV):
            check_batched(caches, self.config)
            text = caches if caches.device == device else caches.to(device)
        else:
            caches = list(caches)
            for cache in caches:
                check_cache(cache, self.config)
            text = BatchedTextKV.from_caches(caches, device=device)
        return self._velocity(latents, checked, text, fps, step_cache, branch, sound)

    def _velocity(
        self,
        latents: torch.Tensor,
        checked: StepInputs,
        text: BatchedTextKV,
        fps: float | None,
        step_cache: StepCache | None,
        branch: str,
        sound: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        tower = self.gen_tower
        device = tower.proj_in.weight.device
        (channels, frames, height, width), noisy, t_value = checked
        dtype = self.compute_dtype
        batch = text.batch
        out = torch.zeros((batch, channels, frames, height, width), dtype=dtype, device=device)
        sound_len = 0 if sound is None else check_sound_latents(sound, cfg)
        if not noisy and sound is None:
            return out

        p = cfg.latent_patch_size
        rows, cols = -(-height // p), -(-width // p)
        per_frame = rows * cols
        tokens = patchify_latent(latents[0].to(device=device, dtype=dtype), p, rows, cols)  # [T*rows*cols, p*p*C]
        hidden = tower.proj_in(tokens)
        rows_t = len(noisy) * per_frame if self.time_embedding_per_token else 1
        t_emb = self._timestep_embedding(t_value, device, rows_t).to(hidden.dtype)  # [1 or N_noisy, H]
        hidden = hidden.view(frames, per_frame, -1)
        noisy_idx = torch.tensor(noisy, dtype=torch.long, device=device)
        hidden[noisy_idx] = hidden[noisy_idx] + t_emb.view(-1, per_frame if rows_t > 1 else 1, t_emb.shape[-1])
        hidden = hidden.view(1, frames * per_frame, -1)  # one row shared by every prompt of the batch
        if sound is not None:  # sound tokens follow the video tokens; every sound frame is noisy
            t_sound = self._timestep_embedding(t_value, device, sound_len if self.time_embedding_per_token else 1)
            hidden = torch.cat([hidden, embed_sound(tower, sound, t_sound.to(hidden.dtype))], dim=1)

        fps = None if fps is None else float(fps)
        cos, sin = self._batch_rope(text.lengths, frames, rows, cols, fps, device, hidden.dtype, sound_len)
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
        video_len = frames * per_frame
        sound_out = read_sound(tower, hidden[:, video_len:]).to(dtype) if sound is not None else None

        if noisy:
            count = len(noisy) * per_frame
            noisy_hidden = hidden[:, :video_len].reshape(batch, frames, per_frame, -1)[:, noisy_idx]
            pred = tower.proj_out(noisy_hidden.reshape(batch, count, -1))
            for row in range(batch):
                grid = unpatchify_latent(pred[row], p, len(noisy), rows, cols)
                out[row, :, noisy_idx] = grid[:, :, :height, :width].to(dtype)
        return out if sound_out is None else (out, sound_out)

    def _run_gen_layers(
        self,
        hidden: torch.Tensor,
        text: BatchedTextKV,
        cos: torch.Tensor,
        sin: torch.Tensor,
        padding: KeyPadding | None,
        step_cache: StepCache | None,
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
        parallel = self.sequence_parallel
        attend = None
        if parallel is not None:  # the whole generation sequence, global positions already in cos/sin
            hidden, cos, sin = parallel.shard(hidden, cos, sin)
            attend = parallel.attend
        schedule = swap.schedule(layers) if swap is not None else enumerate(layers)
        with contextlib.closing(schedule) if swap is not None else contextlib.nullcontext():
            for index, layer in schedule:
                hidden = layer(hidden, text.keys[index], text.values[index], cos, sin, backend, padding, attend)
        if parallel is not None:
            hidden = parallel.gather(hidden)
        if step_cache is not None:
            step_cache.store(branch, hidden - start)
        return hidden

    # ------------------------------------------------------------------ helpers
    def _require_text_tower(self) -> TextTower:
        tower = self.text_tower
        if tower is None:
            raise RuntimeError(
                "encode_text: the text tower was dropped (drop_text_tower); reload the model to encode prompts"
            )
        if tower.embed_tokens.weight.is_meta or any(p.is_meta for p in tower.parameters()):
            raise RuntimeError("encode_text: the text tower's weights are on the meta device; load or move them first")
        return tower

    def _batch_rope(
        self, lengths: tuple[int, ...], frames: int, rows: int, cols: int, fps: float | None, device: torch.device,
        dtype: torch.dtype, sound_len: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent RoPE tables: ``[N, hd]`` when every prompt has the same length, else ``[B, N, hd]``.

        The latent tokens' temporal positions start after the prompt, so prompts of different lengths see
        differently rotated latent queries/keys.
        """
        if len(set(lengths)) == 1:
            return self._gen_rope(lengths[0], frames, rows, cols, fps, device, dtype, sound_len)
        key = ("batch", lengths, frames, rows, cols, fps, str(device), dtype, sound_len)
        tables = self._rope_cache.get(key)
        if tables is None:
            per_prompt = [self._gen_rope(n, frames, rows, cols, fps, device, dtype, sound_len) for n in lengths]
            tables = (torch.stack([c for c, _ in per_prompt]), torch.stack([s for _, s in per_prompt]))
            self._remember_rope(key, tables)
        return tables

    def _remember_rope(self, key: tuple, tables: tuple[torch.Tensor, torch.Tensor]) -> None:
        if len(self._rope_cache) >= _ROPE_CACHE_SIZE:
            self._rope_cache.pop(next(iter(self._rope_cache)))
        self._rope_cache[key] = tables

    def _timestep_embedding(self, timestep: float, device: torch.device, rows: int = 1) -> torch.Tensor:
        """[rows, hidden] fp32 (or the time MLP's dtype) embedding of ``timestep * timestep_scale`` (rows identical)."""
        embedder = self.gen_tower.time_embedder
        sinusoid = timestep_sinusoid(timestep, self.config.timestep_scale, device)
        if rows > 1:
            sinusoid = sinusoid.expand(rows, -1).contiguous()
        return embedder(sinusoid.to(embedder.linear_1.weight.dtype))

    def _gen_rope(
        self, text_len: int, frames: int, rows: int, cols: int, fps: float | None, device: torch.device,
        dtype: torch.dtype, sound_len: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """RoPE tables of the generation stream ``[N, hd]``: video tokens, then ``sound_len`` sound tokens."""
        cfg = self.config
        use_fps = cfg.enable_fps_modulation and fps is not None and frames > 1
        key = (text_len, frames, rows, cols, fps if use_fps else None, str(device), dtype, sound_len)
        tables = self._rope_cache.get(key)
        if tables is None:
            offset = media_temporal_offset(text_len, cfg.unified_3d_mrope_temporal_modality_margin)
            positions = vision_position_ids(
                frames,
                rows,
                cols,
                temporal_offset=offset,
                fps=fps if use_fps else None,
                base_fps=cfg.base_fps,
                temporal_compression=cfg.temporal_compression_factor,
                reset_spatial=cfg.unified_3d_mrope_reset_spatial_ids,
            )  # built on the CPU, like the reference pipeline, then moved
            if sound_len:  # exact integers either way, so a float32 concatenation loses nothing
                sound_positions = sound_position_ids(sound_len, offset, cfg)
                positions = torch.cat([positions.float(), sound_positions.float()], dim=1)
            tables = rope_tables(positions, cfg.head_dim, cfg.rope_theta, cfg.rope_axes_dim, dtype, device)
            self._remember_rope(key, tables)
        return tables
