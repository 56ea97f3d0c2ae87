"""Size/frame rules, presets, variant detection and default generation parameters."""

from __future__ import annotations

import types

import pytest

from cosmos3.defaults import (
    T2I_GUIDANCE_INTERVAL,
    CheckpointKind,
    Mode,
    checkpoint_kind_from_name,
    generation_defaults,
)
from cosmos3.geometry import (
    IMAGE_PRESETS,
    VIDEO_PRESETS,
    Geometry,
    Size,
    SizeError,
    detect_aspect_ratio,
    nearest_valid_frames,
    nearest_valid_sizes,
    preset_size,
    round_frames_up,
    round_size_up,
)
from cosmos3.sampling.schedulers import make_sampler
from cosmos3.variants import Variant, check_generation_size, detect_variant, presets_for, variant_from_config

NANO_CFG = {"hidden_size": 4096, "num_hidden_layers": 36, "num_attention_heads": 32, "hidden_act": "silu"}
SUPER_CFG = {"hidden_size": 5120, "num_hidden_layers": 64, "num_attention_heads": 64, "hidden_act": "silu"}
EDGE_CFG = {
    "hidden_size": 2048,
    "num_hidden_layers": 28,
    "num_attention_heads": 16,
    "hidden_act": "relu2",
    "backbone_type": "cosmos3_edge_nemotron_dense",
}


def test_frame_rounding():
    assert [round_frames_up(n) for n in (1, 2, 5, 6, 188, 189, 190)] == [1, 5, 5, 9, 189, 189, 193]
    assert nearest_valid_frames(190) == (189, 193)
    assert nearest_valid_frames(121) == (121, 121)
    with pytest.raises(SizeError, match="positive integer"):
        round_frames_up(0)


def test_size_rounding():
    assert round_size_up(721) == 736 and round_size_up(720) == 720
    assert nearest_valid_sizes(721) == (720, 736)
    assert nearest_valid_sizes(5) == (16, 16)


def test_structure_errors_name_nearest_values():
    with pytest.raises(SizeError, match="height 721 is not a multiple of 16; nearest valid values: 720 or 736"):
        Geometry(189, 721, 1280)
    with pytest.raises(SizeError, match="width 1000 .* 992 or 1008"):
        Geometry(189, 720, 1000)
    with pytest.raises(SizeError, match="num_frames 190 is not of the form 4k\\+1.*189 or 193"):
        Geometry(190, 720, 1280)
    with pytest.raises(SizeError, match="positive integer"):
        Geometry(0, 720, 1280)
    Geometry(1, 720, 1280)
    assert Geometry(189, 720, 1280).latent_shape() == (48, 48, 45, 80)
    assert Geometry(1, 960, 960).latent_shape() == (48, 1, 60, 60)


def test_presets_match_the_framework_tables():
    assert preset_size("720", "16,9") == Size(720, 1280)
    assert preset_size(480, "9,16") == Size(832, 480)
    assert preset_size("256", "16,9") == Size(192, 320)  # the 256 tier's widescreen entry is smaller
    assert preset_size("480", "2,3") == Size(768, 512)  # video-only bucket
    assert preset_size("768", "1,1", image=True) == Size(1024, 1024)
    assert preset_size("720", "4,3", image=True) == Size(832, 1104)
    with pytest.raises(SizeError, match="allowed: 1,1, 4,3, 3,4, 16,9, 9,16"):
        preset_size("480", "2,3", image=True)
    with pytest.raises(SizeError, match="allowed: 256, 480, 704, 720, 768"):
        preset_size("1080")
    for table in (VIDEO_PRESETS, IMAGE_PRESETS):
        for row in table.values():
            for size in row.values():
                Geometry(1, size.height, size.width)
    assert set(presets_for("edge")) == {"256", "480"}
    assert set(presets_for("nano", image=True, allow_768=True)) == {"256", "480", "704", "720", "768"}


def test_aspect_ratio_detection():
    assert detect_aspect_ratio(1280, 720) == "16,9"
    assert detect_aspect_ratio(960, 960) == "1,1"
    assert detect_aspect_ratio(1000, 700) == "4,3"
    assert detect_aspect_ratio(480, 832) == "9,16"


def test_variant_detection():
    assert variant_from_config(NANO_CFG) is Variant.NANO
    assert variant_from_config(SUPER_CFG) is Variant.SUPER
    assert variant_from_config(EDGE_CFG) is Variant.EDGE
    assert detect_variant(hidden_size=2048, hidden_act="relu2") is Variant.EDGE
    assert detect_variant(hidden_size=2048, backbone_type="cosmos3_edge_nemotron_dense") is Variant.EDGE
    assert detect_variant(hidden_size=4096) is Variant.NANO
    # The architecture decides before the width: an Edge-style (relu² / Nemotron) backbone of another size is
    # Edge (its defaults, prompt format and envelope), not "custom" with Nano's defaults.
    assert detect_variant(hidden_size=64, hidden_act="relu2") is Variant.EDGE
    edge_backbone = "cosmos3_edge_nemotron_dense"
    assert detect_variant(hidden_size=3072, num_hidden_layers=40, backbone_type=edge_backbone) is Variant.EDGE
    assert detect_variant(hidden_size=2048, num_hidden_layers=30, hidden_act="relu2") is Variant.EDGE
    edge_like = {**EDGE_CFG, "hidden_size": 1536, "num_hidden_layers": 20}
    assert variant_from_config(edge_like) is Variant.EDGE
    from cosmos3.defaults import generation_defaults

    edge_defaults = generation_defaults("text2video", "edge")
    assert generation_defaults("text2video", variant_from_config(edge_like)) == edge_defaults
    assert detect_variant(hidden_size=4096, num_hidden_layers=2) is Variant.CUSTOM
    assert detect_variant(hidden_size=2048, hidden_act="silu") is Variant.CUSTOM
    assert detect_variant() is Variant.CUSTOM
    assert variant_from_config(types.SimpleNamespace(**SUPER_CFG)) is Variant.SUPER


def test_generation_size_envelopes():
    assert check_generation_size(Geometry(189, 720, 1280, 24), variant="nano") == "720"
    assert check_generation_size(Geometry(1, 960, 960), variant="super") == "720"
    assert check_generation_size(Geometry(121, 480, 832, 24), variant="edge") == "480"
    assert check_generation_size(Geometry(393, 192, 320, 24), variant="nano") == "256"
    # a custom size belongs to the next tier that covers it
    assert check_generation_size(Geometry(121, 480, 848, 24), variant="nano") == "704"
    assert check_generation_size(Geometry(1, 1024, 1024), variant="super", allow_768=True) == "768"
    with pytest.raises(SizeError, match="larger than Cosmos3-Edge supports for video: allowed tiers 256, 480"):
        check_generation_size(Geometry(121, 720, 1280), variant="edge")
    with pytest.raises(SizeError, match="allowed tiers 256, 480, 704, 720 "):
        check_generation_size(Geometry(1, 1024, 1024), variant="nano")
    with pytest.raises(SizeError, match="Cosmos3-Edge at the 480 tier: use 4k\\+1 values from 53 to 149"):
        check_generation_size(Geometry(189, 480, 832), variant="edge")
    with pytest.raises(SizeError, match="Cosmos3-Nano at the 480 tier: use 4k\\+1 values from 25 to 297"):
        check_generation_size(Geometry(301, 480, 832), variant="nano")
    with pytest.raises(SizeError, match="from 25 to 197"):
        check_generation_size(Geometry(201, 720, 1280), variant="super")
    with pytest.raises(SizeError, match="from 25 to"):
        check_generation_size(Geometry(21, 720, 1280), variant="nano")
    with pytest.raises(SizeError, match="fps 60 is out of range for Cosmos3-Nano: allowed 10 to 30"):
        check_generation_size(Geometry(189, 720, 1280, 60), variant="nano")
    with pytest.raises(SizeError, match="allowed 12 to 30"):
        check_generation_size(Geometry(121, 480, 832, 10), variant="edge")
    # structural rules still apply to custom / non-strict; envelopes do not
    assert check_generation_size(Geometry(9, 64, 96, 5), variant="custom") is None
    assert check_generation_size(Geometry(121, 720, 1280, 60), variant="edge", strict=False) is None
    with pytest.raises(SizeError, match="multiple of 16"):
        check_generation_size(Geometry(9, 65, 96), variant="custom")


def test_defaults_table():
    d = generation_defaults("text2video", "nano")
    assert (d.height, d.width, d.num_frames, d.fps, d.steps, d.guidance, d.shift) == (720, 1280, 189, 24, 35, 6.0, 10.0)
    assert d.sampler == "flow_unipc" and d.negative_prompt == "structured" and d.guidance_interval is None
    t2i = generation_defaults(Mode.TEXT2IMAGE, Variant.SUPER)
    assert (t2i.height, t2i.width, t2i.num_frames, t2i.steps, t2i.guidance, t2i.shift) == (960, 960, 1, 50, 4.0, 3.0)
    assert t2i.negative_prompt == "empty" and T2I_GUIDANCE_INTERVAL == (400.0, 1000.0)
    edge = generation_defaults("image2video", "edge")
    assert (edge.height, edge.width, edge.num_frames, edge.tier) == (480, 832, 121, "480")
    e2i = generation_defaults("text2image", "edge")
    assert (e2i.height, e2i.width, e2i.steps, e2i.guidance, e2i.shift) == (640, 640, 50, 4.0, 3.0)
    assert generation_defaults("text2video", "super").shift == 5.0
    assert generation_defaults("text2video", "custom") == d
    t2i4 = generation_defaults("text2image", "super", "text2image-4step")
    got = (t2i4.height, t2i4.width, t2i4.steps, t2i4.guidance, t2i4.shift, t2i4.sampler)
    assert got == (1024, 1024, 4, 1.0, None, "distilled_sde")
    i2v4 = generation_defaults("image2video", "super", CheckpointKind.IMAGE2VIDEO_4STEP)
    got = (i2v4.height, i2v4.width, i2v4.num_frames, i2v4.base_fps, i2v4.negative_prompt)
    assert got == (480, 832, 189, 16, "none")
    with pytest.raises(SizeError, match="supports only: text2image"):
        generation_defaults("text2video", "super", "text2image")
    with pytest.raises(SizeError, match="no image2video checkpoint exists for Cosmos3-Edge"):
        generation_defaults("image2video", "edge", "image2video")
    with pytest.raises(SizeError, match="allowed: text2video, image2video, text2image, video2video"):
        generation_defaults("image2image")


@pytest.mark.parametrize("variant", ["edge", "nano", "super"])
@pytest.mark.parametrize("checkpoint", list(CheckpointKind))
@pytest.mark.parametrize("mode", list(Mode))
def test_every_default_is_valid_and_samplable(variant, checkpoint, mode):
    try:
        d = generation_defaults(mode, variant, checkpoint)
    except SizeError:
        return
    tier = check_generation_size(
        Geometry(d.num_frames, d.height, d.width, d.fps), variant=variant, allow_768=d.tier == "768"
    )
    assert tier == d.tier
    sampler = make_sampler(d.sampler, d.steps, shift=d.shift)
    assert sampler.num_steps == d.steps


def test_checkpoint_kind_from_name():
    assert checkpoint_kind_from_name("nvidia/Cosmos3-Nano") is CheckpointKind.BASE
    assert checkpoint_kind_from_name("Cosmos3-Super-Text2Image") is CheckpointKind.TEXT2IMAGE
    assert checkpoint_kind_from_name("Cosmos3-Super-Image2Video-4Step") is CheckpointKind.IMAGE2VIDEO_4STEP
    assert checkpoint_kind_from_name("cosmos3_super_text2image_4step") is CheckpointKind.TEXT2IMAGE_4STEP
    assert CheckpointKind.TEXT2IMAGE_4STEP.distilled and not CheckpointKind.TEXT2IMAGE.distilled


def test_checkpoint_base_fps():
    from cosmos3.defaults import checkpoint_base_fps

    assert checkpoint_base_fps("image2video-4step") == 16
    assert checkpoint_base_fps(CheckpointKind.BASE) == checkpoint_base_fps("text2image-4step") == 24
    with pytest.raises(SizeError, match="unknown checkpoint kind 'nope'; allowed: base, text2image"):
        checkpoint_base_fps("nope")
