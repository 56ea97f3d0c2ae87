"""The assembled guardrail: setup errors, fail-closed behaviour, reports, IMAGE batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from guardrail_support import install_retinaface, write_release

from guardrails import Guardrail, GuardrailBlocked, GuardrailConfig, GuardrailSetupError, find_problems
from guardrails.convert import convert_safety_filter
from guardrails.report import CheckResult
from guardrails.video.content_filter import SafetyHead
from guardrails.video.face_blur import FaceBlur


class _Text:
    def __init__(self, name, status="pass", exc=None):
        self.name, self.status, self.exc, self.calls = name, status, exc, 0

    def check(self, text):
        self.calls += 1
        if self.exc:
            raise self.exc
        return CheckResult(self.name, self.status, "scripted")


class _BoxDetector:
    """Stands in for RetinaFace: a fixed box in every frame."""

    def __init__(self, box=(4, 4, 28, 30), exc=None):
        self.box, self.exc = box, exc

    def detect(self, frames, on_batch=None):
        if self.exc:
            raise self.exc
        if on_batch:
            on_batch(len(frames), len(frames))
        return [np.array([[*self.box, 0.99]], np.float32) for _ in frames]


def images(n=3, h=40, w=48, seed=0):
    return torch.rand(n, h, w, 3, generator=torch.Generator().manual_seed(seed))


# -- setup -----------------------------------------------------------------------------------------
def test_setup_error_lists_every_missing_file(tmp_path):
    release = tmp_path / "Cosmos-Guardrail1"
    (release / "face_blur_filter").mkdir(parents=True)
    (release / "face_blur_filter" / "Resnet50_Final.pth").write_bytes(b"not really")
    config = GuardrailConfig(
        assets_dir=release, blocklist="release", qwen3guard="on", qwen3guard_dir=tmp_path / "Qwen3Guard-Gen-0.6B",
        face_blur=True, content_filter=True, siglip_dir=tmp_path / "siglip",
    )
    with pytest.raises(GuardrailSetupError) as err:
        Guardrail.from_config(config)
    message = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    assert len(err.value.problems) == 5, message
    assert str(release / "blocklist" / "custom") in message
    assert str(tmp_path / "Qwen3Guard-Gen-0.6B") in message
    assert str(release / "face_blur_filter" / "retinaface_resnet50.safetensors") in message
    assert "found Resnet50_Final.pth" in message and "python -m guardrails.convert" in message
    assert str(release / "video_content_safety_filter" / "safety_filter.safetensors") in message
    assert str(tmp_path / "siglip") in message
    assert "fail closed" in message


def test_missing_release_folder_still_lists_the_files(tmp_path):
    problems = find_problems(GuardrailConfig(assets_dir=tmp_path / "nope"))
    assert len(problems) == 3
    assert "does not exist" in problems[0]
    assert "blocklist/custom" in problems[1] and "retinaface_resnet50.safetensors" in problems[2]


def test_mismatched_weights_are_reported_at_setup(tmp_path):
    from safetensors.torch import save_file

    release = write_release(tmp_path / "r")
    bad = release / "face_blur_filter" / "retinaface_resnet50.safetensors"
    bad.parent.mkdir(parents=True)
    save_file({"body.conv1.weight": torch.zeros(64, 3, 7, 7)}, str(bad))
    problems = find_problems(GuardrailConfig(assets_dir=release))
    assert len(problems) == 1 and "missing keys" in problems[0]


def test_disabled_checks_need_no_files_and_are_reported(tmp_path):
    g = Guardrail.from_config(GuardrailConfig(assets_dir=None, blocklist="off", qwen3guard="off", face_blur=False))
    assert "GUARDRAILS DISABLED BY USER" in g.describe()
    report = g.check_text("anything")
    assert report.safe and report.checks_run == []
    assert "ALL TEXT CHECKS DISABLED BY USER" in report.text()
    out, report = g.check_images(images())
    assert out is not None and "ALL FRAME CHECKS DISABLED BY USER" in report.text()


def test_full_release_builds_and_reports_which_checks_ran(tmp_path, retinaface_weights):
    release = write_release(tmp_path / "Cosmos-Guardrail1")
    install_retinaface(release, retinaface_weights["none"])
    config = GuardrailConfig(assets_dir=release, qwen3guard="auto", qwen3guard_dir=tmp_path / "Qwen3Guard-Gen-0.6B")
    g = Guardrail.from_config(config)
    assert g.blocklist.lemmatizer.has_dictionary  # WordNet from blocklist/nltk_data
    report = g.check_text("A robot in a park")
    assert report.safe and report.checks_run == ["blocklist"]
    assert "qwen3guard: off — auto: not installed" in report.text()
    blocked = g.check_text("three zorblaxes")
    assert not blocked.safe and blocked.blocked_by.check == "blocklist" and "lemmatised" in blocked.text()
    with pytest.raises(GuardrailBlocked) as err:
        g.ensure_prompt_safe("three zorblaxes")
    assert isinstance(err.value, ValueError) and "BLOCKED by blocklist" in str(err.value)
    # negative prompt checked only on request
    assert len(g.ensure_prompt_safe("a cat", "zorblax", check_negative=False)) == 1
    with pytest.raises(GuardrailBlocked, match="negative prompt"):
        g.ensure_prompt_safe("a cat", "zorblax", check_negative=True)
    imgs = images()
    out, frame_report = g.check_images(imgs)
    assert torch.equal(out, imgs)  # no faces → exact values kept
    assert frame_report.checks_run == ["face_blur"] and "content_filter: off" in frame_report.text()


def test_builtin_mode_without_release(tmp_path):
    g = Guardrail.from_config(GuardrailConfig(assets_dir=None, blocklist="builtin", face_blur=False, qwen3guard="off"))
    assert g.blocklist.word_count > 500 and g.check_text("a cat on a mat").safe


# -- fail closed -------------------------------------------------------------------------------------
def test_text_check_error_blocks_and_stops_later_checks():
    later = _Text("qwen3guard")
    g = Guardrail(blocklist=_Text("blocklist", exc=RuntimeError("boom")), llm_judge=later)
    report = g.check_text("a cat")
    assert not report.safe and report.blocked_by.status == "error" and "boom" in report.text()
    assert later.calls == 0 and report.result("qwen3guard").status == "skipped"


def test_unparseable_llm_output_blocks():
    from guardrails.text.qwen3guard import Qwen3GuardChecker

    g = Guardrail(blocklist=_Text("blocklist"), llm_judge=Qwen3GuardChecker(None, generate=lambda t: "sure!"))
    report = g.check_text("a cat")
    assert not report.safe and report.result("qwen3guard").status == "error"
    g2 = Guardrail(llm_judge=Qwen3GuardChecker(None, generate=lambda t: (_ for _ in ()).throw(MemoryError("oom"))))
    assert g2.check_text("a cat").blocked_by.status == "error"


def test_empty_prompt_policy():
    g = Guardrail(blocklist=_Text("blocklist"))
    report = g.check_text("   ")
    assert report.safe and report.result("blocklist").status == "skipped"
    strict = Guardrail(blocklist=_Text("blocklist"), block_empty_prompt=True)
    assert not strict.check_text("").safe


def test_face_blur_error_never_returns_unblurred_frames():
    g = Guardrail(face_blur=FaceBlur(lambda: _BoxDetector(exc=RuntimeError("CUDA error"))))
    out, report = g.check_images(images())
    assert out is None and report.blocked_by.check == "face_blur" and "CUDA error" in report.text()
    missing = Guardrail(face_blur=FaceBlur(lambda: (_ for _ in ()).throw(FileNotFoundError("weights gone"))))
    assert missing.check_images(images())[0] is None


def test_content_block_skips_face_blur():
    class _Blocker:
        name = "content_filter"

        def check(self, frames):
            return CheckResult("content_filter", "block", "2/2 frames unsafe")

    g = Guardrail(content_filter=_Blocker(), face_blur=FaceBlur(lambda: _BoxDetector()))
    out, report = g.check_images(images(2))
    assert out is None and report.result("face_blur").status == "skipped"


def test_interrupt_from_progress_callback_propagates():
    class Interrupted(Exception):
        pass

    g = Guardrail(face_blur=FaceBlur(lambda: _BoxDetector()))

    def cancel(done, total):
        raise Interrupted()

    with pytest.raises(Interrupted):
        g.check_images(images(), on_batch=cancel)


# -- IMAGE batches -----------------------------------------------------------------------------------
def test_image_batch_faces_pixelated_rest_exact():
    g = Guardrail(face_blur=FaceBlur(lambda: _BoxDetector(box=(4, 4, 28, 30))))
    imgs = images(5)
    before = imgs.clone()
    out, report = g.check_images(imgs)
    assert torch.equal(imgs, before)  # input not modified
    assert out.shape == imgs.shape and out.dtype == torch.float32 and out.device.type == "cpu"
    mask = torch.ones(40, 48, dtype=torch.bool)
    mask[4:30, 4:28] = False
    assert torch.equal(out[:, mask], imgs[:, mask])
    for i in range(5):
        roi = out[i, 4:30, 4:28].reshape(-1, 3)
        assert len({tuple(p.tolist()) for p in roi}) <= 25
    assert "pixelated 5 face(s) in 5/5 frame(s)" in report.text()
    single, _ = g.check_images(images(1))  # T2I: one frame
    assert single.shape == (1, 40, 48, 3)


def test_image_input_validation():
    g = Guardrail()
    with pytest.raises(ValueError, match=r"\[N,H,W,3\]"):
        g.check_images(torch.rand(40, 48, 3))
    with pytest.raises(ValueError, match="floating point"):
        g.check_images(torch.zeros(1, 4, 4, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="uint8"):
        g.check_frames(np.zeros((1, 4, 4, 3), np.float32))


def test_safety_filter_conversion(tmp_path):
    head = SafetyHead()
    src = tmp_path / "video_content_safety_filter" / "safety_filter.pt"
    src.parent.mkdir()
    torch.save({"model": {"network." + k: v for k, v in head.state_dict().items()}, "epoch": 3}, src)
    dst = convert_safety_filter(src)
    assert dst.name == "safety_filter.safetensors"
    loaded = SafetyHead.from_safetensors(dst)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), head.state_dict().values()))


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002], ids=lambda m: f"umask{m:03o}")
def test_converted_files_get_ordinary_permissions(tmp_path, umask):
    """safetensors (and mkstemp) create files 0600; the converted file must get 0o666 & ~umask, atomically."""
    import os
    import stat

    head = SafetyHead()
    src = tmp_path / "safety_filter.pt"
    torch.save({"model": {"network." + k: v for k, v in head.state_dict().items()}}, src)
    dst = tmp_path / "out" / "safety_filter.safetensors"
    old = os.umask(umask)
    try:
        first = convert_safety_filter(src, dst)
        dst.chmod(0o600)  # an existing file is replaced, not reused: the new file gets the fresh mode
        second = convert_safety_filter(src, dst)
    finally:
        os.umask(old)
    assert first == second == dst
    assert stat.S_IMODE(dst.stat().st_mode) == 0o666 & ~umask
    assert sorted(p.name for p in dst.parent.iterdir()) == [dst.name]  # no temp file left behind
    SafetyHead.from_safetensors(dst)


def test_failed_conversion_leaves_no_partial_file(tmp_path, monkeypatch):
    import safetensors.torch

    head = SafetyHead()
    src = tmp_path / "safety_filter.pt"
    torch.save({"model": {"network." + k: v for k, v in head.state_dict().items()}}, src)
    out = tmp_path / "out"

    def broken_save(tensors, filename, metadata=None):
        with open(filename, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken_save)
    with pytest.raises(OSError, match="disk full"):
        convert_safety_filter(src, out / "safety_filter.safetensors")
    assert list(out.iterdir()) == []
