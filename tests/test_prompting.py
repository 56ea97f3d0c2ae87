"""Prompt formatting (framework rules by hand, diffusers style against Cosmos3OmniPipeline.tokenize_prompt)."""

from __future__ import annotations

import json
import types

import pytest
import torch
from tiny_tokenizer import (  # noqa: F401  (fixture)
    QWEN_EOS_ID,
    QWEN_VISION_START_ID,
    QWEN_VOCAB_SIZE,
    qwen_checkpoint_dir,
)

from cosmos3.geometry import Geometry, SizeError
from cosmos3.text.prompting import DEFAULT_VIDEO_NEGATIVE, PromptError, default_video_negative_prompt, format_prompts
from cosmos3.text.tokenizer import (
    PromptTokenizer,
    PromptTooLongError,
    TokenizerError,
    load_text_tokenizer,
    resolve_tokenizer_dir,
    tokenize_prompts,
)

VIDEO = dict(geometry=Geometry(189, 720, 1280, 24))
IMAGE = dict(geometry=Geometry(1, 960, 960, 24))


def geo(shape: dict) -> Geometry:
    """The Geometry of a diffusers-style keyword dict (num_frames, height, width, fps)."""
    return Geometry(shape["num_frames"], shape["height"], shape["width"], shape["fps"])
VIDEO_META = "The video is 7.9 seconds long and is of 24 FPS. This video is of 720x1280 resolution."


@pytest.fixture(scope="module")
def tok(qwen_checkpoint_dir) -> PromptTokenizer:  # noqa: F811
    return load_text_tokenizer(qwen_checkpoint_dir, vocab_size=QWEN_VOCAB_SIZE)


# ------------------------------------------------------------------------------------------ framework


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("A robot arm picks up a red cube.", "A robot arm picks up a red cube. " + VIDEO_META),
        ("  A cat naps...  ", "A cat naps. " + VIDEO_META),
        ("No final dot", "No final dot. " + VIDEO_META),
        ("[1, 2]", "[1, 2]. " + VIDEO_META),  # JSON but not an object: plain text
        ("", ". " + VIDEO_META),  # the framework keeps the leading ". " on an empty positive prompt
    ],
)
def test_framework_video_prose(prompt, expected):
    f = format_prompts(prompt, "", **VIDEO)
    assert f.text == expected
    assert f.system_prompt is None and f.style == "framework" and not f.prompt_is_json


def test_framework_image_prose_and_default_negative():
    f = format_prompts("A lighthouse at dusk.", **IMAGE)
    assert f.text == "A lighthouse at dusk. This image is of 960x960 resolution."
    assert f.negative_text == "This image is of 960x960 resolution."


def test_framework_other_fps_rounds_duration():
    f = format_prompts("x", "", geometry=Geometry(121, 480, 832, 16))
    assert f.text == "x. The video is 7.6 seconds long and is of 16 FPS. This video is of 480x832 resolution."


def test_framework_json_video_injection_order_and_values():
    prompt = '{"subjects": [], "duration": "3s", "caption": "a boat"}'
    f = format_prompts(prompt, "", **VIDEO)
    assert f.prompt_is_json
    # existing keys keep their place and are overwritten; new keys are appended duration, fps, resolution, aspect
    assert f.text == (
        '{"subjects": [], "duration": "7s", "caption": "a boat", "fps": 24.0, '
        '"resolution": {"H": 720, "W": 1280}, "aspect_ratio": "16,9"}'
    )
    g = format_prompts('{"caption": "a boat"}', "", geometry=Geometry(121, 480, 832, 16))
    assert g.text == (
        '{"caption": "a boat", "duration": "7s", "fps": 16.0, "resolution": {"H": 480, "W": 832}, '
        '"aspect_ratio": "16,9"}'
    )


def test_framework_json_image_drops_temporal_fields_and_escapes_non_ascii():
    prompt = '{"fps": 30, "caption": "caf\u00e9", "resolution": {"H": 1, "W": 2}, "duration": "5s"}'
    f = format_prompts(prompt, **IMAGE)
    assert f.text == '{"caption": "caf\\u00e9", "resolution": {"H": 960, "W": 960}, "aspect_ratio": "1,1"}'
    # explicit aspect ratio wins over detection
    g = format_prompts('{"a": 1}', **IMAGE, aspect_ratio="4,3")
    assert g.text.endswith('"aspect_ratio": "4,3"}')


def test_framework_negative_same_mode():
    assert format_prompts("p", "", **VIDEO).negative_text == VIDEO_META
    assert format_prompts("p", "blurry, low quality.", **VIDEO).negative_text == "blurry, low quality. " + VIDEO_META
    # leading dots are stripped after formatting
    assert format_prompts("p", ". shaky", **VIDEO).negative_text == "shaky. " + VIDEO_META
    assert format_prompts("p", "...", **VIDEO).negative_text == VIDEO_META
    # a JSON negative is plain text for the negative (prose sentences appended, no injection)
    assert format_prompts("p", '{"a": 1}', **VIDEO).negative_text == '{"a": 1}. ' + VIDEO_META


def test_framework_default_video_negative_is_our_structured_json():
    f = format_prompts("p", None, **VIDEO)
    body = default_video_negative_prompt()
    assert f.negative_text == body + ". " + VIDEO_META
    assert json.loads(body) == DEFAULT_VIDEO_NEGATIVE
    assert body == json.dumps(DEFAULT_VIDEO_NEGATIVE)  # framework serialization: default separators
    for key in ("subjects", "lighting", "cinematography", "temporal_caption", "physical_realism"):
        assert key in DEFAULT_VIDEO_NEGATIVE


def test_framework_negative_inverse_and_none_modes():
    f = format_prompts("p", "ugly", **VIDEO, negative_metadata="inverse")
    assert f.negative_text == (
        "ugly. The video is not 7.9 seconds long and is not of 24 FPS. This video is not of 720x1280 resolution."
    )
    # the framework forces the inverse duration sentence and uses its video templates for images too
    g = format_prompts("p", "", **IMAGE, negative_metadata="inverse")
    assert (
        g.negative_text
        == "The video is not 0.0 seconds long and is not of 24 FPS. This video is not of 960x960 resolution."
    )
    assert format_prompts("p", "ugly.", **VIDEO, negative_metadata="none").negative_text == "ugly."
    assert format_prompts("p", None, **VIDEO, negative_metadata="none").negative_text == default_video_negative_prompt()
    assert format_prompts("p", None, **IMAGE, negative_metadata="none").negative_text == ""


def test_framework_switches_and_system_prompt():
    f = format_prompts("p", "", **VIDEO, add_duration=False)
    assert f.text == "p. This video is of 720x1280 resolution."
    g = format_prompts("p.", "", **IMAGE, add_resolution=False)
    assert g.text == "p." and g.negative_text == ""
    h = format_prompts("p", "", **VIDEO, use_system_prompt=True)
    assert h.system_prompt == "You are a helpful assistant who will generate videos from a give prompt."


def test_framework_token_ids_by_hand(tok):
    out = tokenize_prompts(tok, "hi", "", **IMAGE, add_resolution=False)
    # <|im_start|> user \n hi <|im_end|> \n <|im_start|> assistant \n  + eos + <|vision_start|>
    expected = [151644, 872, 198, 6023, 151645, 198, 151644, 77091, 198, QWEN_EOS_ID, QWEN_VISION_START_ID]
    assert out.cond_ids == expected
    assert out.uncond_ids == [151644, 872, 198, 151645, 198, 151644, 77091, 198, QWEN_EOS_ID, QWEN_VISION_START_ID]
    assert out.ids == (out.cond_ids, out.uncond_ids)
    video = tokenize_prompts(tok, "A cat.", None, **VIDEO)
    assert tok.decode(video.cond_ids) == (
        "<|im_start|>user\nA cat. " + VIDEO_META + "<|im_end|>\n<|im_start|>assistant\n<|im_end|><|vision_start|>"
    )
    assert video.uncond_text.startswith('{"subjects": [{"description": ')
    assert len(video.uncond_ids) < 4096


# ------------------------------------------------------------------------------------------ diffusers


@pytest.fixture(scope="module")
def diffusers_stub(tok):
    """Cosmos3OmniPipeline with its real __init__ but no heavy components (tokenize_prompt only needs the tokenizer)."""
    pipe_mod = pytest.importorskip("diffusers.pipelines.cosmos.pipeline_cosmos3_omni")

    class _Stub(pipe_mod.Cosmos3OmniPipeline):
        def register_modules(self, **modules):
            for name, module in modules.items():
                object.__setattr__(self, name, module)

    vae = types.SimpleNamespace(
        config=types.SimpleNamespace(
            latents_mean=[0.0], latents_std=[1.0], scale_factor_spatial=16, scale_factor_temporal=4
        ),
        dtype=torch.float32,
    )
    return _Stub(transformer=None, text_tokenizer=tok.tokenizer, vae=vae, scheduler=None, enable_safety_checker=False)


DIFFUSERS_PROMPTS = [
    "A cat walks across a sunny kitchen.",
    "A dog runs...",
    "",
    "  trailing space. ",
    '{"caption": "json is plain text here"}',
]
DIFFUSERS_SHAPES = [
    dict(num_frames=189, height=720, width=1280, fps=24.0),
    dict(num_frames=1, height=960, width=960, fps=24.0),
    dict(num_frames=121, height=480, width=832, fps=16.0),
]


@pytest.mark.parametrize("shape", DIFFUSERS_SHAPES, ids=["video", "image", "video16"])
@pytest.mark.parametrize("negative", [None, "", "blurry, low quality."], ids=["none", "empty", "text"])
@pytest.mark.parametrize("system", [None, False, True], ids=["sys-default", "sys-off", "sys-on"])
def test_diffusers_style_matches_pipeline_token_ids(diffusers_stub, tok, shape, negative, system):
    for prompt in DIFFUSERS_PROMPTS:
        ref_c, ref_u = diffusers_stub.tokenize_prompt(prompt, negative, use_system_prompt=system, **shape)
        ours = tokenize_prompts(tok, prompt, negative, geometry=geo(shape), style="diffusers", use_system_prompt=system)
        assert ours.cond_ids == list(ref_c), prompt
        assert ours.uncond_ids == list(ref_u), prompt
        assert (ours.system_prompt is not None) == (system is not False)


def test_diffusers_style_template_switches(diffusers_stub, tok):
    for kwargs in (dict(add_resolution_template=False), dict(add_duration_template=False)):
        ref = diffusers_stub.tokenize_prompt("p.", "n", num_frames=189, height=720, width=1280, fps=24.0, **kwargs)
        ours = tokenize_prompts(
            tok, "p.", "n", geometry=Geometry(189, 720, 1280, 24.0), style="diffusers",
            add_resolution=kwargs.get("add_resolution_template", True),
            add_duration=kwargs.get("add_duration_template", True),
        )
        assert ours.ids == (list(ref[0]), list(ref[1]))


def test_diffusers_style_texts():
    f = format_prompts("A dog runs...", None, style="diffusers", **VIDEO)
    assert f.text == "A dog runs. " + VIDEO_META
    assert f.negative_text == (
        "The video is not 7.9 seconds long and is not of 24 FPS. This video is not of 720x1280 resolution."
    )
    assert f.system_prompt == "You are a helpful assistant who will generate videos from a give prompt."
    g = format_prompts("x", "n", style="diffusers", use_system_prompt=True, **IMAGE)
    assert g.negative_text == "n. This image is not of 960x960 resolution."
    assert g.system_prompt == "You are a helpful assistant who will generate images from a give prompt."


# ------------------------------------------------------------------------------------------ errors


def test_prompt_too_long_names_the_count(tok):
    with pytest.raises(PromptTooLongError, match=r"the prompt is \d+ tokens after formatting; the limit is 4096"):
        tokenize_prompts(tok, "word " * 5000, "", **VIDEO)
    with pytest.raises(PromptTooLongError, match="negative prompt"):
        tokenize_prompts(tok, "ok", "word " * 5000, **VIDEO)


def test_formatting_argument_errors():
    with pytest.raises(PromptError, match="allowed: framework, diffusers"):
        format_prompts("p", style="comfy", **VIDEO)
    with pytest.raises(PromptError, match="allowed: same, inverse, none"):
        format_prompts("p", negative_metadata="opposite", **VIDEO)
    with pytest.raises(PromptError, match="only supports negative_metadata 'inverse'"):
        format_prompts("p", style="diffusers", negative_metadata="same", **VIDEO)
    with pytest.raises(SizeError, match="fps"):
        format_prompts("p", geometry=Geometry(189, 720, 1280, 0))


def test_tokenizer_loading_errors(tmp_path, qwen_checkpoint_dir):  # noqa: F811
    with pytest.raises(TokenizerError, match="text_tokenizer"):
        load_text_tokenizer(tmp_path)
    with pytest.raises(TokenizerError, match="151669 tokens .* only 1000 rows"):
        load_text_tokenizer(qwen_checkpoint_dir, vocab_size=1000)
    assert resolve_tokenizer_dir(qwen_checkpoint_dir / "text_tokenizer") == qwen_checkpoint_dir / "text_tokenizer"
    t = load_text_tokenizer(qwen_checkpoint_dir / "text_tokenizer")
    assert (t.eos_token_id, t.vision_start_token_id) == (QWEN_EOS_ID, QWEN_VISION_START_ID)


class _FakeTokenizer:
    def __init__(self, vocab, eos=1, chat_template="x"):
        self._vocab, self.eos_token_id, self.chat_template = vocab, eos, chat_template

    def __len__(self):
        return len(self._vocab)

    def get_vocab(self):
        return dict(self._vocab)


def test_tokenizer_special_token_errors():
    with pytest.raises(TokenizerError, match="<\\|vision_start\\|>"):
        PromptTokenizer(_FakeTokenizer({"a": 0, "b": 1}))
    with pytest.raises(TokenizerError, match="eos"):
        PromptTokenizer(_FakeTokenizer({"<|vision_start|>": 0}, eos=None))
    with pytest.raises(TokenizerError, match="chat template"):
        PromptTokenizer(_FakeTokenizer({"<|vision_start|>": 0, "e": 1}, chat_template=None))
    with pytest.raises(TokenizerError, match=r"outside the embedding range \[0, 2\)"):
        PromptTokenizer(_FakeTokenizer({"<|vision_start|>": 5, "e": 1}), vocab_size=2)
