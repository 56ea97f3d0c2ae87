"""The structured-prompt schema, builder and the repair/validation of an LLM's answer (no model)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cosmos3.text import structured_prompt as sp
from cosmos3.text.upsampler_instructions import UpsampleTarget, build_messages, format_duration, instruction_text

GOOD = {"scene_imagination": "focus: ball", "temporal_caption": "At 0:00 a red ball rolls.", "subjects": [
    {"description": "a red ball"}], "background_setting": "a wooden table"}
GOOD_TEXT = json.dumps(GOOD)


def test_builder_keeps_non_empty_fields_in_schema_order():
    text = sp.build_structured_prompt("t2v", subjects='[{"description": "a cat"}]', temporal_caption=" A cat naps. ",
                                      lighting={}, context="", transitions=[])
    assert json.loads(text) == {"temporal_caption": "A cat naps.", "subjects": [{"description": "a cat"}]}
    assert list(json.loads(text)) == ["temporal_caption", "subjects"]
    image = sp.build_structured_prompt("t2i", comprehensive_t2i_caption="A red apple on snow.")
    assert json.loads(image) == {"comprehensive_t2i_caption": "A red apple on snow."}


@pytest.mark.parametrize("fields, message", [
    ({"temporal_caption": "x", "colour": "red"}, "unknown field"),
    ({"duration": "5s"}, "at least one descriptive field"),
    ({"subjects": "[{bad"}, "does not parse"),
    ({"temporal_caption": ""}, "at least one descriptive field"),
])
def test_builder_errors(fields, message):
    with pytest.raises(sp.StructuredPromptError, match=message):
        sp.build_structured_prompt("t2v", **fields)


def test_plain_prompt_wrapping():
    assert json.loads(sp.wrap_plain_prompt(" a ball ", "temporal_caption")) == {"temporal_caption": "a ball"}
    assert sp.wrap_plain_prompt("a ball", "as_text") == "a ball"
    assert sp.wrap_plain_prompt(GOOD_TEXT, "temporal_caption") == GOOD_TEXT  # JSON objects untouched
    assert sp.wrap_plain_prompt("", "temporal_caption") == ""
    assert sp.resolve_plain_prompt("auto", edge=True) == "temporal_caption"
    assert sp.resolve_plain_prompt("auto", edge=False) == "as_text"
    assert sp.resolve_plain_prompt("auto", edge=True, prompt_style="diffusers") == "as_text"
    assert sp.resolve_plain_prompt("as_text", edge=True) == "as_text"
    with pytest.raises(sp.StructuredPromptError, match="plain_prompt"):
        sp.resolve_plain_prompt("wrap", edge=True)


# Every repair the parser knows, each on its own and combined.
REPAIRS = [
    (GOOD_TEXT, []),
    ("```json\n" + GOOD_TEXT + "\n```", ["code fence removed"]),
    ("```\n" + GOOD_TEXT + "\n```", ["code fence removed"]),
    ("```json\n" + GOOD_TEXT, ["code fence removed"]),  # cut off before the closing fence
    ("<think>plan {the} scene</think>\n```json\n" + GOOD_TEXT + "\n```", ["thinking block removed",
                                                                         "code fence removed"]),
    ("<think>\nstill thinking\n" + GOOD_TEXT, ["thinking block removed"]),
    ("Here is the prompt:\n" + GOOD_TEXT + "\nHope this helps! {smile}", ["text around the object removed"]),
    (GOOD_TEXT[:-1] + ",}", ["trailing commas removed"]),
    (repr(GOOD), ["single quotes read as JSON strings"]),
    ("```json\n" + repr(GOOD).replace("'a wooden table'", "'a wooden table',") + "\n``` done",
     ["code fence removed", "single quotes read as JSON strings"]),
]


@pytest.mark.parametrize("answer, repairs", REPAIRS)
def test_parse_answer_repairs(answer, repairs):
    obj, applied = sp.parse_answer(answer)
    assert obj == GOOD and applied == repairs


def test_parse_answer_respects_braces_in_strings():
    text = '{"temporal_caption": "a sign reads \\"}{\\" and {x}"} trailing'
    obj, applied = sp.parse_answer(text)
    assert obj == {"temporal_caption": 'a sign reads "}{" and {x}'} and applied == ["text around the object removed"]


@pytest.mark.parametrize("answer", ["", "no json here", "[1, 2]", "{'a': set()}", "{unclosed", "```python\nx = 1\n```",
                                    "{'a': float('nan')}"])
def test_parse_answer_unusable(answer):
    assert sp.parse_answer(answer)[0] is None


def test_finalize_keeps_schema_fields_and_stamps_metadata():
    raw = json.dumps({**GOOD, "fps": 99, "colour": "red", "lighting": None, "duration": "0:05"})
    meta = {"resolution": {"H": 480, "W": 832}, "aspect_ratio": "16,9", "duration": "5s", "fps": 24.0}
    result = sp.finalize_answer(raw, "a ball", "t2v", metadata=meta, audio_description="  a soft hum ")
    assert not result.fallback and result.raw == raw
    assert result.fields == {"temporal_caption": GOOD["temporal_caption"], "subjects": GOOD["subjects"],
                             "background_setting": "a wooden table", "fps": 24.0, "duration": "5s",
                             "resolution": {"H": 480, "W": 832}, "aspect_ratio": "16,9",
                             "audio_description": "a soft hum"}
    assert json.loads(result.text) == result.fields
    assert result.warnings == ("dropped field(s) outside the schema: colour, lighting",)  # scratchpad: silent
    assert "WARNING: dropped field(s)" in result.report()


def test_finalize_image_mode_fields():
    raw = json.dumps({"comprehensive_t2i_caption": "A red apple.", "quadrant_scan": {"top_left": "sky"},
                      "temporal_caption": "x", "duration": "5s"})
    result = sp.finalize_answer(raw, "an apple", "t2i", metadata={"aspect_ratio": "1,1", "duration": "5s"},
                                audio_description="ignored for images")
    assert result.fields == {"comprehensive_t2i_caption": "A red apple.", "quadrant_scan": {"top_left": "sky"},
                             "aspect_ratio": "1,1"}


@pytest.mark.parametrize("answer, why", [
    ("I cannot help with that.", "holds no JSON object"),
    ('{"temporal_caption": "", "subjects": []}', "has no caption text"),
    ('{"scene_imagination": "focus: a ball"}', "has no caption text"),
    ('{"colour": "red"}', "has no caption text"),
    ("```json\n{\"temporal_caption\": \"cut of", "holds no JSON object"),
])
def test_finalize_falls_back_visibly(answer, why):
    result = sp.finalize_answer(answer, "  a red ball rolls ", "t2v", metadata={"fps": 24.0})
    assert result.fallback and result.fields == {"temporal_caption": "a red ball rolls", "fps": 24.0}
    assert any(why in w for w in result.warnings) and "WARNING" in result.report()


def test_finalize_refuses_an_empty_prompt():
    with pytest.raises(sp.StructuredPromptError, match="empty"):
        sp.finalize_answer(GOOD_TEXT, "  ", "t2v")
    with pytest.raises(sp.StructuredPromptError, match="mode"):
        sp.finalize_answer(GOOD_TEXT, "x", "v2v")


def test_instructions_carry_the_clip_facts():
    video = UpsampleTarget("t2v", 832, 480, 121, 24.0)
    text = instruction_text("  a red ball rolls  ", video, audio_description="rain on a tin roof")
    assert "<video_description>\na red ball rolls\n</video_description>" in text
    for fact in ('duration: "0:05"', "fps: 24", 'aspect_ratio: "16,9"', 'resolution: {"W": 832, "H": 480}',
                 "rain on a tin roof", '"temporal_caption"', '"scene_imagination"'):
        assert fact in text
    assert video.metadata() == {"resolution": {"H": 480, "W": 832}, "aspect_ratio": "16,9", "duration": "5s",
                                "fps": 24.0}
    image = instruction_text("an apple", UpsampleTarget("t2i", 960, 960, 1))
    assert "<image_description>" in image and "duration" not in image and '"comprehensive_t2i_caption"' in image
    i2v = instruction_text("it rolls", UpsampleTarget("i2v", 832, 480))
    assert "first frame" in i2v
    assert format_duration(75) == "1:15" and format_duration(5) == "0:05"
    messages = build_messages("x", video, with_image=True)
    assert messages[0] == {"role": "system", "content": "You are a helpful assistant."}
    assert messages[1]["content"][0] == {"type": "image"} and messages[1]["content"][1]["type"] == "text"
    assert isinstance(build_messages("x", video)[1]["content"], str)


def test_modules_do_not_import_transformers():
    code = ("import sys; import cosmos3.text.upsampler, cosmos3.text.structured_prompt; "
            "assert 'transformers' not in sys.modules, 'transformers imported eagerly'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(__import__("pathlib").Path(__file__).parents[1]))
