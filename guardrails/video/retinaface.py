"""RetinaFace (ResNet-50) face detector in plain PyTorch, with the original checkpoint's key layout.

Layout (keys of ``Resnet50_Final.pth`` after removing a ``module.`` prefix): ``body.*`` (ResNet-50
stem + layer1–4), ``fpn.output{1,2,3}`` (1×1 conv+BN+ReLU), ``fpn.merge{1,2}`` (3×3 conv+BN+ReLU),
``ssh{1,2,3}.{conv3X3, conv5X5_1, conv5X5_2, conv7X7_2, conv7x7_3}`` (3×3 conv+BN), and per pyramid
level ``ClassHead.i``/``BboxHead.i``/``LandmarkHead.i`` ``.conv1x1`` (2 anchors: 4/8/20 channels).

Inference follows the release: BGR input with the means (104, 117, 123) subtracted (0–255 scale, no
resize), priors for steps (8, 16, 32) with sizes ((16, 32), (64, 128), (256, 512)), box decoding with
variances (0.1, 0.2), score > 0.7, top 5000, greedy NMS at IoU 0.4 (pixel "+1" areas), keep 750.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._weights import load_safetensors_into
from .resnet import ResNet50Body

STEPS = (8, 16, 32)
MIN_SIZES = ((16, 32), (64, 128), (256, 512))
VARIANCES = (0.1, 0.2)
BGR_MEAN = (104.0, 117.0, 123.0)
FPN_CHANNELS = 256
BODY_CHANNELS = (512, 1024, 2048)


def _conv_bn(inp: int, out: int, kernel: int, relu: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(inp, out, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(out)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class FPN(nn.Module):
    def __init__(self, in_channels: tuple[int, int, int], out: int):
        super().__init__()
        self.output1 = _conv_bn(in_channels[0], out, 1, relu=True)
        self.output2 = _conv_bn(in_channels[1], out, 1, relu=True)
        self.output3 = _conv_bn(in_channels[2], out, 1, relu=True)
        self.merge1 = _conv_bn(out, out, 3, relu=True)
        self.merge2 = _conv_bn(out, out, 3, relu=True)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        o1, o2, o3 = self.output1(feats[0]), self.output2(feats[1]), self.output3(feats[2])
        o2 = self.merge2(o2 + F.interpolate(o3, size=o2.shape[-2:], mode="nearest"))
        o1 = self.merge1(o1 + F.interpolate(o2, size=o1.shape[-2:], mode="nearest"))
        return [o1, o2, o3]


class SSH(nn.Module):
    """Single-stage headless context module: 3×3, 5×5 (two 3×3) and 7×7 (three 3×3) branches."""

    def __init__(self, inp: int, out: int):
        super().__init__()
        self.conv3X3 = _conv_bn(inp, out // 2, 3, relu=False)
        self.conv5X5_1 = _conv_bn(inp, out // 4, 3, relu=True)
        self.conv5X5_2 = _conv_bn(out // 4, out // 4, 3, relu=False)
        self.conv7X7_2 = _conv_bn(out // 4, out // 4, 3, relu=True)
        self.conv7x7_3 = _conv_bn(out // 4, out // 4, 3, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b5 = self.conv5X5_1(x)
        out = torch.cat([self.conv3X3(x), self.conv5X5_2(b5), self.conv7x7_3(self.conv7X7_2(b5))], dim=1)
        return F.relu(out)


class _Head(nn.Module):
    def __init__(self, inp: int, per_anchor: int, anchors: int = 2):
        super().__init__()
        self.per_anchor = per_anchor
        self.conv1x1 = nn.Conv2d(inp, anchors * per_anchor, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1x1(x).permute(0, 2, 3, 1)
        return y.reshape(y.shape[0], -1, self.per_anchor)


class RetinaFaceNet(nn.Module):
    """The network; :meth:`forward` returns ``(loc [B,N,4], face_score [B,N])``."""

    def __init__(self):
        super().__init__()
        self.body = ResNet50Body()
        self.fpn = FPN(BODY_CHANNELS, FPN_CHANNELS)
        self.ssh1 = SSH(FPN_CHANNELS, FPN_CHANNELS)
        self.ssh2 = SSH(FPN_CHANNELS, FPN_CHANNELS)
        self.ssh3 = SSH(FPN_CHANNELS, FPN_CHANNELS)
        self.ClassHead = nn.ModuleList(_Head(FPN_CHANNELS, 2) for _ in range(3))
        self.BboxHead = nn.ModuleList(_Head(FPN_CHANNELS, 4) for _ in range(3))
        # Landmarks are not needed for blurring; the head exists so checkpoints load strictly.
        self.LandmarkHead = nn.ModuleList(_Head(FPN_CHANNELS, 10) for _ in range(3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fpn = self.fpn(self.body(x))
        feats = [self.ssh1(fpn[0]), self.ssh2(fpn[1]), self.ssh3(fpn[2])]
        loc = torch.cat([h(f) for h, f in zip(self.BboxHead, feats)], dim=1)
        logits = torch.cat([h(f) for h, f in zip(self.ClassHead, feats)], dim=1)
        return loc, logits.softmax(dim=-1)[..., 1]


def prior_boxes(height: int, width: int) -> torch.Tensor:
    """Anchors ``[N, 4]`` as normalised ``(cx, cy, w, h)``; N = 2·Σ ceil(H/s)·ceil(W/s)."""
    parts = []
    for step, sizes in zip(STEPS, MIN_SIZES):
        fh, fw = math.ceil(height / step), math.ceil(width / step)
        cy = (torch.arange(fh, dtype=torch.float32) + 0.5) * step / height
        cx = (torch.arange(fw, dtype=torch.float32) + 0.5) * step / width
        gy, gx = torch.meshgrid(cy, cx, indexing="ij")
        per_size = [
            torch.stack([gx, gy, torch.full_like(gx, s / width), torch.full_like(gy, s / height)], dim=-1)
            for s in sizes
        ]
        parts.append(torch.stack(per_size, dim=2).reshape(-1, 4))  # row-major cells, sizes innermost
    return torch.cat(parts, dim=0)


def decode_boxes(loc: torch.Tensor, priors: torch.Tensor, variances: tuple[float, float] = VARIANCES) -> torch.Tensor:
    """Regression offsets + priors → normalised corner boxes ``(x1, y1, x2, y2)``."""
    centre = priors[:, :2] + loc[:, :2] * variances[0] * priors[:, 2:]
    size = priors[:, 2:] * torch.exp(loc[:, 2:] * variances[1])
    return torch.cat([centre - size / 2, centre + size / 2], dim=1)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Greedy non-maximum suppression (pixel areas counted with "+1"); indices by descending score."""
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort(kind="stable")[::-1]
    keep: list[int] = []
    while order.size > 0:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter)
        order = rest[iou <= iou_threshold]
    return keep


@dataclass(frozen=True)
class DetectorSettings:
    confidence_threshold: float = 0.7
    nms_threshold: float = 0.4
    top_k: int = 5000
    keep_top_k: int = 750

    def __post_init__(self) -> None:
        for name in ("confidence_threshold", "nms_threshold"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"RetinaFace {name} must be in [0, 1], got {value}")
        if self.top_k < 1 or self.keep_top_k < 1:
            raise ValueError(f"RetinaFace top_k/keep_top_k must be >= 1, got {self.top_k}/{self.keep_top_k}")


def select_detections(
    boxes: np.ndarray, scores: np.ndarray, settings: DetectorSettings = DetectorSettings()
) -> np.ndarray:
    """Threshold, sort, top-k, NMS, keep-k. Returns ``[K, 5]`` rows ``(x1, y1, x2, y2, score)``."""
    mask = scores > settings.confidence_threshold
    boxes, scores = boxes[mask], scores[mask]
    order = scores.argsort(kind="stable")[::-1][: settings.top_k]
    boxes, scores = boxes[order], scores[order]
    keep = nms(boxes, scores, settings.nms_threshold)[: settings.keep_top_k]
    return np.concatenate([boxes[keep], scores[keep, None]], axis=1).astype(np.float32)


class RetinaFaceDetector:
    """Runs :class:`RetinaFaceNet` on uint8 RGB frames and returns pixel boxes per frame."""

    def __init__(
        self,
        net: RetinaFaceNet,
        device: str | torch.device = "cpu",
        settings: DetectorSettings = DetectorSettings(),
        batch_size: int | None = None,
        keep_on_device: bool = False,
    ):
        self.net = net.eval().requires_grad_(False)
        self.device = torch.device(device)
        self.settings = settings
        self.batch_size = batch_size or (8 if self.device.type == "cuda" else 2)
        if self.batch_size < 1:
            raise ValueError(f"RetinaFace batch_size must be >= 1, got {self.batch_size}")
        self.keep_on_device = keep_on_device
        self._priors: dict[tuple[int, int], torch.Tensor] = {}

    @classmethod
    def from_safetensors(cls, path: Path, **kwargs) -> RetinaFaceDetector:
        """Build from converted weights (``retinaface_resnet50.safetensors``; strict key check)."""
        net = RetinaFaceNet()
        load_safetensors_into(net, Path(path))
        return cls(net, **kwargs)

    def priors(self, height: int, width: int) -> torch.Tensor:
        key = (height, width)
        if key not in self._priors:
            self._priors[key] = prior_boxes(height, width)
        return self._priors[key]

    def offload(self) -> None:
        if self.device.type != "cpu":
            self.net.to("cpu")

    @torch.inference_mode()
    def detect(self, frames: np.ndarray, on_batch=None) -> list[np.ndarray]:
        """Boxes ``[K, 5]`` (pixels, unclipped) for each frame of a uint8 RGB ``[T, H, W, 3]`` array."""
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"RetinaFace expects uint8 frames [T,H,W,3], got {frames.dtype} {tuple(frames.shape)}")
        t, h, w, _ = frames.shape
        priors = self.priors(h, w)
        scale = torch.tensor([w, h, w, h], dtype=torch.float32)
        mean = torch.tensor(BGR_MEAN, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        results: list[np.ndarray] = []
        self.net.to(self.device)
        try:
            for start in range(0, t, self.batch_size):
                chunk = torch.from_numpy(frames[start : start + self.batch_size]).to(self.device)
                x = chunk.permute(0, 3, 1, 2).flip(1).float() - mean  # RGB → BGR, 0–255 scale
                loc, score = self.net(x)
                if loc.shape[1] != priors.shape[0]:
                    raise RuntimeError(
                        f"RetinaFace: {loc.shape[1]} predictions for {priors.shape[0]} priors at {h}x{w}"
                    )
                loc, score = loc.float().cpu(), score.float().cpu()
                for i in range(loc.shape[0]):
                    boxes = (decode_boxes(loc[i], priors) * scale).numpy()
                    results.append(select_detections(boxes, score[i].numpy(), self.settings))
                if on_batch is not None:
                    on_batch(min(start + self.batch_size, t), t)
        finally:
            if not self.keep_on_device:
                self.offload()
        return results
