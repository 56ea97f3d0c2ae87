"""Empty / whitespace-only prompts are refused by the library entry points unless explicitly allowed; prompts that
are not valid Unicode (undecodable command-line bytes) get a clear error instead of a tokenizer type error."""

from __future__ import annotations

import pytest
import torch

from cosmos3.demo import build_demo_checkpoint
from cosmos3.geometry import Geometry
from cosmos3.pipeline import Cosmos3Pipeline
from cosmos3.runtime.memory_budget import MemoryEstimateError
from cosmos3.text.encoding import encode_prompt
from cosmos3.text.prompt_checks import EmptyPromptError, check_prompt_text
from cosmos3.text.prompting import PromptError

SMALL = dict(num_frames=5, height=32, width=32, steps=1, seed=0)


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return Cosmos3Pipeline.from_pretrained(build_demo_checkpoint(tmp_path_factory.mktemp("p") / "Demo"), torch.float32)


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t ", "\u3000"])
def test_generate_refuses_an_empty_prompt_before_any_work(pipe, prompt, monkeypatch):
    monkeypatch.setattr(pipe, "encode_prompt", lambda *a, **k: pytest.fail("the text tower ran"))
    with pytest.raises(EmptyPromptError, match="the prompt is empty: .*allow_empty_prompt=True"):
        pipe.generate(prompt, **SMALL)


def test_encode_prompt_refuses_an_empty_prompt(pipe):
    with pytest.raises(EmptyPromptError, match="the prompt is empty"):
        encode_prompt(pipe.transformer, pipe.tokenizer, " ", None, geometry=Geometry(5, 32, 32))
    with pytest.raises(EmptyPromptError):
        pipe.encode_prompt("", None, geometry=Geometry(5, 32, 32))


def test_empty_prompt_runs_when_allowed_and_the_negative_may_be_empty(pipe):
    frames = pipe.generate("", "", allow_empty_prompt=True, **SMALL)
    assert frames.shape == (5, 32, 32, 3)
    encoded = pipe.encode_prompt("", "", geometry=Geometry(5, 32, 32), allow_empty_prompt=True)
    assert encoded.cond.text_len > 0  # the metadata sentences remain
    assert pipe.generate("a red ball", "  ", **SMALL).shape == (5, 32, 32, 3)


def test_undecodable_bytes_are_a_clear_error(pipe):
    prompt = b"a red \xff ball".decode("utf-8", "surrogateescape")  # what Python makes of non-UTF-8 argv bytes
    with pytest.raises(PromptError, match="not valid UTF-8 text: character 6 is an undecodable byte 0xff"):
        pipe.generate(prompt, **SMALL)
    with pytest.raises(PromptError, match="negative prompt is not valid UTF-8"):
        pipe.generate("a red ball", prompt, **SMALL)
    with pytest.raises(TypeError, match="prompt must be a string, got bytes"):
        check_prompt_text(b"a red ball")


def test_stage_callback_reports_encoding_and_decoding(pipe):
    seen = []
    pipe.generate("a red ball", stage_callback=lambda *s: seen.append(s), **SMALL)
    stages = [s[0] for s in seen]
    assert stages[:2] == ["encode_prompt", "encode_prompt"] and stages[-1] == "decode"
    assert seen[-1][1] == seen[-1][2] >= 1  # the last decode report is done == total


def test_a_request_too_big_for_memory_is_refused_with_the_figure(pipe):
    with pytest.raises(MemoryEstimateError, match=r"needs at least [\d.]+ [GTP]iB .* but this machine has"):
        pipe.generate("a red ball", num_frames=1, height=100000, width=100000, strict_sizes=False, steps=1)
