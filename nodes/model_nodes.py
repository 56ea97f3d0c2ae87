"""Cosmos3 model loader: a checkpoint folder or a single transformer file -> ``C3MOT_MODEL``.

What travels on a ``C3MOT_MODEL`` socket is a :class:`Cosmos3Model`: the transformer, its text tokenizer,
the checkpoint's flags (:class:`cosmos3.files.checkpoint.CheckpointInfo`), variant, weight dtype, latent
statistics and **two** ComfyUI ``ModelPatcher`` objects, one over ``transformer.text_tower`` (used only by
the text encode node) and one over the generation tower (used by the sampler; its module is the core model of
:mod:`nodes.core_model`, whose ``diffusion_model`` is ``transformer.gen_tower``, and the patcher itself is
the loader's core ``MODEL`` output). ComfyUI therefore
manages the two towers as separate units of memory: loading the generation tower for sampling may evict
the text tower, and the text tower is never loaded again while only the seed changes (the text encode
node's output stays in ComfyUI's execution cache).

Checkpoint choices (``checkpoint`` combo):

* ``cosmos3/<name>``, ``diffusers/<name>``, ``diffusion_models/<name>``: diffusers-layout Cosmos3 folders
  (``transformer/``, ``vae/``, ``text_tokenizer/``, ``scheduler/`` …) under ``models/cosmos3``,
  ``models/diffusers`` or ``models/diffusion_models``;
* ``<file>.safetensors``: a single transformer file under ``models/diffusion_models`` (diffusers or
  cosmos-framework key names; only files whose header holds Cosmos3 tensors are listed). A single file has
  no tokenizer: ``tokenizer`` picks one (``auto`` = a ``text_tokenizer/`` folder beside the file);
* ``<file>.gguf``: a Cosmos3 GGUF transformer (architecture ``cosmos3``, e.g. from ``python -m cosmos3.convert``)
  under ``models/diffusion_models`` or ``models/unet``; same tokenizer rule as a single safetensors file.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..cosmos3.defaults import checkpoint_kind_from_name
from ..cosmos3.files.checkpoint import CheckpointInfo
from ..cosmos3.files.gguf_reader import GGUFFileReader
from ..cosmos3.model.loading import load_transformer
from ..cosmos3.model.transformer import module_nbytes
from ..cosmos3.text.tokenizer import load_text_tokenizer
from ..cosmos3.vae.latent_stats import LatentStats
from ..cosmos3.variants import variant_from_config
from . import _comfy, core_model
from ._comfy import io
from .common import (
    AUTO,
    C3MOT_MODEL,
    CATEGORY_ROOT,
    cached_file_check,
    check_choice,
    dtype_input,
    node_schema,
    resolve_dtype,
    safetensors_names,
)

log = logging.getLogger("cosmos3_mot")

CATEGORY = CATEGORY_ROOT + "/loaders"
FILE_KEY = "diffusion_models"  # core key: single-file transformers (and diffusers folders) live here too
FOLDER_KEYS = (*_comfy.CHECKPOINT_FOLDER_KEYS, FILE_KEY)
TOKENIZER_FOLDER_KEYS = (_comfy.COSMOS3_FOLDER_KEY, "text_encoders")
DEFAULT_CHECKPOINT = "cosmos3/Cosmos3-Nano"
WEIGHT_STORAGE_CHOICES = ["default", "fp8_e4m3fn", "int8", "int4", "int4_g64"]
TOKENIZER_SUBFOLDER = "text_tokenizer"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
# Every Cosmos3 transformer checkpoint (diffusers or framework names) has generation-tower tensors named *moe_gen*
_COSMOS3_KEY_MARKER = "moe_gen"
CHECKPOINT_HINT = (
    "Download a Cosmos3 checkpoint in diffusers layout (e.g. huggingface.co/nvidia/Cosmos3-Nano, the whole "
    "repository: transformer/, vae/, text_tokenizer/, scheduler/, model_index.json) into "
    "ComfyUI/models/cosmos3/<name>/, or put a single transformer .safetensors file in "
    "ComfyUI/models/diffusion_models/."
)


# ------------------------------------------------------------------------------------------------------
# Choices

_comfy.register_pack_folders()
def is_cosmos3_file(path: str | os.PathLike) -> bool:
    """True when a safetensors file's header names Cosmos3 generation-tower tensors (cached per file
    size and modification time; unreadable or corrupt files are not Cosmos3 files)."""
    return cached_file_check(path, "cosmos3-safetensors",
                             lambda p: any(_COSMOS3_KEY_MARKER in name for name in safetensors_names(p)))


def is_cosmos3_gguf(path: str | os.PathLike) -> bool:
    """True when a GGUF file's architecture is ``cosmos3`` and its tensors are readable (cached like
    :func:`is_cosmos3_file`)."""
    return cached_file_check(path, "cosmos3-gguf", lambda p: GGUFFileReader(p) is not None)


def checkpoint_sources() -> dict[str, Path]:
    """``{choice: path}``: checkpoint folders (``<key>/<name>``) then single Cosmos3 files (relative names
    under ``models/diffusion_models``; resolved through ComfyUI when loading)."""
    sources: dict[str, Path] = {}
    folders_in_file_key: list[str] = []
    for key in FOLDER_KEYS:
        for name, path in _comfy.list_model_folders([key], _comfy.is_checkpoint_folder).items():
            sources.setdefault(f"{key}/{name}", path)
            if key == FILE_KEY:
                folders_in_file_key.append(name)
    for name in _comfy.list_model_files(FILE_KEY):
        if any(name.startswith(folder + "/") for folder in folders_in_file_key):
            continue  # weights inside a checkpoint folder listed above
        try:
            path = _comfy.model_file_path(FILE_KEY, name)
        except (FileNotFoundError, ValueError):
            continue
        if is_cosmos3_file(path):
            sources.setdefault(name, path)
    for name, path in _comfy.list_gguf_files(FILE_KEY).items():
        if not any(name.startswith(folder + "/") for folder in folders_in_file_key) and is_cosmos3_gguf(path):
            sources.setdefault(name, path)
    return sources


def checkpoint_choices() -> list[str]:
    """Combo choices; with nothing installed, the usual name (loading it then says where to put files)."""
    return list(checkpoint_sources()) or [DEFAULT_CHECKPOINT]


def _has_tokenizer(path: Path) -> bool:
    return any((path / f).is_file() for f in _TOKENIZER_FILES)


def tokenizer_sources() -> dict[str, Path]:
    """``{choice: folder}`` of usable text tokenizers: every checkpoint folder's ``text_tokenizer/``
    (``<checkpoint choice>/text_tokenizer``) and tokenizer folders under ``models/cosmos3`` /
    ``models/text_encoders`` (``<key>/<name>``)."""
    sources: dict[str, Path] = {}
    for label, path in checkpoint_sources().items():
        if path.is_dir() and _has_tokenizer(path / TOKENIZER_SUBFOLDER):
            sources.setdefault(f"{label}/{TOKENIZER_SUBFOLDER}", path / TOKENIZER_SUBFOLDER)
    for key in TOKENIZER_FOLDER_KEYS:
        for name, path in _comfy.list_model_folders([key], _has_tokenizer).items():
            sources.setdefault(f"{key}/{name}", path)
    return sources


def tokenizer_choices() -> list[str]:
    return [AUTO, *tokenizer_sources()]


def resolve_checkpoint(choice: str) -> Path:
    """Absolute path of a :func:`checkpoint_choices` entry; ``FileNotFoundError`` naming what was searched."""
    sources = checkpoint_sources()
    if choice in sources:
        return sources[choice]
    if _comfy.is_safetensors(choice):
        try:
            path = _comfy.model_file_path(FILE_KEY, choice)
        except (FileNotFoundError, ValueError) as exc:
            raise FileNotFoundError(f"{exc}. {CHECKPOINT_HINT}") from None
        if not is_cosmos3_file(path):
            raise ValueError(f"{path} is not a Cosmos3 transformer file (no generation-tower tensors in its header)")
        return path
    available = ", ".join(sources) or "none found"
    raise FileNotFoundError(
        f"Cosmos3 checkpoint {choice!r} not found (available: {available}). Folder choices look like "
        f"'cosmos3/<name>' (models/cosmos3/<name>/ with transformer/ and text_tokenizer/). {CHECKPOINT_HINT}"
    )


def resolve_tokenizer(choice: str, checkpoint: Path) -> Path:
    """The tokenizer folder for ``choice`` (``auto``: the checkpoint's own ``text_tokenizer/``, or one beside
    a single file); ``FileNotFoundError`` saying where a tokenizer belongs."""
    if choice != AUTO:
        sources = tokenizer_sources()
        if choice not in sources:
            raise FileNotFoundError(
                f"tokenizer {choice!r} not found (available: {', '.join(sources) or 'none'}); choose 'auto' or "
                "a listed folder"
            )
        return sources[choice]
    candidates = [checkpoint / TOKENIZER_SUBFOLDER] if checkpoint.is_dir() else [
        checkpoint.parent / TOKENIZER_SUBFOLDER,
        checkpoint.parent / f"{checkpoint.stem}_{TOKENIZER_SUBFOLDER}",
    ]
    for candidate in candidates:
        if _has_tokenizer(candidate):
            return candidate
    if checkpoint.is_dir():
        raise FileNotFoundError(
            f"checkpoint {checkpoint} has no text tokenizer: expected {candidates[0]} with tokenizer.json "
            "(download the checkpoint's text_tokenizer/ folder too), or pick another tokenizer in 'tokenizer'"
        )
    listed = ", ".join(list(tokenizer_sources())[:6]) or "none installed"
    raise FileNotFoundError(
        f"the single file {checkpoint.name} has no tokenizer. Pick one in 'tokenizer' (the text_tokenizer/ of a "
        f"Cosmos3 checkpoint of the same family: Qwen for Nano/Super, Nemotron for Edge; listed: {listed}), or "
        f"put that text_tokenizer/ folder next to the file at {candidates[0]}"
    )


# ------------------------------------------------------------------------------------------------------
# The loaded model


@dataclass
class Cosmos3Model:
    """What travels on a ``C3MOT_MODEL`` socket (see the module docstring)."""

    transformer: Any  # cosmos3.model.transformer.Cosmos3Transformer
    tokenizer: Any  # cosmos3.text.tokenizer.PromptTokenizer
    info: Any  # cosmos3.files.checkpoint.CheckpointInfo
    variant: Any  # cosmos3.variants.Variant
    dtype: torch.dtype
    latent_stats: Any  # cosmos3.vae.latent_stats.LatentStats
    text_patcher: Any  # ModelPatcher over transformer.text_tower
    gen_patcher: Any  # ModelPatcher over the core model (nodes.core_model) holding transformer.gen_tower
    source: str
    text_weights: str = core_model.BASE_WEIGHTS  # tag of the text-tower weights (LoRAs applied), for K/V checks

    @property
    def config(self):
        return self.transformer.config

    @property
    def kind(self):
        return self.info.kind

    @property
    def device(self) -> torch.device:
        """Where the generation tower runs (ComfyUI's main device)."""
        return torch.device(self.gen_patcher.load_device)

    def describe(self) -> str:
        text = _size(module_nbytes(self.transformer.text_tower))
        gen = _size(module_nbytes(self.transformer.gen_tower))
        dtype = str(self.dtype).removeprefix("torch.")
        return (
            f"Cosmos3 {self.variant.value} ({self.info.kind.value}) from {self.source}: {dtype}, text tower "
            f"{text}, generation tower {gen}, {self.config.num_hidden_layers} layers, latent "
            f"statistics: {self.latent_stats.source}, device {self.device}"
        )

    def __repr__(self) -> str:
        return f"Cosmos3Model({self.source!r}, {self.variant.value}, {self.dtype})"


def _size(nbytes: int) -> str:
    return f"{nbytes / 1024**3:.2f} GiB" if nbytes >= 1024**3 else f"{nbytes / 1024**2:.1f} MiB"


def _single_file_info(path: Path):
    """A single file has no side files: only its kind can be told, from its name."""
    return CheckpointInfo(root=path.parent, name=path.stem, kind=checkpoint_kind_from_name(path.stem))


def load_model(
    checkpoint: str | Path, dtype: str | torch.dtype = AUTO, tokenizer: str = AUTO, weight_storage: str = "default"
) -> Cosmos3Model:
    """Load a checkpoint (folder or single file path) on ComfyUI's offload device, with one patcher per tower.

    ``weight_storage``: ``default`` keeps every weight in ``dtype`` (projections a GGUF / int8 / int4 file stores
    packed stay packed); ``fp8_e4m3fn`` stores the decoder-layer projections as per-tensor scaled fp8 (ModelOpt fp8
    checkpoints load either way); ``int8`` / ``int4`` / ``int4_g64`` quantise them on load (upcast per layer on
    the fly). Weights are memory-mapped: those kept in the file's dtype stay file-backed on the CPU.
    """
    path = Path(checkpoint)
    device, offload = _comfy.torch_device(), _comfy.unet_offload_device()
    torch_dtype = resolve_dtype(dtype, device) if isinstance(dtype, str) else dtype
    if path.is_dir():
        info = CheckpointInfo.read(path)
        stats = LatentStats.for_checkpoint(path)
    else:
        info = _single_file_info(path)
        stats = LatentStats.wan22()
    tokenizer_dir = resolve_tokenizer(tokenizer, path)  # before the (slow) weights: fail fast
    check_choice("weight_storage", weight_storage, WEIGHT_STORAGE_CHOICES)
    transformer = load_transformer(
        path, dtype=torch_dtype, device=offload, operations=_comfy.ops(),
        weight_storage=None if weight_storage == "default" else weight_storage,
    )
    text_tokenizer = load_text_tokenizer(tokenizer_dir, vocab_size=transformer.config.vocab_size)
    text_patcher = _comfy.model_patcher(transformer.text_tower, device, offload)
    variant = variant_from_config(transformer.config)
    gen_module = core_model.build_gen_module(transformer, stats, torch_dtype, core_model.default_shift(info, variant))
    gen_patcher = _comfy.model_patcher(gen_module, device, offload)
    model = Cosmos3Model(
        transformer=transformer, tokenizer=text_tokenizer, info=info, variant=variant,
        dtype=torch_dtype, latent_stats=stats, text_patcher=text_patcher, gen_patcher=gen_patcher, source=str(path),
    )
    log.info("[Cosmos3 MoT] loaded %s", model.describe())
    return model


def settle_on_device(patcher, anchors: tuple[str, ...] = ()) -> None:
    """After ComfyUI loaded a tower (possibly partially), move the tensors that cannot stay offloaded to the
    load device: those of modules without ComfyUI weight casting (our RMSNorms) and of the ``anchors``
    (modules whose device the model reads to decide where to compute). These are a tiny share of the
    weights; ComfyUI moves everything back when it unloads the tower."""
    device = torch.device(patcher.load_device)
    for name, module in patcher.model.named_modules():
        if hasattr(module, "comfy_cast_weights") and name not in anchors:
            continue
        own = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
        if any(t.device != device for t in own):
            module._apply(lambda t: t.to(device), recurse=False)  # this module's own tensors, like Module.to


# ------------------------------------------------------------------------------------------------------
# Node


CHECKPOINT_TOOLTIP = (
    "Which Cosmos3 checkpoint: 'cosmos3/<name>' = a diffusers folder in models/cosmos3 (likewise "
    "'diffusers/…', 'diffusion_models/…'); a .safetensors or .gguf name = a single transformer file in "
    "models/diffusion_models or models/unet (needs a tokenizer, see 'tokenizer'). Only safetensors and GGUF "
    "weights are loaded (never pickle files)."
)


class ModelLoader(io.ComfyNode):
    """Loads a Cosmos3 transformer (text tower + generation tower) and its text tokenizer: a diffusers checkpoint
    folder from models/cosmos3 (or models/diffusers, models/diffusion_models) or a single .safetensors transformer
    file from models/diffusion_models. ComfyUI manages the two towers as separate models, so the text tower can be
    evicted while sampling."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(cls, "C3MoTModelLoader", "Model Loader", CATEGORY, inputs=[
            io.Combo.Input("checkpoint", options=checkpoint_choices(), tooltip=CHECKPOINT_TOOLTIP),
            dtype_input("Weight and compute precision: 'auto' = bf16 on a CUDA GPU, fp32 on the CPU. fp16 can "
                        "overflow; fp32 doubles the memory of bf16."),
            io.Combo.Input("tokenizer", options=tokenizer_choices(), default=AUTO, tooltip=(
                "Text tokenizer: 'auto' = the checkpoint folder's own text_tokenizer/ (for a single file: a "
                "text_tokenizer/ folder next to it). Otherwise a listed folder, e.g. another checkpoint's "
                "text_tokenizer/ of the same family (Qwen for Nano/Super, Nemotron for Edge).")),
            io.Combo.Input("weight_storage", options=WEIGHT_STORAGE_CHOICES, default="default", optional=True,
                           tooltip=(
                "How the decoder-layer weights are stored: 'default' = in dtype (a GGUF or int8/int4 file keeps "
                "its quantised layers); 'fp8_e4m3fn' = 8-bit float with a per-tensor scale, upcast layer by layer "
                "while computing (about half the memory of bf16, small quality cost); 'int8' = 8-bit integers per "
                "output channel (half of bf16, smallest quality cost of the 8-bit choices); 'int4' / 'int4_g64' "
                "= 4-bit integers with a scale per 128 / 64 inputs (about a quarter of bf16, visible quality "
                "cost). ModelOpt fp8 checkpoints load with any choice.")),
        ], outputs=[
            C3MOT_MODEL.Output(display_name="model", tooltip=(
                "The loaded Cosmos3 model; connect it to the Text Encode and Sampler nodes.")),
            io.String.Output(display_name="info", tooltip=(
                "What was loaded: variant, checkpoint kind, dtype, memory per tower.")),
            io.Model.Output(display_name="MODEL", tooltip=(
                "The generation tower as a core ComfyUI MODEL (flow sampling with the checkpoint's shift) for core "
                "KSampler / SamplerCustomAdvanced, ModelSamplingSD3 and LoraLoaderModelOnly; use it with the "
                "Text Encode's positive/negative CONDITIONING. Shares its weights with 'model'.")),
        ])

    @classmethod
    def execute(cls, checkpoint, dtype, tokenizer, weight_storage="default") -> io.NodeOutput:
        model = load_model(resolve_checkpoint(checkpoint), dtype, tokenizer, weight_storage)
        return io.NodeOutput(model, model.describe(), model.gen_patcher)


NODES = [ModelLoader]
