"""The offline prompt upsampler: tiny random Qwen3 / Qwen3-VL folders (save_pretrained + the real Qwen3
tokenizer), a scripted stand-in model for every repair and fallback, bad folders, the pipeline and the CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from tiny_tokenizer import qwen_tokenizer_files
from tiny_upsampler import GOOD, IMAGE_PAD, ScriptedLM, make_qwen3_chat

from cosmos3.text import upsampler as up
from cosmos3.text.structured_prompt import finalize_answer
from cosmos3.text.upsampler_instructions import UpsampleTarget


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(qwen_tokenizer_files()), local_files_only=True)


def scripted(tokenizer, *answers):
    return up.PromptUpsampler(ScriptedLM(tokenizer, answers), tokenizer)


def test_scripted_answers_go_through_every_repair_and_fallback(tokenizer):
    good = json.dumps(GOOD)
    answers = {
        "clean": good,
        "fenced": f"```json\n{good}\n```",
        "thinking": f"<think>\nplan the {{scene}}\n</think>\n\n```json\n{good}\n```",
        "trailing text": f"Sure! Here it is:\n{good}\nLet me know if you need more.",
        "single quotes": repr(GOOD),
        "trailing commas": good[:-1] + ",}",
        "refusal": "I'm sorry, I can't do that.",
        "empty json": '{"temporal_caption": ""}',
        "cut off": "```json\n" + good[:40],
        "empty answer": "",
    }
    upsampler = scripted(tokenizer, *answers.values())
    results = {name: upsampler.upsample("a red ball rolls", "t2v", width=832, height=480, frames=121)
               for name in answers}
    expected = {**{k: v for k, v in GOOD.items() if k != "scene_imagination"}, "resolution": {"H": 480, "W": 832},
                "aspect_ratio": "16,9", "duration": "5s", "fps": 24.0}
    for name in ("clean", "fenced", "thinking", "trailing text", "single quotes", "trailing commas"):
        assert not results[name].fallback and json.loads(results[name].text) == expected, name
    assert results["clean"].repairs == () and results["clean"].warnings == ()
    assert results["single quotes"].repairs == ("single quotes read as JSON strings",)
    for name in ("refusal", "empty json", "cut off", "empty answer"):
        result = results[name]
        assert result.fallback and result.warnings, name
        assert json.loads(result.text)["temporal_caption"] == "a red ball rolls", name
    calls = upsampler.model.calls
    assert len(calls) == len(answers) and all(c["config"].do_sample is False for c in calls)
    assert all(c["config"].max_new_tokens == up.DEFAULT_MAX_NEW_TOKENS for c in calls)


def test_chat_parts_and_context_limit(tokenizer):
    upsampler = scripted(tokenizer, json.dumps(GOOD))
    upsampler.upsample("a red ball rolls", "t2v", width=832, height=480, frames=121, audio_description="a soft hum")
    rendered = tokenizer.decode(upsampler.model.calls[0]["input_ids"][0])
    assert rendered.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
    assert "<video_description>\na red ball rolls\n</video_description>" in rendered and "a soft hum" in rendered
    assert rendered.rstrip().endswith("<|im_start|>assistant\n<think>\n\n</think>".rstrip())  # thinking off
    small = up.PromptUpsampler(ScriptedLM(tokenizer, ["{}"], context=1200), tokenizer)
    with pytest.raises(up.UpsamplerError, match=r"exceeds the context .*1200 tokens.*max_new_tokens"):
        small.upsample("a red ball rolls", "t2v", max_new_tokens=512)
    with pytest.raises(up.UpsamplerError, match="max_new_tokens"):
        small.upsample("a red ball rolls", "t2v", max_new_tokens=0)
    with pytest.raises(up.UpsamplerError, match="empty"):
        small.upsample("   ", "t2v")
    with pytest.raises(up.UpsamplerError, match="needs the conditioning image"):
        small.upsample("it rolls", "i2v")


def test_tiny_qwen3_folder_is_deterministic(tiny_qwen3_chat_dir):
    upsampler = up.load_upsampler(tiny_qwen3_chat_dir)
    assert not upsampler.takes_images and upsampler.context_length == 8192
    kwargs = dict(width=64, height=48, frames=9, max_new_tokens=12)
    first = upsampler.upsample("a red ball rolls", "t2v", seed=1, **kwargs)
    assert first.raw and first.raw == upsampler.upsample("a red ball rolls", "t2v", seed=2, **kwargs).raw  # greedy
    assert first.fallback and json.loads(first.text)["temporal_caption"] == "a red ball rolls"  # random weights
    sampled = [upsampler.upsample("a red ball rolls", "t2v", seed=5, temperature=1.0, **kwargs).raw for _ in range(2)]
    assert sampled[0] == sampled[1]
    note = upsampler.upsample("it rolls", "i2v", image=np.zeros((48, 64, 3), np.float32), **kwargs)
    assert "text-only model" in note.warnings[0]


def test_tiny_qwen3_vl_sees_the_image(tiny_qwen3_vl_dir, tokenizer):
    upsampler = up.load_upsampler(tiny_qwen3_vl_dir)
    assert upsampler.takes_images and upsampler.context_length == 8192
    seen = {}
    original = upsampler.model.generate

    def spy(**inputs):
        seen.update(inputs)
        return original(**inputs)

    upsampler.model.generate = spy
    image = torch.rand(1, 96, 128, 3)  # a ComfyUI IMAGE batch
    result = upsampler.upsample("the ball starts rolling", "i2v", image=image, width=64, height=48, frames=9,
                                max_new_tokens=6)
    assert result.text and json.loads(result.text)["resolution"] == {"H": 48, "W": 64}
    grid = seen["image_grid_thw"]
    assert grid.shape == (1, 3) and grid[0, 0] == 1  # one image, one temporal patch
    ids = seen["input_ids"][0].tolist()
    assert ids.count(IMAGE_PAD) == int(grid.prod()) // 4 and seen["pixel_values"].shape[0] == int(grid.prod())
    text = tokenizer.decode(ids)
    assert text.index("<|vision_start|>") < text.index("<video_description>")  # image before the text
    again = upsampler.upsample("the ball starts rolling", "i2v", image=image, width=64, height=48, frames=9,
                               max_new_tokens=6)
    assert again.raw == result.raw


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("breakage, message", [
    ("missing", "does not exist"),
    ("cosmos3", "Cosmos3 generation checkpoint"),
    ("encoder", r"not a causal language model or vision-language model \(config.json architectures: \['BertModel'\]"),
    ("no_tokenizer", "no tokenizer"),
    ("no_template", "no chat template"),
    ("pickle", r"no \*.safetensors weights \(found pytorch_model.bin"),
])
def test_bad_folders_name_the_problem(tiny_qwen3_chat_dir, tmp_path, breakage, message):
    folder = _copy(tiny_qwen3_chat_dir, tmp_path / "model")
    if breakage == "missing":
        folder = tmp_path / "nowhere"
    elif breakage == "cosmos3":
        (folder / "model_index.json").write_text("{}")
    elif breakage == "encoder":
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "architectures": ["BertModel"]}))
    elif breakage == "no_tokenizer":
        for name in ("tokenizer.json", "vocab.json", "merges.txt"):
            (folder / name).unlink()
    elif breakage == "no_template":
        config = json.loads((folder / "tokenizer_config.json").read_text())
        config.pop("chat_template")
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
    elif breakage == "pickle":
        (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(up.UpsamplerError, match=message) as info:
        up.load_upsampler(folder)
    assert str(folder) in str(info.value)


def test_prompt_over_the_context_names_the_limit(tmp_path):
    upsampler = up.load_upsampler(make_qwen3_chat(tmp_path / "short", max_positions=1024))
    with pytest.raises(up.UpsamplerError, match=r"context of short \(1024 tokens"):
        upsampler.upsample("a red ball " * 400, "t2v", max_new_tokens=64)


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    from cosmos3.demo import build_demo_checkpoint
    from cosmos3.pipeline import Cosmos3Pipeline

    return Cosmos3Pipeline.from_pretrained(build_demo_checkpoint(tmp_path_factory.mktemp("up") / "Demo"),
                                           dtype=torch.float32)


class RecordingGuardrail:
    def __init__(self):
        self.checked = []

    def ensure_prompt_safe(self, prompt):
        self.checked.append(prompt)


def test_pipeline_hands_the_caption_to_the_text_tower(pipe, tokenizer):
    upsampler = scripted(tokenizer, json.dumps(GOOD))
    guard = RecordingGuardrail()
    kwargs = dict(num_frames=5, height=32, width=48, steps=2, seed=3, return_latents=True)
    latents = pipe.generate("a red ball rolls", upsampler=upsampler, guardrail=guard, **kwargs)
    caption = finalize_answer(json.dumps(GOOD), "a red ball rolls", "t2v",
                              metadata=UpsampleTarget("t2v", 48, 32, 5, 24.0).metadata()).text
    assert guard.checked == ["a red ball rolls", caption]  # the typed prompt, then the final caption
    request = tokenizer.decode(upsampler.model.calls[0]["input_ids"][0])
    assert 'resolution: {"W": 48, "H": 32}' in request
    assert torch.equal(latents, pipe.generate(caption, **kwargs))
    plain = pipe.generate("a red ball rolls", **kwargs)
    wrapped = pipe.generate("a red ball rolls", plain_prompt="temporal_caption", **kwargs)
    assert torch.equal(plain, pipe.generate("a red ball rolls", plain_prompt="as_text", **kwargs))  # not Edge
    assert torch.equal(wrapped, pipe.generate('{"temporal_caption": "a red ball rolls"}', **kwargs))
    assert not torch.equal(plain, wrapped)


def test_cli_upsample(tiny_qwen3_chat_dir, pipe, tmp_path, capsys):
    from cosmos3.cli import main

    base = ["generate", "--checkpoint", str(pipe.info.root), "--prompt", "a red ball rolls", "--steps", "2",
            "--frames", "5", "--height", "32", "--width", "48"]
    assert main([*base, "--output", str(tmp_path / "a.npy"), "--upsample", str(tiny_qwen3_chat_dir)]) == 0
    assert np.load(tmp_path / "a.npy").shape == (5, 32, 48, 3)
    assert "prompt upsampler" in capsys.readouterr().err
    assert main([*base, "--output", str(tmp_path / "b.npy"), "--upsample", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "b.npy").exists()
