"""Spatial tiling: exact plumbing, seam quality versus diffusers' tiling, the automatic switch, argument checks."""

from __future__ import annotations

import pytest
import torch
from tiny_vae import make_reference_vae, one_torch_thread, random_video, randomize_  # noqa: F401 (autouse fixture)

from cosmos3.vae import tiling as tiling
from cosmos3.vae.config import WanVAEConfig
from cosmos3.vae.model import WanVAE

TILE_CASES = [(64, 32), (48, 16), (32, 0)]  # (tile_size, tile_overlap) in pixels


def _ours_from(ref) -> WanVAE:
    ours = WanVAE(WanVAEConfig.from_diffusers(dict(ref.config))).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ours


@pytest.fixture(scope="module")
def local_vae():
    """Random weights with every 3x3 kernel reduced to its centre tap and no attention output: each 16x16
    pixel cell then depends only on its own latent pixel, so tiling must reproduce the untiled result."""
    vae = WanVAE(WanVAEConfig(base_dim=16, decoder_base_dim=24)).eval()
    randomize_(vae, seed=11, spatial_taps=0.0, attention=0.0)
    return vae


@pytest.fixture(scope="module")
def random_pair():
    ref = make_reference_vae(seed=12)
    return ref, _ours_from(ref)


@pytest.fixture(scope="module")
def local_untiled(local_vae):
    x = random_video(5, 64, 128, seed=13)
    z = torch.randn(1, 48, 2, 4, 8, generator=torch.Generator().manual_seed(14))
    return x, local_vae.encode(x, tiled=False), z, local_vae.decode(z, tiled=False)


@pytest.mark.parametrize("tile_size,tile_overlap", TILE_CASES)
def test_tiling_is_exact_for_a_local_network(local_vae, local_untiled, tile_size, tile_overlap):
    x, enc, z, dec = local_untiled
    assert enc.std() > 0.05 and dec.std() > 0.1
    enc_t = local_vae.encode(x, tiled=True, tile_size=tile_size, tile_overlap=tile_overlap)
    dec_t = local_vae.decode(z, tiled=True, tile_size=tile_size, tile_overlap=tile_overlap)
    assert (enc - enc_t).abs().max().item() <= 1e-5
    assert (dec - dec_t).abs().max().item() <= 1e-5


def test_decode_seams_no_worse_than_diffusers_tiling(random_pair):
    """Random weights make every output depend on the whole frame (attention, wide receptive fields), so
    tiled != untiled for any implementation; compare the mean deviation with diffusers' own tiled decode at
    the same geometry (64 px tiles every 32 px). Encode is not compared: diffusers tiles the encoder input
    after patchifying, so its tile sizes mean something else there."""
    ref, ours = random_pair
    z = torch.randn(1, 48, 1, 6, 8, generator=torch.Generator().manual_seed(16))
    with torch.no_grad():
        ref_dec = ref.decode(z).sample
        ref.enable_tiling(
            tile_sample_min_height=64, tile_sample_min_width=64, tile_sample_stride_height=32,
            tile_sample_stride_width=32,
        )
        try:
            ref_dec_t = ref.decode(z).sample
        finally:
            ref.disable_tiling()
    dec_t = ours.decode(z, tiled=True, tile_size=64, tile_overlap=32)
    ours_err, ref_err = (dec_t - ref_dec).abs().mean(), (ref_dec_t - ref_dec).abs().mean()
    assert ours_err <= 1.25 * ref_err, (ours_err, ref_err)


def test_more_overlap_reduces_seam_error(random_pair):
    _, ours = random_pair
    z = torch.randn(1, 48, 1, 6, 8, generator=torch.Generator().manual_seed(17))
    full = ours.decode(z, tiled=False)
    errs = [(ours.decode(z, tiled=True, tile_size=64, tile_overlap=o) - full).abs().mean().item() for o in (0, 32)]
    assert errs[1] < errs[0]
    x = random_video(1, 96, 128, seed=18)
    full = ours.encode(x, tiled=False)
    errs = [(ours.encode(x, tiled=True, tile_size=64, tile_overlap=o) - full).abs().mean().item() for o in (0, 32)]
    assert errs[1] < errs[0]


def test_auto_mode_tiles_only_over_budget(random_pair):
    _, ours = random_pair
    z = torch.randn(1, 48, 2, 4, 6, generator=torch.Generator().manual_seed(18))
    need = tiling.estimate_bytes(ours, "decode", 4, 6)
    roomy = tiling.plan_tiles(ours, "decode", 4, 6, tiled=None, tile_size=None, tile_overlap=None, memory_budget=need)
    assert roomy.single
    tight = tiling.plan_tiles(
        ours, "decode", 4, 6, tiled=None, tile_size=None, tile_overlap=None, memory_budget=need - 1
    )
    fits = [t for t in range(4, 7) if tiling.estimate_bytes(ours, "decode", min(t, 4), min(t, 6)) <= need - 1]
    assert not tight.single and tight.tile_size == 16 * max(fits)  # largest tile that fits the budget
    budget = tiling.estimate_bytes(ours, "decode", 6, 6)
    big = tiling.plan_tiles(ours, "decode", 40, 40, tiled=None, tile_size=None, tile_overlap=None, memory_budget=budget)
    assert big.tile_size == 6 * 16 and big.tile_overlap == 16  # largest square tile that fits; overlap = tile/4
    forced = ours.decode(z, tiled=True, tile_size=tight.tile_size, tile_overlap=tight.tile_overlap)
    assert torch.equal(ours.decode(z, memory_budget=need - 1), forced)
    assert torch.equal(ours.decode(z, memory_budget=need), ours.decode(z, tiled=False))
    ours.memory_budget = need - 1  # attribute default, overridden by the argument
    try:
        assert torch.equal(ours.decode(z), forced)
    finally:
        ours.memory_budget = None


def test_tile_size_alone_enables_tiling(random_pair):
    _, ours = random_pair
    z = torch.randn(1, 48, 1, 6, 6, generator=torch.Generator().manual_seed(19))
    assert torch.equal(ours.decode(z, tile_size=64), ours.decode(z, tiled=True, tile_size=64))
    # a tile covering the whole frame is the untiled computation
    assert torch.equal(ours.decode(z, tiled=True, tile_size=96), ours.decode(z, tiled=False))


@pytest.mark.parametrize(
    "kwargs,exc_type,needle",
    [
        (
            {"tiled": True, "tile_size": 100},
            ValueError,
            "tile_size must be a multiple of 16 pixels and at least 32 (got 100; nearest valid: 96)",
        ),
        ({"tiled": True, "tile_size": 16}, ValueError, "at least 32 (got 16; nearest valid: 32)"),
        (
            {"tiled": True, "tile_size": 64, "tile_overlap": 64},
            ValueError,
            "tile_overlap (64) must be smaller than tile_size (64)",
        ),
        ({"tiled": True, "tile_size": 64, "tile_overlap": 20}, ValueError, "nearest valid: 16"),
        ({"tiled": True, "tile_overlap": 256}, ValueError, "tile_overlap (256) must be smaller than tile_size (256)"),
        ({"tiled": False, "tile_size": 64}, ValueError, "tiled=False"),
        ({"tiled": "yes"}, TypeError, "tiled must be True, False or None"),
        ({"tiled": True, "tile_size": 64.0}, TypeError, "integer number of pixels"),
        ({"memory_budget": 0}, ValueError, "memory_budget must be a positive number of bytes"),
    ],
)
def test_tiling_argument_errors(random_pair, kwargs, exc_type, needle):
    _, ours = random_pair
    z = torch.zeros(1, 48, 1, 4, 4)
    with pytest.raises(exc_type) as exc:
        ours.decode(z, **kwargs)
    assert needle in str(exc.value)
    with pytest.raises(exc_type):
        ours.encode(torch.zeros(1, 3, 1, 64, 64), **kwargs)


@pytest.mark.parametrize(
    "length,tile,overlap", [(12, 4, 1), (29, 16, 4), (20, 16, 4), (7, 3, 2), (100, 32, 4), (5, 8, 2)]
)
def test_axis_spans_and_weights(length, tile, overlap):
    spans = tiling.axis_spans(length, tile, overlap)
    assert spans[0][0] == 0 and spans[-1][1] == length
    assert all(e - s == min(tile, length) for s, e in spans)
    assert all(b[0] - a[1] <= -overlap for a, b in zip(spans, spans[1:]))  # consecutive tiles overlap enough
    weights = tiling.axis_weights(spans, scale=4)
    total = torch.zeros(length * 4)
    for (s, _), w in zip(spans, weights):
        assert (w > 0).all()
        total[s * 4 : s * 4 + len(w)] += w
    assert torch.allclose(total, torch.ones_like(total), atol=1e-6)


@pytest.mark.parametrize("tiled", [False, True])
def test_progress_callback(random_pair, tiled):
    _, ours = random_pair
    kwargs = {"tiled": True, "tile_size": 32, "tile_overlap": 16} if tiled else {"tiled": False}
    calls = []
    x = random_video(5, 32, 64, seed=20, batch=2)
    z = ours.encode(x, progress=lambda d, t: calls.append((d, t)), **kwargs)
    tiles = 3 if tiled else 1  # 2x4 latents in 2x2 tiles overlapping by 1: one row of three
    total = 2 * tiles * 2  # batch x tiles x chunks (frame 0, then 4-frame groups) / latent frames
    assert calls == [(i, total) for i in range(1, total + 1)]
    calls.clear()
    ours.decode(z, progress=lambda d, t: calls.append((d, t)), **kwargs)
    assert calls == [(i, total) for i in range(1, total + 1)]
