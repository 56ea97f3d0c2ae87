"""End-to-end sound: parity with diffusers' ``Cosmos3OmniPipeline(..., enable_sound=True)`` on a tiny random
sound-capable checkpoint (fp32, same seed -> same frames and waveform), and the API's refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_checkpoint import build_reference_pipeline, save_reference_pipeline
from tiny_sound import build_sound_pipeline, reference_av

from cosmos3.audio import SoundUnavailableError
from cosmos3.files.safetensors import CheckpointError
from cosmos3.pipeline import Cosmos3Pipeline

TOL = 1e-3
PROMPT = "A dog barks at a passing train."
NEGATIVE = "silence, blurry"


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory):
    reference = build_sound_pipeline(seed=3)
    folder = save_reference_pipeline(reference, tmp_path_factory.mktemp("ckpt") / "Cosmos3-Tiny")
    assert (folder / "sound_tokenizer" / "config.json").is_file()
    ours = Cosmos3Pipeline.from_pretrained(folder, dtype=torch.float32)
    return reference, ours, folder


def _image() -> Image.Image:
    rng = np.random.default_rng(5)
    return Image.fromarray(rng.integers(0, 256, size=(40, 56, 3), dtype=np.uint8))


def _close(ours: torch.Tensor, ref: torch.Tensor, floor: float) -> None:
    assert ours.shape == ref.shape
    assert ref.std() > floor  # not a trivially flat output
    assert (ours - ref).abs().max().item() <= TOL


@pytest.mark.parametrize("mode", ["t2v", "i2v"])
def test_sound_matches_diffusers(pipelines, mode):
    reference, ours, _ = pipelines
    image = _image() if mode == "i2v" else None
    kw = dict(num_frames=9, height=48, width=64, guidance_scale=4.0)
    ref_frames, ref_wave = reference_av(
        reference, seed=7, prompt=PROMPT, negative_prompt=NEGATIVE, image=image, num_inference_steps=3, **kw
    )
    frames, wave = ours.generate(
        PROMPT, NEGATIVE, image=image, steps=3, seed=7, schedule="checkpoint", prompt_style="diffusers", sound=True,
        **kw,
    )
    assert wave.dtype == torch.float32 and wave.shape == (2, 9 * 960 // 24)  # 9 frames at 24 fps, 960 Hz
    assert ours.sound_sample_rate == 960 and ours.has_sound
    _close(frames, ref_frames, 0.05)
    _close(wave, ref_wave, 0.005)


def test_cfg_batch_gives_the_same_sound(pipelines):
    _, ours, _ = pipelines
    kw = dict(num_frames=5, height=48, width=48, steps=2, seed=1, guidance_scale=3.0, sound=True)
    frames, wave = ours.generate(PROMPT, NEGATIVE, **kw)
    ours.cfg_batch = True
    try:
        frames_b, wave_b = ours.generate(PROMPT, NEGATIVE, **kw)
    finally:
        ours.cfg_batch = False
    assert (frames - frames_b).abs().max() <= 1e-4 and (wave - wave_b).abs().max() <= 1e-4


def test_v2v_with_sound_and_latents(pipelines):
    _, ours, _ = pipelines
    clip = [np.full((48, 48, 3), 40 * i, dtype=np.uint8) for i in range(5)]
    latents, sound = ours.generate(
        PROMPT, None, video=clip, num_frames=9, height=48, width=48, steps=2, guidance_scale=1.0, sound=True,
        return_latents=True,
    )
    assert latents.shape[2] == 3 and sound.shape == (1, 16, 60)


def test_sound_on_text_to_image_is_refused(pipelines):
    _, ours, _ = pipelines
    with pytest.raises(SoundUnavailableError, match="text-to-image"):
        ours.generate(PROMPT, num_frames=1, height=48, width=48, steps=1, sound=True)


def test_checkpoint_without_sound_stream(tmp_path):
    folder = save_reference_pipeline(build_reference_pipeline(seed=0), tmp_path / "Cosmos3-Tiny")
    pipe = Cosmos3Pipeline.from_pretrained(folder, dtype=torch.float32)
    assert not pipe.has_sound and pipe.sound_sample_rate is None
    with pytest.raises(SoundUnavailableError, match="no sound stream"):
        pipe.generate(PROMPT, num_frames=5, height=48, width=48, steps=1, sound=True)


def test_missing_sound_tokenizer_folder(pipelines, tmp_path):
    _, ours, folder = pipelines
    pipe = Cosmos3Pipeline(ours.transformer, ours.vae, ours.tokenizer, ours.info)
    assert not pipe.has_sound
    with pytest.raises(SoundUnavailableError, match="sound_tokenizer/"):
        pipe.generate(PROMPT, num_frames=5, height=48, width=48, steps=1, sound=True)


def test_sound_tokenizer_of_another_width_fails_before_sampling(pipelines, tmp_path):
    from tiny_sound import make_reference_sound_tokenizer

    from cosmos3.audio import SoundStream

    _, ours, _ = pipelines
    other = tmp_path / "other_tokenizer"
    make_reference_sound_tokenizer(vocoder_input_dim=32, enc_latent_dim=64).save_pretrained(str(other))
    stream = SoundStream(ours.transformer.config, other, torch.float32)
    pipe = Cosmos3Pipeline(ours.transformer, ours.vae, ours.tokenizer, ours.info, sound=stream)
    calls = []
    with pytest.raises(CheckpointError, match=r"other_tokenizer: .* is 32 but the transformer's sound_dim is 16"):
        pipe.generate(
            PROMPT, num_frames=5, height=48, width=48, steps=1, sound=True, callback=lambda *a: calls.append(a)
        )
    assert not calls
