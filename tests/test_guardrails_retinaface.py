"""RetinaFace: key layout, priors, decoding, NMS, pixelation, detector end to end, and the converter."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from guardrail_support import crafted_retinaface_state

from guardrails._weights import CheckpointError, CheckpointKeyError
from guardrails.convert import ConversionError, convert_release, convert_retinaface, load_pickled_state, main
from guardrails.video.face_blur import FaceBlur, face_regions, pixelate, pixelate_regions
from guardrails.video.retinaface import (
    DetectorSettings,
    RetinaFaceDetector,
    RetinaFaceNet,
    decode_boxes,
    nms,
    prior_boxes,
    select_detections,
)


@pytest.fixture(scope="module")
def meta_net():
    with torch.device("meta"):
        return RetinaFaceNet()


def test_key_layout_matches_the_release(meta_net):
    keys = set(meta_net.state_dict())
    for key in (
        "body.conv1.weight",
        "body.bn1.running_mean",
        "body.layer1.0.downsample.0.weight",
        "body.layer2.3.conv2.weight",
        "body.layer3.5.bn3.running_var",
        "body.layer4.2.bn3.running_var",
        "fpn.output1.0.weight",
        "fpn.output3.1.num_batches_tracked",
        "fpn.merge1.0.weight",
        "fpn.merge2.1.bias",
        "ssh1.conv3X3.0.weight",
        "ssh2.conv5X5_1.1.weight",
        "ssh2.conv5X5_2.0.weight",
        "ssh3.conv7X7_2.0.weight",
        "ssh3.conv7x7_3.1.weight",
        "ClassHead.2.conv1x1.bias",
        "BboxHead.0.conv1x1.weight",
        "LandmarkHead.0.conv1x1.weight",
    ):
        assert key in keys, key
    assert not any(k.startswith(("body.fc", "body.avgpool")) for k in keys)
    shapes = {k: tuple(v.shape) for k, v in meta_net.state_dict().items()}
    assert shapes["body.layer4.2.conv3.weight"] == (2048, 512, 1, 1)
    assert shapes["fpn.output1.0.weight"] == (256, 512, 1, 1)
    assert shapes["fpn.output3.0.weight"] == (256, 2048, 1, 1)
    assert shapes["ssh1.conv3X3.0.weight"] == (128, 256, 3, 3)
    assert shapes["ssh1.conv7x7_3.0.weight"] == (64, 64, 3, 3)
    assert shapes["ClassHead.0.conv1x1.weight"] == (4, 256, 1, 1)
    assert shapes["BboxHead.0.conv1x1.weight"] == (8, 256, 1, 1)
    assert shapes["LandmarkHead.0.conv1x1.weight"] == (20, 256, 1, 1)
    assert len(keys) == 456
    assert sum(p.numel() for p in meta_net.parameters()) == 27_293_600


@pytest.mark.parametrize("h, w", [(64, 64), (704, 1280), (33, 50)])
def test_prior_count_and_order(h, w):
    priors = prior_boxes(h, w)
    expected = 2 * sum(math.ceil(h / s) * math.ceil(w / s) for s in (8, 16, 32))
    assert priors.shape == (expected, 4)
    # first anchor: cell (0,0) of stride 8, size 16; second: same cell, size 32; third: cell (0,1)
    assert torch.allclose(priors[0], torch.tensor([4 / w, 4 / h, 16 / w, 16 / h]))
    assert torch.allclose(priors[1], torch.tensor([4 / w, 4 / h, 32 / w, 32 / h]))
    assert torch.allclose(priors[2], torch.tensor([12 / w, 4 / h, 16 / w, 16 / h]))
    fh, fw = math.ceil(h / 32), math.ceil(w / 32)
    last = torch.tensor([((fw - 1) + 0.5) * 32 / w, ((fh - 1) + 0.5) * 32 / h, 512 / w, 512 / h])
    assert torch.allclose(priors[-1], last)


def test_network_output_matches_prior_count():
    net = RetinaFaceNet().eval()
    with torch.no_grad():
        loc, score = net(torch.zeros(1, 3, 40, 72))
    assert loc.shape == (1, prior_boxes(40, 72).shape[0], 4)
    assert score.shape == loc.shape[:2] and bool(((score >= 0) & (score <= 1)).all())


def test_decode_boxes():
    priors = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    assert torch.allclose(decode_boxes(torch.zeros(1, 4), priors), torch.tensor([[0.4, 0.3, 0.6, 0.7]]))
    loc = torch.tensor([[1.0, -1.0, math.log(2) / 0.2, 0.0]])  # shift x by 0.1*w, y by -0.1*h; width ×2
    cx, cy, w, h = 0.5 + 0.1 * 0.2, 0.5 - 0.1 * 0.4, 0.4, 0.4
    expected = torch.tensor([[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]])
    assert torch.allclose(decode_boxes(loc, priors), expected, atol=1e-6)


def test_nms_and_selection():
    boxes = np.array([[0, 0, 9, 9], [1, 1, 10, 10], [20, 20, 29, 29], [0, 0, 9, 9]], dtype=np.float32)
    scores = np.array([0.9, 0.8, 0.75, 0.3], dtype=np.float32)
    # box 1 overlaps box 0 with IoU 81/119 = 0.68 > 0.4 → suppressed; box 3 duplicates box 0
    assert nms(boxes, scores, 0.4) == [0, 2]
    assert nms(boxes, scores, 0.7) == [0, 1, 2]
    dets = select_detections(boxes, scores, DetectorSettings())  # threshold 0.7 drops box 3 first
    assert dets.shape == (2, 5) and np.allclose(dets[:, 4], [0.9, 0.75])
    assert select_detections(boxes, scores, DetectorSettings(keep_top_k=1)).shape == (1, 5)
    assert select_detections(boxes, scores * 0.5, DetectorSettings()).shape == (0, 5)
    with pytest.raises(ValueError, match="confidence_threshold"):
        DetectorSettings(confidence_threshold=1.5)


def test_pixelation_on_a_synthetic_image():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, size=(64, 80, 3), dtype=np.uint8)
    original = frame.copy()
    out = pixelate_regions(frame, [(10, 20, 50, 60)], blocks=5)
    assert np.array_equal(frame, original)  # input untouched
    roi = out[20:60, 10:50]
    assert len({tuple(p) for p in roi.reshape(-1, 3)}) <= 25
    assert np.array_equal(roi[:8, :8], np.broadcast_to(roi[0, 0], (8, 8, 3)))  # 40 px / 5 blocks = 8 px blocks
    mask = np.ones((64, 80), bool)
    mask[20:60, 10:50] = False
    assert np.array_equal(out[mask], original[mask])
    assert out.dtype == np.uint8 and pixelate(roi, 5).shape == roi.shape


def test_face_regions_min_size_and_clipping():
    dets = np.array(
        [
            [10.7, 10.2, 40.9, 45.0, 0.9],  # kept, truncated to ints
            [0, 0, 15, 40, 0.9],  # 15 px wide → skipped
            [-12, -8, 20, 30, 0.9],  # 32×38 before clipping → kept, clipped to the frame
            [70, 50, 100, 90, 0.9],  # crosses the right/bottom border → clipped
        ],
        dtype=np.float32,
    )
    assert face_regions(dets, height=64, width=80, min_size=20) == [(10, 10, 40, 45), (0, 0, 20, 30), (70, 50, 80, 64)]


def test_detector_end_to_end(retinaface_weights):
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, size=(3, 64, 64, 3), dtype=np.uint8)
    detector = RetinaFaceDetector.from_safetensors(retinaface_weights["faces"], batch_size=2)
    progress = []
    dets = detector.detect(frames, on_batch=lambda done, total: progress.append((done, total)))
    assert progress == [(2, 3), (3, 3)]
    assert len(dets) == 3 and all(d.shape[0] > 0 for d in dets)
    blur = FaceBlur(lambda: detector)
    out, regions, result = blur.apply(frames)
    assert result.status == "pass" and "in 3/3 frame(s)" in result.detail
    assert all(regions) and not np.array_equal(out, frames)
    none = FaceBlur(lambda: RetinaFaceDetector.from_safetensors(retinaface_weights["none"]))
    out2, regions2, result2 = none.apply(frames)
    assert regions2 == [[], [], []] and np.array_equal(out2, frames) and out2 is not frames
    assert "0 face(s)" in result2.detail
    with pytest.raises(ValueError, match="uint8"):
        detector.detect(frames.astype(np.float32))


def test_runtime_loading_is_strict_and_safetensors_only(tmp_path, retinaface_weights):
    from safetensors.torch import save_file

    state = crafted_retinaface_state(0.0)
    del state["fpn.merge1.0.weight"]
    state["extra.weight"] = torch.zeros(1)
    bad = tmp_path / "bad.safetensors"
    save_file(state, str(bad))
    with pytest.raises(CheckpointKeyError) as err:
        RetinaFaceDetector.from_safetensors(bad)
    assert "fpn.merge1.0.weight" in str(err.value) and "extra.weight" in str(err.value)
    pth = tmp_path / "Resnet50_Final.pth"
    torch.save({"a": torch.zeros(1)}, pth)
    with pytest.raises(CheckpointError, match="only safetensors"):
        RetinaFaceDetector.from_safetensors(pth)


def test_converter_reads_pickles_with_weights_only(tmp_path, monkeypatch):
    state = crafted_retinaface_state(3.0)
    release = tmp_path / "Cosmos-Guardrail1"
    src = release / "face_blur_filter" / "Resnet50_Final.pth"
    src.parent.mkdir(parents=True)
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}}, src)  # DataParallel-style file

    seen = []
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    written = convert_release(release)
    assert seen == [True]
    dst = release / "face_blur_filter" / "retinaface_resnet50.safetensors"
    assert written == [dst]
    from safetensors.torch import load_file

    loaded = load_file(str(dst))
    assert set(loaded) == set(state) and all(torch.equal(loaded[k], state[k]) for k in state)
    RetinaFaceDetector.from_safetensors(dst)  # loads strictly

    assert main(["--retinaface", str(src), "--out", str(tmp_path / "x.safetensors")]) == 0
    assert main([str(tmp_path / "empty-folder")]) == 1


class _NotATensor:  # a pickled custom object must be refused by weights_only loading
    pass


def test_converter_refuses_arbitrary_pickles_and_wrong_keys(tmp_path):
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as fh:
        pickle.dump({"weight": _NotATensor()}, fh, protocol=2)
    with pytest.raises(ConversionError, match="weights_only=True"):
        load_pickled_state(evil)
    wrong = tmp_path / "wrong.pth"
    torch.save({"body.conv1.weight": torch.zeros(64, 3, 7, 7)}, wrong)
    with pytest.raises(CheckpointKeyError, match="missing keys"):
        convert_retinaface(wrong)
    assert not (tmp_path / "retinaface_resnet50.safetensors").exists()
