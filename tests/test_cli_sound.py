"""``python -m cosmos3 generate --sound`` / ``--sound-output`` on the tiny (sound-capable) demo checkpoint."""

from __future__ import annotations

import wave

import pytest
import torch

from cosmos3.cli import main
from cosmos3.demo import build_demo_checkpoint

SIZE = ["--frames", "9", "--height", "32", "--width", "48"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return build_demo_checkpoint(tmp_path_factory.mktemp("cli") / "Cosmos3-Demo")


def _gen(checkpoint, output, *extra):
    return main([
        "generate", "--checkpoint", str(checkpoint), "--prompt", "a red ball rolls", "--steps", "2",
        "--seed", "3", "--output", str(output), *extra,
    ])


def test_sound_mp4_and_wav(checkpoint, tmp_path):
    av = pytest.importorskip("av")
    assert _gen(checkpoint, tmp_path / "out.mp4", *SIZE, "--sound", "--sound-output", str(tmp_path / "out.wav")) == 0
    with av.open(str(tmp_path / "out.mp4")) as container:
        assert [s.type for s in container.streams] == ["video", "audio"]
        assert container.streams.audio[0].codec_context.name == "aac"
        frames = sum(1 for _ in container.decode(video=0))
        container.seek(0)
        samples = sum(f.samples for f in container.decode(audio=0))
    assert frames == 9 and 0 <= samples - 6000 < 1024  # 9/24 s at 16 kHz (AAC pads its last frame)
    with wave.open(str(tmp_path / "out.wav")) as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getsampwidth(), wav.getnframes()) == (2, 16000, 2, 6000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4", "out.wav"]  # no temp leftovers


def test_wav_alone_with_another_video_format(checkpoint, tmp_path):
    assert _gen(checkpoint, tmp_path / "out.npy", *SIZE, "--sound-output", str(tmp_path / "s.wav")) == 0
    assert (tmp_path / "s.wav").is_file() and (tmp_path / "out.npy").is_file()


@pytest.mark.parametrize("extra, message", [
    (["--frames", "1", "--height", "32", "--width", "32", "--sound"], "text-to-image"),
    ([*SIZE, "--sound"], "--sound stores the audio in an .mp4"),
    ([*SIZE, "--sound-output", "x.mp3"], "writes a .wav"),
])
def test_bad_sound_requests_fail_before_loading(checkpoint, tmp_path, capsys, monkeypatch, extra, message):
    import cosmos3.pipeline as pipeline

    monkeypatch.setattr(pipeline.Cosmos3Pipeline, "from_pretrained", lambda *a, **k: pytest.fail("loaded"))
    assert _gen(checkpoint, tmp_path / "out.webp", *extra) == 2
    assert message in capsys.readouterr().err


def test_sound_on_a_checkpoint_without_sound(tmp_path, capsys):
    silent = build_demo_checkpoint(tmp_path / "Silent", sound=False)
    assert _gen(silent, tmp_path / "out.mp4", *SIZE, "--sound") == 2
    assert "no sound stream" in capsys.readouterr().err
    assert not (tmp_path / "out.mp4").exists()


def test_write_wav_refuses_bad_input(tmp_path):
    from cosmos3.audio import write_wav
    from cosmos3.errors import Cosmos3Error

    with pytest.raises(Cosmos3Error, match="channels, samples"):
        write_wav(tmp_path / "a.wav", torch.zeros(6000), 16000)
    with pytest.raises(Cosmos3Error, match="does not exist"):
        write_wav(tmp_path / "no" / "a.wav", torch.zeros(2, 10), 16000)
