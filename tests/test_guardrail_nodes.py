"""Guardrail nodes: registered, choices from the model folder, and they run without ComfyUI's services (fake
folder_paths; only the V3 API stand-in). Their declarations are checked with every node's in test_node_schemas."""

from __future__ import annotations

import sys

import pytest
import torch
from comfy_fixtures import comfy_api_only
from guardrail_support import install_fake_folder_paths, install_retinaface, write_release
from support import REPO_ROOT, load_pack_as_comfyui


@pytest.fixture(scope="module")
def pack():
    with comfy_api_only():
        return load_pack_as_comfyui(REPO_ROOT, "c3mot_pack_for_guardrail_node_tests")


@pytest.fixture(scope="module")
def nodes(pack):
    return pack.nodes.guardrail_nodes


@pytest.fixture()
def models(tmp_path, monkeypatch, retinaface_weights):
    """A fake ComfyUI models dir with a release (word lists, WordNet, RetinaFace that finds 'faces')."""
    fp = install_fake_folder_paths(monkeypatch, tmp_path / "models")
    root = tmp_path / "models" / "cosmos3_guardrail"
    release = write_release(root / "Cosmos-Guardrail1")
    install_retinaface(release, retinaface_weights["faces"])
    return fp, root


LOADER_DEFAULTS = dict(
    release_folder="Cosmos-Guardrail1", blocklist="release", llm_judge="auto", controversial="allow",
    face_blur=True, content_filter=False, siglip_folder="siglip-so400m-patch14-384", device="cpu",
    keep_on_device=False,
)


def test_registered_through_the_registry(pack):
    for node_id in ("C3MoTGuardrailLoader", "C3MoTGuardrailPromptCheck", "C3MoTGuardrailFrameCheck"):
        assert node_id in pack.nodes.NODE_CLASS_MAPPINGS
        assert pack.nodes.NODE_DISPLAY_NAME_MAPPINGS[node_id].startswith("Cosmos3 MoT Guardrail")


def test_folder_registration_and_choices(nodes, models):
    fp, root = models
    (root / "Qwen3Guard-Gen-0.6B").mkdir()
    (root / "Qwen3Guard-Gen-0.6B" / "config.json").write_text("{}")
    spec = nodes.GuardrailLoader.INPUT_TYPES()["required"]
    assert fp.folder_names_and_paths["cosmos3_guardrail"] == ([str(root)], {".safetensors", ".sft"})
    assert spec["release_folder"][1]["options"] == ["Cosmos-Guardrail1"]
    assert spec["llm_judge"][1]["options"] == ["auto", "off", "on", "Qwen3Guard-Gen-0.6B"]
    assert spec["llm_judge"][1]["default"] == "on"
    assert spec["siglip_folder"][1]["options"][0] == "siglip-so400m-patch14-384"


def test_nodes_import_and_declare_without_comfyui(nodes, monkeypatch):
    monkeypatch.delitem(sys.modules, "folder_paths", raising=False)
    assert nodes.GuardrailLoader.INPUT_TYPES()["required"]["release_folder"][1]["options"] == ["Cosmos-Guardrail1"]


def test_loader_reports_every_missing_file(nodes, tmp_path, monkeypatch):
    install_fake_folder_paths(monkeypatch, tmp_path / "models")
    args = dict(LOADER_DEFAULTS, llm_judge="Qwen3Guard-Gen-0.6B", content_filter=True)
    with pytest.raises(FileNotFoundError) as err:
        nodes.GuardrailLoader.execute(**args)
    text = str(err.value)
    base = tmp_path / "models" / "cosmos3_guardrail"
    for path in (
        base / "Cosmos-Guardrail1" / "blocklist" / "custom",
        base / "Cosmos-Guardrail1" / "face_blur_filter" / "retinaface_resnet50.safetensors",
        base / "Cosmos-Guardrail1" / "video_content_safety_filter" / "safety_filter.safetensors",
        base / "Qwen3Guard-Gen-0.6B",
        base / "siglip-so400m-patch14-384",
    ):
        assert str(path) in text, path


def test_prompt_and_frame_checks_run(nodes, models):
    guardrail, setup = nodes.GuardrailLoader.execute(**LOADER_DEFAULTS)
    assert "face_blur: on" in setup and "qwen3guard: off" in setup
    prompt, negative, report = nodes.GuardrailPromptCheck.execute(guardrail, "a robot in a park", "blurry")
    assert (prompt, negative) == ("a robot in a park", "blurry")
    assert "SAFE" in report and "blocklist: pass" in report
    with pytest.raises(ValueError, match="BLOCKED by blocklist"):
        nodes.GuardrailPromptCheck.execute(guardrail, "so many zorblaxes")
    with pytest.raises(ValueError, match="negative prompt"):
        nodes.GuardrailPromptCheck.execute(guardrail, "a cat", "zorblax", check_negative=True)

    images = torch.rand(2, 48, 64, 3, generator=torch.Generator().manual_seed(0))
    out, is_safe, report = nodes.GuardrailFrameCheck.execute(guardrail, images, "error")
    assert is_safe is True and out.shape == images.shape and out.dtype == torch.float32
    assert not torch.equal(out, images) and "face_blur: pass" in report


def test_frame_check_on_block(nodes, models, pack):
    from_pack = pack.guardrails
    fp, root = models

    class _Blocker:
        name = "content_filter"

        def check(self, frames):
            return from_pack.CheckResult("content_filter", "block", "scripted block")

    guardrail, _ = nodes.GuardrailLoader.execute(**LOADER_DEFAULTS)
    guardrail.content_filter = _Blocker()
    images = torch.rand(3, 32, 32, 3)
    black, is_safe, report = nodes.GuardrailFrameCheck.execute(guardrail, images, "black_frames")
    assert is_safe is False and torch.equal(black, torch.zeros_like(images))
    assert "BLOCKED by content_filter" in report and "black frames" in report
    with pytest.raises(from_pack.GuardrailBlocked, match="scripted block"):
        nodes.GuardrailFrameCheck.execute(guardrail, images, "error")


def _stub_release(comfy_stub) -> dict:
    """A release (word lists only) in the stub's models/cosmos3_guardrail; loader arguments without face blur."""
    write_release(comfy_stub.models_dir / "cosmos3_guardrail" / "Cosmos-Guardrail1")
    return dict(LOADER_DEFAULTS, face_blur=False)


def test_auto_without_the_judge_is_visible(comfy_pack, comfy_stub):
    """llm_judge 'auto' with no Qwen3Guard folder still runs, but the weakening is in the setup output, in every
    prompt report and on screen: text on the executing node and a warning toast event for the frontend."""
    nodes = comfy_pack.nodes.guardrail_nodes
    args = _stub_release(comfy_stub)
    with comfy_stub.executing("3"):
        guardrail, setup = nodes.GuardrailLoader.execute(**args)
    assert setup.startswith("WARNING: weaker than NVIDIA's recipe") and "non-English" in setup
    toasts = [m for m in comfy_stub.ui_messages if m["event"] == "cosmos3_mot.warning"]
    texts = [m for m in comfy_stub.ui_messages if m["event"] == "progress_text"]
    assert len(toasts) == 1 and "Qwen3Guard prompt judge is off" in toasts[0]["data"]["text"]
    assert toasts[0]["data"]["node"] == "3" and texts[0]["node"] == "3" and "non-English" in texts[0]["text"]

    comfy_stub.ui_messages.clear()
    with comfy_stub.executing("4"):
        _, _, report = nodes.GuardrailPromptCheck.execute(guardrail, "ein Roboter im Park")
    assert "SAFE" in report and "note: WARNING: weaker than NVIDIA's recipe" in report
    assert [m["data"]["node"] for m in comfy_stub.ui_messages if m["event"] == "cosmos3_mot.warning"] == ["4"]


def test_default_on_requires_the_judge(comfy_pack, comfy_stub):
    """The shipped default 'on' refuses to run without Qwen3Guard, saying where it goes and how to opt out."""
    nodes = comfy_pack.nodes.guardrail_nodes
    args = dict(_stub_release(comfy_stub), llm_judge="on")
    with pytest.raises(FileNotFoundError) as err:
        nodes.GuardrailLoader.execute(**args)
    text = str(err.value)
    assert "Qwen3Guard" in text and "Qwen/Qwen3Guard-Gen-0.6B" in text
    assert "choose llm_judge 'auto' or 'off'" in text
    assert not comfy_stub.ui_messages


def test_judge_off_by_choice_is_not_a_warning(comfy_pack, comfy_stub):
    nodes = comfy_pack.nodes.guardrail_nodes
    guardrail, setup = nodes.GuardrailLoader.execute(**dict(_stub_release(comfy_stub), llm_judge="off"))
    assert "WARNING" not in setup and "qwen3guard: off — disabled in the loader" in setup
    _, _, report = nodes.GuardrailPromptCheck.execute(guardrail, "a robot")
    assert "WARNING" not in report and not comfy_stub.ui_messages
