"""Pipeline behaviour on the demo checkpoint (our own tiny builder): modes, callbacks, bad input, framework ids."""

from __future__ import annotations

import json

import pytest
import torch

from cosmos3.demo import build_demo_checkpoint
from cosmos3.files.safetensors import CheckpointError
from cosmos3.geometry import Geometry
from cosmos3.pipeline import Cosmos3Pipeline
from cosmos3.sampling.conditioning import ImageCondition, encode_image_condition, preprocess_image
from cosmos3.sampling.loop import NonFiniteLatentsError, sample
from cosmos3.sampling.schedulers import SamplerConfigError, make_sampler
from cosmos3.text.tokenizer import TokenizerError

FAST = dict(steps=2, seed=0)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return build_demo_checkpoint(tmp_path_factory.mktemp("demo") / "Cosmos3-Demo")


@pytest.fixture(scope="module")
def pipe(checkpoint):
    return Cosmos3Pipeline.from_pretrained(checkpoint, dtype=torch.float32)


def test_modes_shapes_and_seed_reproducibility(pipe):
    video = pipe.generate("a red ball", num_frames=5, height=32, width=48, **FAST)
    assert video.shape == (5, 32, 48, 3) and video.dtype == torch.float32
    assert 0.0 <= video.min() and video.max() <= 1.0
    again = pipe.generate("a red ball", num_frames=5, height=32, width=48, **FAST)
    assert torch.equal(video, again)
    other_seed = pipe.generate("a red ball", num_frames=5, height=32, width=48, steps=2, seed=1)
    assert not torch.equal(video, other_seed)
    image = pipe.generate("a red ball", num_frames=1, height=32, width=32, **FAST)
    assert image.shape == (1, 32, 32, 3)


def test_i2v_keeps_the_clean_first_latent(pipe):
    picture = torch.rand(40, 56, 3)
    latents = pipe.generate("a dog", image=picture, num_frames=9, height=32, width=48, return_latents=True, **FAST)
    cond = encode_image_condition(pipe.vae, picture, Geometry(9, 32, 48))
    assert torch.equal(latents[:, :, 0], cond.latent[:, :, 0])


def test_v2v_conditions_two_latent_frames(pipe):
    clip = torch.rand(7, 32, 48, 3)
    latents = pipe.generate("a dog", video=clip, num_frames=9, height=32, width=48, return_latents=True, **FAST)
    assert latents.shape[2] == 3


def test_callback_sees_every_step_and_can_stop(pipe):
    seen = []
    pipe.generate("a cat", num_frames=5, height=32, width=32, steps=3, callback=lambda i, n, x: seen.append((i, n)))
    assert seen == [(0, 3), (1, 3), (2, 3)]

    class Stop(Exception):
        pass

    def stop(i, n, x):
        if i == 1:
            raise Stop

    with pytest.raises(Stop):
        pipe.generate("a cat", num_frames=5, height=32, width=32, steps=3, callback=stop)


def test_guidance_one_skips_the_negative_pass(pipe, monkeypatch):
    calls = []
    original = pipe.transformer.encode_text
    monkeypatch.setattr(pipe.transformer, "encode_text", lambda ids: calls.append(len(ids)) or original(ids))
    pipe.generate("a cat", num_frames=1, height=32, width=32, guidance_scale=1.0, **FAST)
    assert len(calls) == 1
    calls.clear()
    pipe.generate("a cat", num_frames=1, height=32, width=32, guidance_scale=4.0, **FAST)
    assert len(calls) == 2


def test_framework_style_ids_for_a_json_prompt(pipe, monkeypatch):
    texts = []
    original = pipe.tokenizer.encode

    def spy(text, system_prompt=None, **kw):
        texts.append((text, system_prompt))
        return original(text, system_prompt, **kw)

    monkeypatch.setattr(pipe.tokenizer, "encode", spy)
    prompt = json.dumps({"subjects": ["a robot"], "duration": "1s"})
    pipe.generate(prompt, "", num_frames=9, height=32, width=48, fps=8.0, guidance_scale=2.0, **FAST)
    cond, uncond = texts
    assert cond[1] is None and uncond[1] is None  # framework style: no system prompt
    # existing keys keep their place, new ones are appended; 48:32 is nearest the 4:3 bucket
    assert cond[0] == (
        '{"subjects": ["a robot"], "duration": "1s", "fps": 8.0, "resolution": {"H": 32, "W": 48}, '
        '"aspect_ratio": "4,3"}'
    )
    assert uncond[0] == "The video is 1.1 seconds long and is of 8 FPS. This video is of 32x48 resolution."


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_frames=6, height=32, width=32), "4k+1"),
        (dict(num_frames=5, height=30, width=32), "multiple of 16"),
        (dict(num_frames=5, height=32, width=32, schedule="fancy"), "allowed"),
        (dict(num_frames=5, height=32, width=32, guidance_scale=-1.0), "guidance_scale"),
        (dict(num_frames=5, height=32, width=32, schedule="checkpoint", shift=5.0), "Karras"),
        (dict(num_frames=5, height=32, width=32, steps=0), "steps"),
        (dict(num_frames=1, height=32, width=32, image=torch.rand(8, 8, 3)), "num_frames > 1"),
        (dict(num_frames=5, height=32, width=32, image=torch.rand(8, 8, 3), video=[torch.rand(8, 8, 3)]), "not both"),
    ],
)
def test_bad_generation_input(pipe, kwargs, message):
    kwargs = {"steps": 2, **kwargs}
    with pytest.raises((ValueError, SamplerConfigError)) as info:
        pipe.generate("a cat", **kwargs)
    assert message in str(info.value)


def test_prompt_too_long_is_rejected(pipe):
    with pytest.raises(TokenizerError, match="4096"):
        pipe.generate("cat " * 5000, num_frames=1, height=32, width=32, **FAST)


def test_sampling_a_different_size_than_encoded_is_an_error(pipe):
    encoded = pipe.encode_prompt("a cat", None, geometry=Geometry(5, 32, 32))
    with pytest.raises(ValueError, match="encoded for a different video"):
        encoded.check_matches(Geometry(9, 32, 32))
    with pytest.raises(ValueError, match="encoded for a different video"):
        encoded.check_matches(Geometry(5, 48, 32))


def test_condition_for_another_size_is_an_error(pipe):
    encoded = pipe.encode_prompt("a cat", None, geometry=Geometry(5, 32, 32))
    cond = ImageCondition(torch.zeros(1, 48, 1, 3, 3), (0,), Geometry(5, 48, 48))
    with pytest.raises(ValueError, match="prepared for 48x48"):
        sample(pipe.transformer, encoded, make_sampler("flow_unipc", 2, shift=3.0), guidance_scale=2.0, condition=cond)


def test_image_preprocessing_covers_and_centre_crops():
    wide = torch.zeros(20, 40, 3)
    wide[:, 10:30] = 1.0  # a white centre band exactly as wide as the crop
    out = preprocess_image(wide, 32, 32)
    assert out.shape == (1, 3, 32, 32)
    assert out.min() >= -1 and out.max() <= 1
    assert out[..., 4:28].mean() > 0.9  # the crop keeps the centre


def test_missing_or_mismatched_tokenizer(checkpoint, tmp_path):
    import shutil

    broken = tmp_path / "Cosmos3-NoTok"
    shutil.copytree(checkpoint, broken)
    shutil.rmtree(broken / "text_tokenizer")
    with pytest.raises(TokenizerError, match="text_tokenizer"):
        Cosmos3Pipeline.from_pretrained(broken, dtype=torch.float32)

    small = tmp_path / "Cosmos3-SmallVocab"
    shutil.copytree(checkpoint, small)
    config = json.loads((small / "transformer" / "config.json").read_text())
    config["vocab_size"] = 16
    (small / "transformer" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError):  # the embedding no longer matches the config
        Cosmos3Pipeline.from_pretrained(small, dtype=torch.float32)


def test_missing_checkpoint_folder(tmp_path):
    with pytest.raises(CheckpointError, match="not a checkpoint folder"):
        Cosmos3Pipeline.from_pretrained(tmp_path / "nope")


def test_distilled_checkpoint_runs_its_fixed_four_steps(checkpoint, tmp_path):
    import shutil

    distilled = tmp_path / "Cosmos3-Super-Text2Image-4Step"
    shutil.copytree(checkpoint, distilled)
    (distilled / "modular_model_index.json").write_text(json.dumps({"distilled_sigmas": [1.0, 0.9375, 0.8333, 0.625]}))
    pipe = Cosmos3Pipeline.from_pretrained(distilled, dtype=torch.float32)
    assert pipe.info.distilled
    seen = []
    frames = pipe.generate("a cat", num_frames=1, height=32, width=32, seed=0,
                           callback=lambda i, n, x: seen.append(n))
    assert frames.shape == (1, 32, 32, 3) and seen == [4, 4, 4, 4]  # defaults: 4 steps, guidance 1, no negative
    with pytest.raises(SamplerConfigError, match="fixed step count of 4"):
        pipe.generate("a cat", num_frames=1, height=32, width=32, steps=8)


class _PassGuardrail:
    """Stand-in for guardrails.Guardrail: passes every prompt and returns the frames unchanged."""

    def __init__(self):
        self.prompts = []

    def ensure_prompt_safe(self, prompt):
        self.prompts.append(prompt)

    def check_images(self, frames):
        return frames, "ok"


def test_unguarded_generation_warns_once_per_pipeline(pipe):
    import warnings

    from cosmos3.pipeline import UNGUARDED_WARNING

    fresh = Cosmos3Pipeline(pipe.transformer, pipe.vae, pipe.tokenizer, pipe.info)
    kwargs = dict(num_frames=1, height=32, width=32, return_latents=True, **FAST)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # the once-only logic must be ours, not the warnings registry's
        guard = _PassGuardrail()
        fresh.generate("a cat", guardrail=guard, **kwargs)
        assert guard.prompts == ["a cat"] and caught == []  # guarded: no warning
        fresh.generate("a cat", **kwargs)
        first = [w for w in caught if issubclass(w.category, UserWarning)]
        assert len(first) == 1 and str(first[0].message) == UNGUARDED_WARNING
        assert first[0].filename == __file__  # points at the caller
        message = str(first[0].message)
        assert "no guardrail checks ran" in message
        assert "guardrails.Guardrail.from_config(" in message and "licence" in message
        fresh.generate("a cat", **kwargs)
        assert len(caught) == 1  # second unguarded call on the same pipeline: silent
    other = Cosmos3Pipeline(pipe.transformer, pipe.vae, pipe.tokenizer, pipe.info)
    with pytest.warns(UserWarning, match="no guardrail checks ran"):
        other.generate("a cat", **kwargs)  # another pipeline warns on its own


def test_non_finite_weights_fail_clearly_instead_of_a_black_video(checkpoint):
    broken = Cosmos3Pipeline.from_pretrained(checkpoint, dtype=torch.float32)
    with torch.no_grad():
        broken.transformer.gen_tower.proj_out.bias.fill_(float("nan"))
    with pytest.raises(NonFiniteLatentsError, match="non-finite latents \\(NaN or Inf\\) at step 1 of 2"):
        broken.generate("a cat", num_frames=1, height=32, width=32, **FAST)


def test_sixteen_bit_greyscale_images_are_scaled_not_clipped(tmp_path):
    import numpy as np
    from PIL import Image

    from cosmos3.files.media import read_image
    from cosmos3.sampling.conditioning import image_to_tensor

    ramp = np.linspace(0, 65535, 64, dtype=np.uint16).reshape(8, 8)  # 16-bit greyscale, dark to white
    path = tmp_path / "grey16.png"
    Image.fromarray(ramp).save(path)
    with Image.open(path) as raw:
        assert raw.mode in ("I", "I;16")  # PIL's own convert("RGB") would clip this at 255
        direct = image_to_tensor(raw)
    loaded = image_to_tensor(read_image(path))
    expected = torch.from_numpy(np.round(ramp / 65535.0 * 255.0)).float()
    for x in (direct, loaded):
        assert x.shape == (1, 3, 8, 8)
        torch.testing.assert_close(x[0, 0], expected, rtol=0, atol=0)
        assert torch.equal(x[0, 0], x[0, 2])
    assert loaded.mean().item() == pytest.approx(127.5, abs=1.0)  # mid-grey on average, not nearly white


def test_heavy_upscaling_or_cropping_of_the_condition_is_reported():
    with pytest.warns(UserWarning, match="up-scaled 4.0x"):
        preprocess_image(torch.rand(8, 8, 3), 32, 32)
    with pytest.warns(UserWarning, match="50% of it is cropped away"):
        preprocess_image(torch.rand(20, 40, 3), 32, 32)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        preprocess_image(torch.rand(48, 64, 3), 48, 64)  # same size: no warning
