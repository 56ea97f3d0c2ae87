"""cosmos3.load_vae: diffusers folders, original-layout single files, and every refusal."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_vae import (  # noqa: F401 (autouse fixture)
    make_reference_vae,
    one_torch_thread,
    random_video,
    save_diffusers_vae,
    write_original_layout_file,
)

import cosmos3
from cosmos3.files.safetensors import CheckpointError, CheckpointKeyError
from cosmos3.vae.config import WAN22_LATENTS_MEAN, WAN22_LATENTS_STD, WanVAEConfig
from cosmos3.vae.loading import original_key_map
from cosmos3.vae.model import WanVAE


@pytest.fixture(scope="module")
def ref():
    return make_reference_vae(seed=21)


@pytest.fixture(scope="module")
def vae_dir(ref, tmp_path_factory):
    return save_diffusers_vae(tmp_path_factory.mktemp("diffusers") / "vae", ref)


@pytest.fixture(scope="module")
def inputs():
    return random_video(5, 32, 48, seed=22), torch.randn(1, 48, 2, 2, 3, generator=torch.Generator().manual_seed(23))


def _outputs(vae, inputs):
    x, z = inputs
    return vae.encode(x), vae.decode(z)


def test_diffusers_folder_matches_diffusers(ref, vae_dir, inputs):
    vae = cosmos3.load_vae(vae_dir, dtype=torch.float32)
    assert isinstance(vae, cosmos3.WanVAE) and vae.dtype == torch.float32 and not vae.training
    assert list(vae.config.latents_std) == pytest.approx(ref.config.latents_std)
    ref_sd = ref.state_dict()
    for name, p in vae.state_dict().items():
        assert torch.equal(p, ref_sd[name]), name
    assert not any(p.requires_grad for p in vae.parameters())
    x, z = inputs
    with torch.no_grad():
        expected = ref.encode(x).latent_dist.mode(), ref.decode(z).sample
    for got, exp in zip(_outputs(vae, inputs), expected):
        assert (got - exp).abs().max().item() <= 1e-4


def test_model_root_with_vae_subfolder(vae_dir, inputs):
    root = vae_dir.parent
    (root / "model_index.json").write_text("{}")
    a, b = cosmos3.load_vae(root, dtype=torch.float32), cosmos3.load_vae(vae_dir, dtype=torch.float32)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_default_dtype_is_bf16_and_device_is_honoured(vae_dir):
    vae = cosmos3.load_vae(vae_dir)
    assert vae.dtype == torch.bfloat16 and vae.device == torch.device("cpu")
    assert all(p.dtype == torch.bfloat16 for p in vae.parameters())
    assert cosmos3.load_vae(vae_dir, dtype=torch.float16, device=torch.device("cpu")).dtype == torch.float16


def test_original_single_file_loads_to_identical_outputs(tmp_path, inputs):
    """No config in a single file: the Wan 2.2 defaults (incl. the public latent statistics) are used."""
    ref = make_reference_vae(seed=24, default_stats=True)
    folder = save_diffusers_vae(tmp_path / "vae", ref)
    single = write_original_layout_file(tmp_path / "comfy" / "wan2.2_vae.safetensors", ref.state_dict())
    a = cosmos3.load_vae(folder, dtype=torch.float32)
    with pytest.raises(CheckpointKeyError, match="mis-shaped"):  # tiny widths != the Wan 2.2 default widths
        cosmos3.load_vae(single, dtype=torch.float32)
    (single.parent / "config.json").write_text(json.dumps(dict(ref.config)))
    b = cosmos3.load_vae(single, dtype=torch.float32)
    assert b.config == a.config
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    for got, exp in zip(_outputs(b, inputs), _outputs(a, inputs)):
        assert torch.equal(got, exp)


def test_single_file_without_config_uses_wan22_defaults(tmp_path, monkeypatch, inputs):
    """The default config object is the Wan 2.2 one; a config-less file is built from it (widths shrunk here
    so the file stays tiny - the statistics are the public Wan 2.2 numbers)."""
    import cosmos3.vae.loading as loading

    assert loading.WAN22_VAE_CONFIG == WanVAEConfig() and WanVAEConfig().to_diffusers()["base_dim"] == 160
    assert WanVAEConfig().decoder_base_dim == 256 and WanVAEConfig().z_dim == 48
    assert WAN22_LATENTS_MEAN[:3] == (-0.2289, -0.0052, -0.1323) and len(WAN22_LATENTS_MEAN) == 48
    assert WAN22_LATENTS_STD[:3] == (0.4765, 1.0364, 0.4514) and len(WAN22_LATENTS_STD) == 48
    small = WanVAEConfig(base_dim=16, decoder_base_dim=24)
    monkeypatch.setattr(loading, "WAN22_VAE_CONFIG", small)
    ref = make_reference_vae(seed=25, default_stats=True)
    path = write_original_layout_file(tmp_path / "wan2.2_vae.safetensors", ref.state_dict())
    vae = cosmos3.load_vae(path, dtype=torch.float32)
    assert vae.config is small
    x, _ = inputs
    with torch.no_grad():
        expected = ref.encode(x).latent_dist.mode()
    assert (vae.encode(x) - expected).abs().max().item() <= 1e-4


def test_original_key_names():
    """Spot checks against names that ComfyUI's comfy/ldm/wan/vae2_2.py produces (nn.Sequential indices)."""
    with torch.device("meta"):
        names = set(original_key_map(WanVAE()).values())
    for key in (
        "conv1.weight",
        "conv2.bias",
        "encoder.conv1.weight",
        "encoder.downsamples.0.downsamples.0.residual.0.gamma",
        "encoder.downsamples.0.downsamples.1.residual.6.weight",
        "encoder.downsamples.0.downsamples.2.resample.1.weight",
        "encoder.downsamples.1.downsamples.0.shortcut.weight",
        "encoder.downsamples.1.downsamples.2.time_conv.weight",
        "encoder.middle.0.residual.2.weight",
        "encoder.middle.1.to_qkv.weight",
        "encoder.middle.2.residual.3.gamma",
        "encoder.head.0.gamma",
        "encoder.head.2.weight",
        "decoder.conv1.bias",
        "decoder.middle.0.residual.0.gamma",
        "decoder.middle.1.proj.weight",
        "decoder.upsamples.0.upsamples.0.residual.2.weight",
        "decoder.upsamples.0.upsamples.3.time_conv.weight",
        "decoder.upsamples.2.upsamples.0.shortcut.weight",
        "decoder.upsamples.2.upsamples.3.resample.1.weight",
        "decoder.upsamples.3.upsamples.2.residual.6.bias",
        "decoder.head.2.weight",
    ):
        assert key in names, key
    assert len(names) == 196


def test_loader_never_initialises_real_weights(vae_dir, monkeypatch):
    """Meta-device construction + assign: no real-memory init and no second copy of any weight."""
    real = torch.nn.init.kaiming_uniform_

    def guarded(tensor, *args, **kwargs):
        assert tensor.is_meta, "module built outside the meta device"
        return real(tensor, *args, **kwargs)

    monkeypatch.setattr(torch.nn.init, "kaiming_uniform_", guarded)
    vae = cosmos3.load_vae(vae_dir, dtype=torch.float32)
    assert not any(p.is_meta for p in vae.parameters())


# ------------------------------------------------------------------------------------------------------
# refusals


def _write_folder(folder, tensors, config):
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "diffusion_pytorch_model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_all_key_problems_in_one_message(ref, vae_dir, tmp_path):
    tensors = load_file(str(vae_dir / "diffusion_pytorch_model.safetensors"))
    del tensors["decoder.conv_in.bias"]
    tensors["decoder.extra.weight"] = torch.zeros(2)
    tensors["encoder.conv_in.weight"] = torch.zeros(3, 3)
    folder = _write_folder(tmp_path / "bad", tensors, dict(ref.config))
    with pytest.raises(CheckpointKeyError) as exc:
        cosmos3.load_vae(folder)
    msg = str(exc.value)
    assert str(folder) in msg
    assert "missing keys (1)" in msg and "decoder.conv_in.bias  expected shape [96]" in msg
    assert "unexpected keys (1)" in msg and "decoder.extra.weight" in msg
    assert "mis-shaped keys (1)" in msg and "encoder.conv_in.weight  expected [16, 12, 3, 3, 3], found [3, 3]" in msg


def test_original_layout_problems_use_original_names(ref, tmp_path):
    sd = dict(ref.state_dict())
    del sd["decoder.up_blocks.1.upsampler.time_conv.bias"]
    path = write_original_layout_file(tmp_path / "wan.safetensors", sd, config=dict(ref.config))
    with pytest.raises(CheckpointKeyError, match=r"decoder\.upsamples\.1\.upsamples\.3\.time_conv\.bias"):
        cosmos3.load_vae(path)


def test_truncated_and_corrupt_files_are_named(vae_dir, tmp_path):
    data = (vae_dir / "diffusion_pytorch_model.safetensors").read_bytes()
    folder = tmp_path / "trunc"
    folder.mkdir()
    (folder / "config.json").write_text((vae_dir / "config.json").read_text())
    target = folder / "diffusion_pytorch_model.safetensors"
    target.write_bytes(data[: len(data) - 100])
    with pytest.raises(CheckpointError, match=rf"{target}.*truncated"):
        cosmos3.load_vae(folder)
    target.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(CheckpointError, match=rf"{target}.*corrupt"):
        cosmos3.load_vae(folder)
    single = tmp_path / "cut.safetensors"
    single.write_bytes(data[:5])
    with pytest.raises(CheckpointError, match=rf"{single}"):
        cosmos3.load_vae(single)


def test_pickle_formats_are_refused(vae_dir, tmp_path):
    pt = tmp_path / "wan2.2_vae.pth"
    pt.write_bytes(b"not unpickled")
    with pytest.raises(CheckpointError, match="only safetensors files are supported"):
        cosmos3.load_vae(pt)
    folder = tmp_path / "binvae"
    folder.mkdir()
    (folder / "config.json").write_text((vae_dir / "config.json").read_text())
    (folder / "diffusion_pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="pickle formats are not loaded"):
        cosmos3.load_vae(folder)


def test_folder_problems(vae_dir, tmp_path):
    with pytest.raises(CheckpointError, match="no such file or folder"):
        cosmos3.load_vae(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="not a diffusers VAE folder"):
        cosmos3.load_vae(empty)
    bad_json = tmp_path / "badjson"
    bad_json.mkdir()
    (bad_json / "config.json").write_text("{oops")
    with pytest.raises(CheckpointError, match=rf"{bad_json / 'config.json'}: unreadable VAE config"):
        cosmos3.load_vae(bad_json)


@pytest.mark.parametrize(
    "change,needle",
    [
        ({"is_residual": False}, "Wan 2.1 VAE"),
        ({"latents_mean": [0.0] * 16}, "latents_mean has 16 entries but z_dim is 48"),
        ({"_class_name": "AutoencoderKL"}, "expected an AutoencoderKLWan config"),
        ({"latents_std": None}, "malformed value"),
    ],
)
def test_bad_configs(ref, vae_dir, tmp_path, change, needle):
    config = {**dict(ref.config), **change}
    folder = tmp_path / "cfg"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "diffusion_pytorch_model.safetensors").write_bytes(
        (vae_dir / "diffusion_pytorch_model.safetensors").read_bytes()
    )
    with pytest.raises(CheckpointError, match=needle):
        cosmos3.load_vae(folder)


def test_wrong_model_files(tmp_path):
    wan21 = tmp_path / "wan_2.1_vae.safetensors"
    save_file({"decoder.middle.0.residual.0.gamma": torch.ones(4, 1, 1, 1), "conv1.weight": torch.ones(1)}, str(wan21))
    with pytest.raises(CheckpointError, match="16-channel Wan 2.1 VAE"):
        cosmos3.load_vae(wan21)
    other = tmp_path / "sdxl_vae.safetensors"
    save_file({"decoder.conv_in.weight": torch.ones(1)}, str(other))
    with pytest.raises(CheckpointError, match="not a Wan 2.2 VAE checkpoint"):
        cosmos3.load_vae(other)


def test_prefixed_and_non_float_files(ref, tmp_path):
    sd = {f"vae.{k}": v for k, v in ref.state_dict().items()}
    (tmp_path / "config.json").write_text(json.dumps(dict(ref.config)))
    save_file(sd, str(tmp_path / "prefixed.safetensors"))
    assert cosmos3.load_vae(tmp_path / "prefixed.safetensors").dtype == torch.bfloat16
    sd = dict(ref.state_dict())
    sd["decoder.conv_in.bias"] = sd["decoder.conv_in.bias"].to(torch.int32)
    save_file(sd, str(tmp_path / "ints.safetensors"))
    with pytest.raises(CheckpointKeyError, match=r"non-floating tensors: decoder\.conv_in\.bias \(torch\.int32\)"):
        cosmos3.load_vae(tmp_path / "ints.safetensors")


def test_bad_dtype_argument(vae_dir):
    with pytest.raises(TypeError, match="dtype must be one of"):
        cosmos3.load_vae(vae_dir, dtype=torch.int8)


def test_wrong_latent_width_is_summarised_first(ref, vae_dir, tmp_path):
    """A VAE of another latent width: the first line says so, and the listing is capped."""
    tensors = load_file(str(vae_dir / "diffusion_pytorch_model.safetensors"))
    z = ref.config.z_dim
    tensors["post_quant_conv.weight"] = torch.zeros(16, 16, 1, 1, 1)
    for i in range(30):
        tensors[f"decoder.stray_{i}.weight"] = torch.zeros(1)
    folder = _write_folder(tmp_path / "narrow", tensors, dict(ref.config))
    with pytest.raises(CheckpointKeyError) as exc:
        cosmos3.load_vae(folder)
    lines = str(exc.value).splitlines()
    assert f"not a Wan 2.2 VAE: {z}-channel latent expected, file has 16" in lines[0]
    assert "unexpected keys (30)" in str(exc.value) and "    ... and 18 more" in lines
