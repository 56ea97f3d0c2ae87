"""Input validation of WanVAE.encode / decode / normalize: clear errors naming the nearest valid size."""

from __future__ import annotations

import pytest
import torch
from tiny_vae import one_torch_thread  # noqa: F401 (autouse fixture)

from cosmos3.vae.config import VAEConfigError, WanVAEConfig
from cosmos3.vae.model import WanVAE


@pytest.fixture(scope="module")
def vae():
    return WanVAE(WanVAEConfig(base_dim=8, decoder_base_dim=8)).eval()


@pytest.mark.parametrize(
    "shape,needle",
    [
        ((1, 3, 9, 40, 48), "height 40 is not a positive multiple of 16 (nearest valid: 32 or 48)"),
        ((1, 3, 9, 32, 50), "width 50 is not a positive multiple of 16 (nearest valid: 48)"),
        ((1, 3, 9, 8, 32), "height 8 is not a positive multiple of 16 (nearest valid: 16)"),
        ((1, 3, 10, 32, 32), "frame count 10 is not 4k+1 (nearest valid: 9)"),
        ((1, 3, 12, 32, 32), "frame count 12 is not 4k+1 (nearest valid: 13)"),
        ((1, 3, 3, 32, 32), "frame count 3 is not 4k+1 (nearest valid: 1 or 5)"),
        ((1, 3, 0, 32, 32), "frame count 0 is not 4k+1 (nearest valid: 1)"),
    ],
)
def test_bad_pixel_sizes_name_nearest_valid(vae, shape, needle):
    with pytest.raises(ValueError) as exc:
        vae.encode(torch.zeros(shape))
    assert needle in str(exc.value)


def test_pixels_outside_unit_range_are_refused(vae):
    with pytest.raises(ValueError, match=r"pixels must be in \[-1, 1\] \(got max \|x\| = 255\)"):
        vae.encode(torch.full((1, 3, 1, 16, 16), 255.0))
    vae.encode(torch.full((1, 3, 1, 16, 16), -1.0))


def test_all_size_problems_reported_together(vae):
    with pytest.raises(ValueError) as exc:
        vae.encode(torch.zeros(1, 3, 6, 33, 20))
    msg = str(exc.value)
    assert "height 33" in msg and "width 20" in msg and "frame count 6" in msg


@pytest.mark.parametrize(
    "x,exc_type,needle",
    [
        (torch.zeros(3, 9, 32, 32), ValueError, "expected pixels [B, 3, F, H, W]"),
        (torch.zeros(1, 4, 9, 32, 32), ValueError, "expected 3 colour channels"),
        (torch.zeros(1, 3, 9, 32, 32, dtype=torch.uint8), TypeError, "floating point"),
        ("not a tensor", ValueError, "expected pixels"),
    ],
)
def test_bad_pixel_tensors(vae, x, exc_type, needle):
    with pytest.raises(exc_type) as exc:
        vae.encode(x)
    assert needle in str(exc.value)


@pytest.mark.parametrize(
    "z,exc_type,needle",
    [
        (torch.zeros(1, 16, 2, 2, 2), ValueError, "expected latents [B, 48, T, H, W]"),
        (torch.zeros(48, 2, 2, 2), ValueError, "expected latents [B, 48, T, H, W]"),
        (torch.zeros(1, 48, 2, 2, 2, dtype=torch.int64), TypeError, "floating point"),
        (torch.zeros(1, 48, 0, 2, 2), ValueError, "empty latent shape"),
    ],
)
def test_bad_latents(vae, z, exc_type, needle):
    with pytest.raises(exc_type) as exc:
        vae.decode(z)
    assert needle in str(exc.value)


def test_normalize_checks_channels(vae):
    with pytest.raises(ValueError, match=r"normalize: expected latents \[B, 48"):
        vae.normalize(torch.zeros(1, 16, 1, 2, 2))
    with pytest.raises(ValueError, match=r"denormalize: expected latents \[B, 48"):
        vae.denormalize(torch.zeros(1, 16, 1, 2, 2))


def test_latent_shape_helper(vae):
    assert vae.latent_shape(121, 480, 832) == (48, 31, 30, 52)
    assert vae.latent_shape(1, 960, 960) == (48, 1, 60, 60)
    with pytest.raises(ValueError, match="nearest valid: 121"):
        vae.latent_shape(120, 480, 832)


def test_output_shapes_dtype_and_device_options(vae):
    z = torch.randn(2, 48, 2, 1, 2)
    out = vae.decode(z, output_dtype=torch.float64, output_device="cpu")
    assert out.shape == (2, 3, 5, 16, 32) and out.dtype == torch.float64
    assert vae.encode(out.float()).shape == (2, 48, 2, 1, 2)


def test_config_validation():
    with pytest.raises(VAEConfigError, match="latents_mean has 3 entries but z_dim is 48"):
        WanVAEConfig(latents_mean=(0.0, 0.0, 0.0))
    with pytest.raises(VAEConfigError, match="latents_std must be positive"):
        WanVAEConfig(latents_std=(0.0,) * 48)
    with pytest.raises(VAEConfigError, match="multiple of patch_size"):
        WanVAEConfig(in_channels=10, out_channels=10)
    with pytest.raises(VAEConfigError, match="is_residual is false"):
        WanVAEConfig.from_diffusers({"z_dim": 16, "latents_mean": [0.0] * 16, "latents_std": [1.0] * 16})
    with pytest.raises(VAEConfigError, match="scale_factor_spatial is 8 but the architecture gives 16"):
        WanVAEConfig.from_diffusers({**WanVAEConfig().to_diffusers(), "scale_factor_spatial": 8})
    cfg = WanVAEConfig.from_diffusers({**WanVAEConfig().to_diffusers(), "clip_output": False})
    assert cfg == WanVAEConfig() and cfg.temporal_factor == 4 and cfg.spatial_factor == 16
