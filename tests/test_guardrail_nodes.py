"""Guardrail nodes: V1 declarations are valid and the functions run without ComfyUI (fake folder_paths)."""

from __future__ import annotations

import sys

import pytest
import torch
from guardrail_support import install_fake_folder_paths, install_retinaface, write_release
from support import REPO_ROOT, load_pack_as_comfyui

V1_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "IMAGE"}


@pytest.fixture(scope="module")
def pack():
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
        assert node_id in pack.NODE_CLASS_MAPPINGS
        assert pack.NODE_DISPLAY_NAME_MAPPINGS[node_id].startswith("Cosmos3 MoT Guardrail")


def test_declarations_are_valid_v1(nodes):
    for cls in nodes.NODES:
        spec = cls.INPUT_TYPES()
        assert set(spec) <= {"required", "optional", "hidden"}
        for section in ("required", "optional"):
            for name, entry in spec.get(section, {}).items():
                kind, opts = entry
                assert opts.get("tooltip"), f"{cls.__name__}.{name} has no tooltip"
                if isinstance(kind, list):
                    assert kind and opts.get("default", kind[0]) in kind, (cls.__name__, name)
                else:
                    assert kind in V1_TYPES or kind.startswith("C3MOT_"), kind
        assert isinstance(cls.RETURN_TYPES, tuple)
        assert len(cls.RETURN_TYPES) == len(cls.RETURN_NAMES) == len(cls.OUTPUT_TOOLTIPS)
        assert all(t in V1_TYPES or t.startswith("C3MOT_") for t in cls.RETURN_TYPES)
        assert callable(getattr(cls, cls.FUNCTION)) and cls.CATEGORY and cls.DESCRIPTION
        # every declared input is a keyword of the function
        import inspect

        params = inspect.signature(getattr(cls, cls.FUNCTION)).parameters
        for section in ("required", "optional"):
            for name in spec.get(section, {}):
                assert name in params, (cls.__name__, name)


def test_folder_registration_and_choices(nodes, models):
    fp, root = models
    (root / "Qwen3Guard-Gen-0.6B").mkdir()
    (root / "Qwen3Guard-Gen-0.6B" / "config.json").write_text("{}")
    spec = nodes.GuardrailLoader.INPUT_TYPES()["required"]
    assert fp.folder_names_and_paths["cosmos3_guardrail"] == ([str(root)], {".safetensors", ".sft"})
    assert spec["release_folder"][0] == ["Cosmos-Guardrail1"]
    assert spec["llm_judge"][0] == ["auto", "off", "Qwen3Guard-Gen-0.6B"]
    assert spec["siglip_folder"][0][0] == "siglip-so400m-patch14-384"


def test_nodes_import_and_declare_without_comfyui(nodes, monkeypatch):
    monkeypatch.delitem(sys.modules, "folder_paths", raising=False)
    assert nodes.GuardrailLoader.INPUT_TYPES()["required"]["release_folder"][0] == ["Cosmos-Guardrail1"]


def test_loader_reports_every_missing_file(nodes, tmp_path, monkeypatch):
    install_fake_folder_paths(monkeypatch, tmp_path / "models")
    args = dict(LOADER_DEFAULTS, llm_judge="Qwen3Guard-Gen-0.6B", content_filter=True)
    with pytest.raises(FileNotFoundError) as err:
        nodes.GuardrailLoader().load(**args)
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
    guardrail, setup = nodes.GuardrailLoader().load(**LOADER_DEFAULTS)
    assert "face_blur: on" in setup and "qwen3guard: off" in setup
    prompt, negative, report = nodes.GuardrailPromptCheck().check(guardrail, "a robot in a park", "blurry")
    assert (prompt, negative) == ("a robot in a park", "blurry")
    assert "SAFE" in report and "blocklist: pass" in report
    with pytest.raises(ValueError, match="BLOCKED by blocklist"):
        nodes.GuardrailPromptCheck().check(guardrail, "so many zorblaxes")
    with pytest.raises(ValueError, match="negative prompt"):
        nodes.GuardrailPromptCheck().check(guardrail, "a cat", "zorblax", check_negative=True)

    images = torch.rand(2, 48, 64, 3, generator=torch.Generator().manual_seed(0))
    out, is_safe, report = nodes.GuardrailFrameCheck().check(guardrail, images, "error")
    assert is_safe is True and out.shape == images.shape and out.dtype == torch.float32
    assert not torch.equal(out, images) and "face_blur: pass" in report


def test_frame_check_on_block(nodes, models, pack):
    from_pack = pack.guardrails
    fp, root = models

    class _Blocker:
        name = "content_filter"

        def check(self, frames):
            return from_pack.CheckResult("content_filter", "block", "scripted block")

    guardrail, _ = nodes.GuardrailLoader().load(**LOADER_DEFAULTS)
    guardrail.content_filter = _Blocker()
    images = torch.rand(3, 32, 32, 3)
    black, is_safe, report = nodes.GuardrailFrameCheck().check(guardrail, images, "black_frames")
    assert is_safe is False and torch.equal(black, torch.zeros_like(images))
    assert "BLOCKED by content_filter" in report and "black frames" in report
    with pytest.raises(from_pack.GuardrailBlocked, match="scripted block"):
        nodes.GuardrailFrameCheck().check(guardrail, images, "error")
