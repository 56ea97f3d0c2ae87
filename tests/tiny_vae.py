"""Tiny Wan 2.2-architecture VAE fixtures shared by the VAE tests and later pipeline tests.

* :func:`make_reference_vae` - a diffusers ``AutoencoderKLWan`` with the Wan 2.2 layout (residual blocks,
  patch size 2, 12 in/out channels, z_dim 48, 4x temporal / 16x spatial) at tiny widths, random weights
  scaled by fan-in so activations stay O(1), and random 48-entry latents_mean/std;
* :func:`save_diffusers_vae` - that model written with ``save_pretrained`` (config.json + safetensors);
* :func:`write_original_layout_file` - the same weights under the original Wan 2.2 key names, as in
  ComfyUI's ``wan2.2_vae.safetensors`` (no config; loaders must use the Wan 2.2 defaults, so the file is
  only loadable with the default latents statistics - pass ``config`` to write a sibling config.json).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

TINY_BASE_DIM = 16


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models are dominated by per-op overhead; with several threads on a busy 2-core runner every op
    waits for descheduled OpenMP workers (30x slower). Import this fixture into a test module to use it."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)

TINY_DECODER_BASE_DIM = 24


def random_latent_stats(seed: int = 0, z_dim: int = 48) -> tuple[list[float], list[float]]:
    gen = torch.Generator().manual_seed(seed + 1000)
    mean = (torch.randn(z_dim, generator=gen) * 0.3).tolist()
    std = (torch.rand(z_dim, generator=gen) * 1.2 + 0.3).tolist()
    return mean, std


def diffusers_tiny_config(seed: int = 0, default_stats: bool = False, **overrides) -> dict:
    """Constructor kwargs of a tiny Wan 2.2-layout ``AutoencoderKLWan``."""
    if default_stats:
        from cosmos3.vae.config import WAN22_LATENTS_MEAN, WAN22_LATENTS_STD

        mean, std = list(WAN22_LATENTS_MEAN), list(WAN22_LATENTS_STD)
    else:
        mean, std = random_latent_stats(seed)
    cfg = dict(
        base_dim=TINY_BASE_DIM,
        decoder_base_dim=TINY_DECODER_BASE_DIM,
        z_dim=48,
        dim_mult=[1, 2, 4, 4],
        num_res_blocks=2,
        temperal_downsample=[False, True, True],
        is_residual=True,
        in_channels=12,
        out_channels=12,
        patch_size=2,
        scale_factor_temporal=4,
        scale_factor_spatial=16,
        latents_mean=mean,
        latents_std=std,
    )
    cfg.update(overrides)
    return cfg


def randomize_(module: torch.nn.Module, seed: int = 0, spatial_taps: float = 1.0, attention: float = 1.0) -> None:
    """Fill weights with fan-in-scaled normals (gammas ~1, small biases) so activations do not vanish.

    ``spatial_taps`` scales the off-centre taps of every 3x3 spatial kernel and ``attention`` the attention
    output projections: with both 0 every output pixel depends only on its own 16x16 cell (used to check
    that tiling is exact when the network is local).
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("gamma"):
                value = 1 + 0.2 * torch.randn(p.shape, generator=gen)
            elif name.endswith("bias"):
                value = 0.05 * torch.randn(p.shape, generator=gen)
            else:
                value = torch.randn(p.shape, generator=gen) / p[0].numel() ** 0.5
                if value.dim() >= 4 and value.shape[-2:] == (3, 3):
                    mask = torch.full((3, 3), float(spatial_taps))
                    mask[1, 1] = 1.0
                    value = value * mask
                if ".proj." in name:
                    value = value * attention
            p.copy_(value.to(p.dtype))


def make_reference_vae(seed: int = 0, default_stats: bool = False, **randomize_kwargs):
    """A tiny diffusers ``AutoencoderKLWan`` (fp32, eval mode) with random weights."""
    from diffusers import AutoencoderKLWan

    model = AutoencoderKLWan(**diffusers_tiny_config(seed, default_stats=default_stats)).eval()
    randomize_(model, seed, **randomize_kwargs)
    return model


def save_diffusers_vae(folder: Path, model=None, seed: int = 0) -> Path:
    """Write ``model`` (default: :func:`make_reference_vae`) as a diffusers ``vae/`` folder; returns it."""
    model = model if model is not None else make_reference_vae(seed)
    folder = Path(folder)
    model.save_pretrained(str(folder), safe_serialization=True)
    return folder


def write_original_layout_file(
    path: Path, state_dict: dict, num_res_blocks: int = 2, config: dict | None = None
) -> Path:
    """Save a diffusers-layout ``state_dict`` under the original Wan 2.2 key names (single safetensors file).

    With ``config`` (a diffusers config dict) a ``config.json`` is written beside the file.
    """
    from safetensors.torch import save_file

    from cosmos3.vae.loading import original_key

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {original_key(k, num_res_blocks): v.detach().contiguous() for k, v in state_dict.items()}
    save_file(tensors, str(path))
    if config is not None:
        (path.parent / "config.json").write_text(json.dumps(config))
    return path


def random_video(frames: int, height: int, width: int, seed: int = 0, batch: int = 1) -> torch.Tensor:
    """Pixels in [-1, 1] with some spatial structure (smooth gradients plus noise), ``[B, 3, F, H, W]``."""
    gen = torch.Generator().manual_seed(seed)
    ys = torch.linspace(-1, 1, height).view(1, 1, 1, height, 1)
    xs = torch.linspace(-1, 1, width).view(1, 1, 1, 1, width)
    ts = torch.linspace(0, 1, frames).view(1, 1, frames, 1, 1)
    phase = torch.rand(batch, 3, 1, 1, 1, generator=gen) * 6.28
    smooth = torch.sin(3 * ys + 2 * xs + 4 * ts + phase)
    noise = torch.rand(batch, 3, frames, height, width, generator=gen) * 2 - 1
    return (0.6 * smooth + 0.4 * noise).clamp(-1, 1)
