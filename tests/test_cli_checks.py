"""``python -m cosmos3 generate`` refuses bad options before loading any weight, naming the option (``--frames``)
and the requested output path, with one ``error:`` line and exit status 2 (never a traceback); ``--help`` shows
the defaults and a help line for every option. Process-level behaviour (signals, argv bytes) is in
test_cli_process.py."""

from __future__ import annotations

import argparse
import os

import numpy as np
import pytest
import torch
from PIL import Image

from cosmos3 import cli
from cosmos3.demo import build_demo_checkpoint
from cosmos3.pipeline import Cosmos3Pipeline


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return build_demo_checkpoint(tmp_path_factory.mktemp("cli-checks") / "Cosmos3-Demo")


@pytest.fixture
def no_weights(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the weights were loaded before the options were checked")

    monkeypatch.setattr(Cosmos3Pipeline, "from_pretrained", classmethod(refuse))


def _run(checkpoint, out, *extra, prompt=("--prompt", "a red ball")):
    return cli.main(["generate", "--checkpoint", str(checkpoint), *prompt, "--steps", "1", "--output", str(out),
                     *extra])


SIZE = ("--frames", "5", "--height", "32", "--width", "32")
BAD_OPTIONS = [
    (("--fps", "nan"), "--fps nan is not a frame rate"),
    (("--fps", "inf"), "--fps inf is not a frame rate"),
    (("--fps", "0"), "--fps 0 is not a frame rate"),
    (("--fps", "-24"), "--fps -24 is not a frame rate"),
    (("--fps", "1e9"), "--fps 1e+09 cannot be stored in a video file; allowed: 0.01 to 1000"),
    (("--fps", "0.001"), "--fps 0.001 cannot be stored in a video file"),
    (("--frames", "6"), "--frames 6 is not of the form 4k+1"),
    (("--frames", "0"), "--frames 0 is out of range"),
    (("--frames", "100001"), "--frames 100001 is out of range"),
    (("--height", "30"), "--height 30 is not a multiple of 16; nearest valid values: 16 or 32"),
    (("--width", "8"), "--width 8 is too small"),
    (("--steps", "0"), "--steps 0 is out of range; allowed: 1 to 1000"),
    (("--steps", "1000000"), "--steps 1000000 is out of range"),
    (("--guidance", "nan"), "--guidance nan is out of range"),
    (("--guidance", "-1"), "--guidance -1 is out of range; allowed: [0, 100]"),
    (("--shift", "0"), "--shift 0 is out of range"),
    (("--shift", "inf"), "--shift inf is out of range"),
    (("--seed", "-1"), "--seed -1 is out of range"),
    (("--schedule", "distilled", "--shift", "3"), "--schedule 'distilled' has fixed sigmas"),
    (("--device", "gpu0"), "--device 'gpu0' is not a device name; use auto, cpu, cuda, cuda:N or mps"),
    (("--device", "meta"), "--device meta: unsupported device type"),
    (("--height", "100000", "--width", "100000", "--frames", "1"), "--height 100000 is larger than 8192"),
    (("--image", "MISSING.png"), "--image: image not found"),
    (("--vae", "MISSING.safetensors"), "--vae MISSING.safetensors: no such file"),
    (("--guardrail", "MISSING"), "--guardrail MISSING: no such folder"),
]


@pytest.mark.parametrize("extra, message", BAD_OPTIONS, ids=[" ".join(e) for e, _ in BAD_OPTIONS])
def test_bad_options_are_refused_before_loading(checkpoint, tmp_path, capsys, no_weights, extra, message):
    out = tmp_path / "out.mp4"
    assert _run(checkpoint, out, *SIZE, *extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err
    assert "Traceback" not in err and "num_frames" not in err and "guidance_scale" not in err
    assert list(tmp_path.iterdir()) == []


def test_cuda_on_a_cpu_only_torch(checkpoint, tmp_path, capsys, no_weights):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    assert _run(checkpoint, tmp_path / "out.mp4", "--device", "cuda") == 2
    assert "--device cuda: this torch build has no CUDA" in capsys.readouterr().err


def test_a_huge_frame_is_refused_with_the_memory_figure(checkpoint, tmp_path, capsys, no_weights):
    extra = ("--height", "100000", "--width", "100000", "--frames", "1", "--no-strict-sizes")
    assert _run(checkpoint, tmp_path / "out.png", *extra) == 2
    err = capsys.readouterr().err
    assert "one 100000x100000 image needs at least" in err and "GiB" in err and "this machine has" in err


@pytest.mark.parametrize(
    "output, extra, message",
    [
        ("out.gif", (), "unsupported output extension '.gif'"),
        ("missing/out.mp4", (), "output folder {tmp}/missing does not exist"),
        ("folder.mp4", (), "output {tmp}/folder.mp4 is an existing folder"),
        ("out.png", ("--frames", "5"), ".png holds one image but 5 frames were requested (--frames)"),
        ("out.webp", ("--fps", "5000"), "--fps 5000 cannot be stored in a video file"),
    ],
)
def test_output_problems_name_the_requested_path(checkpoint, tmp_path, capsys, no_weights, output, extra, message):
    (tmp_path / "folder.mp4").mkdir()
    assert _run(checkpoint, tmp_path / output, *extra) == 2
    err = capsys.readouterr().err
    assert message.format(tmp=tmp_path) in err and ".partial" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.mp4"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write anywhere")
def test_read_only_output_folder(checkpoint, tmp_path, capsys, no_weights):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        assert _run(checkpoint, folder / "out.mp4") == 2
        assert f"output folder {folder} is not writable" in capsys.readouterr().err
    finally:
        folder.chmod(0o700)


def test_bad_condition_image(checkpoint, tmp_path, capsys, no_weights):
    (tmp_path / "in.png").write_bytes(b"not a png")
    assert _run(checkpoint, tmp_path / "out.mp4", *SIZE, "--image", str(tmp_path / "in.png")) == 2
    assert "--image: " in capsys.readouterr().err
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "ok.png")
    assert _run(checkpoint, tmp_path / "out.mp4", "--frames", "1", "--image", str(tmp_path / "ok.png")) == 2
    assert "--frames > 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    "prompt, message",
    [
        (("--prompt", ""), "--prompt: the prompt is empty: pass the text with --prompt TEXT or --prompt-file PATH"),
        (("--prompt", " \n\t"), "--allow-empty-prompt"),
        (("--prompt-file", "MISSING.txt"), "--prompt-file MISSING.txt: no such file"),
    ],
)
def test_prompt_problems(checkpoint, tmp_path, capsys, no_weights, prompt, message):
    assert _run(checkpoint, tmp_path / "out.mp4", prompt=prompt) == 2
    assert message in capsys.readouterr().err


def test_prompt_file_must_be_utf8_and_may_be_empty_on_request(checkpoint, tmp_path, capsys, no_weights):
    (tmp_path / "p.txt").write_bytes(b"a red \xe9 ball")  # Latin-1
    assert _run(checkpoint, tmp_path / "out.mp4", prompt=("--prompt-file", str(tmp_path / "p.txt"))) == 2
    assert "is not UTF-8 text: byte 6 is 0xe9" in capsys.readouterr().err
    (tmp_path / "p.txt").write_text("   ", encoding="utf-8")
    assert _run(checkpoint, tmp_path / "out.mp4", prompt=("--prompt-file", str(tmp_path / "p.txt"))) == 2
    assert "--prompt-file: the prompt is empty" in capsys.readouterr().err
    # allowed: the checks pass and the run goes on to load the weights (refused here by the fixture)
    with pytest.raises(AssertionError, match="weights were loaded"):
        _run(checkpoint, tmp_path / "o.mp4", "--allow-empty-prompt", prompt=("--prompt-file", str(tmp_path / "p.txt")))


def test_empty_prompt_runs_when_allowed(checkpoint, tmp_path):
    assert _run(checkpoint, tmp_path / "out.npy", *SIZE, "--allow-empty-prompt", prompt=("--prompt", "")) == 0
    assert np.load(tmp_path / "out.npy").shape == (5, 32, 32, 3)


def _actions(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _actions(sub)
        elif not isinstance(action, argparse._HelpAction):
            yield action


def test_every_option_has_help_and_help_shows_defaults(capsys):
    missing = [a.option_strings for a in _actions(cli._parser()) if not a.help]
    assert not missing, f"options without a help line: {missing}"
    with pytest.raises(SystemExit):
        cli.main(["generate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for shown in ("--seed SEED noise seed (default: 0)", "(default: auto)", "(default: framework)",
                  "(default: per mode", "no guardrail runs", "--allow-empty-prompt", "--prompt-file"):
        assert shown in text, shown


def test_guardrail_option_checks_the_prompt_before_loading_and_the_frames_after(
    checkpoint, tmp_path, capsys, monkeypatch, retinaface_weights
):
    from guardrail_support import install_retinaface, write_release

    from guardrails.suite import Guardrail

    folder = tmp_path / "cosmos3_guardrail"
    install_retinaface(write_release(folder / "Cosmos-Guardrail1"), retinaface_weights["none"])
    original = Cosmos3Pipeline.from_pretrained
    loads = []
    monkeypatch.setattr(Cosmos3Pipeline, "from_pretrained",
                        classmethod(lambda cls, *a, **k: loads.append(1) or original(*a, **k)))
    assert _run(checkpoint, tmp_path / "out.npy", *SIZE, "--guardrail", str(folder),
                prompt=("--prompt", "three zorblaxes")) == 2
    err = capsys.readouterr().err
    assert "BLOCKED by blocklist" in err and not loads and not (tmp_path / "out.npy").exists()

    checked = []
    check_images = Guardrail.check_images
    monkeypatch.setattr(Guardrail, "check_images", lambda g, f, **k: checked.append(f.shape) or check_images(g, f))
    assert _run(checkpoint, tmp_path / "out.npy", *SIZE, "--guardrail", str(folder)) == 0
    err = capsys.readouterr().err
    assert "guardrail: " in err and "none runs" not in err and checked == [(5, 32, 32, 3)]
