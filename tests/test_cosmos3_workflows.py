"""The shipped T2V / I2V / T2I workflows: generated from the node declarations, wired as documented, and
executed node by node (API twins) on the tiny fixtures with the ComfyUI stub, producing frames of the
right shape. (Schema, link types and widget counts: tests/test_shipped_workflows.py.)"""

from __future__ import annotations

import make_workflows
import pytest
import torch
import workflow_check as wc

pytest.importorskip("cosmos3.vae.model")
from tiny_models import TINY_HEIGHT, TINY_VIDEO_FRAMES, TINY_WIDTH, install_fixtures, rewrite_names  # noqa: E402

NAMES = make_workflows.NAMES


def test_committed_workflows_are_what_the_generator_builds():
    for path, text in make_workflows.expected_files().items():
        assert path.is_file(), f"{path} missing: run python tests/make_workflows.py"
        assert path.read_text() == text, f"{path} is stale: run python tests/make_workflows.py (and review the diff)"


@pytest.mark.parametrize("name", NAMES)
def test_ui_workflow_wiring(name):
    ui = wc.load_json(make_workflows.WORKFLOW_DIR / f"{name}.json")
    nodes = {n["id"]: n for n in ui["nodes"]}
    by_type = {}
    for n in ui["nodes"]:
        by_type.setdefault(n["type"], []).append(n)
    links = {link[0]: link for link in ui["links"]}

    def source(node, input_name):
        entry = next(i for i in node["inputs"] if i["name"] == input_name)
        link = links[entry["link"]]
        return nodes[link[1]]["type"], link[2]

    text = by_type["C3MoTTextEncode"][0]
    upsampler = by_type["C3MoTPromptUpsampler"][0]  # optional step, bypassed: the checked prompt passes through
    assert upsampler["mode"] == 4 and source(text, "prompt") == ("C3MoTPromptUpsampler", 0)
    assert source(upsampler, "prompt") == ("C3MoTGuardrailPromptCheck", 0)  # checked before encoding
    assert source(text, "negative_prompt") == ("C3MoTGuardrailPromptCheck", 1)
    for size in ("width", "height", "frames"):
        assert source(text, size)[0] == "C3MoTEmptyLatent"
    check = by_type["C3MoTGuardrailFrameCheck"][0]
    assert source(check, "images") == ("C3MoTVAEDecode", 0)  # checked after decoding
    if name == make_workflows.KSAMPLER_LORA:  # core KSampler on the LoRA Loader's MODEL + Text Encode CONDITIONING
        sampler = by_type["KSampler"][0]
        assert source(sampler, "model") == ("C3MoTLoraLoader", 1)
        assert source(text, "model") == ("C3MoTLoraLoader", 0)  # K/V from the same (LoRA) text tower
        assert source(sampler, "positive") == ("C3MoTTextEncode", 2)
        assert source(sampler, "negative") == ("C3MoTTextEncode", 3)
        assert source(sampler, "latent_image") == ("C3MoTEmptyLatent", 0)
        assert source(by_type["C3MoTVAEDecode"][0], "samples") == ("KSampler", 0)
        assert by_type["C3MoTLoraLoader"][0]["widgets_values"][0] == make_workflows.LORA
        return
    sampler = by_type["C3MoTSampler"][0]
    assert sampler["widgets_values"][1] == "randomize"  # seed + its control value
    for loader in ("C3MoTModelLoader", "C3MoTVAELoader", "C3MoTGuardrailLoader"):
        node = by_type[loader][0]
        assert node["properties"]["Node name for S&R"] == loader
        hints = node["properties"]["models"]
        assert hints and all(h["name"] in node["widgets_values"] and h["directory"] for h in hints)
        assert all("url" not in h or h["url"].endswith(".safetensors") for h in hints)  # only files are downloadable
    if name == "cosmos3_t2i":
        assert source(by_type["SaveImage"][0], "images") == ("C3MoTGuardrailFrameCheck", 0)
        assert by_type["C3MoTEmptyLatent"][0]["widgets_values"][3] == 1
    else:
        create = by_type["CreateVideo"][0]
        assert source(create, "images") == ("C3MoTGuardrailFrameCheck", 0)
        assert source(create, "fps") == ("C3MoTTextEncode", 1)
        assert source(by_type["SaveVideo"][0], "video") == ("CreateVideo", 0)
    if name == "cosmos3_i2v":
        assert source(sampler, "image_cond") == ("C3MoTImageCondition", 0)
        assert source(by_type["C3MoTImageCondition"][0], "image") == ("LoadImage", 0)
    else:
        assert next(i for i in sampler["inputs"] if i["name"] == "image_cond")["link"] is None


@pytest.mark.parametrize("name", NAMES)
def test_api_workflow_runs_on_the_tiny_fixtures(name, comfy_pack, comfy_stub):
    fixtures = install_fixtures(comfy_stub.models_dir, comfy_stub.input_dir)
    api = rewrite_names(wc.load_json(make_workflows.API_DIR / f"{name}.json"), fixtures.names)
    result = wc.run_api_workflow(api, comfy_pack.nodes.NODE_CLASS_MAPPINGS)
    kinds = [n["class_type"] for n in (api[i] for i in result.order)]
    sampler_kind = "KSampler" if name == make_workflows.KSAMPLER_LORA else "C3MoTSampler"
    assert kinds.index("C3MoTGuardrailPromptCheck") < kinds.index("C3MoTTextEncode") < kinds.index(sampler_kind)
    assert kinds.index("C3MoTVAEDecode") < kinds.index("C3MoTGuardrailFrameCheck")
    if name == "cosmos3_t2i":
        (saved,) = result.captured_by("SaveImage")
        images = saved["images"]
        assert images.shape == (1, TINY_HEIGHT, TINY_WIDTH, 3)
        assert (comfy_stub.output_dir / saved["files"][0]["subfolder"] / saved["files"][0]["filename"]).is_file()
    else:
        (saved,) = result.captured_by("SaveVideo")
        images, fps = saved["video"].images, saved["video"].fps
        assert images.shape == (TINY_VIDEO_FRAMES, TINY_HEIGHT, TINY_WIDTH, 3) and fps == 24.0
    assert images.dtype == torch.float32 and 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    assert float(images.std()) > 0  # not the black frames of a blocked check
    sampler_id = next(i for i in result.order if api[i]["class_type"] == sampler_kind)
    latent = result.outputs[sampler_id][0]["samples"]
    assert latent.shape == (1, 48, (images.shape[0] - 1) // 4 + 1, TINY_HEIGHT // 16, TINY_WIDTH // 16)
