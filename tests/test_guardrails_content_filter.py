"""Optional SigLIP + MLP content classifier with a tiny SigLIP saved by transformers (offline)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from guardrails.report import CheckResult
from guardrails.video.content_filter import ContentFilter, SafetyHead, SigLIPEncoder, siglip_pixels


@pytest.fixture(scope="module")
def tiny_siglip_dir(tmp_path_factory):
    from transformers import SiglipConfig, SiglipModel

    folder = tmp_path_factory.mktemp("siglip-tiny")
    torch.manual_seed(0)
    config = SiglipConfig(
        text_config=dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=16),
        vision_config=dict(image_size=32, patch_size=16, hidden_size=32, intermediate_size=64,
                           num_hidden_layers=1, num_attention_heads=2),
    )
    SiglipModel(config).save_pretrained(str(folder))  # full model, like google/siglip-so400m-patch14-384
    return folder


def crafted_head_file(path, klass: int, in_dim: int = 32):
    """Head weights in the release's layout after conversion (keys layers.N.*), always predicting ``klass``."""
    from safetensors.torch import save_file

    head = SafetyHead(in_dim=in_dim)
    state = {k: v.detach().clone() for k, v in head.state_dict().items()}
    state["layers.6.weight"].zero_()
    state["layers.6.bias"].copy_(torch.nn.functional.one_hot(torch.tensor(klass), 7).float() * 10)
    save_file(state, str(path))
    return path


def frames(n=4, size=40, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size + 8, 3), dtype=np.uint8)


def test_preprocessing_matches_hand_computation():
    from PIL import Image

    frame = frames(1, 20)[0]
    x = siglip_pixels(frame[None], 16)
    expected = np.asarray(Image.fromarray(frame).resize((16, 16), Image.Resampling.BICUBIC), np.float32) / 255
    assert x.shape == (1, 3, 16, 16)
    assert torch.allclose(x[0].permute(1, 2, 0), torch.from_numpy((expected - 0.5) / 0.5))


def test_features_are_unit_norm(tiny_siglip_dir):
    enc = SigLIPEncoder(tiny_siglip_dir)
    feats = enc.embed(frames(3))
    assert feats.shape == (3, 32) and enc.image_size == 32
    assert torch.allclose(feats.norm(dim=-1), torch.ones(3), atol=1e-5)


@pytest.mark.parametrize("klass, unsafe_classes, status", [
    (0, (1, 3, 4, 5, 6), "pass"),
    (1, (1, 3, 4, 5, 6), "block"),
    (2, (1, 3, 4, 5, 6), "pass"),  # Violence is not counted by default (official framework policy)
    (2, (1, 2, 3, 4, 5, 6), "block"),
])
def test_real_path_with_crafted_head(tmp_path, tiny_siglip_dir, klass, unsafe_classes, status):
    head_file = crafted_head_file(tmp_path / "safety_filter.safetensors", klass)
    cf = ContentFilter(SigLIPEncoder(tiny_siglip_dir), lambda: SafetyHead.from_safetensors(head_file),
                       unsafe_classes=unsafe_classes, batch_size=3)
    result = cf.check(frames(5))
    assert result.status == status, result.detail


class _Scripted(ContentFilter):
    def __init__(self, classes, **kw):
        super().__init__(encoder=None, head_factory=lambda: None, **kw)
        self._classes = classes

    def classify(self, frames):
        return list(self._classes[: len(frames)])


@pytest.mark.parametrize("classes, status", [
    ([0] * 9 + [1], "pass"),  # 10 % is not > 10 %
    ([0] * 8 + [1, 3], "block"),  # 20 %
    ([0] * 9 + [None], "pass"),  # one failed frame counts unsafe: still 10 %
    ([0] * 8 + [None, None], "block"),
])
def test_cutoff_and_failed_frames(classes, status):
    cf = _Scripted(classes)
    cf.encoder = type("E", (), {"keep_on_device": True})()
    result = cf.check(np.zeros((10, 4, 4, 3), np.uint8))
    assert isinstance(result, CheckResult) and result.status == status, result.detail
    if None in classes:
        assert "could not be evaluated" in result.detail


def test_batch_error_counts_unsafe(tmp_path, tiny_siglip_dir, monkeypatch):
    head_file = crafted_head_file(tmp_path / "h.safetensors", 0)
    enc = SigLIPEncoder(tiny_siglip_dir)
    cf = ContentFilter(enc, lambda: SafetyHead.from_safetensors(head_file), batch_size=2)
    calls = {"n": 0}
    real = enc.embed

    def flaky(chunk):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated OOM")
        return real(chunk)

    monkeypatch.setattr(enc, "embed", flaky)
    result = cf.check(frames(6))
    assert result.status == "block" and "2 frame(s) could not be evaluated" in result.detail


def test_head_width_must_match_encoder(tmp_path, tiny_siglip_dir):
    head_file = crafted_head_file(tmp_path / "h.safetensors", 0, in_dim=48)
    cf = ContentFilter(SigLIPEncoder(tiny_siglip_dir), lambda: SafetyHead.from_safetensors(head_file))
    with pytest.raises(ValueError, match="48-d features"):
        cf.check(frames(1))
