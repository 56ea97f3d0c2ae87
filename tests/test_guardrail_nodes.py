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
    assert spec["llm_judge"][1]["options"] == ["auto", "off", "Qwen3Guard-Gen-0.6B"]
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
