"""Face pixelation: RetinaFace boxes → coarse blocks, on a copy of the frames."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from ..report import CheckResult

Box = tuple[int, int, int, int]


def pixelate(roi: np.ndarray, blocks: int = 5) -> np.ndarray:
    """Down-sample ``roi`` to ``blocks``×``blocks`` (bilinear) and back up (nearest): a new array."""
    import cv2

    if blocks < 1:
        raise ValueError(f"pixelation blocks must be >= 1, got {blocks}")
    h, w = roi.shape[:2]
    small = cv2.resize(np.ascontiguousarray(roi), (blocks, blocks), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


def face_regions(detections: np.ndarray, height: int, width: int, min_size: int = 20) -> list[Box]:
    """Integer boxes to pixelate: truncated like the release, size-checked *before* clipping (a face
    partly outside the frame still counts at its full size), then clipped to the frame."""
    regions: list[Box] = []
    for row in detections:
        x1, y1, x2, y2 = (int(v) for v in row[:4])
        if x2 - x1 < min_size or y2 - y1 < min_size:
            continue
        x1, y1 = max(x1, 0), max(y1, 0)
        x2, y2 = min(x2, width), min(y2, height)
        if x2 > x1 and y2 > y1:
            regions.append((x1, y1, x2, y2))
    return regions


def pixelate_regions(frame: np.ndarray, regions: list[Box], blocks: int = 5) -> np.ndarray:
    """A copy of ``frame`` with every region pixelated (the input is never modified)."""
    out = frame.copy()
    for x1, y1, x2, y2 in regions:
        out[y1:y2, x1:x2] = pixelate(out[y1:y2, x1:x2], blocks)
    return out


class FaceBlur:
    """Detect faces with a RetinaFace detector (built lazily by ``detector_factory``) and pixelate them."""

    name = "face_blur"

    def __init__(self, detector_factory: Callable[[], object], min_face_px: int = 20, blocks: int = 5):
        if min_face_px < 0:
            raise ValueError(f"min_face_px must be >= 0, got {min_face_px}")
        if blocks < 1:
            raise ValueError(f"pixelation blocks must be >= 1, got {blocks}")
        self._factory = detector_factory
        self._detector = None
        self.min_face_px = min_face_px
        self.blocks = blocks

    @property
    def detector(self):
        if self._detector is None:
            self._detector = self._factory()
        return self._detector

    def apply(
        self, frames: np.ndarray, on_batch: Callable[[int, int], None] | None = None
    ) -> tuple[np.ndarray, list[list[Box]], CheckResult]:
        """Pixelate faces in uint8 ``[T,H,W,3]`` frames.

        Returns ``(new_frames, regions_per_frame, result)``; the input array is left untouched.
        """
        start = time.perf_counter()
        t, h, w, _ = frames.shape
        detections = self.detector.detect(frames, on_batch=on_batch)
        out = frames.copy()
        regions_per_frame: list[list[Box]] = []
        for i, det in enumerate(detections):
            regions = face_regions(det, h, w, self.min_face_px)
            if regions:
                out[i] = pixelate_regions(frames[i], regions, self.blocks)
            regions_per_frame.append(regions)
        faces = sum(len(r) for r in regions_per_frame)
        with_faces = sum(1 for r in regions_per_frame if r)
        detail = f"pixelated {faces} face(s) in {with_faces}/{t} frame(s)"
        return out, regions_per_frame, CheckResult(self.name, "pass", detail, time.perf_counter() - start)
