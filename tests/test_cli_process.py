"""``python -m cosmos3 generate`` as a process: undecodable argv bytes, Ctrl-C and SIGTERM give one line and an
exit status (2, 130, 143), never a traceback, and leave no hidden ``.partial`` file behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from cosmos3.demo import build_demo_checkpoint

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX signals")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return build_demo_checkpoint(tmp_path_factory.mktemp("cli-process") / "Cosmos3-Demo")


def _start(args, **kwargs):
    return subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def _read_until(proc, marker: bytes, timeout: float = 300) -> list[bytes]:
    """stderr lines up to and including the first one containing ``marker`` (kills the process on timeout)."""
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    lines = []
    try:
        for line in proc.stderr:
            lines.append(line)
            if marker in line:
                return lines
    finally:
        timer.cancel()
    raise AssertionError(f"{marker!r} never appeared; stderr: {b''.join(lines).decode(errors='replace')}")


def test_undecodable_prompt_bytes_are_a_clear_error(checkpoint, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "cosmos3", "generate", "--checkpoint", str(checkpoint), "--prompt", b"a red \xff ball",
         "--output", str(tmp_path / "out.mp4")],
        cwd=ROOT, env=ENV, capture_output=True, timeout=300,
    )
    err = out.stderr.decode()
    assert out.returncode == 2, err
    assert err.startswith("error: --prompt: the prompt is not valid UTF-8 text: character 6 is an undecodable byte")
    assert "0xff" in err
    assert "Traceback" not in err and list(tmp_path.iterdir()) == []


def test_ctrl_c_while_sampling_prints_interrupted_and_exits_130(checkpoint, tmp_path):
    proc = _start([sys.executable, "-m", "cosmos3", "generate", "--checkpoint", str(checkpoint), "--prompt", "a ball",
                   "--frames", "5", "--height", "32", "--width", "32", "--steps", "1000",
                   "--output", str(tmp_path / "out.mp4")])
    _read_until(proc, b"sampling: step 1/1000")
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=120)
    err = rest.decode()
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "interrupted" and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


# The weights are replaced by a stand-in pipeline and the encoder by one that writes and then waits, so the signal
# arrives while the hidden temporary exists (what matters here is the clean-up, not the generation).
SLOW_WRITE = """
import sys, time, torch
from cosmos3.files import video
from cosmos3.pipeline import Cosmos3Pipeline

def slow_encode(target, *args):
    target.write_bytes(b"half a video")
    print("WRITING", target, file=sys.stderr, flush=True)
    time.sleep(120)

class Stand_in:
    def generate(self, *args, **kwargs):
        return torch.rand(5, 32, 32, 3)

video._encode = slow_encode
Cosmos3Pipeline.from_pretrained = classmethod(lambda cls, *a, **k: Stand_in())
from cosmos3.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_during_a_write_removes_the_partial_file(checkpoint, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = _start([sys.executable, "-c", SLOW_WRITE, "generate", "--checkpoint", str(checkpoint), "--prompt", "a ball",
                   "--frames", "5", "--height", "32", "--width", "32", "--output", str(out_dir / "clip.mp4")])
    _read_until(proc, b"WRITING")
    partial = [p.name for p in out_dir.iterdir()]
    assert len(partial) == 1 and partial[0].startswith(".clip.") and ".partial" in partial[0]
    proc.send_signal(signal.SIGTERM)
    _, rest = proc.communicate(timeout=60)
    err = rest.decode()
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "terminated" and "Traceback" not in err
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--fps", "inf"), "error: --fps inf is not a frame rate"),
        (("--device", "gpu0"), "error: --device 'gpu0' is not a device name"),
        (("--height", "100000", "--width", "100000", "--frames", "1", "--no-strict-sizes"),
         "error: --height/--width/--frames: one 100000x100000 image needs at least"),
    ],
)
def test_bad_options_exit_2_with_one_line(checkpoint, tmp_path, extra, message):
    output = tmp_path / ("out.png" if "--frames" in extra else "out.mp4")
    out = subprocess.run(
        [sys.executable, "-m", "cosmos3", "generate", "--checkpoint", str(checkpoint), "--prompt", "a ball",
         "--output", str(output), *extra],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 2 and out.stderr.startswith(message), out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and list(tmp_path.iterdir()) == []
