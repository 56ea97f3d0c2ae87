"""``python -m cosmos3 generate`` / ``demo`` and the atomic output writers."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from cosmos3.cli import main
from cosmos3.demo import build_demo_checkpoint
from cosmos3.files import media as media_io
from cosmos3.files import video as video_io


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return build_demo_checkpoint(tmp_path_factory.mktemp("cli") / "Cosmos3-Demo")


def _gen(checkpoint, output, *extra):
    return main([
        "generate", "--checkpoint", str(checkpoint), "--prompt", "a red ball rolls", "--steps", "2",
        "--seed", "3", "--output", str(output), *extra,
    ])


def test_generate_video_formats(checkpoint, tmp_path, capsys):
    size = ["--frames", "5", "--height", "32", "--width", "48"]
    assert _gen(checkpoint, tmp_path / "out.npy", *size) == 0
    err = capsys.readouterr().err
    # resolved settings first, then progress of every stage (text encoding, sampling with ETA, VAE decode)
    settings = err.splitlines()[0]
    for part in ("text2video", "48x32, 5 frames at 24 fps", "steps 2", "guidance 6", "shift 10", "schedule native"):
        assert part in settings, settings
    assert "guardrail: none runs" in err
    assert err.index("text encoding") < err.index("sampling: step 1/2") < err.index("VAE decode")
    assert "sampling: step 2/2" in err and "s/step" in err and "ETA" in err
    assert "VAE decode: done in" in err and "wrote" in err.splitlines()[-1]
    frames = np.load(tmp_path / "out.npy")
    assert frames.shape == (5, 32, 48, 3) and frames.dtype == np.float32
    assert _gen(checkpoint, tmp_path / "out.mp4", *size) == 0
    import av

    with av.open(str(tmp_path / "out.mp4")) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert sum(1 for _ in container.decode(video=0)) == 5
    assert _gen(checkpoint, tmp_path / "out.webp", *size) == 0
    with Image.open(tmp_path / "out.webp") as img:
        assert img.n_frames == 5 and img.size == (48, 32)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4", "out.npy", "out.webp"]  # no temp leftovers


def test_generate_image_and_i2v(checkpoint, tmp_path):
    assert _gen(checkpoint, tmp_path / "t2i.png", "--frames", "1", "--height", "32", "--width", "32") == 0
    with Image.open(tmp_path / "t2i.png") as img:
        assert img.size == (32, 32)
    Image.fromarray((np.random.default_rng(0).random((30, 40, 3)) * 255).astype(np.uint8)).save(tmp_path / "in.png")
    assert _gen(checkpoint, tmp_path / "i2v.npy", "--image", str(tmp_path / "in.png"),
                "--frames", "5", "--height", "32", "--width", "32") == 0
    assert np.load(tmp_path / "i2v.npy").shape == (5, 32, 32, 3)


@pytest.mark.parametrize(
    "output, extra, message",
    [
        ("out.gif", [], "unsupported output extension"),
        ("missing/out.mp4", [], "does not exist"),
        ("out.png", ["--frames", "5"], ".png holds one image"),
        ("out.npy", ["--frames", "6", "--height", "32", "--width", "32"], "4k+1"),
        ("out.npy", ["--image", "nope.png", "--frames", "5"], "image not found"),
    ],
)
def test_generate_bad_input_leaves_nothing(checkpoint, tmp_path, capsys, output, extra, message):
    extra = [e if e != "nope.png" else str(tmp_path / "nope.png") for e in extra]
    assert _gen(checkpoint, tmp_path / output, *extra) == 2
    assert message in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == []


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    def broken(target, *args):
        target.write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(video_io, "_encode", broken)
    with pytest.raises(OSError, match="disk full"):
        media_io.write_frames(torch.rand(5, 16, 16, 3), tmp_path / "video.mp4")
    assert list(tmp_path.iterdir()) == []


def test_existing_file_survives_a_failed_write(tmp_path, monkeypatch):
    target = tmp_path / "video.mp4"
    target.write_bytes(b"previous result")
    monkeypatch.setattr(video_io, "_encode", lambda *args: (_ for _ in ()).throw(OSError("boom")))
    with pytest.raises(OSError):
        media_io.write_frames(torch.rand(5, 16, 16, 3), target)
    assert target.read_bytes() == b"previous result"


def test_demo_command(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "cosmos3", "demo", "--output-dir", str(tmp_path), "--steps", "2"],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr
    assert "INSTALL CHECK" in out.stderr and "noise" in out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo_i2v.mp4", "demo_t2i.png", "demo_t2v.mp4"]
