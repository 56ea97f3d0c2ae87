"""Guardrail configuration: which checks run, where their files are, thresholds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .video.content_filter import CLASS_NAMES, DEFAULT_UNSAFE_CLASSES

# Where the keyword lists come from:
#   release          — every file in <assets>/blocklist/custom/ (NVIDIA's lists plus any list you add there);
#                      required: the check fails closed when the folder has no words;
#   release+builtin  — the above plus better_profanity's shipped list;
#   builtin          — better_profanity's shipped list, plus <assets>/blocklist/custom/ files if present;
#   off              — no keyword check.
BLOCKLIST_MODES = ("release", "release+builtin", "builtin", "off")
# Qwen3Guard: "on" requires the folder (fail closed); "auto" runs it when the folder exists and reports
# it as off otherwise; "off" never runs it.
LLM_JUDGE_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class GuardrailConfig:
    """Everything :meth:`guardrails.Guardrail.from_config` needs. Paths are absolute local paths."""

    assets_dir: Path | None = None
    blocklist: str = "release"
    wordnet_path: Path | None = None
    qwen3guard: str = "auto"
    qwen3guard_dir: Path | None = None
    block_controversial: bool = False
    face_blur: bool = True
    content_filter: bool = False
    siglip_dir: Path | None = None
    device: str = "cpu"
    keep_on_device: bool = False
    block_empty_prompt: bool = False
    # Thresholds (defaults = NVIDIA cosmos-framework values).
    partial_match_min_chars: int = 6
    partial_match_letter_count: float = 0.4
    face_confidence: float = 0.7
    face_nms: float = 0.4
    min_face_px: int = 20
    pixelate_blocks: int = 5
    face_batch_size: int | None = None
    unsafe_frame_cutoff: float = 0.10
    unsafe_classes: tuple[int, ...] = DEFAULT_UNSAFE_CLASSES
    content_frame_stride: int = 1
    llm_max_new_tokens: int = 128

    def __post_init__(self) -> None:
        if self.blocklist not in BLOCKLIST_MODES:
            raise ValueError(f"blocklist mode {self.blocklist!r} is not one of {BLOCKLIST_MODES}")
        if self.qwen3guard not in LLM_JUDGE_MODES:
            raise ValueError(f"qwen3guard mode {self.qwen3guard!r} is not one of {LLM_JUDGE_MODES}")
        for name in ("face_confidence", "face_nms"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if not 0.0 <= self.unsafe_frame_cutoff < 1.0:
            raise ValueError(f"unsafe_frame_cutoff must be in [0, 1), got {self.unsafe_frame_cutoff}")
        bad = [c for c in self.unsafe_classes if not 0 <= c < len(CLASS_NAMES)]
        if bad:
            raise ValueError(f"unsafe_classes {bad} out of range 0..{len(CLASS_NAMES) - 1} ({', '.join(CLASS_NAMES)})")
        if self.min_face_px < 0 or self.pixelate_blocks < 1 or self.content_frame_stride < 1:
            raise ValueError(
                f"min_face_px must be >= 0, pixelate_blocks and content_frame_stride >= 1 "
                f"(got {self.min_face_px}, {self.pixelate_blocks}, {self.content_frame_stride})"
            )
        if self.face_batch_size is not None and self.face_batch_size < 1:
            raise ValueError(f"face_batch_size must be >= 1, got {self.face_batch_size}")
        for name in ("assets_dir", "wordnet_path", "qwen3guard_dir", "siglip_dir"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))

    @property
    def all_checks_off(self) -> bool:
        return self.blocklist == "off" and self.qwen3guard == "off" and not self.face_blur and not self.content_filter
