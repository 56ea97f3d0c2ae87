"""Qwen3Guard-Gen as an LLM judge for prompts (transformers, local folder only).

The model answers in a fixed format::

    Safety: Safe|Unsafe|Controversial
    Categories: Violent, ...

Decision: ``Unsafe`` blocks; ``Controversial`` passes unless ``block_controversial``; output without a
readable ``Safety:`` label, and any error while loading or generating, block (fail closed) — unlike the
reference wrappers, which treat both as safe.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .._weights import model_folder_problems
from ..report import CheckResult

LABELS = ("Safe", "Controversial", "Unsafe")  # ascending severity
CATEGORIES = (
    "Violent",
    "Non-violent Illegal Acts",
    "Sexual Content or Sexual Acts",
    "PII",
    "Suicide & Self-Harm",
    "Unethical Acts",
    "Politically Sensitive Topics",
    "Copyright Violation",
    "Jailbreak",
    "None",
)
_LABEL_RE = re.compile(
    r"^[ \t>*#_-]*safety[ \t*_]*:[ \t*_]*(safe|unsafe|controversial)\b", re.IGNORECASE | re.MULTILINE
)
_CATEGORY_LINE_RE = re.compile(r"^[ \t>*#_-]*categor(?:y|ies)[ \t*_]*:(.*)$", re.IGNORECASE | re.MULTILINE)
_CANON = {c.lower(): c for c in CATEGORIES}


@dataclass(frozen=True)
class GuardOutput:
    """Parsed judge answer. ``label`` is ``None`` when the answer holds no readable ``Safety:`` line."""

    label: str | None
    categories: tuple[str, ...]
    raw: str


def parse_guard_output(text: str) -> GuardOutput:
    """Parse Qwen3Guard's answer. Conflicting labels resolve to the most severe one."""
    found = {m.group(1).capitalize() for m in _LABEL_RE.finditer(text or "")}
    label = max(found, key=LABELS.index) if found else None
    categories: list[str] = []
    for m in _CATEGORY_LINE_RE.finditer(text or ""):
        for part in m.group(1).split(","):
            canon = _CANON.get(part.strip().strip("*_ .").lower())
            if canon and canon not in categories:
                categories.append(canon)
    return GuardOutput(label, tuple(categories), text or "")


def required_files_problems(model_dir: Path) -> list[str]:
    """What is missing in a Qwen3Guard folder (empty list when it looks loadable)."""
    model_dir = Path(model_dir)
    problems = model_folder_problems(model_dir)
    if not model_dir.is_dir():
        return problems
    if not (model_dir / "tokenizer_config.json").is_file():
        problems.append(f"{model_dir / 'tokenizer_config.json'} is missing")
    if not (
        (model_dir / "tokenizer.json").is_file()
        or ((model_dir / "vocab.json").is_file() and (model_dir / "merges.txt").is_file())
    ):
        problems.append(f"{model_dir}: tokenizer.json (or vocab.json + merges.txt) is missing")
    return problems


class Qwen3GuardChecker:
    """Prompt judge backed by a local Qwen3Guard-Gen folder; heavy weights load on first use.

    ``generate`` replaces the model call (``text -> answer``) — used by tests and by callers that
    run the judge elsewhere; the folder is then not read at all.
    """

    name = "qwen3guard"

    def __init__(
        self,
        model_dir: Path | None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        keep_on_device: bool = False,
        max_new_tokens: int = 128,
        block_controversial: bool = False,
        generate: Callable[[str], str] | None = None,
    ):
        if max_new_tokens < 8:
            raise ValueError(f"qwen3guard: max_new_tokens must be >= 8, got {max_new_tokens}")
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self.device = torch.device(device)
        self.dtype = dtype or (torch.bfloat16 if self.device.type == "cuda" else torch.float32)
        self.keep_on_device = keep_on_device
        self.max_new_tokens = max_new_tokens
        self.block_controversial = block_controversial
        self._generate_override = generate
        self._tokenizer = None
        self._model = None

    # -- model ---------------------------------------------------------------------------------------
    def load(self) -> None:
        """Load tokenizer and model from the local folder (``local_files_only``; safetensors only)."""
        if self._model is not None or self._generate_override is not None:
            return
        if self.model_dir is None:
            raise RuntimeError("qwen3guard: no model folder configured")
        problems = required_files_problems(self.model_dir)
        if problems:
            raise FileNotFoundError("qwen3guard: " + "; ".join(problems))
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            str(self.model_dir), local_files_only=True, use_safetensors=True, dtype=self.dtype
        )
        model.eval().requires_grad_(False)
        self._tokenizer, self._model = tokenizer, model

    def offload(self) -> None:
        """Move the model back to the CPU (no-op when not loaded)."""
        if self._model is not None and self.device.type != "cpu":
            self._model.to("cpu")

    def generate(self, text: str) -> str:
        """The judge's raw answer for a user prompt ``text``."""
        if self._generate_override is not None:
            return self._generate_override(text)
        self.load()
        from transformers import GenerationConfig

        tok, model = self._tokenizer, self._model
        rendered = tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False)
        inputs = tok([rendered], return_tensors="pt")
        model.to(self.device)
        try:
            inputs = {k: v.to(self.device) for k, v in inputs.items()}
            eos = model.generation_config.eos_token_id if model.generation_config is not None else None
            pad = tok.pad_token_id if tok.pad_token_id is not None else (eos[0] if isinstance(eos, list) else eos)
            config = GenerationConfig(
                max_new_tokens=self.max_new_tokens, do_sample=False, eos_token_id=eos, pad_token_id=pad
            )
            with torch.inference_mode():
                out = model.generate(**inputs, generation_config=config)
            new_tokens = out[0, inputs["input_ids"].shape[1] :].tolist()
            return tok.decode(new_tokens, skip_special_tokens=True)
        finally:
            if not self.keep_on_device:
                self.offload()

    # -- decision ------------------------------------------------------------------------------------
    def decide(self, answer: str, seconds: float = 0.0) -> CheckResult:
        """Turn a raw answer into a check result (see the module docstring for the policy)."""
        parsed = parse_guard_output(answer)
        cats = ", ".join(parsed.categories) or "none given"
        if parsed.label is None:
            shown = " ".join(answer.split())[:120]
            return CheckResult(self.name, "error", f"unreadable judge output (no 'Safety:' label): {shown!r}", seconds)
        if parsed.label == "Unsafe":
            return CheckResult(self.name, "block", f"Safety: Unsafe (categories: {cats})", seconds)
        if parsed.label == "Controversial":
            if self.block_controversial:
                return CheckResult(
                    self.name,
                    "block",
                    f"Safety: Controversial (categories: {cats}); controversial prompts are blocked by configuration",
                    seconds,
                )
            return CheckResult(
                self.name, "pass", f"Safety: Controversial (categories: {cats}); allowed by configuration", seconds
            )
        return CheckResult(self.name, "pass", "Safety: Safe", seconds)

    def check(self, text: str) -> CheckResult:
        start = time.perf_counter()
        answer = self.generate(text)
        return self.decide(answer, time.perf_counter() - start)
