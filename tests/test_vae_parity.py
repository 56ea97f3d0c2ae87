"""Numerical parity of cosmos3.vae.model.WanVAE with diffusers' AutoencoderKLWan (tiny Wan 2.2 layout, same weights)."""

from __future__ import annotations

import pytest
import torch
from tiny_vae import make_reference_vae, one_torch_thread, random_video  # noqa: F401 (autouse fixture)

from cosmos3.vae.config import WanVAEConfig
from cosmos3.vae.model import WanVAE

TOL_FP32 = 1e-4


@pytest.fixture(scope="module")
def pair():
    ref = make_reference_vae(seed=0)
    ours = WanVAE(WanVAEConfig.from_diffusers(dict(ref.config))).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)  # our parameter names are the diffusers ones
    return ref, ours


def _ref_encode(ref, x):
    with torch.no_grad():
        return ref.encode(x).latent_dist.mode()


def _ref_decode(ref, z):
    with torch.no_grad():
        return ref.decode(z).sample


@pytest.mark.parametrize("frames,height,width", [(9, 64, 96), (1, 32, 48)], ids=["video9", "image"])
def test_encode_matches_diffusers(pair, frames, height, width):
    ref, ours = pair
    x = random_video(frames, height, width, seed=1)
    expected = _ref_encode(ref, x)
    got = ours.encode(x, tiled=False)
    assert got.shape == expected.shape == (1, 48, 1 + (frames - 1) // 4, height // 16, width // 16)
    assert expected.std() > 0.1 and expected.abs().max() > 0.5, "reference activations are trivially small"
    assert (got - expected).abs().max().item() <= TOL_FP32


@pytest.mark.parametrize("latent_frames,h,w", [(3, 4, 6), (1, 2, 3)], ids=["video9", "image"])
def test_decode_matches_diffusers(pair, latent_frames, h, w):
    ref, ours = pair
    z = torch.randn(1, 48, latent_frames, h, w, generator=torch.Generator().manual_seed(2))
    expected = _ref_decode(ref, z)
    got = ours.decode(z, tiled=False)
    assert got.shape == expected.shape == (1, 3, 1 + 4 * (latent_frames - 1), 16 * h, 16 * w)
    assert expected.std() > 0.1, "reference output is trivially small"
    assert (expected.abs() < 1).float().mean() > 0.5, "reference output is mostly clipped"
    assert (got - expected).abs().max().item() <= TOL_FP32
    assert got.min() >= -1 and got.max() <= 1


def test_batch_matches_per_sample(pair):
    ref, ours = pair
    x = random_video(5, 32, 32, seed=3, batch=2)
    expected = _ref_encode(ref, x)
    got = ours.encode(x)
    assert (got - expected).abs().max().item() <= TOL_FP32
    dec = ours.decode(got)
    assert (dec - _ref_decode(ref, got)).abs().max().item() <= TOL_FP32


def test_image_latent_equals_first_video_latent(pair):
    """The encoder is causal: frame 0 alone encodes to latent frame 0 of the whole video (spec 3.3)."""
    _, ours = pair
    x = random_video(9, 32, 48, seed=4)
    assert torch.allclose(ours.encode(x[:, :, :1]), ours.encode(x)[:, :, :1], atol=1e-6)


def test_bf16_matches_diffusers():
    ref = make_reference_vae(seed=5).to(torch.bfloat16)
    ours = WanVAE(WanVAEConfig.from_diffusers(dict(ref.config))).to(torch.bfloat16).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = random_video(5, 32, 48, seed=6).to(torch.bfloat16)
    enc_ref, enc = _ref_encode(ref, x), ours.encode(x)
    z = torch.randn(enc.shape, generator=torch.Generator().manual_seed(7)).to(torch.bfloat16)
    dec_ref, dec = _ref_decode(ref, z), ours.decode(z)
    assert enc.dtype == dec.dtype == torch.bfloat16
    # Same operations in the same order: identical on this CPU build; allow one bf16 ulp at |x| <= 2.
    assert (enc.float() - enc_ref.float()).abs().max().item() <= 2**-6
    assert (dec.float() - dec_ref.float()).abs().max().item() <= 2**-7


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_normalize_matches_cosmos3_pipeline(dtype):
    """mean and inv_std = 1/std materialised in the VAE dtype; z = (mu - mean) * inv_std; x = z / inv_std + mean."""
    ref = make_reference_vae(seed=8)
    ours = WanVAE(WanVAEConfig.from_diffusers(dict(ref.config))).to(dtype).eval()
    mean = torch.tensor(ref.config.latents_mean, dtype=dtype).view(1, -1, 1, 1, 1)
    inv_std = (1.0 / torch.tensor(ref.config.latents_std, dtype=dtype)).view(1, -1, 1, 1, 1)
    raw = torch.randn(2, 48, 3, 2, 3, generator=torch.Generator().manual_seed(9)).to(dtype)
    expected = ((raw - mean) * inv_std).to(dtype)
    assert torch.equal(ours.normalize(raw), expected)
    latents = torch.randn(1, 48, 2, 2, 2, generator=torch.Generator().manual_seed(10))  # float32 sampler state
    expected_raw = (latents.to(dtype) / inv_std + mean).to(torch.float32)
    got_raw = ours.denormalize(latents)
    assert got_raw.dtype == torch.float32 and torch.equal(got_raw, expected_raw)
    m, s = ours.latent_stats()
    assert m.dtype == s.dtype == dtype and torch.equal(s, inv_std)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_row_banded_convolutions_match_diffusers(monkeypatch, dtype):
    """Large frames run causal / up-sampling convs over bands of rows; force tiny bands on a tiny model."""
    import cosmos3.vae.causal_conv as vae_module

    monkeypatch.setattr(vae_module, "_BAND_BYTES", 1)
    monkeypatch.setattr(vae_module, "_BAND_PER_WEIGHT", 0)
    monkeypatch.setattr(vae_module, "_MIN_BAND_ROWS", 3)
    ref = make_reference_vae(seed=30).to(dtype)
    ours = WanVAE(WanVAEConfig.from_diffusers(dict(ref.config))).to(dtype).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = random_video(5, 64, 80, seed=31).to(dtype)
    z = torch.randn(1, 48, 2, 4, 5, generator=torch.Generator().manual_seed(32)).to(dtype)
    tol = TOL_FP32 if dtype == torch.float32 else 2**-7
    assert (ours.encode(x).float() - _ref_encode(ref, x).float()).abs().max().item() <= tol
    assert (ours.decode(z).float() - _ref_decode(ref, z).float()).abs().max().item() <= tol
