"""The Prompt Upsampler and Structured Prompt nodes, and Text Encode's plain_prompt choice, against the ComfyUI
stub: folders listed from models/LLM and models/text_encoders, the model managed through a ModelPatcher, the
result handed to Text Encode."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
import torch
from tiny_models import CHECKPOINT_CHOICE, install_cosmos3_checkpoint
from tiny_upsampler import GOOD, ScriptedLM

W, H, F = 64, 48, 9
PROMPT = "a red ball rolls over the table"


@pytest.fixture
def m(comfy_pack):
    class Modules:
        prompt = sys.modules[f"{comfy_pack.__name__}.nodes.prompt_nodes"]
        text = sys.modules[f"{comfy_pack.__name__}.nodes.text_nodes"]
        model = sys.modules[f"{comfy_pack.__name__}.nodes.model_nodes"]

    Modules.prompt._loaded.clear()
    yield Modules
    Modules.prompt._loaded.clear()


@pytest.fixture
def llms(comfy_stub, tiny_qwen3_chat_dir, tiny_qwen3_vl_dir):
    shutil.copytree(tiny_qwen3_chat_dir, comfy_stub.models_dir / "LLM" / "Qwen3-tiny")
    shutil.copytree(tiny_qwen3_vl_dir, comfy_stub.models_dir / "text_encoders" / "Qwen" / "Qwen3-VL-tiny")
    (comfy_stub.models_dir / "LLM" / "not-a-model").mkdir()
    return comfy_stub.models_dir


@pytest.fixture
def model(m, comfy_stub):
    install_cosmos3_checkpoint(comfy_stub.models_dir)
    return m.model.ModelLoader.execute(CHECKPOINT_CHOICE, "auto", "auto")[0]


def upsample(m, choice, mode="t2v", after="offload", **kw):
    node = m.prompt.PromptUpsampler
    return node.execute(choice, PROMPT, mode, W, H, F, 24.0, 0, 64, 0.0, after, **kw)


def options(node, name):
    return next(i for i in node.define_schema().inputs if i.id == name).options


def test_folders_are_listed_from_llm_and_text_encoders(m, llms):
    assert options(m.prompt.PromptUpsampler, "model_folder") == [
        m.prompt.DEFAULT_LLM, "LLM/Qwen3-tiny", "text_encoders/Qwen/Qwen3-VL-tiny"]


def test_no_folder_gives_a_clear_error(m, comfy_stub):
    assert options(m.prompt.PromptUpsampler, "model_folder") == [m.prompt.DEFAULT_LLM]
    with pytest.raises(FileNotFoundError, match=r"'LLM/Qwen3-VL-8B-Instruct' not found.*models/LLM"):
        upsample(m, m.prompt.DEFAULT_LLM)


def test_scripted_answer_reaches_text_encode(m, llms, model, comfy_stub, monkeypatch):
    comfy_stub.configure(torch_device="cpu:0")  # a load device distinct from the offload device (cpu)
    up = m.prompt.up  # the pack's own copy of cosmos3.text.upsampler
    tokenizer = up.load_upsampler(llms / "LLM" / "Qwen3-tiny").tokenizer
    scripted = up.PromptUpsampler(ScriptedLM(tokenizer, ["```json\n" + json.dumps(GOOD) + "\n```"] * 3), tokenizer)
    monkeypatch.setattr(up, "load_upsampler", lambda folder, device, dtype: scripted)
    prompt, report = upsample(m, "LLM/Qwen3-tiny")
    fields = json.loads(prompt)
    assert fields["temporal_caption"] == GOOD["temporal_caption"] and "scene_imagination" not in fields
    assert fields["resolution"] == {"H": H, "W": W} and "repaired: code fence removed" in report
    (call,) = [c for c in comfy_stub.load_calls if getattr(c["models"][0].model, "llm", None) is scripted.model]
    assert call["force_full_load"] and comfy_stub.loaded == []  # offloaded after the run
    text = m.text.TextEncode.execute(model, prompt, "", "framework", "auto", W, H, F, 24.0)[0]
    encoded = json.loads(text.cond_text)
    assert encoded["temporal_caption"] == GOOD["temporal_caption"] and encoded["fps"] == 24.0
    upsample(m, "LLM/Qwen3-tiny", after="keep")
    assert [p.model.llm for p in comfy_stub.loaded if hasattr(p.model, "llm")] == [scripted.model]
    upsample(m, "LLM/Qwen3-tiny", after="unload")
    assert not any(hasattr(p.model, "llm") for p in comfy_stub.loaded) and m.prompt._loaded == {}


def test_tiny_models_through_the_node(m, llms, model):
    prompt, report = upsample(m, "LLM/Qwen3-tiny")
    again, _ = upsample(m, "LLM/Qwen3-tiny")
    assert prompt == again and "WARNING" in report  # random weights: visible fallback, deterministic
    assert json.loads(prompt)["temporal_caption"] == PROMPT
    image = torch.rand(1, 40, 56, 3)
    vl_prompt, vl_report = upsample(m, "text_encoders/Qwen/Qwen3-VL-tiny", mode="i2v", image=image)
    assert "text-only" not in vl_report and json.loads(vl_prompt)["temporal_caption"] == PROMPT
    assert list(m.prompt._loaded) == [str(llms / "text_encoders" / "Qwen" / "Qwen3-VL-tiny")]  # one at a time
    text = m.text.TextEncode.execute(model, vl_prompt, "", "framework", "auto", W, H, F, 24.0)[0]
    assert json.loads(text.cond_text)["temporal_caption"] == PROMPT


def test_structured_prompt_node(m):
    node = m.prompt.StructuredPrompt
    (text,) = node.execute("video", " A ball rolls. ", "a red ball\n\na wooden table", "a kitchen", "soft daylight",
                           "slow dolly in", "photoreal", "0:00-0:02: the ball starts\nit stops", "", "").args
    assert json.loads(text) == {
        "temporal_caption": "A ball rolls.",
        "subjects": [{"description": "a red ball"}, {"description": "a wooden table"}],
        "background_setting": "a kitchen", "lighting": {"conditions": "soft daylight"},
        "cinematography": {"camera_motion": "slow dolly in"}, "style_medium": "photoreal",
        "actions": [{"time": "0:00-0:02", "description": "the ball starts"}, {"description": "it stops"}],
    }
    (image,) = node.execute("image", "An apple.", "", "", "", "close-up", "", "", "", '{"context": "still life"}').args
    assert json.loads(image) == {"comprehensive_t2i_caption": "An apple.",
                                 "cinematography": {"framing": "close-up"}, "context": "still life"}
    with pytest.raises(ValueError, match="video fields"):
        node.execute("image", "An apple.", "", "", "", "", "", "a line", "", "")
    with pytest.raises(ValueError, match="extra_json"):
        node.execute("video", "x", "", "", "", "", "", "", "", "not json")
    with pytest.raises(ValueError, match="unknown field"):
        node.execute("video", "x", "", "", "", "", "", "", "", '{"colour": "red"}')
    with pytest.raises(ValueError, match="descriptive field"):
        node.execute("video", "", "", "", "", "", "", "", "", "")


def test_text_encode_plain_prompt_choice(m, model, monkeypatch):
    def cond(prompt, choice):
        return m.text.TextEncode.execute(model, prompt, "", "framework", "auto", W, H, F, 24.0,
                                          plain_prompt=choice)[0].cond_text

    prose = cond(PROMPT, "auto")
    assert prose.startswith(PROMPT) and prose == cond(PROMPT, "as_text")  # not Edge: as trained, prose metadata
    assert json.loads(cond(PROMPT, "temporal_caption"))["temporal_caption"] == PROMPT
    structured = json.dumps(GOOD)
    assert cond(structured, "auto") == cond(structured, "as_text") == cond(structured, "temporal_caption")
    monkeypatch.setattr(m.text, "variant_from_config", lambda config: m.text.Variant.EDGE)
    assert json.loads(cond(PROMPT, "auto"))["temporal_caption"] == PROMPT  # Edge: wrapped by default
    assert cond(PROMPT, "as_text") == prose
    diffusers = m.text.TextEncode.execute(model, PROMPT, "", "diffusers", "auto", W, H, F, 24.0, "auto")[0]
    assert diffusers.cond_text.startswith(PROMPT)



# i2v with the VL model is slow on CPU (test_tiny_models_through_the_node covers the VL node path): -m slow
@pytest.mark.parametrize("name", ["cosmos3_t2v", pytest.param("cosmos3_i2v", marks=pytest.mark.slow)])
def test_shipped_workflow_runs_with_the_upsampler_enabled(name, m, llms, comfy_pack, comfy_stub):
    import make_workflows
    import workflow_check as wc
    from tiny_models import install_fixtures, rewrite_names

    ui = wc.load_json(make_workflows.WORKFLOW_DIR / f"{name}.json")
    (node,) = [n for n in ui["nodes"] if n["type"] == "C3MoTPromptUpsampler"]
    specs = wc.node_specs(comfy_pack.nodes.NODE_CLASS_MAPPINGS)
    bypassed = wc.ui_to_api(ui, specs)
    assert "C3MoTPromptUpsampler" not in [e["class_type"] for e in bypassed.values()]
    node["mode"] = 0  # what Ctrl+B does
    api = wc.ui_to_api(ui, specs)
    wc.check_api_workflow(api, specs)
    api[str(node["id"])]["inputs"]["model_folder"] = "LLM/Qwen3-tiny" if name == "cosmos3_t2v" else (
        "text_encoders/Qwen/Qwen3-VL-tiny")
    fixtures = install_fixtures(comfy_stub.models_dir, comfy_stub.input_dir)
    api = rewrite_names(api, fixtures.names)
    result = wc.run_api_workflow(api, comfy_pack.nodes.NODE_CLASS_MAPPINGS)
    kinds = [api[i]["class_type"] for i in result.order]
    assert kinds.index("C3MoTGuardrailPromptCheck") < kinds.index("C3MoTPromptUpsampler") < kinds.index(
        "C3MoTTextEncode")
    caption = result.outputs[str(node["id"])][0]
    assert json.loads(caption)["temporal_caption"] == make_workflows.PROMPTS[name]  # tiny random LLM: fallback
    (saved,) = result.captured_by("SaveVideo")
    assert saved["video"].images.shape[0] > 1
