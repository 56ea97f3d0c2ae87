"""Optional per-frame content classifier: SigLIP image embedding → small MLP (7 classes).

Off by default, as in NVIDIA's current releases. A frame is unsafe when its arg-max class is in
``unsafe_classes`` (default {1, 3, 4, 5, 6}: Violence, index 2, is not counted, as in the official
framework); a frame whose evaluation fails counts as unsafe; the video is blocked when the unsafe share
is strictly greater than ``cutoff`` (default 10 %).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._weights import load_safetensors_into, model_folder_problems, safetensors_shapes
from ..report import CheckResult

CLASS_NAMES = ("Safe", "Sexual_Content", "Violence", "Drugs", "Child_Abuse", "Hate_and_Harassment", "Self-Harm")
DEFAULT_UNSAFE_CLASSES = (1, 3, 4, 5, 6)
SIGLIP_MEAN = 0.5
SIGLIP_STD = 0.5


class SafetyHead(nn.Module):
    """``layers``: Linear(D,512) BN ReLU Linear(512,256) BN ReLU Linear(256,7) (keys ``layers.{0,1,3,4,6}``)."""

    def __init__(self, in_dim: int = 1152, num_classes: int = len(CLASS_NAMES)):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(in_dim, 512),
            nn.BatchNorm1d(512),
            nn.ReLU(),
            nn.Linear(512, 256),
            nn.BatchNorm1d(256),
            nn.ReLU(),
            nn.Linear(256, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    @classmethod
    def from_safetensors(cls, path: Path) -> SafetyHead:
        """Load converted weights; the input width is read from ``layers.0.weight``."""
        shapes = safetensors_shapes(Path(path))
        first = shapes.get("layers.0.weight")
        last = shapes.get("layers.6.weight")
        if first is None or last is None:
            raise ValueError(
                f"{path}: not a content-safety head (expected keys 'layers.0.weight' … 'layers.6.weight', "
                f"found {sorted(shapes)[:6]}…); convert safety_filter.pt with `python -m guardrails.convert`"
            )
        head = cls(in_dim=first[1], num_classes=last[0])
        load_safetensors_into(head, Path(path))
        return head.eval()


def siglip_pixels(frames: np.ndarray, size: int) -> torch.Tensor:
    """SigLIP preprocessing done by hand (deterministic, no torchvision): bicubic resize to
    ``size``×``size``, scale to [0, 1], normalise with mean = std = 0.5. Returns ``[T, 3, size, size]``."""
    from PIL import Image

    out = np.empty((frames.shape[0], size, size, 3), dtype=np.float32)
    for i, frame in enumerate(frames):
        img = Image.fromarray(np.ascontiguousarray(frame)).resize((size, size), resample=Image.Resampling.BICUBIC)
        out[i] = np.asarray(img, dtype=np.float32) / 255.0
    x = torch.from_numpy(out).permute(0, 3, 1, 2)
    return (x - SIGLIP_MEAN) / SIGLIP_STD


def siglip_problems(model_dir: Path) -> list[str]:
    """What is missing in a SigLIP folder (empty when it looks loadable)."""
    return model_folder_problems(model_dir)


class SigLIPEncoder:
    """Vision tower of a local SigLIP folder (``SiglipVisionModel``, ``local_files_only``); L2-normalised
    pooled features."""

    def __init__(self, model_dir: Path, device: str | torch.device = "cpu", keep_on_device: bool = False):
        self.model_dir = Path(model_dir)
        self.device = torch.device(device)
        self.keep_on_device = keep_on_device
        self._model = None

    def load(self):
        if self._model is None:
            problems = siglip_problems(self.model_dir)
            if problems:
                raise FileNotFoundError("SigLIP encoder: " + "; ".join(problems))
            from transformers import SiglipVisionModel

            model = SiglipVisionModel.from_pretrained(
                str(self.model_dir), local_files_only=True, use_safetensors=True, dtype=torch.float32
            )
            self._model = model.eval().requires_grad_(False)
        return self._model

    @property
    def image_size(self) -> int:
        return int(self.load().config.image_size)

    @property
    def feature_dim(self) -> int:
        return int(self.load().config.hidden_size)

    def offload(self) -> None:
        if self._model is not None and self.device.type != "cpu":
            self._model.to("cpu")

    @torch.inference_mode()
    def embed(self, frames: np.ndarray) -> torch.Tensor:
        """``[T, D]`` unit-norm features (CPU, float32) for uint8 RGB frames."""
        model = self.load().to(self.device)
        pixels = siglip_pixels(frames, self.image_size).to(self.device)
        feats = model(pixel_values=pixels).pooler_output.float()
        return torch.nn.functional.normalize(feats, dim=-1).cpu()


class ContentFilter:
    """Per-frame classification with a video-level cutoff (see module docstring)."""

    name = "content_filter"

    def __init__(
        self,
        encoder: SigLIPEncoder,
        head_factory: Callable[[], SafetyHead],
        unsafe_classes: Iterable[int] = DEFAULT_UNSAFE_CLASSES,
        cutoff: float = 0.10,
        batch_size: int = 8,
        frame_stride: int = 1,
    ):
        if not 0.0 <= cutoff < 1.0:
            raise ValueError(f"content filter cutoff must be in [0, 1), got {cutoff}")
        if batch_size < 1 or frame_stride < 1:
            raise ValueError(
                f"content filter batch_size and frame_stride must be >= 1, got {batch_size}, {frame_stride}"
            )
        self.encoder = encoder
        self._head_factory = head_factory
        self._head: SafetyHead | None = None
        self.unsafe_classes = frozenset(int(c) for c in unsafe_classes)
        self.cutoff = cutoff
        self.batch_size = batch_size
        self.frame_stride = frame_stride

    @property
    def head(self) -> SafetyHead:
        if self._head is None:
            head = self._head_factory().eval()
            if head.layers[0].in_features != self.encoder.feature_dim:
                raise ValueError(
                    f"content filter head expects {head.layers[0].in_features}-d features but the SigLIP encoder "
                    f"in {self.encoder.model_dir} gives {self.encoder.feature_dim}-d"
                )
            self._head = head
        return self._head

    def classify(self, frames: np.ndarray) -> list[int | None]:
        """Arg-max class per frame (``None`` when that frame's batch failed)."""
        head = self.head
        classes: list[int | None] = []
        for start in range(0, len(frames), self.batch_size):
            chunk = frames[start : start + self.batch_size]
            try:
                with torch.inference_mode():
                    logits = head(self.encoder.embed(chunk))
                classes += [int(c) for c in logits.argmax(dim=-1)]
            except Exception:  # noqa: BLE001 - a failed frame counts as unsafe (fail closed)
                classes += [None] * len(chunk)
        return classes

    def check(self, frames: np.ndarray) -> CheckResult:
        start = time.perf_counter()
        sampled = frames[:: self.frame_stride]
        try:
            classes = self.classify(sampled)
        finally:
            if not self.encoder.keep_on_device:
                self.encoder.offload()
        failed = sum(1 for c in classes if c is None)
        unsafe = [c for c in classes if c is None or c in self.unsafe_classes]
        ratio = len(unsafe) / max(len(classes), 1)
        names = sorted({CLASS_NAMES[c] if c < len(CLASS_NAMES) else f"class {c}" for c in unsafe if c is not None})
        detail = f"{len(unsafe)}/{len(classes)} frames unsafe ({ratio:.0%}, cutoff > {self.cutoff:.0%})"
        if names:
            detail += f"; classes: {', '.join(names)}"
        if failed:
            detail += f"; {failed} frame(s) could not be evaluated and count as unsafe"
        status = "block" if ratio > self.cutoff else "pass"
        return CheckResult(self.name, status, detail, time.perf_counter() - start)
