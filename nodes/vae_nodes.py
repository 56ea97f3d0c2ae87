"""Wan 2.2 VAE nodes: loader, decode (LATENT → IMAGE), encode (IMAGE → LATENT).

LATENT follows ComfyUI's convention for Wan 2.2: ``{"samples": raw (un-normalized) latents
[B, 48, T, H/16, W/16]}`` float32 on the intermediate device, so core Wan 2.2 nodes interoperate. IMAGE is
``[B·F, H, W, 3]`` float32 in 0..1 on the intermediate device (frames of a video batched on dim 0), which
core SaveImage (one frame), CreateVideo → SaveVideo, SaveAnimatedWEBP and SaveWEBM take as is.

The VAE runs on ComfyUI's VAE device through a ``ModelPatcher`` (so ComfyUI frees VRAM for it) and is
moved back to its offload device after every encode/decode. :func:`decode_latents` and
:func:`encode_images` are the reusable entry points for other nodes (e.g. the image-to-video condition).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .. import cosmos3
from ..cosmos3 import geometry
from ..cosmos3.vae import tiling as vae_tiling
from . import _comfy
from ._comfy import io
from .common import C3MOT_VAE, CATEGORY_ROOT, check_choice, check_latents, dtype_input, node_schema, resolve_dtype

CATEGORY = CATEGORY_ROOT + "/vae"
VAE_FILE_KEY = "vae"  # core key: single files such as wan2.2_vae.safetensors
DEFAULT_VAE_FILE = "wan2.2_vae.safetensors"
VAE_DOWNLOAD_HINT = (
    "Put ComfyUI's wan2.2_vae.safetensors (Comfy-Org/Wan_2.2_ComfyUI_Repackaged, split_files/vae/) in "
    "models/vae/, or a Cosmos3 checkpoint folder (with its vae/ subfolder) in models/cosmos3/."
)
TILED_CHOICES = ["auto", "on", "off"]
TILE_STEP = 16  # pixels per latent cell
DEFAULT_TILE_SIZE = 256
DEFAULT_TILE_OVERLAP = 64
MIN_TILE_SIZE = 32
MAX_TILE_SIZE = 4096
MAX_TILE_OVERLAP = 1024
# Share of the free VAE-device memory the automatic tiling may plan for (the rest stays for weights/output)
AUTO_TILE_MEMORY_SHARE = 0.8


# ------------------------------------------------------------------------------------------------------
# Choosing and loading a VAE

_comfy.register_pack_folders()  # at import (ComfyUI's model listings see models/cosmos3); again when listing


def _is_diffusers_vae_folder(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("diffusion_pytorch_model*.safetensors"))


def _has_vae_subfolder(path: Path) -> bool:
    return _comfy.is_checkpoint_folder(path) and _is_diffusers_vae_folder(path / "vae")


def vae_sources() -> dict[str, Path]:
    """``{choice: path}`` of every usable VAE location, in combo order:

    * ``cosmos3/<checkpoint>/vae`` and ``diffusers/<checkpoint>/vae``: the ``vae/`` folder of a Cosmos3
      checkpoint folder (the label is the path under ``models/``);
    * ``vae/<folder>``: a diffusers ``AutoencoderKLWan`` folder under ``models/vae``;
    * ``<file>.safetensors``: a single file under ``models/vae`` (ComfyUI's ``wan2.2_vae.safetensors``).
    """
    sources: dict[str, Path] = {}
    for key in _comfy.CHECKPOINT_FOLDER_KEYS:
        for name, path in _comfy.list_model_folders([key], _has_vae_subfolder).items():
            sources.setdefault(f"{key}/{name}/vae", path / "vae")
    folders = _comfy.list_model_folders([VAE_FILE_KEY], _is_diffusers_vae_folder)
    for name, path in folders.items():
        sources.setdefault(f"{VAE_FILE_KEY}/{name}", path)
    for name in _comfy.list_model_files(VAE_FILE_KEY):
        if any(name.startswith(folder + "/") for folder in folders):
            continue  # the weights of a diffusers folder listed above
        sources.setdefault(name, Path())  # resolved through folder_paths when loading
    return sources


def vae_choices() -> list[str]:
    """Combo choices; when nothing is installed, the usual file name (loading it then says where to put it)."""
    return list(vae_sources()) or [DEFAULT_VAE_FILE]


def resolve_vae(choice: str) -> Path:
    """Absolute path of a :func:`vae_choices` entry; ``FileNotFoundError`` naming what was searched."""
    if _comfy.is_safetensors(choice):
        try:
            return _comfy.model_file_path(VAE_FILE_KEY, choice)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{exc}. {VAE_DOWNLOAD_HINT}") from None
    sources = vae_sources()
    if choice in sources:
        return sources[choice]
    available = ", ".join(sources) or "none found"
    raise FileNotFoundError(
        f"VAE {choice!r} not found (available: {available}). Folder choices look like "
        f"'cosmos3/<checkpoint>/vae' or 'vae/<folder>', files like '{DEFAULT_VAE_FILE}'. {VAE_DOWNLOAD_HINT}"
    )


class Cosmos3WanVAE(torch.nn.Module):
    """Holder handed to ComfyUI's ``ModelPatcher`` (which assigns ``.device``; the VAE's own ``device`` is a
    read-only property)."""

    def __init__(self, vae: torch.nn.Module):
        super().__init__()
        self.vae = vae


@dataclass
class VAEHandle:
    """What travels on a ``C3MOT_VAE`` socket."""

    patcher: object  # ModelPatcher over a Cosmos3WanVAE
    dtype: torch.dtype
    source: str

    @property
    def vae(self):
        """The :class:`cosmos3.vae.model.WanVAE` (wherever it currently is)."""
        return self.patcher.model.vae

    @property
    def device(self) -> torch.device:
        """Where encode/decode run (ComfyUI's VAE device)."""
        return torch.device(self.patcher.load_device)

    def __repr__(self) -> str:
        return f"VAEHandle({self.source!r}, {self.dtype}, device={self.device})"


def load_vae_handle(path: str | Path, dtype: str | torch.dtype = "auto") -> VAEHandle:
    """Load a Wan 2.2 VAE (diffusers folder or single file) on the offload device, wrapped for ComfyUI."""
    device, offload = _comfy.vae_device(), _comfy.vae_offload_device()
    torch_dtype = resolve_dtype(dtype, device) if isinstance(dtype, str) else dtype
    vae = cosmos3.load_vae(path, dtype=torch_dtype, device=offload)
    patcher = _comfy.model_patcher(Cosmos3WanVAE(vae), device, offload)
    return VAEHandle(patcher, torch_dtype, str(path))


# ------------------------------------------------------------------------------------------------------
# Encode / decode


def tile_arguments(tiled: str, tile_size: int, tile_overlap: int) -> dict:
    """Keyword arguments for ``WanVAE.encode/decode`` from the node widgets; clear errors for bad values."""
    check_choice("tiled", tiled, TILED_CHOICES)
    if tiled == "off":
        return {"tiled": False}
    if tiled == "auto":
        return {"tiled": None}
    for name, value, lo, hi in (("tile_size", tile_size, MIN_TILE_SIZE, MAX_TILE_SIZE),
                                ("tile_overlap", tile_overlap, 0, MAX_TILE_OVERLAP)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer number of pixels, got {value!r}")
        if not lo <= value <= hi:
            raise ValueError(f"{name} {value} is out of range: allowed {lo} to {hi} pixels (multiples of {TILE_STEP})")
        if value % TILE_STEP:
            below, above = geometry.nearest_valid_sizes(value) if value >= TILE_STEP else (TILE_STEP, TILE_STEP)
            raise ValueError(
                f"{name} {value} is not a multiple of {TILE_STEP} pixels; nearest valid values: {below} or {above}"
            )
    if tile_overlap >= tile_size:
        raise ValueError(
            f"tile_overlap {tile_overlap} must be smaller than tile_size {tile_size} "
            f"(at most {tile_size - TILE_STEP}; a quarter of the tile, "
            f"{tile_size // 4 // TILE_STEP * TILE_STEP}, is typical)"
        )
    return {"tiled": True, "tile_size": tile_size, "tile_overlap": tile_overlap}


def _auto_budget(handle: VAEHandle, kwargs: dict) -> dict:
    """For automatic tiling on an accelerator, plan with the memory ComfyUI reports free after loading."""
    if kwargs.get("tiled") is not None or handle.device.type == "cpu":
        return kwargs
    free = _comfy.get_free_memory(handle.device)
    if free:
        kwargs = dict(kwargs, memory_budget=max(1, int(free * AUTO_TILE_MEMORY_SHARE)))
    return kwargs


def _memory_required(handle: VAEHandle, kind: str, latent_h: int, latent_w: int, kwargs: dict) -> int:
    if kwargs.get("tiled"):
        cells = kwargs["tile_size"] // TILE_STEP
        latent_h, latent_w = min(latent_h, cells), min(latent_w, cells)
    return vae_tiling.estimate_bytes(handle.vae, kind, latent_h, latent_w)


def _progress(total: int):
    bar = _comfy.progress_bar(total)

    def report(done: int, steps: int) -> None:
        _comfy.throw_if_interrupted()
        bar.update_absolute(done, steps)

    return report


def decode_latents(
    handle: VAEHandle,
    samples: torch.Tensor,
    *,
    tiled: str = "auto",
    tile_size: int = DEFAULT_TILE_SIZE,
    tile_overlap: int = DEFAULT_TILE_OVERLAP,
) -> torch.Tensor:
    """Raw latents ``[B, 48, T, h, w]`` → IMAGE ``[B·F, 16h, 16w, 3]`` float32 0..1 (F = 4(T−1)+1) on the
    intermediate device. Progress per decoded latent frame; Cancel is honoured between frames."""
    samples = check_latents(samples)
    kwargs = tile_arguments(tiled, tile_size, tile_overlap)
    b, _, t, lh, lw = samples.shape
    out_device = _comfy.intermediate_device()
    patcher = handle.patcher
    _comfy.load_models(
        [patcher], memory_required=_memory_required(handle, "decode", lh, lw, kwargs), force_full_load=True
    )
    try:
        kwargs = _auto_budget(handle, kwargs)
        pixels = handle.vae.decode(samples, progress=_progress(b * t), output_device=out_device, **kwargs)
    finally:
        _comfy.offload_models([patcher])
    return pixels_to_images(pixels, out_device)


def pixels_to_images(pixels: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``[B, 3, F, H, W]`` in [-1, 1] → ``[B·F, H, W, 3]`` float32 in 0..1, converted a few frames at a time
    (a long video is never held twice in float32)."""
    b, _, f, h, w = pixels.shape
    images = torch.empty((b * f, h, w, 3), dtype=torch.float32, device=device)
    chunk = 8
    for bi in range(b):
        for f0 in range(0, f, chunk):
            f1 = min(f, f0 + chunk)
            block = pixels[bi, :, f0:f1].to(device=device, dtype=torch.float32).permute(1, 2, 3, 0)
            images[bi * f + f0 : bi * f + f1] = block.add_(1.0).mul_(0.5).clamp_(0.0, 1.0)
    return images


def check_images(images) -> torch.Tensor:
    """An IMAGE batch ``[N, H, W, C]`` usable as one Cosmos3 clip: N = 1 or 4k+1, H and W multiples of 16."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[-1] not in (3, 4):
        shape = list(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be an IMAGE batch [N, H, W, 3], got {shape}")
    n, h, w, _ = images.shape
    problems = []
    if n < 1:
        problems.append("the batch is empty")
    elif (n - 1) % geometry.TEMPORAL_COMPRESSION:
        lo, hi = geometry.nearest_valid_frames(n)
        problems.append(
            f"{n} frames is not 4k+1 (1, 5, 9, …); nearest valid values: {lo} or {hi} — trim or pad the batch"
        )
    for name, value in (("height", h), ("width", w)):
        if value < geometry.SPATIAL_MULTIPLE or value % geometry.SPATIAL_MULTIPLE:
            lo, hi = geometry.nearest_valid_sizes(max(int(value), 1))
            problems.append(
                f"{name} {value} is not a multiple of {geometry.SPATIAL_MULTIPLE}; nearest valid values: {lo} or {hi}"
            )
    if problems:
        raise ValueError("cannot encode these images: " + "; ".join(problems) + " (resize/crop the images first)")
    return images


def encode_images(
    handle: VAEHandle,
    images: torch.Tensor,
    *,
    tiled: str = "auto",
    tile_size: int = DEFAULT_TILE_SIZE,
    tile_overlap: int = DEFAULT_TILE_OVERLAP,
) -> torch.Tensor:
    """IMAGE ``[N, H, W, 3]`` (0..1, one clip of N = 4k+1 frames) → raw latents ``[1, 48, T, H/16, W/16]``
    float32 on the intermediate device (T = (N−1)/4 + 1)."""
    images = check_images(images)
    kwargs = tile_arguments(tiled, tile_size, tile_overlap)
    n, h, w, _ = images.shape
    pixels = images[..., :3].movedim(-1, 0).unsqueeze(0)  # [1, 3, N, H, W] view
    pixels = pixels.to(torch.float32).mul(2.0).sub(1.0)
    t = (n - 1) // 4 + 1
    patcher = handle.patcher
    _comfy.load_models(
        [patcher], memory_required=_memory_required(handle, "encode", h // 16, w // 16, kwargs), force_full_load=True
    )
    try:
        kwargs = _auto_budget(handle, kwargs)
        raw = handle.vae.encode(pixels, progress=_progress(t), **kwargs)
        raw = raw.to(device=_comfy.intermediate_device(), dtype=torch.float32)
    finally:
        _comfy.offload_models([patcher])
    return raw


# ------------------------------------------------------------------------------------------------------
# Nodes

_TILED_TOOLTIP = (
    "Spatial tiling: 'auto' tiles only when a full frame would not fit in memory (tile size chosen "
    "automatically; tile_size/tile_overlap are ignored); 'on' always tiles with tile_size/tile_overlap; "
    "'off' never tiles (fastest, most memory)."
)
_TILE_SIZE_TOOLTIP = (
    f"Tile edge in pixels when tiled = on (multiple of {TILE_STEP}, {MIN_TILE_SIZE} to {MAX_TILE_SIZE}). "
    "Smaller tiles use less memory but more overlap work."
)
_TILE_OVERLAP_TOOLTIP = (
    f"Overlap between tiles in pixels when tiled = on (multiple of {TILE_STEP}, smaller than tile_size). "
    "More overlap hides seams better; a quarter of the tile is typical."
)


def _tile_inputs() -> list:
    return [
        io.Combo.Input("tiled", options=TILED_CHOICES, default="auto", tooltip=_TILED_TOOLTIP),
        io.Int.Input(
            "tile_size",
            default=DEFAULT_TILE_SIZE,
            min=MIN_TILE_SIZE,
            max=MAX_TILE_SIZE,
            step=TILE_STEP,
            tooltip=_TILE_SIZE_TOOLTIP,
        ),
        io.Int.Input(
            "tile_overlap",
            default=DEFAULT_TILE_OVERLAP,
            min=0,
            max=MAX_TILE_OVERLAP,
            step=TILE_STEP,
            tooltip=_TILE_OVERLAP_TOOLTIP,
        ),
    ]


DTYPE_TOOLTIP = (
    "Weight and compute precision: 'auto' = bf16 on a CUDA GPU, fp32 on the CPU. fp32 is exact but uses twice the "
    "memory of bf16/fp16."
)
VAE_NAME_TOOLTIP = (
    "Which VAE: 'cosmos3/<checkpoint>/vae' = the vae/ folder of a checkpoint under models/cosmos3 (likewise "
    "'diffusers/…'); 'vae/<folder>' = a diffusers VAE folder in models/vae; a .safetensors name = a single file "
    "in models/vae (e.g. wan2.2_vae.safetensors)."
)


class VAELoader(io.ComfyNode):
    """Loads the Wan 2.2 VAE used by Cosmos3: the vae/ folder of a Cosmos3 checkpoint (models/cosmos3 or
    models/diffusers), a diffusers VAE folder in models/vae, or ComfyUI's single-file wan2.2_vae.safetensors in
    models/vae."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(
            cls,
            "C3MoTVAELoader",
            "VAE Loader",
            CATEGORY,
            inputs=[
                io.Combo.Input("vae_name", options=vae_choices(), tooltip=VAE_NAME_TOOLTIP),
                dtype_input(DTYPE_TOOLTIP),
            ],
            outputs=[
                C3MOT_VAE.Output(
                    display_name="vae",
                    tooltip=("The Wan 2.2 VAE; connect it to the Cosmos3 MoT VAE Decode/Encode nodes."),
                )
            ],
        )

    @classmethod
    def execute(cls, vae_name, dtype) -> io.NodeOutput:
        return io.NodeOutput(load_vae_handle(resolve_vae(vae_name), dtype))


def vae_input() -> io.Input:
    """The ``vae`` socket of every node that runs the VAE."""
    return C3MOT_VAE.Input("vae", tooltip="From the Cosmos3 MoT VAE Loader.")


def _codec_schema(node_class: type, node_id: str, title: str, media: io.Input, output: io.Output) -> io.Schema:
    """VAE Decode / VAE Encode: the VAE, what to convert and the tiling widgets -> the converted media."""
    return node_schema(
        node_class, node_id, title, CATEGORY, inputs=[vae_input(), media, *_tile_inputs()], outputs=[output]
    )


class VAEDecode(io.ComfyNode):
    """Decodes raw Wan 2.2 latents (LATENT [B, 48, T, H/16, W/16]) into frames (IMAGE [B·F, H, W, 3], F = 4(T−1)+1).
    One frame → SaveImage; a video → CreateVideo → SaveVideo, or SaveAnimatedWEBP."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return _codec_schema(
            cls,
            "C3MoTVAEDecode",
            "VAE Decode",
            io.Latent.Input(
                "samples", tooltip="Raw (un-normalized) Wan 2.2 latents, e.g. from the Cosmos3 sampler or Empty Latent."
            ),
            io.Image.Output(
                display_name="images",
                tooltip="Decoded frames [B·F, H, W, 3], values 0..1 (one image for text-to-image).",
            ),
        )

    @classmethod
    def execute(cls, vae, samples, tiled, tile_size, tile_overlap) -> io.NodeOutput:
        return io.NodeOutput(
            decode_latents(vae, check_latents(samples), tiled=tiled, tile_size=tile_size, tile_overlap=tile_overlap)
        )


class VAEEncode(io.ComfyNode):
    """Encodes frames (IMAGE [N, H, W, 3], one clip: N = 1 or 4k+1, H and W multiples of 16) into raw Wan 2.2 latents
    (LATENT [1, 48, (N−1)/4+1, H/16, W/16])."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return _codec_schema(
            cls,
            "C3MoTVAEEncode",
            "VAE Encode",
            io.Image.Input("images", tooltip="Frames of one clip [N, H, W, 3] (N = 1 or 4k+1; H, W multiples of 16)."),
            io.Latent.Output(display_name="samples", tooltip="Raw Wan 2.2 latents [1, 48, T, H/16, W/16] (float32)."),
        )

    @classmethod
    def execute(cls, vae, images, tiled, tile_size, tile_overlap) -> io.NodeOutput:
        raw = encode_images(vae, images, tiled=tiled, tile_size=tile_size, tile_overlap=tile_overlap)
        return io.NodeOutput({"samples": raw})


NODES = [VAELoader, VAEDecode, VAEEncode]
