"""Workflow tooling (tests/workflow_check.py): UI checks, API twins and the in-process executor, exercised
on small hand-made workflows built from our VAE / latent nodes and core save nodes."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import workflow_check as wc

pytest.importorskip("cosmos3.vae.model")
pytest.importorskip("tiny_vae")
from tiny_models import TEST_IMAGE, VAE_FILE, install_fixtures, rewrite_names  # noqa: E402


@pytest.fixture
def specs(comfy_pack):
    return wc.node_specs(comfy_pack.nodes.NODE_CLASS_MAPPINGS)


@pytest.fixture
def builder(comfy_pack, specs):
    return lambda: wc.GraphBuilder(specs, wc.output_names_of(comfy_pack.nodes.NODE_CLASS_MAPPINGS))


def t2i_graph(builder, width=32, height=32):
    g = builder()
    vae = g.add("C3MoTVAELoader", vae_name=VAE_FILE, dtype="auto")
    lat = g.add("C3MoTEmptyLatent", preset="custom", width=width, height=height, frames=1)
    img = g.add("C3MoTVAEDecode", vae=vae.out(), samples=lat.out("samples"))
    g.add("SaveImage", images=img.out("images"), filename_prefix="cosmos3/t2i")
    return g


def video_graph(builder):
    g = builder()
    vae = g.add("C3MoTVAELoader", vae_name=VAE_FILE)
    lat = g.add("C3MoTEmptyLatent", width=32, height=16, frames=5)
    img = g.add("C3MoTVAEDecode", vae=vae.out(), samples=lat.out(0), tiled="off")
    video = g.add("CreateVideo", images=img.out(), fps=24.0)
    g.add("SaveVideo", video=video.out(), filename_prefix="video/cosmos3")
    g.add("SaveAnimatedWEBP", images=img.out(), fps=24.0)
    g.add("MarkdownNote", text="**A note** for the user")
    return g


def encode_graph(builder):
    g = builder()
    vae = g.add("C3MoTVAELoader", vae_name=VAE_FILE)
    image = g.add("LoadImage", image="example.png")
    lat = g.add("C3MoTVAEEncode", vae=vae.out(), images=image.out("IMAGE"))
    img = g.add("C3MoTVAEDecode", vae=vae.out(), samples=lat.out(), tiled="on", tile_size=32, tile_overlap=16)
    g.add("PreviewImage", images=img.out())
    return g


# ------------------------------------------------------------------------------------------------------
# specs


def test_core_specs_have_the_v064_widgets(specs):
    widgets = {name: [w.name for w in s.widgets] for name, s in specs.items() if name in wc.CORE_NODES}
    assert widgets["LoadImage"] == ["image"] and specs["LoadImage"].widget_slots == 2  # + the upload button
    assert widgets["SaveVideo"] == ["filename_prefix", "format", "codec"]
    assert widgets["CreateVideo"] == ["fps"] and specs["CreateVideo"].outputs == ("VIDEO",)
    assert widgets["SaveAnimatedWEBP"] == ["filename_prefix", "fps", "lossless", "quality", "method"]
    assert specs["PrimitiveInt"].widget_slots == 2  # control_after_generate
    assert specs["SaveImage"].output_node and not specs["CreateVideo"].output_node
    ours = specs["C3MoTVAELoader"].input("vae_name")
    assert ours.dynamic and not specs["C3MoTVAELoader"].input("dtype").dynamic


# ------------------------------------------------------------------------------------------------------
# UI checks and API twins


@pytest.mark.parametrize("make", [t2i_graph, video_graph, encode_graph])
def test_built_graphs_are_valid_and_twins_match(builder, specs, make, tmp_path):
    g = make(builder)
    ui, api = g.ui(), g.api()
    # through JSON, as shipped files
    ui = json.loads(json.dumps(ui))
    api = json.loads(json.dumps(api))
    wc.check_ui_workflow(ui, specs)
    wc.check_api_workflow(api, specs)
    wc.check_api_twin(ui, api, specs)
    assert all(node["class_type"] != "MarkdownNote" for node in api.values())


def test_t2i_graph_layout(builder, specs):
    ui = t2i_graph(builder).ui()
    assert ui["links"] == [
        [1, 1, 0, 3, 0, "C3MOT_VAE"], [2, 2, 0, 3, 1, "LATENT"], [3, 3, 0, 4, 0, "IMAGE"],
    ]
    decode = ui["nodes"][2]
    assert decode["widgets_values"] == ["auto", 256, 64]
    assert ui["nodes"][1]["outputs"][0] == {"name": "samples", "type": "LATENT", "links": [2], "slot_index": 0}
    assert t2i_graph(builder).api()["3"] == {
        "class_type": "C3MoTVAEDecode",
        "inputs": {"vae": ["1", 0], "samples": ["2", 0], "tiled": "auto", "tile_size": 256, "tile_overlap": 64},
    }


def _problems(fn, *args, **kwargs) -> str:
    with pytest.raises(wc.WorkflowError) as err:
        fn(*args, **kwargs)
    return "\n".join(err.value.problems)


def test_ui_check_finds_problems(builder, specs):
    ui = t2i_graph(builder).ui()
    bad = copy.deepcopy(ui)
    bad["links"][0][5] = "VAE"  # core's VAE type is not ours
    bad["nodes"][2]["widgets_values"] = ["auto", 256]  # one widget value missing
    bad["nodes"][1]["widgets_values"][1] = 1000.5  # width must be an INT
    bad["nodes"][0]["widgets_values"][1] = "fp64"  # not a dtype choice
    bad["nodes"].append(dict(copy.deepcopy(ui["nodes"][3]), id=9, type="SomePackNode"))
    bad["version"] = 1
    text = _problems(wc.check_ui_workflow, bad, specs)
    assert "link 1: type 'VAE' but node 1 (C3MoTVAELoader) output 0 is 'C3MOT_VAE'" in text
    assert "link 1: type 'VAE' but node 3 (C3MoTVAEDecode) input 'vae' is 'C3MOT_VAE'" in text
    assert "node 3 (C3MoTVAEDecode): widgets_values has 2 values, the node has 3 widget slots" in text
    assert "width: expected an integer, got 1000.5" in text
    assert "dtype: 'fp64' not in ['auto', 'bf16', 'fp16', 'fp32']" in text
    assert "node 9 (SomePackNode): unknown node type" in text
    assert "version must be 0.4" in text


def test_ui_check_finds_broken_links(builder, specs):
    ui = t2i_graph(builder).ui()
    bad = copy.deepcopy(ui)
    bad["nodes"][2]["inputs"][1]["link"] = None  # samples disconnected on the target side only
    text = _problems(wc.check_ui_workflow, bad, specs)
    assert "required input 'samples' (LATENT) is not connected" in text
    assert "link 2: node 3 input slot 1 does not point back to it" in text
    bad = copy.deepcopy(ui)
    bad["nodes"][0]["widgets_values"][0] = "not_installed.safetensors"  # dynamic lists are only checked on request
    wc.check_ui_workflow(bad, specs)
    assert "vae_name" in _problems(wc.check_ui_workflow, bad, specs, check_dynamic=True)


def test_api_twin_mismatches(builder, specs):
    g = t2i_graph(builder)
    ui, api = g.ui(), g.api()
    api["3"]["inputs"]["tile_size"] = 512
    api["4"]["inputs"]["images"] = ["2", 0]
    del api["2"]
    api["7"] = {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}}
    text = _problems(wc.check_api_twin, ui, api, specs)
    assert "node 3: input 'tile_size' is 512 in the API twin, 256 in the UI" in text
    assert "node 4: input 'images' is ['2', 0] in the API twin, ['3', 0] in the UI" in text
    assert "node 2 (C3MoTEmptyLatent) is in the UI graph but not in the API twin" in text
    assert "node 7 (PreviewImage) is in the API twin but not (active) in the UI graph" in text


def test_api_check_like_the_server(builder, specs):
    api = t2i_graph(builder).api()
    api["2"]["inputs"]["frames"] = 2000
    api["3"]["inputs"]["samples"] = ["1", 0]
    del api["4"]["inputs"]["filename_prefix"]
    api["5"] = {"class_type": "NoSuchNode", "inputs": {}}
    text = _problems(wc.check_api_workflow, api, specs)
    assert "frames: value 2000 bigger than max of 1025" in text
    assert "input 'samples' is 'LATENT' but node 1 output 0 is 'C3MOT_VAE'" in text
    assert "required input 'filename_prefix' is missing" in text
    assert "node 5 (NoSuchNode): node type does not exist" in text
    assert "no output node" in _problems(wc.check_api_workflow, {"1": api["1"]}, specs)


def test_muted_nodes_and_notes_leave_the_api(builder, specs):
    ui = video_graph(builder).ui()
    webp = next(n for n in ui["nodes"] if n["type"] == "SaveAnimatedWEBP")
    webp["mode"] = 2
    wc.check_ui_workflow(ui, specs)
    api = wc.ui_to_api(ui, specs)
    assert sorted(n["class_type"] for n in api.values()) == [
        "C3MoTEmptyLatent", "C3MoTVAEDecode", "C3MoTVAELoader", "CreateVideo", "SaveVideo"]


# ------------------------------------------------------------------------------------------------------
# executor


@pytest.fixture
def fixtures(comfy_stub):
    return install_fixtures(comfy_stub.models_dir, comfy_stub.input_dir)


def test_run_t2i(comfy_pack, comfy_stub, builder, fixtures):
    api = rewrite_names(t2i_graph(builder, width=48, height=32).api(), fixtures.names)
    result = wc.run_api_workflow(api, comfy_pack.nodes.NODE_CLASS_MAPPINGS)
    assert result.order == ["1", "2", "3", "4"]
    (saved,) = result.captured_by("SaveImage")
    assert saved["images"].shape == (1, 32, 48, 3)
    files = result.ui["4"]["images"]
    assert files == [{"filename": "t2i_00001_.png", "subfolder": "cosmos3", "type": "output"}]
    assert (comfy_stub.output_dir / "cosmos3" / "t2i_00001_.png").is_file()
    latent, width, height, frames = result.outputs["2"]
    assert latent["samples"].shape == (1, 48, 1, 2, 3) and (width, height, frames) == (48, 32, 1)


def test_run_video_to_core_video_nodes(comfy_pack, builder, fixtures):
    api = rewrite_names(video_graph(builder).api(), fixtures.names)
    result = wc.run_api_workflow(api, comfy_pack.nodes.NODE_CLASS_MAPPINGS)
    (video,) = result.captured_by("SaveVideo")
    assert video["video"].images.shape == (5, 16, 32, 3) and video["video"].fps == 24.0
    assert video["format"] == "auto" and video["codec"] == "auto"
    (webp,) = result.captured_by("SaveAnimatedWEBP")
    assert webp["images"] is video["video"].images  # the decode ran once, both consumers got its output
    assert result.order.count("3") == 1


def test_run_encode_from_loaded_image(comfy_pack, comfy_stub, builder, fixtures):
    api = rewrite_names(encode_graph(builder).api(), fixtures.names)
    assert api["2"]["inputs"]["image"] == TEST_IMAGE
    result = wc.run_api_workflow(api, comfy_pack.nodes.NODE_CLASS_MAPPINGS)
    (latent,) = result.outputs["3"]
    assert latent["samples"].shape == (1, 48, 1, 2, 2)
    (preview,) = result.captured_by("PreviewImage")
    assert preview["images"].shape == (1, 32, 32, 3)
    assert result.ui["5"]["images"][0]["type"] == "temp"


def test_run_reports_node_errors_and_invalid_prompts(comfy_pack, builder, fixtures):
    api = rewrite_names(t2i_graph(builder).api(), fixtures.names)
    api["2"]["inputs"]["width"] = 40  # within min/max, so the server accepts it; the node refuses it
    with pytest.raises(
        wc.NodeExecutionError, match=r"node 2 \(C3MoTEmptyLatent\) raised ValueError: width 40 is not a multiple of 16"
    ):
        wc.run_api_workflow(api, comfy_pack.nodes.NODE_CLASS_MAPPINGS)
    api = rewrite_names(t2i_graph(builder).api(), fixtures.names)
    api["1"]["inputs"]["vae_name"] = "missing.safetensors"  # not in the installed list: rejected before running
    with pytest.raises(wc.WorkflowError, match="vae_name: 'missing.safetensors' not in"):
        wc.run_api_workflow(api, comfy_pack.nodes.NODE_CLASS_MAPPINGS)


def test_executor_checks_output_conventions(comfy_pack, comfy_stub):
    class BadImage:
        RETURN_TYPES = ("IMAGE",)
        FUNCTION = "run"
        CATEGORY = "test"

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {}}

        def run(self):
            return (torch.full((1, 8, 8, 3), 2.0),)

    mappings = dict(comfy_pack.nodes.NODE_CLASS_MAPPINGS, C3MoTBadImage=BadImage)
    api = {"1": {"class_type": "C3MoTBadImage", "inputs": {}},
           "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
    with pytest.raises(ValueError, match=r"IMAGE values must lie in 0..1"):
        wc.run_api_workflow(api, mappings)
