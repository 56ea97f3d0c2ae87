"""Sound in ComfyUI (against the stub): the Sampler's sound setting and output, Audio Decode -> core AUDIO, equal
to the library's generate(sound=True); on the tiny demo checkpoint (sound-capable, like the real ones)."""

from __future__ import annotations

import sys

import pytest
import torch

pytest.importorskip("cosmos3.vae.model")
from tiny_models import CHECKPOINT_CHOICE, demo_checkpoint, install_cosmos3_checkpoint  # noqa: E402

W, H, F = 64, 48, 9
PROMPT = "a red robot arm rolls a ball over the table"


@pytest.fixture
def m(comfy_pack):
    class Modules:
        model = sys.modules[f"{comfy_pack.__name__}.nodes.model_nodes"]
        text = sys.modules[f"{comfy_pack.__name__}.nodes.text_nodes"]
        sampler = sys.modules[f"{comfy_pack.__name__}.nodes.sampler_nodes"]
        latent = sys.modules[f"{comfy_pack.__name__}.nodes.latent_nodes"]
        sound = sys.modules[f"{comfy_pack.__name__}.nodes.sound_nodes"]

    return Modules


@pytest.fixture
def model(m, comfy_stub):
    install_cosmos3_checkpoint(comfy_stub.models_dir)
    return m.model.ModelLoader.execute(CHECKPOINT_CHOICE, "auto", "auto")[0]


def _sample(m, model, frames=F, sound="on", **kw):
    text = m.text.TextEncode.execute(model, PROMPT, "", "framework", "auto", W, H, frames, 24.0)[0]
    latent = m.latent.EmptyLatent.execute("custom", W, H, frames)[0]
    args = dict(seed=5, steps=2, cfg=6.0, shift=10.0, schedule="native", attention="sdpa", cfg_interval=False)
    args.update(kw)
    return m.sampler.Sampler.execute(model, text, latent, **args, sound=sound)


def test_sound_matches_the_library(m, model, comfy_stub):
    from cosmos3.pipeline import Cosmos3Pipeline

    hook = comfy_stub.install_server_hook()
    video, sound = _sample(m, model)
    assert [c["value"] for c in hook] == [1, 2]  # progress still reported per step
    assert sound["samples"].shape == (1, 16, 75) and sound["type"] == "audio"  # 9/24 s at 16 kHz, 80 per latent
    audio = m.sound.AudioDecode.execute(sound, "auto")[0]
    assert set(audio) == {"waveform", "sample_rate"} and audio["sample_rate"] == 16000
    assert audio["waveform"].shape == (1, 2, 6000) and audio["waveform"].dtype == torch.float32

    pipe = Cosmos3Pipeline.from_pretrained(demo_checkpoint(), dtype=torch.float32)
    latents, sound_latents = pipe.generate(PROMPT, None, num_frames=F, height=H, width=W, steps=2, guidance_scale=6.0,
                                           seed=5, schedule="native", shift=10.0, sound=True, return_latents=True)
    assert torch.equal(video["samples"], pipe.vae.denormalize(latents))
    assert torch.equal(sound["samples"], sound_latents)
    torch.testing.assert_close(audio["waveform"][0], pipe.sound.decode(sound_latents), rtol=0, atol=1e-6)


def test_off_keeps_the_video_and_auto_follows_the_checkpoint(m, model):
    video_off, none = _sample(m, model, sound="off")
    assert none["samples"].numel() == 0
    with pytest.raises(ValueError, match="generated no sound"):
        m.sound.AudioDecode.execute(none, "auto")
    video_auto, sound = _sample(m, model, sound="auto")
    assert sound["samples"].numel() and not torch.equal(video_off["samples"], video_auto["samples"])  # joint
    _, no_sound = _sample(m, model, frames=1, sound="auto")  # an image: auto makes no sound
    assert no_sound["samples"].numel() == 0
    with pytest.raises(ValueError, match="image"):
        _sample(m, model, frames=1, sound="on")


def test_audio_decode_errors(m, model):
    with pytest.raises(ValueError, match="generated no sound"):
        m.sound.AudioDecode.execute(None, "auto")
    with pytest.raises(FileNotFoundError, match="sound_tokenizer"):
        m.sound.AudioDecode.execute({"samples": torch.zeros(1, 16, 4), "type": "audio"}, "auto")
    with pytest.raises(ValueError, match=r"latent width \(vocoder_input_dim\) is 16 but the latents have 8"):
        _, sound = _sample(m, model)
        m.sound.AudioDecode.execute(dict(sound, samples=torch.zeros(1, 8, 4)), "auto")
    assert "Cosmos3-Nano/sound_tokenizer" in " ".join(m.sound.sound_tokenizer_choices())


def test_video_only_checkpoint_refuses_sound_on(m, comfy_stub, tmp_path):
    from cosmos3.demo import build_demo_checkpoint

    build_demo_checkpoint(comfy_stub.models_dir / "cosmos3" / "Silent", sound=False)
    silent = m.model.ModelLoader.execute("cosmos3/Silent", "auto", "auto")[0]
    with pytest.raises(ValueError, match="no sound stream"):
        _sample(m, silent, sound="on")
    _, none = _sample(m, silent, sound="auto")
    assert none["samples"].numel() == 0


def test_sound_workflow_puts_the_audio_into_the_video(comfy_pack, comfy_stub):
    import make_workflows
    import workflow_check as wc
    from tiny_models import install_fixtures, rewrite_names

    fixtures = install_fixtures(comfy_stub.models_dir, comfy_stub.input_dir)
    api = rewrite_names(wc.load_json(make_workflows.API_DIR / "cosmos3_t2v_sound.json"), fixtures.names)
    result = wc.run_api_workflow(api, comfy_pack.nodes.NODE_CLASS_MAPPINGS)
    (saved,) = result.captured_by("SaveVideo")
    video = saved["video"]
    audio = video.audio
    assert audio["sample_rate"] == 16000 and audio["waveform"].dim() == 3 and audio["waveform"].shape[:2] == (1, 2)
    duration = video.images.shape[0] / video.fps
    assert audio["waveform"].shape[2] == int(duration * 16000)  # as long as the clip
