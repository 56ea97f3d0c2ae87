"""cosmos3.sampling.plan (auto settings, memory estimate) and cosmos3.vae.latent_stats (normalise/denormalise)."""

from __future__ import annotations

import json

import pytest
import torch

from cosmos3.defaults import T2I_GUIDANCE_INTERVAL, Mode
from cosmos3.geometry import Geometry
from cosmos3.model.config import TransformerConfig
from cosmos3.sampling.plan import (
    AUTO,
    SCHEDULE_CHOICES,
    estimate_sampling_bytes,
    mode_for,
    resolve_sampling_plan,
    unset_if_auto,
)
from cosmos3.vae.latent_stats import LatentStats, LatentStatsError, denormalize, normalize


def plan(**kw):
    args = dict(num_frames=121, height=480, width=832, fps=24.0, variant="nano")
    args.update(kw)
    return resolve_sampling_plan(**args)


def test_auto_follows_mode_variant_and_kind():
    video = plan()
    got = (video.mode, video.steps, video.guidance, video.shift, video.schedule)
    assert got == (Mode.TEXT2VIDEO, 35, 6.0, 10.0, "native")
    assert set(video.chosen) == {"schedule native", "steps 35", "cfg 6", "shift 10"} and not video.warnings
    image = plan(num_frames=1, height=960, width=960)
    assert (image.mode, image.steps, image.guidance, image.shift) == (Mode.TEXT2IMAGE, 50, 4.0, 3.0)
    assert plan(has_image=True).mode is Mode.IMAGE2VIDEO
    assert plan(variant="edge").shift == 3.0
    assert plan(variant="super", height=720, width=1280).shift == 5.0
    distilled = plan(variant="super", kind="text2image-4step", num_frames=1, height=1024, width=1024)
    assert (distilled.schedule, distilled.steps, distilled.guidance, distilled.shift) == ("distilled", None, 1.0, None)
    assert plan(distilled=True).schedule == "distilled"


def test_explicit_values_win_and_are_checked():
    p = plan(steps=20, guidance=1.0, shift=5.0, schedule="euler", cfg_interval=True)
    assert (p.steps, p.guidance, p.shift, p.schedule, p.chosen) == (20, 1.0, 5.0, "euler", ())
    assert p.guidance_interval == T2I_GUIDANCE_INTERVAL and "400" in p.describe()
    assert plan(schedule="checkpoint").shift is None
    with pytest.raises(ValueError, match="fixed sigmas: set shift to 0 or leave it unset"):
        plan(schedule="distilled", shift=3.0)
    with pytest.raises(ValueError, match="unknown schedule 'karras'; allowed: auto, native"):
        plan(schedule="karras")
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        plan(steps=-1)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        plan(steps=0)  # the library's "unset" is None; only widgets use AUTO (0), mapped by unset_if_auto
    with pytest.raises(ValueError, match="needs a video"):
        mode_for(1, True)
    with pytest.raises(ValueError, match="supports only: text2image"):
        plan(variant="super", kind="text2image")
    assert SCHEDULE_CHOICES[0] == "auto" and AUTO == 0
    assert [unset_if_auto(v) for v in (0, 0.0, None, 3, 2.5)] == [None, None, None, 3, 2.5]


def test_auto_follows_the_chosen_schedule():
    """Issue 17: schedule 'distilled' with cfg auto on a base checkpoint ran at cfg 6 and claimed the checkpoint
    was distilled. Auto guidance follows the schedule (1 for the distilled sampler) and the warning is true."""
    p = plan(schedule="distilled")
    assert (p.schedule, p.steps, p.guidance, p.shift) == ("distilled", None, 1.0, None) and "cfg 1" in p.chosen
    assert len(p.warnings) == 1 and "not distilled (base)" in p.warnings[0]
    assert not any("a distilled checkpoint" in w for w in p.warnings)
    explicit = plan(schedule="distilled", guidance=6.0)
    assert explicit.guidance == 6.0 and any("cfg 6 with the 'distilled' schedule" in w for w in explicit.warnings)
    real = plan(variant="super", kind="text2image-4step", num_frames=1, height=1024, width=1024, guidance=6.0)
    assert [w for w in real.warnings if "cfg" in w] == [
        "cfg 6 with a distilled checkpoint: its guidance is baked in (use 1.0, or 0 = auto)"]
    native = plan(distilled=True, schedule="native")  # a distilled checkpoint keeps guidance 1 on any sampler
    assert native.schedule == "native" and native.guidance == 1.0 and not native.warnings
    assert "distilled checkpoint" in plan(distilled=True, schedule="native", guidance=5.0).warnings[0]


def test_outside_the_envelope_is_a_warning():
    p = plan(variant="edge", height=720, width=1280)
    assert p.warnings and "Edge" in p.warnings[0]
    assert plan(variant="super", kind="text2image-4step", num_frames=1, height=1024, width=1024, guidance=6.0).warnings


def test_memory_estimate_scales_with_tokens():
    nano = TransformerConfig()
    small = estimate_sampling_bytes(nano, Geometry(121, 480, 832), 300, torch.bfloat16)
    large = estimate_sampling_bytes(nano, Geometry(189, 720, 1280), 300, torch.bfloat16)
    assert 0.5e9 < small < 4e9 and large > 3 * small
    assert estimate_sampling_bytes(nano, Geometry(121, 480, 832), 300, torch.bfloat16, guidance=False) < small


def test_latent_stats_match_the_vae_maths(tmp_path):
    from cosmos3.vae.config import WAN22_LATENTS_MEAN, WAN22_LATENTS_STD

    stats = LatentStats.wan22()
    assert stats.mean == tuple(WAN22_LATENTS_MEAN) and stats.channels == 48
    raw = torch.randn(1, 48, 2, 3, 4, generator=torch.Generator().manual_seed(0))
    for dtype in (torch.float32, torch.bfloat16):
        mean = torch.tensor(WAN22_LATENTS_MEAN, dtype=dtype).view(1, -1, 1, 1, 1)
        inv_std = 1.0 / torch.tensor(WAN22_LATENTS_STD, dtype=dtype).view(1, -1, 1, 1, 1)
        z = stats.normalize(raw, dtype)
        assert z.dtype == torch.float32 and torch.equal(z, ((raw.to(dtype) - mean) * inv_std).float())
        assert torch.equal(stats.denormalize(z, dtype), (z.to(dtype) / inv_std + mean).float())
        assert torch.equal(normalize(raw, WAN22_LATENTS_MEAN, WAN22_LATENTS_STD, dtype), z)
        assert torch.equal(denormalize(z, WAN22_LATENTS_MEAN, WAN22_LATENTS_STD, dtype), stats.denormalize(z, dtype))
    torch.testing.assert_close(stats.denormalize(stats.normalize(raw, torch.float32), torch.float32), raw)


def test_latent_stats_sources_and_errors(tmp_path):
    (tmp_path / "vae").mkdir()
    (tmp_path / "vae" / "config.json").write_text(json.dumps({"latents_mean": [0.5] * 48, "latents_std": [2.0] * 48}))
    stats = LatentStats.for_checkpoint(tmp_path)
    assert stats.mean == (0.5,) * 48 and stats.source.endswith("config.json")
    assert LatentStats.for_checkpoint(tmp_path / "missing").source == "Wan 2.2 defaults"
    (tmp_path / "bad.json").write_text(json.dumps({"latents_mean": [0.0] * 48}))
    with pytest.raises(LatentStatsError, match="no latents_mean/latents_std"):
        LatentStats.from_config(tmp_path / "bad.json")
    with pytest.raises(LatentStatsError, match="same non-zero length"):
        LatentStats((0.0,) * 48, (1.0,) * 47)
    with pytest.raises(LatentStatsError, match="std > 0"):
        LatentStats((0.0,), (0.0,))
    with pytest.raises(LatentStatsError, match=r"\[B, 48, T, h, w\]"):
        stats.normalize(torch.zeros(1, 16, 1, 2, 2), torch.float32)
