"""``cosmos3.files.video.write_video``: H.264 MP4 through PyAV (what browsers play), optional AAC track, atomic."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from cosmos3.errors import Cosmos3Error
from cosmos3.files import media, video
from cosmos3.files.video import write_video


def _probe(path):
    with av.open(str(path)) as container:
        streams = {
            s.type: (s.codec_context.name, float(s.duration * s.time_base), s.frames) for s in container.streams
        }
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        return streams, decoded, container.streams.video[0]


def test_h264_video_plays_back_with_its_frames_and_rate(tmp_path):
    frames = torch.zeros(9, 32, 48, 3)
    frames[:, :, :, 0] = torch.linspace(0, 1, 9)[:, None, None]  # red ramps over time
    path = write_video(tmp_path / "clip.mp4", frames, 24)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.width, stream.height) == (48, 32) and float(stream.average_rate) == 24.0
        assert container.duration / 1e6 == pytest.approx(9 / 24, abs=0.01)
        decoded = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    assert decoded.shape == (9, 32, 48, 3)
    red = decoded[..., 0].mean(axis=(1, 2))
    assert np.all(np.diff(red) > 0) and abs(red[0]) < 8 and abs(red[-1] - 255) < 8
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


def test_uint8_frames_and_fractional_rate(tmp_path):
    frames = np.full((5, 16, 16, 3), 128, np.uint8)
    path = write_video(tmp_path / "ntsc.mp4", frames, 24000 / 1001)
    with av.open(str(path)) as container:
        assert float(container.streams.video[0].average_rate) == pytest.approx(23.976, abs=1e-3)


@pytest.mark.parametrize("channels", [1, 2])
def test_audio_track_is_aac_with_the_sound_duration(tmp_path, channels):
    rate, seconds = 16000, 9 / 24
    t = np.arange(int(rate * seconds)) / rate
    sound = np.stack([0.3 * np.sin(2 * np.pi * 440 * t)] * channels).astype(np.float32)
    path = write_video(tmp_path / "av.mp4", torch.rand(9, 32, 32, 3), 24, audio=sound, sample_rate=rate)
    with av.open(str(path)) as container:
        kinds = sorted(s.type for s in container.streams)
        assert kinds == ["audio", "video"]
        audio = container.streams.audio[0]
        assert audio.codec_context.name == "aac" and audio.codec_context.sample_rate == rate
        assert audio.codec_context.channels == channels
        assert float(audio.duration * audio.time_base) == pytest.approx(seconds, abs=0.07)
        samples = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=-1)
    assert 0.15 < np.sqrt((samples.astype(np.float64) ** 2).mean()) < 0.3  # the tone survived (rms 0.3/sqrt 2)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(frames=torch.rand(5, 33, 48, 3)), "even width and height, got 48x33"),
        (dict(frames=torch.rand(5, 32, 47, 3)), "even width and height, got 47x32"),
        (dict(frames=torch.rand(5, 32, 48)), "[T, H, W, 3]"),
        (dict(frames=torch.full((5, 32, 48, 3), float("nan"))), "NaN"),
        (dict(fps=float("nan")), "fps nan"),
        (dict(fps=float("inf")), "fps inf"),
        (dict(fps=0), "fps 0"),
        (dict(fps=1e9), "allowed: 0.01 to 1000"),
        (dict(fps=0.001), "allowed: 0.01 to 1000"),
        (dict(audio=np.zeros((2, 100), np.float32)), "sample_rate must be an integer"),
        (dict(audio=np.zeros((2, 100), np.float32), sample_rate=12345), "not an AAC rate"),
        (dict(audio=np.zeros((3, 100), np.float32), sample_rate=16000), "1 or 2 channels"),
        (dict(audio=np.full((1, 100), np.nan, np.float32), sample_rate=16000), "NaN"),
        (dict(sample_rate=16000), "without audio"),
    ],
)
def test_bad_input_is_refused_before_any_file_exists(tmp_path, kwargs, message):
    args = dict(frames=torch.rand(5, 32, 48, 3), fps=24.0)
    args.update(kwargs)
    frames, fps = args.pop("frames"), args.pop("fps")
    with pytest.raises(Cosmos3Error) as info:
        write_video(tmp_path / "out.mp4", frames, fps, **args)
    assert message in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_output_path_problems(tmp_path):
    (tmp_path / "folder.mp4").mkdir()
    with pytest.raises(Cosmos3Error, match="existing folder"):
        write_video(tmp_path / "folder.mp4", torch.rand(1, 16, 16, 3), 24)
    with pytest.raises(Cosmos3Error, match="does not exist"):
        write_video(tmp_path / "missing" / "out.mp4", torch.rand(1, 16, 16, 3), 24)
    with pytest.raises(Cosmos3Error, match=".mp4"):
        write_video(tmp_path / "out.avi", torch.rand(1, 16, 16, 3), 24)


def test_encoder_failure_names_the_output_not_the_temporary(tmp_path, monkeypatch):
    def broken(target, *args):
        target.write_bytes(b"half a video")
        raise OSError(f"No space left on device: '{target}'")

    monkeypatch.setattr(video, "_encode", broken)
    with pytest.raises(OSError) as info:
        write_video(tmp_path / "out.mp4", torch.rand(5, 16, 16, 3), 24)
    assert str(tmp_path / "out.mp4") in str(info.value) and ".partial" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_write_frames_mp4_goes_through_pyav(tmp_path):
    media.write_frames(torch.rand(5, 16, 16, 3), tmp_path / "v.mp4", fps=12)
    with av.open(str(tmp_path / "v.mp4")) as container:
        assert container.streams.video[0].codec_context.name == "h264"
    with pytest.raises(Cosmos3Error, match="allowed: 0.01 to 1000"):
        media.write_frames(torch.rand(5, 16, 16, 3), tmp_path / "v.webp", fps=5000)


def test_write_frames_failure_names_the_output_not_the_temporary(tmp_path, monkeypatch):
    def full(fh, array):
        raise OSError(f"[Errno 28] No space left on device: '{fh.name}'")

    monkeypatch.setattr(media.np, "save", full)
    with pytest.raises(OSError) as info:
        media.write_frames(torch.rand(2, 16, 16, 3), tmp_path / "x.npy")
    assert str(tmp_path / "x.npy") in str(info.value) and ".partial" not in str(info.value)
    assert list(tmp_path.iterdir()) == []
