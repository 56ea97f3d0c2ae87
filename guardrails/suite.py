"""The guardrail as one object: prompt checks before generation, frame checks after decoding.

Fail-closed rules:

* building (:meth:`Guardrail.from_config`) raises :class:`GuardrailSetupError` listing every missing file
  of every enabled check;
* at run time an enabled check that raises or gives no usable answer yields status ``error``, which
  blocks exactly like a violation;
* blocked frames are never returned (``None``); face blur runs only after the content checks passed,
  and a face-blur failure blocks rather than returning un-blurred frames;
* each report lists every check with its status, so "off" and "skipped" are always visible.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .assets import (
    BLOCKLIST_CUSTOM,
    BLOCKLIST_EXACT,
    BLOCKLIST_WHITELIST,
    QWEN3GUARD_REPO,
    RETINAFACE_WEIGHTS,
    SAFETY_HEAD_WEIGHTS,
    find_problems,
    qwen3guard_enabled,
    wordnet_location,
)
from .config import GuardrailConfig
from .report import CheckResult, GuardrailBlocked, GuardrailSetupError, Report
from .text.blocklist import BlocklistChecker, builtin_words
from .text.lemmatize import NounLemmatizer
from .text.qwen3guard import Qwen3GuardChecker
from .text.wordlists import read_word_folder
from .video.content_filter import ContentFilter, SafetyHead, SigLIPEncoder
from .video.face_blur import FaceBlur
from .video.retinaface import DetectorSettings, RetinaFaceDetector

ProgressCallback = Callable[[int, int], None]


class _Cancelled(BaseException):
    """Carries an exception raised by a caller's progress callback (e.g. a user interrupt) past the
    per-check ``except Exception`` so it is re-raised instead of being turned into a check error."""

    def __init__(self, exc: BaseException):
        super().__init__(str(exc))
        self.exc = exc


def _guard_callback(callback: ProgressCallback | None) -> ProgressCallback | None:
    if callback is None:
        return None

    def inner(done: int, total: int) -> None:
        try:
            callback(done, total)
        except Exception as exc:  # noqa: BLE001 - re-raised unchanged by the caller
            raise _Cancelled(exc) from exc

    return inner


def _run_check(name: str, fn: Callable[[], CheckResult]) -> CheckResult:
    start = time.perf_counter()
    try:
        return fn()
    except _Cancelled:
        raise
    except Exception as exc:  # noqa: BLE001 - fail closed: any failure of an enabled check blocks
        return CheckResult(name, "error", f"could not run: {type(exc).__name__}: {exc}", time.perf_counter() - start)


def judge_missing_warning(where) -> str:
    """The warning every report carries when ``qwen3guard="auto"`` found no Qwen3Guard folder."""
    return (
        f"WARNING: weaker than NVIDIA's recipe: the Qwen3Guard prompt judge is off (llm_judge 'auto' found no "
        f"{QWEN3GUARD_REPO} at {where}); prompts are checked by the keyword blocklist only, so non-English and "
        "paraphrased prompts are effectively unchecked"
    )


class Guardrail:
    """Text and frame checks. Build with :meth:`from_config`, or pass components directly (tests).

    Each component is either an object with ``name`` and ``check(...) -> CheckResult`` or ``None``
    (off); ``off_reasons`` maps a check name to the text shown in reports when it is off.
    """

    TEXT_CHECKS = ("blocklist", "qwen3guard")
    FRAME_CHECKS = ("content_filter", "face_blur")

    def __init__(
        self,
        blocklist: BlocklistChecker | None = None,
        llm_judge: Qwen3GuardChecker | None = None,
        content_filter: ContentFilter | None = None,
        face_blur: FaceBlur | None = None,
        off_reasons: dict[str, str] | None = None,
        block_empty_prompt: bool = False,
        config: GuardrailConfig | None = None,
        weakened: list[str] | None = None,
    ):
        self.blocklist = blocklist
        self.llm_judge = llm_judge
        self.content_filter = content_filter
        self.face_blur = face_blur
        self.off_reasons = dict(off_reasons or {})
        self.block_empty_prompt = block_empty_prompt
        self.config = config
        # Checks the configuration asked for ("auto") that could not be enabled: every report says so.
        self.weakened = list(weakened or [])

    # -- construction --------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: GuardrailConfig) -> Guardrail:
        """Validate all files for the enabled checks (one error listing every problem), then build.

        Heavy weights (Qwen3Guard, RetinaFace, SigLIP) load lazily on first use.
        """
        problems = find_problems(config)
        if problems:
            raise GuardrailSetupError(problems)
        assets = config.assets_dir
        off: dict[str, str] = {}
        weakened: list[str] = []
        device = torch.device(config.device)

        blocklist = None
        if config.blocklist == "off":
            off["blocklist"] = "disabled in the loader"
        else:
            words: list[str] = []
            sources = []
            custom = read_word_folder(assets / BLOCKLIST_CUSTOM) if assets is not None else []
            if custom:
                words += custom
                sources.append(f"{len(custom)} from {BLOCKLIST_CUSTOM.as_posix()}")
            if config.blocklist in ("release+builtin", "builtin"):
                builtin = builtin_words()
                words += builtin
                sources.append(f"{len(builtin)} built-in (better_profanity)")
            whitelist = read_word_folder(assets / BLOCKLIST_WHITELIST) if assets is not None else []
            exact = read_word_folder(assets / BLOCKLIST_EXACT) if assets is not None else []
            wn = wordnet_location(config)
            lemmatizer = NounLemmatizer.from_wordnet(wn) if wn is not None else NounLemmatizer.rules_only()
            blocklist = BlocklistChecker(
                words,
                whitelist=whitelist,
                exact_match=exact,
                lemmatizer=lemmatizer,
                partial_match_min_chars=config.partial_match_min_chars,
                partial_match_letter_count=config.partial_match_letter_count,
                description="; ".join(sources),
            )

        judge = None
        if qwen3guard_enabled(config):
            judge = Qwen3GuardChecker(
                config.qwen3guard_dir,
                device=device,
                keep_on_device=config.keep_on_device,
                max_new_tokens=config.llm_max_new_tokens,
                block_controversial=config.block_controversial,
            )
        elif config.qwen3guard == "off":
            off["qwen3guard"] = "disabled in the loader"
        else:
            where = config.qwen3guard_dir if config.qwen3guard_dir is not None else "models/cosmos3_guardrail/"
            off["qwen3guard"] = f"auto: not installed (put {QWEN3GUARD_REPO} at {where} to enable it)"
            weakened.append(judge_missing_warning(where))

        content = None
        if config.content_filter:
            head_path = assets / SAFETY_HEAD_WEIGHTS
            content = ContentFilter(
                SigLIPEncoder(config.siglip_dir, device=device, keep_on_device=config.keep_on_device),
                head_factory=lambda: SafetyHead.from_safetensors(head_path),
                unsafe_classes=config.unsafe_classes,
                cutoff=config.unsafe_frame_cutoff,
                frame_stride=config.content_frame_stride,
            )
        else:
            off["content_filter"] = "disabled in the loader (default, as in NVIDIA's release)"

        face_blur = None
        if config.face_blur:
            weights = assets / RETINAFACE_WEIGHTS
            settings = DetectorSettings(confidence_threshold=config.face_confidence, nms_threshold=config.face_nms)

            def factory(weights: Path = weights) -> RetinaFaceDetector:
                return RetinaFaceDetector.from_safetensors(
                    weights,
                    device=device,
                    settings=settings,
                    batch_size=config.face_batch_size,
                    keep_on_device=config.keep_on_device,
                )

            face_blur = FaceBlur(factory, min_face_px=config.min_face_px, blocks=config.pixelate_blocks)
        else:
            off["face_blur"] = "disabled in the loader"

        return cls(blocklist, judge, content, face_blur, off, config.block_empty_prompt, config, weakened)

    # -- posture -------------------------------------------------------------------------------------
    def _component(self, name: str):
        return {
            "blocklist": self.blocklist,
            "qwen3guard": self.llm_judge,
            "content_filter": self.content_filter,
            "face_blur": self.face_blur,
        }[name]

    def describe(self) -> str:
        """One line per check: enabled or why it is off."""
        lines = []
        for name in self.TEXT_CHECKS + self.FRAME_CHECKS:
            comp = self._component(name)
            state = "on" if comp is not None else "off — " + self.off_reasons.get(name, "not configured")
            lines.append(f"{name}: {state}")
        if all(self._component(n) is None for n in self.TEXT_CHECKS + self.FRAME_CHECKS):
            lines.insert(0, "GUARDRAILS DISABLED BY USER: no check is enabled")
        return "\n".join(self.weakened + lines)

    def _posture_notes(self, names: tuple[str, ...], what: str) -> list[str]:
        if all(self._component(n) is None for n in names):
            return [f"ALL {what} CHECKS DISABLED BY USER"]
        return []

    # -- text ----------------------------------------------------------------------------------------
    def check_text(self, text: str, subject: str = "prompt") -> Report:
        """Run the text checks in order; the first block stops the rest (they show as skipped)."""
        if not isinstance(text, str):
            raise TypeError(f"guardrail: {subject} must be a string, got {type(text).__name__}")
        report = Report(subject, notes=self.weakened + self._posture_notes(self.TEXT_CHECKS, "TEXT"))
        empty = not text.strip()
        if empty and self.block_empty_prompt:
            report.results.append(
                CheckResult(
                    "empty_prompt", "block", "the prompt is empty and empty prompts are blocked by configuration"
                )
            )
        blocked = not report.safe
        for name in self.TEXT_CHECKS:
            comp = self._component(name)
            if comp is None:
                report.results.append(CheckResult(name, "off", self.off_reasons.get(name, "not configured")))
            elif blocked:
                report.results.append(CheckResult(name, "skipped", "an earlier check blocked"))
            elif empty:
                report.results.append(CheckResult(name, "skipped", "empty prompt: nothing to check"))
            else:
                result = _run_check(name, lambda comp=comp: comp.check(text))
                report.results.append(result)
                blocked = result.blocks
        return report

    def check_prompt(
        self, prompt: str, negative_prompt: str | None = None, check_negative: bool = False
    ) -> list[Report]:
        """Reports for the prompt and (when ``check_negative``) the negative prompt."""
        reports = [self.check_text(prompt, "prompt")]
        if check_negative and negative_prompt is not None:
            reports.append(self.check_text(negative_prompt, "negative prompt"))
        return reports

    def ensure_prompt_safe(
        self, prompt: str, negative_prompt: str | None = None, check_negative: bool = False
    ) -> list[Report]:
        """Like :meth:`check_prompt` but raises :class:`GuardrailBlocked` when any report blocks."""
        reports = self.check_prompt(prompt, negative_prompt, check_negative)
        if not all(r.safe for r in reports):
            raise GuardrailBlocked(reports)
        return reports

    # -- frames --------------------------------------------------------------------------------------
    def check_frames(
        self, frames: np.ndarray, on_batch: ProgressCallback | None = None
    ) -> tuple[np.ndarray | None, list[list[tuple[int, int, int, int]]], Report]:
        """Check uint8 RGB frames ``[T,H,W,3]``.

        Returns ``(frames_out, face_regions_per_frame, report)``; ``frames_out`` is a new face-blurred
        array (the input is never modified), or ``None`` when blocked.
        """
        if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            got = f"{type(frames).__name__} {getattr(frames, 'dtype', '')} {tuple(getattr(frames, 'shape', ()))}"
            raise ValueError(f"guardrail: frames must be a uint8 numpy array [T,H,W,3] (RGB), got {got}")
        report = Report(
            f"{frames.shape[0]} frame(s) {frames.shape[2]}x{frames.shape[1]}",
            notes=self._posture_notes(self.FRAME_CHECKS, "FRAME"),
        )
        regions: list[list[tuple[int, int, int, int]]] = [[] for _ in range(frames.shape[0])]
        if frames.shape[0] == 0:
            raise ValueError("guardrail: got an empty frame batch (0 frames)")
        callback = _guard_callback(on_batch)
        try:
            if self.content_filter is None:
                report.results.append(
                    CheckResult("content_filter", "off", self.off_reasons.get("content_filter", "not configured"))
                )
            else:
                report.results.append(_run_check("content_filter", lambda: self.content_filter.check(frames)))
            if self.face_blur is None:
                report.results.append(
                    CheckResult("face_blur", "off", self.off_reasons.get("face_blur", "not configured"))
                )
                out = frames.copy() if report.safe else None
            elif not report.safe:
                report.results.append(CheckResult("face_blur", "skipped", "frames blocked by an earlier check"))
                out = None
            else:
                holder: dict = {}

                def blur() -> CheckResult:
                    new, regs, result = self.face_blur.apply(frames, on_batch=callback)
                    holder["out"], holder["regions"] = new, regs
                    return result

                result = _run_check("face_blur", blur)
                report.results.append(result)
                out = holder.get("out") if not result.blocks else None
                if out is not None:
                    regions = holder["regions"]
        except _Cancelled as cancelled:
            raise cancelled.exc from None
        return (out if report.safe else None), regions, report

    def check_images(
        self, images: torch.Tensor, on_batch: ProgressCallback | None = None
    ) -> tuple[torch.Tensor | None, Report]:
        """ComfyUI-style ``IMAGE`` (float ``[N,H,W,3]`` in 0..1) in, face-blurred ``IMAGE`` out (CPU).

        Pixels outside pixelated faces keep their exact float values. Returns ``(None, report)`` when
        blocked.
        """
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[-1] != 3:
            got = f"{type(images).__name__} {tuple(getattr(images, 'shape', ()))}"
            raise ValueError(f"guardrail: images must be a float tensor [N,H,W,3] with values in 0..1, got {got}")
        cpu = images.detach().to("cpu")
        if not cpu.is_floating_point():
            raise ValueError(f"guardrail: images must be floating point in 0..1, got dtype {cpu.dtype}")
        u8 = (torch.nan_to_num(cpu.float(), nan=0.0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        out_u8, regions, report = self.check_frames(u8, on_batch=on_batch)
        if out_u8 is None:
            return None, report
        if not any(regions):
            return cpu, report
        out = cpu.clone()
        for i, regs in enumerate(regions):
            for x1, y1, x2, y2 in regs:
                patch = torch.from_numpy(out_u8[i, y1:y2, x1:x2]).to(out.dtype) / 255.0
                out[i, y1:y2, x1:x2] = patch
        return out, report

    def offload(self) -> None:
        """Move every loaded model back to the CPU."""
        for comp in (self.llm_judge,):
            if comp is not None:
                comp.offload()
        if self.face_blur is not None and self.face_blur._detector is not None:
            self.face_blur._detector.offload()
        if self.content_filter is not None:
            self.content_filter.encoder.offload()
