"""VAE nodes (loader, decode, encode) and the empty-latent node, run against the ComfyUI stub with a tiny VAE."""

from __future__ import annotations

import json
import sys

import pytest
import torch

tiny_vae = pytest.importorskip("tiny_vae")
pytest.importorskip("cosmos3.vae.model")


from tiny_models import TINY_VAE_CONFIG, tiny_vae_state, write_vae_folder  # noqa: E402


@pytest.fixture(scope="module")
def reference_state():
    return tiny_vae_state()


@pytest.fixture
def nodes(comfy_pack):
    return sys.modules[comfy_pack.__name__ + ".nodes.vae_nodes"]


@pytest.fixture
def latent_nodes(comfy_pack):
    return sys.modules[comfy_pack.__name__ + ".nodes.latent_nodes"]


@pytest.fixture
def installed(comfy_stub, reference_state):
    """A models dir with every kind of VAE source (all the same tiny weights)."""
    models = comfy_stub.models_dir
    ckpt = models / "cosmos3" / "Tiny-Cosmos3"
    write_vae_folder(ckpt / "vae", reference_state)
    (ckpt / "model_index.json").write_text(json.dumps({"_class_name": "Cosmos3Pipeline"}))
    other = models / "diffusers" / "org" / "Other"
    write_vae_folder(other / "vae", reference_state)
    (other / "transformer").mkdir(parents=True)
    (other / "transformer" / "config.json").write_text("{}")
    write_vae_folder(models / "vae" / "wan_diffusers", reference_state)
    tiny_vae.write_original_layout_file(
        models / "vae" / "wan2.2_vae.safetensors", reference_state, config=TINY_VAE_CONFIG
    )
    (models / "vae" / "old.ckpt").write_bytes(b"pickle")
    (models / "cosmos3" / "NoVae").mkdir(parents=True)
    (models / "cosmos3" / "NoVae" / "model_index.json").write_text("{}")
    return models


@pytest.fixture
def handle(nodes, installed):
    return nodes.VAELoader.execute("cosmos3/Tiny-Cosmos3/vae", "auto")[0]


def _latents(t=2, h=2, w=2, seed=0):
    return torch.randn(1, 48, t, h, w, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------------------
# loader


def test_choices_without_any_vae(nodes, comfy_stub):
    assert nodes.VAELoader.INPUT_TYPES()["required"]["vae_name"][1]["options"] == ["wan2.2_vae.safetensors"]
    with pytest.raises(FileNotFoundError, match="models/vae/.*Comfy-Org/Wan_2.2_ComfyUI_Repackaged|Comfy-Org"):
        nodes.VAELoader.execute("wan2.2_vae.safetensors", "auto")


def test_choices_list_every_source(nodes, installed, comfy_stub):
    assert nodes.VAELoader.INPUT_TYPES()["required"]["vae_name"][1]["options"] == [
        "cosmos3/Tiny-Cosmos3/vae", "diffusers/org/Other/vae", "vae/wan_diffusers", "wan2.2_vae.safetensors",
    ]
    # listing (re-)registers our folder key with safetensors-only extensions
    assert comfy_stub.folder_paths.folder_names_and_paths["cosmos3"] == (
        [str(installed / "cosmos3")],
        {".safetensors", ".sft"},
    )


@pytest.mark.parametrize("choice", ["cosmos3/Tiny-Cosmos3/vae", "diffusers/org/Other/vae", "vae/wan_diffusers",
                                    "wan2.2_vae.safetensors"])
def test_every_source_loads_the_same_weights(nodes, installed, reference_state, choice):
    handle = nodes.VAELoader.execute(choice, "auto")[0]
    assert handle.dtype == torch.float32  # auto on the CPU
    sd = handle.vae.state_dict()
    assert all(torch.equal(sd[k], v) for k, v in reference_state.items())
    assert handle.vae.device == torch.device("cpu")


def test_loader_dtype_and_errors(nodes, installed):
    assert nodes.VAELoader.execute("vae/wan_diffusers", "bf16")[0].vae.dtype == torch.bfloat16
    with pytest.raises(FileNotFoundError, match="'vae/nope' not found"):
        nodes.VAELoader.execute("vae/nope", "auto")
    with pytest.raises(ValueError, match="dtype must be one of"):
        nodes.VAELoader.execute("vae/wan_diffusers", "fp64")
    (installed / "vae" / "broken.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="broken.safetensors"):
        nodes.VAELoader.execute("broken.safetensors", "auto")


def test_auto_dtype_follows_the_vae_device(nodes):
    assert nodes.resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert nodes.resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert nodes.resolve_dtype("fp16", torch.device("cpu")) == torch.float16


# ------------------------------------------------------------------------------------------------------
# decode


def test_decode_layout_progress_and_offload(nodes, handle, comfy_stub):
    comfy_stub.configure(torch_device="cpu:0")  # a "different" VAE device without moving data
    handle = nodes.load_vae_handle(handle.source, "auto")
    raw = _latents(t=2)
    seen = comfy_stub.install_server_hook()
    (images,) = nodes.VAEDecode.execute(handle, {"samples": raw}, "auto", 256, 64)
    expected = handle.vae.decode(raw)  # [1, 3, 5, 32, 32] in [-1, 1]
    assert images.shape == (5, 32, 32, 3) and images.dtype == torch.float32 and images.device.type == "cpu"
    assert torch.allclose(images, ((expected[0].permute(1, 2, 3, 0) + 1) / 2).clamp(0, 1), atol=1e-6)
    assert [(c["value"], c["max"]) for c in seen] == [(1, 2), (2, 2)]  # one step per latent frame
    call = comfy_stub.load_calls[-1]
    assert call["models"] == [handle.patcher] and call["force_full_load"] and call["memory_required"] > 0
    assert comfy_stub.loaded == []  # offloaded after the run
    assert handle.patcher.model.device == torch.device("cpu")


def test_decode_tiled_matches_the_library(nodes, handle):
    from cosmos3.vae import tiling as vae_tiling

    raw = _latents(t=1, h=4, w=4, seed=1)
    plan = vae_tiling.plan_tiles(
        handle.vae, "decode", 4, 4, tiled=True, tile_size=48, tile_overlap=16, memory_budget=None
    )
    assert len(plan.tiles) == 4  # tiling really happens
    (images,) = nodes.VAEDecode.execute(handle, {"samples": raw}, "on", 48, 16)
    expected = handle.vae.decode(raw, tiled=True, tile_size=48, tile_overlap=16)
    assert torch.allclose(images[0], ((expected[0, :, 0].permute(1, 2, 0) + 1) / 2).clamp(0, 1), atol=1e-6)


@pytest.mark.parametrize("tiled, size, overlap, message", [
    ("on", 40, 16, r"tile_size 40 is not a multiple of 16 pixels; nearest valid values: 32 or 48"),
    ("on", 64, 24, r"tile_overlap 24 is not a multiple of 16 pixels; nearest valid values: 16 or 32"),
    ("on", 64, 64, r"tile_overlap 64 must be smaller than tile_size 64 \(at most 48"),
    ("on", 16, 0, r"tile_size 16 is out of range: allowed 32 to 4096"),
    ("sometimes", 64, 16, r"tiled must be one of \['auto', 'on', 'off'\]"),
])
def test_decode_tile_errors(nodes, handle, tiled, size, overlap, message):
    with pytest.raises(ValueError, match=message):
        nodes.VAEDecode.execute(handle, {"samples": _latents()}, tiled, size, overlap)


def test_decode_ignores_tile_widgets_unless_tiling_is_on(nodes, handle):
    (images,) = nodes.VAEDecode.execute(handle, {"samples": _latents(t=1)}, "off", 40, 999)
    assert images.shape == (1, 32, 32, 3)


@pytest.mark.parametrize("samples, message", [
    (torch.zeros(1, 4, 8, 8), r"got shape \[1, 4, 8, 8\] \(a 4-D image latent"),
    (torch.zeros(1, 16, 2, 2, 2), r"\[B, 48, T, H/16, W/16\], got shape \[1, 16, 2, 2, 2\]"),
    (torch.zeros(1, 48, 2, 2, 2, dtype=torch.int64), "floating point"),
])
def test_decode_rejects_wrong_latents(nodes, handle, samples, message):
    with pytest.raises(ValueError, match=message):
        nodes.VAEDecode.execute(handle, {"samples": samples}, "auto", 256, 64)


def test_decode_honours_cancel(nodes, handle, comfy_stub):
    comfy_stub.configure(torch_device="cpu:0")
    handle = nodes.load_vae_handle(handle.source, "auto")
    comfy_stub.interrupt()
    with pytest.raises(comfy_stub.mm.InterruptProcessingException):
        nodes.VAEDecode.execute(handle, {"samples": _latents(t=3)}, "auto", 256, 64)
    assert comfy_stub.progress_calls == [] and comfy_stub.loaded == []  # stopped at the first frame, offloaded


def test_decode_batch_stacks_frames(nodes, handle):
    raw = torch.cat([_latents(t=1, seed=0), _latents(t=1, seed=1)])
    (images,) = nodes.VAEDecode.execute(handle, {"samples": raw}, "auto", 256, 64)
    (second,) = nodes.VAEDecode.execute(handle, {"samples": raw[1:]}, "auto", 256, 64)
    assert images.shape == (2, 32, 32, 3) and torch.allclose(images[1:], second, atol=1e-5)


# ------------------------------------------------------------------------------------------------------
# encode


def test_encode_matches_the_library_and_round_trips_shapes(nodes, handle):
    pixels = tiny_vae.random_video(5, 32, 48, seed=2)  # [1, 3, 5, 32, 48] in [-1, 1]
    images = ((pixels[0].permute(1, 2, 3, 0) + 1) / 2).contiguous()  # IMAGE [5, 32, 48, 3]
    (latent,) = nodes.VAEEncode.execute(handle, images, "auto", 256, 64)
    raw = latent["samples"]
    assert raw.shape == (1, 48, 2, 2, 3) and raw.dtype == torch.float32 and raw.device.type == "cpu"
    assert torch.allclose(raw, handle.vae.encode(images.permute(3, 0, 1, 2).unsqueeze(0) * 2 - 1), atol=1e-6)
    (decoded,) = nodes.VAEDecode.execute(handle, latent, "auto", 256, 64)
    assert decoded.shape == images.shape
    rgba = torch.cat([images, torch.ones_like(images[..., :1])], dim=-1)
    assert torch.equal(nodes.VAEEncode.execute(handle, rgba, "auto", 256, 64)[0]["samples"], raw)


@pytest.mark.parametrize("shape, message", [
    ((4, 32, 32, 3), r"4 frames is not 4k\+1 \(1, 5, 9, …\); nearest valid values: 1 or 5"),
    ((1, 40, 32, 3), r"height 40 is not a multiple of 16; nearest valid values: 32 or 48"),
    ((1, 32, 8, 3), r"width 8 is not a multiple of 16; nearest valid values: 16 or 16"),
    ((1, 32, 32), r"IMAGE batch \[N, H, W, 3\]"),
])
def test_encode_errors_name_the_nearest_valid_values(nodes, handle, shape, message):
    with pytest.raises(ValueError, match=message):
        nodes.VAEEncode.execute(handle, torch.rand(shape), "auto", 256, 64)


# ------------------------------------------------------------------------------------------------------
# empty latent


def test_empty_latent_custom_and_presets(latent_nodes, comfy_stub):
    node = latent_nodes.EmptyLatent
    latent, w, h, f = node.execute("custom", 64, 32, 9)
    assert latent["samples"].shape == (1, 48, 3, 2, 4) and (w, h, f) == (64, 32, 9)
    assert latent["samples"].dtype == torch.float32 and not latent["samples"].any()
    latent, w, h, f = node.execute("720p 16:9 (1280x720)", 64, 32, 189)
    assert latent["samples"].shape == (1, 48, 48, 45, 80) and (w, h) == (1280, 720)
    latent, w, h, f = node.execute("480p 2:3 (512x768)", 16, 16, 1)
    assert latent["samples"].shape == (1, 48, 1, 48, 32) and (w, h, f) == (512, 768, 1)
    choices = latent_nodes.EmptyLatent.INPUT_TYPES()["required"]["preset"][1]["options"]
    assert choices[0] == "custom" and len(choices) == 1 + 25
    assert [c for c in choices if "(960x960)" in c] == ["720p 1:1 (960x960)"]  # one label per size (issue 17)
    comfy_stub.configure(gpu_only=True, torch_device="meta")
    assert node.execute("custom", 32, 32, 1)[0]["samples"].device.type == "meta"  # the intermediate device


def test_retired_preset_of_saved_workflows_still_validates_and_runs(latent_nodes, comfy_stub):
    """"704p 1:1 (960x960)" (a duplicate of the 720p label) is not offered any more, but a saved workflow using it
    still passes ComfyUI's validation (0.3.64 skips its choice-list check for inputs that validate_inputs takes and
    asks validate_inputs instead) and makes the same 960x960 latent."""
    import inspect

    node = latent_nodes.EmptyLatent
    assert "preset" in inspect.getfullargspec(node.validate_inputs).args
    assert node.validate_inputs(preset="704p 1:1 (960x960)") is True
    assert node.validate_inputs(preset="720p 1:1 (960x960)") is True and node.validate_inputs(preset="custom") is True
    assert "unknown preset '999p'" in node.validate_inputs(preset="999p")
    latent, w, h, f = node.execute("704p 1:1 (960x960)", 16, 16, 1)
    assert (w, h, f) == (960, 960, 1) and latent["samples"].shape == (1, 48, 1, 60, 60)


@pytest.mark.parametrize("args, message", [
    ((1000, 720, 121), r"width 1000 is not a multiple of 16; nearest valid values: 992 or 1008"),
    ((1280, 721, 121), r"height 721 is not a multiple of 16; nearest valid values: 720 or 736"),
    ((1280, 720, 120), r"frames 120 is not 1 or 4k\+1 .*; nearest valid values: 117 or 121"),
    ((1280, 720, 0), r"frames must be a positive integer"),
    ((8208, 720, 1), r"width 8208 is above the maximum 8192"),
])
def test_empty_latent_errors(latent_nodes, comfy_stub, args, message):
    with pytest.raises(ValueError, match=message):
        latent_nodes.EmptyLatent.execute("custom", *args)
    with pytest.raises(ValueError, match="unknown preset"):
        latent_nodes.EmptyLatent.execute("999p 1:1", 16, 16, 1)
