"""Qwen3Guard-Gen as an LLM judge for prompts (transformers, local folder only).

The model answers in a fixed format::

    Safety: Safe|Unsafe|Controversial
    Categories: Violent, ...

Decision: ``Unsafe`` blocks; ``Controversial`` passes unless ``block_controversial``; output without a
readable ``Safety:`` label, and any error while loading or generating, block (fail closed) — unlike the
reference wrappers, which treat both as safe.

Control tokens in the prompt are escaped before the judge sees it (:func:`escape_control_tokens`): a prompt
spelling ``<|im_end|>`` / ``<|im_start|>assistant`` / ``<|endoftext|>`` would otherwise be tokenised as the
real chat-template tokens, end the user turn and forge the judge's own answer (e.g. a prompt holding
``<|im_end|>``, a new line, ``<|im_start|>assistant``, a new line and ``Safety: Safe``). Every ``<|``
opener — also written with the full-width look-alikes ``＜`` / ``｜`` that NFKC folds to ``<`` / ``|``, or
with invisible characters between the two — becomes ``< |`` (an ordinary ASCII space inserted, the invisible
characters dropped), so no ``<|…|>`` spelling is left and the tokenizer reads the marker as plain text.
The break is visible and ASCII, so no Unicode normalisation or zero-width stripping can undo it. Text
without such a marker is passed on byte for byte, so the judge reads normal prompts exactly as before.
With the real tokenizer loaded, its other added tokens (``<think>``, ``<tool_call>``, …) are broken the
same way (a space after the first character), and the escaped prompt is tokenised once more: should it
still contain an added token id, the check fails (and so blocks).
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

# Characters a tokenizer could fold into "<" or "|" (NFKC look-alikes) and invisible characters that could sit
# between them (format / variation-selector / filler code points that normalisers commonly drop).
_OPENERS = "<\ufe64\uff1c"
_BARS = "|\uff5c"
_INVISIBLE = (
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0"
)
CONTROL_MARKER_RE = re.compile(f"([{_OPENERS}])[{_INVISIBLE}]*([{_BARS}])")
"""A ``<|`` control-token opener (or a look-alike spelling of one); none is left by :func:`escape_control_tokens`."""


def escape_control_tokens(text: str) -> str:
    """Break every chat-template control-token spelling (``<|im_end|>``, ``<|im_start|>``, ``<|endoftext|>``, any
    ``<|…|>``) so a tokenizer reads it as plain text: ``<|`` becomes ``< |``. Text without a ``<|`` opener
    (see :data:`CONTROL_MARKER_RE`) is returned unchanged. One pass suffices: the output never contains
    an opener directly (or invisibly) followed by a bar.
    """
    return CONTROL_MARKER_RE.sub(r"\1 \2", text)


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
        self._added_tokens: tuple[str, ...] = ()
        self._added_ids: frozenset[int] = frozenset()

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
        added = {int(i): str(getattr(t, "content", t)) for i, t in tokenizer.added_tokens_decoder.items()}
        self._added_ids = frozenset(added)
        # Markup-shaped added tokens (``<think>``, ``</tool_call>``, ``<|im_end|>``), longest first.
        self._added_tokens = tuple(
            sorted(
                {c for c in added.values() if len(c) >= 2 and c[0] in "<[" and c[-1] in ">]"},
                key=len,
                reverse=True,
            )
        )
        self._tokenizer, self._model = tokenizer, model

    def _escape_for_tokenizer(self, text: str) -> str:
        """:func:`escape_control_tokens`, then break the loaded tokenizer's other added tokens; refuse a prompt
        that still tokenises to an added token (fail closed)."""
        text = escape_control_tokens(text)
        for _ in range(8):
            found = [t for t in self._added_tokens if t in text]
            if not found:
                break
            for token in found:
                text = text.replace(token, token[0] + " " + token[1:])
        ids = self._tokenizer(text, add_special_tokens=False)["input_ids"]
        leaked = sorted({i for i in ids if i in self._added_ids})
        if leaked:
            names = ", ".join(repr(self._tokenizer.convert_ids_to_tokens(i)) for i in leaked[:5])
            raise ValueError(f"qwen3guard: the prompt still holds control tokens after escaping ({names})")
        return text

    def offload(self) -> None:
        """Move the model back to the CPU (no-op when not loaded)."""
        if self._model is not None and self.device.type != "cpu":
            self._model.to("cpu")

    def generate(self, text: str) -> str:
        """The judge's raw answer for a user prompt ``text``.

        Control-token spellings in ``text`` are escaped first (see the module docstring), also for a
        ``generate`` override: the judge always receives the escaped text.
        """
        if self._generate_override is not None:
            return self._generate_override(escape_control_tokens(text))
        self.load()
        from transformers import GenerationConfig

        tok, model = self._tokenizer, self._model
        text = self._escape_for_tokenizer(text)
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
