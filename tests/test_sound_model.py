"""Sound in the generation stream: cached-text velocity == diffusers' full joint forward with sound tokens
(tiny random weights, fp32), and the sound tokenizer's decoder == diffusers' (loaded from save_pretrained)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from tiny_sound import SOUND_DIM, make_reference_sound_tokenizer, reference_velocity_av
from tiny_transformer import build_reference, reference_velocity, save_folder, tiny_config

from cosmos3 import load_transformer
from cosmos3.audio import inspect_sound_tokenizer, load_sound_decoder
from cosmos3.files.safetensors import CheckpointError

TOL = 1e-5
# (config, frames, height, width, fps, condition_frames, timestep, sound frames)
CASES = {
    "t2v_qwen": ("qwen_small", 3, 4, 6, 24.0, (), 937, 9),
    "i2v_qwen_float_t": ("qwen_small", 3, 4, 4, 16.0, (0,), 937.5, 7),
    "t2v_edge_one_sound_frame": ("edge128", 2, 4, 4, 30.0, (), 500, 1),
    "v2v_no_fps_modulation": ("qwen_small", 4, 3, 4, 24.0, (0, 1), 250, 5),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """{config name: (diffusers reference, our model)} for sound-capable tiny transformers (and one without fps
    modulation), fp32."""
    out = {}
    for name, extra in (("qwen_small", {}), ("edge128", {}), ("nofps", {"enable_fps_modulation": False})):
        base = "qwen_small" if name == "nofps" else name
        config = tiny_config(base, sound_gen=True, sound_dim=SOUND_DIM, sound_latent_fps=25.0, **extra)
        reference = build_reference(config, seed=2)
        folder = save_folder(reference, tmp_path_factory.mktemp(name))
        out[name] = (reference, load_transformer(folder, dtype=torch.float32), config)
    return out


def _ids(config: dict, length: int, seed: int) -> torch.Tensor:
    return torch.randint(0, config["vocab_size"], (length,), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("case", sorted(CASES))
def test_sound_velocity_matches_diffusers(models, case):
    name, frames, height, width, fps, cond, timestep, sound_len = CASES[case]
    if case.startswith("v2v"):
        name = "nofps"
    reference, model, config = models[name]
    generator = torch.Generator().manual_seed(3)
    latents = torch.randn(1, 48, frames, height, width, generator=generator)
    sound = torch.randn(1, SOUND_DIM, sound_len, generator=generator)
    ids = _ids(config, 11, seed=4)

    expected_v, expected_s = reference_velocity_av(reference, ids, latents, sound, timestep, fps, cond)
    got_v, got_s = model.velocity(
        latents, timestep, model.encode_text(ids), fps=fps, condition_frames=cond, sound=sound
    )
    assert got_s.shape == expected_s.shape == sound.shape
    assert expected_s.std() > 0.05
    assert (got_s - expected_s).abs().max().item() <= TOL
    assert (got_v - expected_v).abs().max().item() <= TOL
    # the sound tokens change the video velocity (they share the attention), so this is a joint pass
    assert (got_v - model.velocity(latents, timestep, model.encode_text(ids), fps=fps, condition_frames=cond)).abs(
    ).max() > 1e-4


def test_sound_velocity_without_noisy_video_frames(models):
    reference, model, config = models["qwen_small"]
    latents = torch.randn(1, 48, 2, 4, 4, generator=torch.Generator().manual_seed(8))
    sound = torch.randn(1, SOUND_DIM, 4, generator=torch.Generator().manual_seed(9))
    ids = _ids(config, 6, seed=1)
    _, expected_s = reference_velocity_av(reference, ids, latents, sound, 999, 24.0, (0, 1))
    got_v, got_s = model.velocity(latents, 999, model.encode_text(ids), condition_frames=(0, 1), sound=sound)
    assert torch.count_nonzero(got_v) == 0
    assert (got_s - expected_s).abs().max().item() <= TOL


def test_batched_cfg_with_sound_equals_serial(models):
    _, model, config = models["qwen_small"]
    latents = torch.randn(1, 48, 3, 4, 4, generator=torch.Generator().manual_seed(5))
    sound = torch.randn(1, SOUND_DIM, 6, generator=torch.Generator().manual_seed(6))
    cond, uncond = model.encode_text(_ids(config, 15, 1)), model.encode_text(_ids(config, 4, 2))
    pair_v, pair_s = model.velocity_batch(latents, 999, [cond, uncond], sound=sound)
    for row, cache in enumerate((cond, uncond)):
        v, s = model.velocity(latents, 999, cache, sound=sound)
        assert (pair_v[row : row + 1] - v).abs().max().item() <= TOL
        assert (pair_s[row : row + 1] - s).abs().max().item() <= TOL


def test_video_only_velocity_is_unchanged_on_a_sound_model(models):
    reference, model, config = models["qwen_small"]
    latents = torch.randn(1, 48, 3, 4, 6, generator=torch.Generator().manual_seed(3))
    ids = _ids(config, 9, seed=4)
    expected = reference_velocity(reference, ids, latents, 999, 24.0)
    got = model.velocity(latents, 999, model.encode_text(ids))
    assert (got - expected).abs().max().item() <= TOL


def test_bad_sound_latents_are_refused(models):
    _, model, config = models["qwen_small"]
    latents = torch.randn(1, 48, 1, 4, 4)
    cache = model.encode_text(_ids(config, 5, seed=4))
    with pytest.raises(ValueError, match=r"sound latents must be \[1, 16, T_s\]"):
        model.velocity(latents, 999, cache, sound=torch.randn(1, SOUND_DIM + 1, 3))
    with pytest.raises(ValueError, match="sound latents must be a float tensor"):
        model.velocity(latents, 999, cache, sound=torch.randn(SOUND_DIM, 3))


def test_video_only_model_refuses_sound(tmp_path):
    config = tiny_config("qwen_small")
    model = load_transformer(save_folder(build_reference(config, seed=0), tmp_path / "t"), dtype=torch.float32)
    cache = model.encode_text(_ids(config, 5, seed=4))
    with pytest.raises(ValueError, match="no sound stream"):
        model.velocity(torch.randn(1, 48, 1, 4, 4), 999, cache, sound=torch.randn(1, SOUND_DIM, 3))


# ---------------------------------------------------------------------------------------------- decoder


@pytest.mark.parametrize("dtype_name", ["float32"])
def test_sound_decoder_matches_diffusers(tmp_path, dtype_name):
    reference = make_reference_sound_tokenizer(seed=4)
    reference.save_pretrained(str(tmp_path / "sound_tokenizer"), safe_serialization=True)
    ours = load_sound_decoder(tmp_path, dtype=getattr(torch, dtype_name), sound_dim=SOUND_DIM)  # model root works
    latents = torch.randn(1, SOUND_DIM, 21, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference.decode(latents)
    got = ours.decode(latents)
    assert got.shape == expected.shape == (1, 2, 21 * 6)
    assert expected.std() > 0.01
    assert (got - expected).abs().max().item() <= 1e-4
    assert ours.decode(latents[0]).shape == (2, 21 * 6)


# ---------------------------------------------------------------------------------------------- bad files


@pytest.fixture(scope="module")
def tokenizer_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("snd") / "sound_tokenizer"
    make_reference_sound_tokenizer(seed=1).save_pretrained(str(folder), safe_serialization=True)
    return folder


def test_latent_width_mismatch_names_both(tokenizer_folder):
    with pytest.raises(CheckpointError, match=r"sound_tokenizer: .*vocoder_input_dim\) is 16 but .*sound_dim is 32"):
        load_sound_decoder(tokenizer_folder, sound_dim=32)
    with pytest.raises(CheckpointError, match="vocoder_input_dim"):
        inspect_sound_tokenizer(tokenizer_folder, sound_dim=32)


def test_missing_and_corrupt_files(tokenizer_folder, tmp_path):
    with pytest.raises(CheckpointError, match="no such file or folder"):
        load_sound_decoder(tmp_path / "nowhere")
    broken = tmp_path / "sound_tokenizer"
    shutil.copytree(tokenizer_folder, broken)
    weights = broken / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="diffusion_pytorch_model.safetensors"):
        inspect_sound_tokenizer(broken)
    (broken / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json: unreadable sound tokenizer config"):
        load_sound_decoder(broken)
    (broken / "config.json").write_text(json.dumps({"dec_type": "hifigan"}))
    with pytest.raises(CheckpointError, match="'dec_type' = 'hifigan' is not supported"):
        load_sound_decoder(broken)


def test_missing_keys_are_listed(tokenizer_folder, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "sound_tokenizer"
    shutil.copytree(tokenizer_folder, folder)
    weights = folder / "diffusion_pytorch_model.safetensors"
    tensors = load_file(str(weights))
    del tensors["decoder.conv2.weight_v"]
    save_file(tensors, str(weights))
    with pytest.raises(CheckpointError, match=r"missing keys \(1\):\n +decoder.conv2.weight_v"):
        load_sound_decoder(folder)


def test_decoder_only_checkpoint_loads(tokenizer_folder, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "sound_tokenizer"
    shutil.copytree(tokenizer_folder, folder)
    weights = folder / "diffusion_pytorch_model.safetensors"
    tensors = {k: v for k, v in load_file(str(weights)).items() if k.startswith("decoder.")}
    save_file(tensors, str(weights))
    assert load_sound_decoder(folder).decode(torch.zeros(16, 2)).shape == (2, 12)
