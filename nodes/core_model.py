"""The core ``MODEL`` and ``CONDITIONING`` bridge: Cosmos3's generation tower as a ComfyUI diffusion model.

What the Model Loader's ``MODEL`` output is: the pack's own generation-tower ``ModelPatcher`` (the same one
the Cosmos3 Sampler loads, so ComfyUI manages one set of weights) over a :func:`core_model_class` module,
a ``comfy.model_base.BaseModel`` whose ``diffusion_model`` is ``transformer.gen_tower`` (state-dict names
``diffusion_model.<generation-tower name>``, which is what core LoRA key maps use). The text tower is not
part of it: sampling needs only the cached text K/V, so ComfyUI never loads the text tower for it.

* ``model_sampling``: the flow kind (``ModelSamplingDiscreteFlow`` + ``CONST``) with the checkpoint's video
  shift; ``timestep = sigma * 1000`` (a float, never truncated); ``denoised = x - sigma * v``. Core
  ``ModelSamplingSD3`` replaces it (object patch) to change the shift.
* ``latent_format``: Wan 2.2's (48 channels, 3-D, its preview factors) with the *checkpoint's* latent
  statistics, normalising in the model dtype exactly as the Cosmos3 Sampler does (:class:`LatentStats`).
* CONDITIONING entries carry a :class:`TextConditioning` under ``"cosmos3_text"``: one prompt's cached K/V,
  the frames/size/fps it was encoded for, a tag of the text-tower weights that made it and, for I2V, the
  clean conditioning latents. ``extra_conds`` moves the K/V to the sampling device once per run.
* Batching: ComfyUI batches cond and uncond into one ``apply_model`` call when their conds ``can_concat``.
  Ours always can (same model): prompts of different lengths are left-padded and masked, the way the
  Cosmos3 Sampler's ``cfg_batch`` runs them, when the rows share the latent (the usual CFG batch); other
  batches run row by row.
* I2V: the clean frames replace the input's frames before the tower runs (which gives them no timestep
  embedding and zero velocity, as in the Cosmos3 sampler), and the model reports ``denoised = clean`` there,
  so every core sampler moves those frames straight to the clean latent and ends on it.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch

from ..cosmos3.defaults import Mode, generation_defaults
from ..cosmos3.geometry import SPATIAL_MULTIPLE, TEMPORAL_COMPRESSION, Geometry
from ..cosmos3.model.text_kv import BatchedTextKV, TextKVCache
from ..cosmos3.sampling import plan as plan_mod
from ..cosmos3.sampling.conditioning import ImageCondition
from ..cosmos3.sampling.loop import reanchor
from . import _comfy

log = logging.getLogger("cosmos3_mot")

COND_KEY = "cosmos3_text"  # CONDITIONING dict key of a TextConditioning
TEXT_WEIGHTS_OPTION = "cosmos3_text_weights"  # transformer_options: tag of the text weights the MODEL expects
ATTENTION_OPTION = "cosmos3_attention"  # transformer_options: attention kernel name (default "auto")
BASE_WEIGHTS = "base"  # tag of unpatched text-tower weights
GEN_ANCHORS = ("diffusion_model.proj_in",)  # the generation tower computes where proj_in's weight is
DEFAULT_TEXT_TOKENS = 512  # memory estimate when no cond shapes are given
_FALLBACK_SHIFT = 5.0


class Cosmos3ConditioningError(ValueError):
    """A CONDITIONING or MODEL that the Cosmos3 core model cannot use (wrong source, size, weights)."""


# ------------------------------------------------------------------------------------------------------
# Attention


def comfy_attention_available() -> bool:
    """Whether ComfyUI's ``comfy.ldm.modules.attention`` is importable (false outside ComfyUI and in the stub)."""
    try:
        return importlib.util.find_spec("comfy.ldm.modules.attention") is not None
    except (ImportError, ValueError):
        return False


def resolve_attention(name: str) -> str:
    """``auto`` -> ``comfy`` (whatever ComfyUI is configured to use) inside ComfyUI, ``sdpa`` outside it;
    other names unchanged."""
    if name != "auto":
        return name
    return "comfy" if comfy_attention_available() else "sdpa"


# ------------------------------------------------------------------------------------------------------
# Conditioning payload


@dataclass(frozen=True)
class TextConditioning:
    """One prompt's cached text K/V as a CONDITIONING entry carries it (``entry[1]["cosmos3_text"]``).

    ``cache``: per-layer K/V (:class:`TextKVCache`); ``geometry``: the frames/size/fps the prompt announced;
    ``text_weights``: tag of the text-tower weights that computed it (``"base"`` or the LoRAs applied);
    ``condition``: clean I2V/V2V latents (normalised, :class:`ImageCondition`) or ``None``.
    """

    cache: TextKVCache
    geometry: Geometry
    text_weights: str = BASE_WEIGHTS
    condition: ImageCondition | None = None

    def to(self, device: torch.device) -> TextConditioning:
        return TextConditioning(self.cache.to(device), self.geometry, self.text_weights, self.condition)


def conditioning(payload: TextConditioning) -> list:
    """A CONDITIONING list with one entry: ``[[placeholder [1, text_len, 1] zeros, {"cosmos3_text": payload}]]``.

    The tensor slot holds only zeros shaped like the prompt (core nodes that rewrite it, e.g. zero-out,
    leave the K/V untouched); everything Cosmos3 needs is in the dict."""
    return [[torch.zeros(1, payload.cache.text_len, 1), {COND_KEY: payload}]]


def with_condition(cond_list: list, condition: ImageCondition | None) -> list:
    """A copy of a Cosmos3 CONDITIONING list whose entries carry ``condition`` (``None`` removes it)."""
    if condition is not None and not isinstance(condition, ImageCondition):
        raise TypeError(
            f"image_cond must come from the Cosmos3 MoT Image Condition node, got {type(condition).__name__}"
        )
    out = []
    for tensor, options in cond_list:
        payload = options.get(COND_KEY)
        if not isinstance(payload, TextConditioning):
            raise Cosmos3ConditioningError(
                "this CONDITIONING does not come from the Cosmos3 MoT Text Encode node (no Cosmos3 text K/V)"
            )
        if condition is not None:
            condition.check_matches(payload.geometry)
        new = TextConditioning(payload.cache, payload.geometry, payload.text_weights, condition)
        out.append([tensor, {**options, COND_KEY: new}])
    return out


_cond_class: type | None = None


def cond_class() -> type:
    """``CONDCosmos3Text``: a ``comfy.conds.CONDRegular`` over a tuple of :class:`TextConditioning`, one per
    batch row. Rows of one model always concatenate (the model pads and masks); ``size`` is ``[rows,
    longest prompt, 1]`` for memory estimates."""
    global _cond_class
    if _cond_class is None:
        base = _comfy.cond_regular_class()

        class CONDCosmos3Text(base):
            def process_cond(self, batch_size, **kwargs):
                rows = tuple(self.cond)
                return self._copy_with(tuple(rows[i % len(rows)] for i in range(batch_size)))

            def can_concat(self, other):
                mine, theirs = self.cond[0].cache, other.cond[0].cache
                return (
                    mine.num_layers == theirs.num_layers
                    and mine.keys[0].shape[::2] == theirs.keys[0].shape[::2]
                    and mine.device == theirs.device
                )

            def concat(self, others):
                rows = list(self.cond)
                for other in others:
                    rows.extend(other.cond)
                return tuple(rows)

            def size(self):
                return [len(self.cond), max(row.cache.text_len for row in self.cond), 1]

        _cond_class = CONDCosmos3Text
    return _cond_class


# ------------------------------------------------------------------------------------------------------
# Latent format


def latent_format(stats, dtype: torch.dtype):
    """ComfyUI's Wan 2.2 latent format (48 channels, previews) normalising with ``stats`` (a :class:`LatentStats`)
    computed in ``dtype``, as the Cosmos3 Sampler does; ``None`` when ComfyUI has no Wan 2.2 format."""
    base = _comfy.wan22_latent_format_class()
    if base is None:
        return None

    class Cosmos3Wan22(base):
        def __init__(self):
            super().__init__()
            self.stats, self.dtype = stats, dtype
            self.latents_mean = torch.tensor(stats.mean, dtype=torch.float32).view(1, -1, 1, 1, 1)
            self.latents_std = torch.tensor(stats.std, dtype=torch.float32).view(1, -1, 1, 1, 1)

        def process_in(self, latent):
            return self.stats.normalize(latent, self.dtype)

        def process_out(self, latent):
            return self.stats.denormalize(latent, self.dtype)

    return Cosmos3Wan22()


def default_shift(model_info, variant) -> float:
    """The checkpoint's framework shift for video (else image) generation."""
    for mode in (Mode.TEXT2VIDEO, Mode.IMAGE2VIDEO, Mode.TEXT2IMAGE):
        try:
            shift = generation_defaults(mode, variant, model_info.kind).shift
        except ValueError:
            continue
        if shift is not None:
            return float(shift)
    return _FALLBACK_SHIFT


# ------------------------------------------------------------------------------------------------------
# The model


class _ModelConfig:
    """What ``BaseModel`` reads from a model config (no network is built: ``diffusion_model`` is set after)."""

    def __init__(self, latent_format, shift: float, dtype: torch.dtype):
        self.unet_config = {"disable_unet_model_creation": True}
        self.latent_format = latent_format
        self.manual_cast_dtype = None
        self.sampling_settings = {"shift": float(shift), "multiplier": 1000}
        self.memory_usage_factor = 1.0
        self.custom_operations = None
        self.optimizations = {}
        self.scaled_fp8 = None
        self.supported_inference_dtypes = [dtype]


class GenTowerHolder(torch.nn.Module):
    """Without ComfyUI's ``model_base``: a plain module with the same ``diffusion_model`` naming."""

    def __init__(self, transformer):
        super().__init__()
        self.diffusion_model = transformer.gen_tower
        self.__dict__["transformer"] = transformer  # not a submodule: the text tower stays out


_core_class: type | None = None


def core_model_class() -> type:
    """``Cosmos3CoreModel``, a subclass of ComfyUI's ``BaseModel`` (created on first use)."""
    global _core_class
    if _core_class is None:
        base, _ = _comfy.base_model()
        _core_class = type("Cosmos3CoreModel", (_CoreModelMixin, base), {"__module__": __name__})
    return _core_class


def build_gen_module(transformer, stats, dtype: torch.dtype, shift: float) -> torch.nn.Module:
    """The module the generation-tower patcher manages: a :func:`core_model_class` instance, or a
    :class:`GenTowerHolder` when ComfyUI's ``model_base`` is not importable."""
    try:
        base, flow = _comfy.base_model()
    except _comfy.ComfyUnavailable:
        return GenTowerHolder(transformer)
    fmt = latent_format(stats, dtype)
    model = core_model_class()(_ModelConfig(fmt, shift, dtype), flow)
    model.diffusion_model = transformer.gen_tower
    model.__dict__["transformer"] = transformer
    model.__dict__["_kv_memo"] = []
    return model


class _CoreModelMixin:
    """The Cosmos3 parts of the core model (mixed into ComfyUI's ``BaseModel`` by :func:`core_model_class`)."""

    transformer: Any

    def get_dtype(self):
        return self.transformer.compute_dtype

    # -- conds
    def extra_conds(self, **kwargs):
        payload = kwargs.get(COND_KEY)
        if not isinstance(payload, TextConditioning):
            raise Cosmos3ConditioningError(
                "the Cosmos3 MODEL needs CONDITIONING from the Cosmos3 MoT Text Encode node (positive/negative "
                "outputs); this one has no Cosmos3 text K/V"
            )
        noise = kwargs.get("noise")
        if noise is not None:
            check_latent_matches(payload.geometry, tuple(noise.shape), self.transformer.config.latent_channel)
        device = kwargs.get("device")
        if device is not None:
            payload = payload.to(device)
        return {COND_KEY: cond_class()((payload,))}

    def memory_required(self, input_shape, cond_shapes=None):
        cond_shapes = cond_shapes or {}
        rows, _, frames, h, w = (list(input_shape) + [1] * 5)[:5]
        sizes = cond_shapes.get(COND_KEY) or []
        tokens = max((int(s[1]) for s in sizes), default=DEFAULT_TEXT_TOKENS)
        try:
            geometry = Geometry((frames - 1) * TEMPORAL_COMPRESSION + 1, h * SPATIAL_MULTIPLE, w * SPATIAL_MULTIPLE)
        except ValueError:
            return 0
        one = plan_mod.estimate_sampling_bytes(self.transformer.config, geometry, tokens, self.get_dtype(),
                                               guidance=False)
        return int(one * max(int(rows), 1))

    # -- the step
    def _apply_model(self, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options=None, **kwargs):
        transformer_options = transformer_options or {}
        rows = kwargs.get(COND_KEY)
        if rows is None:
            raise Cosmos3ConditioningError(
                "the Cosmos3 MODEL was called without Cosmos3 CONDITIONING; connect the positive/negative outputs "
                "of the Cosmos3 MoT Text Encode node"
            )
        rows = tuple(rows)
        if len(rows) != x.shape[0]:
            raise Cosmos3ConditioningError(f"{len(rows)} Cosmos3 text rows for a batch of {x.shape[0]} latents")
        expected = transformer_options.get(TEXT_WEIGHTS_OPTION, BASE_WEIGHTS)
        check_text_weights({row.text_weights for row in rows}, expected)
        sigma = t
        xc = self.model_sampling.calculate_input(sigma, x)
        timesteps = self.model_sampling.timestep(t).float()
        transformer = self.transformer
        patcher = self.current_patcher
        settle_module(self, patcher.load_device if patcher is not None else x.device)
        backend = resolve_attention(transformer_options.get(ATTENTION_OPTION, "auto"))
        previous = transformer.attention_backend
        transformer.attention_backend = backend
        try:
            velocity = self._velocity_rows(xc, timesteps, sigma, rows)
        finally:
            transformer.attention_backend = previous
        return self.model_sampling.calculate_denoised(sigma, velocity, x)

    def _velocity_rows(self, x, timesteps, sigma, rows) -> torch.Tensor:
        """``[B, C, T, h, w]`` float32 velocity; rows sharing latent, timestep, fps and condition run as one batch."""
        out = torch.empty(x.shape, dtype=torch.float32, device=x.device)
        sigmas = sigma.reshape(-1).expand(x.shape[0]) if sigma.numel() == 1 else sigma.reshape(-1)
        steps = timesteps.reshape(-1).expand(x.shape[0]) if timesteps.numel() == 1 else timesteps.reshape(-1)
        for group in _groups(x, steps, rows):
            first = rows[group[0]]
            latents = x[group[0]:group[0] + 1]
            frames: tuple[int, ...] = ()
            if first.condition is not None:
                frames = first.condition.frames
                clean = first.condition.full_latent(latents.shape[2]).to(x.device)
                mask = first.condition.mask(latents.shape[2]).to(x.device)
                latents = reanchor(latents, clean, mask)
            step = float(steps[group[0]])
            fps = first.geometry.fps
            caches = [rows[i].cache for i in group]
            if len(caches) == 1:
                v = self.transformer.velocity(latents, step, caches[0], fps=fps, condition_frames=frames)
            else:
                v = self.transformer.velocity_batch(latents, step, self._batched(caches), fps=fps,
                                                    condition_frames=frames)
            v = v.float().to(x.device)
            if frames:  # denoised = clean at the conditioning frames: v = (x - clean) / sigma there
                index = list(frames)
                s = sigmas[group].view(-1, 1, 1, 1, 1).float()
                target = (x[group][:, :, index].float() - clean[:, :, index]) / s.clamp_min(1e-12)
                v[:, :, index] = torch.where(s > 0, target, torch.zeros_like(target))
            out[group] = v
        return out

    def _batched(self, caches: list[TextKVCache]) -> BatchedTextKV:
        """Stack ``caches`` once per sampling run (the last two stacks are remembered by identity)."""
        memo = self.__dict__.setdefault("_kv_memo", [])
        for known, batched in memo:
            if len(known) == len(caches) and all(a is b for a, b in zip(known, caches)):
                return batched
        batched = BatchedTextKV.from_caches(caches, device=caches[0].device)
        memo.append((list(caches), batched))
        del memo[:-2]
        return batched


def _groups(x: torch.Tensor, steps: torch.Tensor, rows) -> list[list[int]]:
    """Row indices that can share one tower pass: equal latents, timestep, fps and condition."""
    groups: list[list[int]] = []
    for i, row in enumerate(rows):
        for group in groups:
            j = group[0]
            other = rows[j]
            if (
                other.condition is row.condition
                and other.geometry.fps == row.geometry.fps
                and bool(steps[i] == steps[j])
                and torch.equal(x[i], x[j])
            ):
                group.append(i)
                break
        else:
            groups.append([i])
    return groups


def settle_module(module: torch.nn.Module, device, anchors: tuple[str, ...] = GEN_ANCHORS) -> None:
    """:func:`nodes.model_nodes.settle_on_device` for a module (tensors without ComfyUI casting -> ``device``)."""
    from .model_nodes import settle_on_device

    settle_on_device(SimpleNamespace(load_device=device, model=module), anchors)


def check_latent_matches(geometry: Geometry, shape: tuple[int, ...], channels: int) -> None:
    """The latent ``shape`` ``[B, C, T, h, w]`` must be the clip the prompt was encoded for."""
    expected = geometry.latent_shape(channels)
    if len(shape) != 5 or tuple(shape[1:]) != tuple(expected):
        frames = (shape[2] - 1) * TEMPORAL_COMPRESSION + 1 if len(shape) == 5 else "?"
        size = f"{shape[-1] * SPATIAL_MULTIPLE}x{shape[-2] * SPATIAL_MULTIPLE}" if len(shape) >= 4 else "?"
        raise Cosmos3ConditioningError(
            f"the latent {list(shape)} ({frames} frames, {size}) is not the clip the prompt was encoded for "
            f"({geometry.frames} frames, {geometry.width}x{geometry.height}; "
            f"latent [B, {', '.join(map(str, expected))}]). "
            "Link the Text Encode's width, height and frames to the Empty Latent's outputs."
        )


def check_text_weights(tags: set[str], expected: str) -> None:
    """Text K/V computed with other text-tower weights than the model's (e.g. before a LoRA) are refused."""
    stale = sorted(tag for tag in tags if tag != expected)
    if stale:
        raise Cosmos3ConditioningError(
            f"the text K/V were encoded with text-tower weights {', '.join(stale)!s} but this model has "
            f"{expected}; connect the Text Encode to the same model (after the same LoRA loaders) as the sampler"
        )
