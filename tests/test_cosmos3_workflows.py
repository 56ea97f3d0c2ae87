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
SPECS = make_workflows._specs_and_names()[0]


def test_committed_workflows_are_what_the_generator_builds():
    for path, text in make_workflows.expected_files().items():
        assert path.is_file(), f"{path} missing: run python tests/make_workflows.py"
        assert path.read_text() == text, f"{path} is stale: run python tests/make_workflows.py (and review the diff)"
    assert not make_workflows.media_problems()  # thumbnails (the template browser asks for them) + example inputs


@pytest.mark.parametrize("name", NAMES)
def test_layout_keeps_titles_and_badges_clear(name):
    """No node box (title bar and the 1.5x source badge above it included) overlaps another, every node lies in
    the group, and the saved view starts the group right of the 1.5x sidebar and below its toolbar, at a zoom
    that shows node text."""
    ui = wc.load_json(make_workflows.WORKFLOW_DIR / f"{name}.json")
    assert not wc.layout_problems(ui)
    assert wc.view_problems(ui, left=80, top=90, width=1536, height=779) == []


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
    assert sampler["widgets_values"][:2] == [make_workflows.SEEDS[name], "fixed"]  # the README's seed, kept
    for loader in ("C3MoTModelLoader", "C3MoTVAELoader", "C3MoTGuardrailLoader"):
        node = by_type[loader][0]
        assert node["properties"]["Node name for S&R"] == loader
        hints = node["properties"].get("models", [])
        if loader != "C3MoTVAELoader":  # folders cannot be downloaded: no entry (the schema requires a url)
            assert not hints, loader
            continue
        assert hints and all(h["name"] in node["widgets_values"] and h["directory"] for h in hints)
    assert not wc.model_hint_problems(ui)
    # linked size widgets hold the Empty Latent's values, not stale defaults (issue 17: T2I kept 832/480/121)
    latent = by_type["C3MoTEmptyLatent"][0]["widgets_values"]
    for node_type in ("C3MoTTextEncode", "C3MoTImageCondition", "C3MoTVideoCondition"):
        for node in by_type.get(node_type, []):
            widgets = dict(zip([w.name for w in SPECS[node_type].widgets], node["widgets_values"]))
            assert [widgets["width"], widgets["height"], widgets["frames"]] == latent[1:4], node_type
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
        assert by_type["LoadImage"][0]["widgets_values"][0] == make_workflows.EXAMPLE_IMAGE
    elif name == "cosmos3_v2v":
        assert source(sampler, "image_cond") == ("C3MoTVideoCondition", 0)
        assert source(by_type["C3MoTVideoCondition"][0], "video") == ("LoadImage", 0)
        assert by_type["LoadImage"][0]["widgets_values"][0] == make_workflows.EXAMPLE_CLIP
    else:
        assert next(i for i in sampler["inputs"] if i["name"] == "image_cond")["link"] is None


@pytest.mark.parametrize("name", NAMES)
def test_api_workflow_runs_on_the_tiny_fixtures(name, comfy_pack, comfy_stub):
    fixtures = install_fixtures(comfy_stub.models_dir, comfy_stub.input_dir)
    shipped_input = {"cosmos3_i2v": make_workflows.EXAMPLE_IMAGE, "cosmos3_v2v": make_workflows.EXAMPLE_CLIP}.get(name)
    if shipped_input:  # what the pack copies into ComfyUI's input folder at start-up
        comfy_pack.nodes.comfy_entrypoint()
        assert (comfy_stub.input_dir / shipped_input).is_file()
        names = {"input_image": shipped_input}
    else:
        names = {}
    api = rewrite_names(wc.load_json(make_workflows.API_DIR / f"{name}.json"), fixtures.names, **names)
    result = wc.run_api_workflow(api, comfy_pack.nodes.NODE_CLASS_MAPPINGS)
    loaders = [i for i in result.order if api[i]["class_type"] == "LoadImage"]
    if name == "cosmos3_v2v":  # every frame of the animated example clip reaches Video Condition
        assert result.outputs[loaders[0]][0].shape[0] == 9
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


def test_example_inputs_are_copied_once_and_never_overwritten(comfy_pack, comfy_stub):
    mine = comfy_stub.input_dir / make_workflows.EXAMPLE_IMAGE
    mine.parent.mkdir(parents=True, exist_ok=True)
    mine.write_bytes(b"the user's own file")
    comfy_pack.nodes.comfy_entrypoint()
    assert mine.read_bytes() == b"the user's own file"
    clip = comfy_stub.input_dir / make_workflows.EXAMPLE_CLIP
    assert clip.read_bytes() == (make_workflows.INPUT_DIR / make_workflows.EXAMPLE_CLIP).read_bytes()
