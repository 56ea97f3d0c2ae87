"""The README's library snippet runs as written on the tiny checkpoint (only its two settings lines change)."""

from __future__ import annotations

import re
from pathlib import Path

import av

from cosmos3.demo import build_demo_checkpoint

README = Path(__file__).resolve().parents[1] / "README.md"


def library_snippet() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Library"):]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    snippet = next(b for b in blocks if "Cosmos3Pipeline.from_pretrained" in b)
    assert "CHECKPOINT = " in snippet and "SETTINGS = " in snippet
    return snippet


def test_library_snippet_runs_on_the_tiny_checkpoint(tmp_path, monkeypatch):
    checkpoint = build_demo_checkpoint(tmp_path / "Cosmos3-Demo")
    code = re.sub(r"^CHECKPOINT = .*$", f"CHECKPOINT = {str(checkpoint)!r}", library_snippet(), flags=re.M)
    code = re.sub(r"^SETTINGS = .*$", "SETTINGS = dict(num_frames=5, height=32, width=32, steps=2)", code, flags=re.M)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md (library snippet)", "exec"), namespace)
    assert namespace["frames"].shape == (5, 32, 32, 3)
    assert namespace["v"].shape == namespace["latents"].shape == (1, 48, 2, 2, 2)
    assert namespace["decoded"].shape == (1, 3, 5, 32, 32)
    with av.open(str(tmp_path / "robot.mp4")) as container:
        assert container.streams.video[0].codec_context.name == "h264"
