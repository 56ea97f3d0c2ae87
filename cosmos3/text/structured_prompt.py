"""The structured JSON caption the Cosmos3 checkpoints were trained on: its fields, a builder, and the
validation/repair of an LLM's answer (pure strings and dicts; no model here).

Schema facts (NVIDIA cosmos-framework's V4.2 prompt-upsampler templates and its structured-caption model):

* video (t2v / i2v): ``temporal_caption`` (a timestamped playback timeline, the field the generator leans
  on most), ``audio_description``, ``subjects`` (list of objects), ``background_setting``, ``lighting``,
  ``aesthetics``, ``cinematography`` (objects), ``style_medium``, ``artistic_style``, ``context``,
  ``actions`` (``{time, description}``), ``text_and_signage_elements``, ``segments``, ``transitions``;
* image (t2i): ``comprehensive_t2i_caption`` (one dense paragraph), ``subjects``, ``subject_details``,
  ``background_setting``, ``lighting``, ``aesthetics``, ``cinematography``, ``style_medium``,
  ``artistic_style``, ``context``, ``text_and_signage_elements``, ``quadrant_scan``;
* metadata, both: ``resolution`` ``{"H", "W"}``, ``aspect_ratio`` (``"16,9"``); video adds ``duration``
  (``"<int seconds>s"``) and ``fps``. Text Encode re-sets these from the clip it encodes for;
* ``scene_imagination`` is the upsampler's scratchpad, written first and stripped before generation.

Serialization is ``json.dumps`` with ASCII escapes, as in training.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from typing import Any

from ..errors import Cosmos3Error

UPSAMPLE_MODES = ("t2v", "i2v", "t2i")
METADATA_FIELDS_VIDEO = ("resolution", "aspect_ratio", "duration", "fps")
METADATA_FIELDS_IMAGE = ("resolution", "aspect_ratio")
SCRATCH_FIELDS = ("scene_imagination",)

VIDEO_FIELDS = (
    "temporal_caption", "audio_description", "subjects", "background_setting", "lighting", "aesthetics",
    "cinematography", "style_medium", "artistic_style", "context", "actions", "text_and_signage_elements",
    "segments", "transitions",
)
IMAGE_FIELDS = (
    "comprehensive_t2i_caption", "subjects", "subject_details", "background_setting", "lighting", "aesthetics",
    "cinematography", "style_medium", "artistic_style", "context", "text_and_signage_elements", "quadrant_scan",
)
# Fields whose text alone is enough for the generator to know what to draw.
_MAIN_TEXT_FIELDS = ("temporal_caption", "comprehensive_t2i_caption", "background_setting")

_STRUCTURED_FIELDS = ("subjects", "subject_details", "lighting", "aesthetics", "cinematography", "actions",
                      "text_and_signage_elements", "segments", "transitions", "quadrant_scan", "resolution")

PLAIN_PROMPT_CHOICES = ("auto", "as_text", "temporal_caption")


class StructuredPromptError(Cosmos3Error):
    """Invalid structured-prompt fields."""


def check_mode(mode: str) -> str:
    if mode not in UPSAMPLE_MODES:
        raise StructuredPromptError(f"unknown prompt mode {mode!r}; allowed: {', '.join(UPSAMPLE_MODES)}")
    return mode


def schema_fields(mode: str) -> tuple[str, ...]:
    """Top-level keys kept for ``mode`` (content fields, then metadata), in the trained order."""
    if check_mode(mode) == "t2i":
        return IMAGE_FIELDS + METADATA_FIELDS_IMAGE
    return VIDEO_FIELDS + METADATA_FIELDS_VIDEO


def dumps(obj: dict[str, Any]) -> str:
    """Serialize as the checkpoints saw captions in training (``json.dumps``, ASCII escapes)."""
    return json.dumps(obj)


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, (str, list, dict)) and not (value.strip() if isinstance(value, str)
                                                                            else value))


def build_structured_prompt(mode: str = "t2v", **fields: Any) -> str:
    """Fields -> the JSON prompt string. Empty values (``""``, ``[]``, ``{}``, ``None``) are left out; a string
    given for a list/object field that holds JSON is parsed (``subjects='[{"description": ...}]'``).

    At least one non-empty field is required; unknown field names raise :class:`StructuredPromptError`.
    """
    allowed = schema_fields(mode)
    unknown = sorted(set(fields) - set(allowed))
    if unknown:
        raise StructuredPromptError(f"unknown field(s) {', '.join(unknown)} for mode {mode!r}; allowed: "
                                    f"{', '.join(allowed)}")
    obj: dict[str, Any] = {}
    for key in allowed:
        value = fields.get(key)
        if isinstance(value, str):
            value = value.strip()
            if key in _STRUCTURED_FIELDS and value[:1] in ("[", "{"):
                try:
                    value = json.loads(value)
                except json.JSONDecodeError as exc:
                    raise StructuredPromptError(f"field {key!r} looks like JSON but does not parse: {exc}") from None
        if not _is_empty(value):
            obj[key] = value
    if not any(k not in METADATA_FIELDS_VIDEO for k in obj):
        raise StructuredPromptError(f"a structured prompt needs at least one descriptive field ({allowed[0]}, ...)")
    return dumps(obj)


def wrap_plain_prompt(prompt: str, how: str) -> str:
    """``temporal_caption``: a prompt that is not a JSON object becomes ``{"temporal_caption": prompt}`` (the
    smallest structured caption); ``as_text``: unchanged. JSON-object prompts are always returned unchanged."""
    if how not in PLAIN_PROMPT_CHOICES[1:]:
        raise StructuredPromptError(f"plain_prompt must be one of {list(PLAIN_PROMPT_CHOICES[1:])}, got {how!r}")
    if how == "as_text" or not prompt.strip() or _json_object(prompt) is not None:
        return prompt
    return dumps({"temporal_caption": prompt.strip()})


def resolve_plain_prompt(choice: str, *, edge: bool, prompt_style: str = "framework") -> str:
    """``auto`` -> ``temporal_caption`` for Cosmos3-Edge with the framework style (Edge flares and pulses on
    plain prose; its captions were structured), ``as_text`` otherwise (the framework's prose templates)."""
    if choice not in PLAIN_PROMPT_CHOICES:
        raise StructuredPromptError(f"plain_prompt must be one of {list(PLAIN_PROMPT_CHOICES)}, got {choice!r}")
    if choice != "auto":
        return choice
    return "temporal_caption" if edge and prompt_style == "framework" else "as_text"


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, TypeError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


# ------------------------------------------------------------------------------------------------------
# Repairing an LLM answer

_THINK_RE = re.compile(r"<(think|thinking|thought|reasoning|scratch|reflection)>.*?</\1>", re.S | re.I)
_UNCLOSED_THINK_RE = re.compile(r"^\s*<(think|thinking|thought|reasoning)>.*?(?=```|\{)", re.S | re.I)
_FENCE_RE = re.compile(r"```[a-zA-Z0-9_-]*[ \t]*\n?(.*?)(?:```|$)", re.S)
_TRAILING_COMMA_RE = re.compile(r",(\s*[}\]])")


def _balanced_object(text: str) -> str | None:
    """The first ``{...}`` block with balanced braces (quotes respected); ``None`` when there is none."""
    start = text.find("{")
    if start < 0:
        return None
    depth, quote, escaped = 0, "", False
    for i in range(start, len(text)):
        ch = text[i]
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start:i + 1]
    return None


def _literal_object(text: str) -> dict[str, Any] | None:
    """A Python-literal dict (single quotes, True/False/None) read safely with ``ast.literal_eval``."""
    try:
        obj = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    if not isinstance(obj, dict):
        return None
    try:  # only JSON-representable content
        return json.loads(json.dumps(obj))
    except (TypeError, ValueError):
        return None


def parse_answer(answer: str) -> tuple[dict[str, Any] | None, list[str]]:
    """Extract the JSON object from an LLM answer, repairing the common faults.

    Returns ``(object or None, repairs)``; ``repairs`` names each fix applied: ``thinking block removed``,
    ``code fence removed``, ``text around the object removed``, ``trailing commas removed``,
    ``single quotes read as JSON strings``.
    """
    repairs: list[str] = []
    text = answer or ""
    stripped = _THINK_RE.sub("", text)
    stripped = _UNCLOSED_THINK_RE.sub("", stripped)
    if stripped != text:
        repairs.append("thinking block removed")
        text = stripped
    fence = _FENCE_RE.search(text)
    if fence is not None and "{" in fence.group(1):
        repairs.append("code fence removed")
        text = fence.group(1)
    block = _balanced_object(text)
    if block is None:
        return None, repairs
    if block.strip() != text.strip():
        repairs.append("text around the object removed")
    obj = _json_object(block)
    if obj is not None:
        return obj, repairs
    uncommaed = _TRAILING_COMMA_RE.sub(r"\1", block)
    obj = _json_object(uncommaed)
    if obj is not None:
        return obj, [*repairs, "trailing commas removed"]
    obj = _literal_object(uncommaed)
    if obj is not None:
        return obj, [*repairs, "single quotes read as JSON strings"]
    return None, repairs


def keep_schema_fields(obj: dict[str, Any], mode: str) -> tuple[dict[str, Any], list[str]]:
    """The object with only ``mode``'s schema fields (model order kept; ``null`` values dropped), and the
    names of the fields that were dropped (scratchpad and unknown keys)."""
    allowed = set(schema_fields(mode))
    kept = {k: v for k, v in obj.items() if k in allowed and v is not None}
    dropped = [k for k in obj if k not in kept]
    return kept, dropped


def has_content(obj: dict[str, Any]) -> bool:
    """True when a main text field is a non-empty string or some subject has a description."""
    for key in _MAIN_TEXT_FIELDS:
        if isinstance(obj.get(key), str) and obj[key].strip():
            return True
    subjects = obj.get("subjects")
    return isinstance(subjects, list) and any(
        isinstance(s, dict) and isinstance(s.get("description"), str) and s["description"].strip() for s in subjects
    )


@dataclass(frozen=True)
class UpsampledPrompt:
    """An upsampler's result: the prompt ``text`` for Text Encode (always non-empty JSON), the kept ``fields``,
    the ``repairs`` applied, ``warnings`` (non-empty when the answer was not used as is), ``fallback`` (True
    when ``text`` is ``{"temporal_caption": <prompt>}``) and the model's ``raw`` answer."""

    text: str
    fields: dict[str, Any]
    repairs: tuple[str, ...]
    warnings: tuple[str, ...]
    fallback: bool
    raw: str

    def report(self) -> str:
        """One line per fact, for logs and the node's report output."""
        lines = [f"fields: {', '.join(self.fields) or 'none'}"]
        lines += [f"repaired: {r}" for r in self.repairs]
        lines += [f"WARNING: {w}" for w in self.warnings]
        return "\n".join(lines)


def finalize_answer(answer: str, prompt: str, mode: str, *, metadata: dict[str, Any] | None = None,
                    audio_description: str | None = None) -> UpsampledPrompt:
    """Validate an LLM answer into the structured prompt, or fall back to ``{"temporal_caption": prompt}``
    with a warning when the answer holds no usable object (never an empty prompt).

    ``metadata`` (resolution/aspect_ratio/duration/fps) overwrites what the model wrote; a non-empty
    ``audio_description`` replaces the model's.
    """
    check_mode(mode)
    if not prompt or not prompt.strip():
        raise StructuredPromptError("the prompt to upsample is empty")
    obj, repairs = parse_answer(answer)
    warnings: list[str] = []
    fields: dict[str, Any] = {}
    if obj is None:
        warnings.append("the model's answer holds no JSON object; using {\"temporal_caption\": <prompt>}")
    else:
        fields, dropped = keep_schema_fields(obj, mode)
        extra = [k for k in dropped if k not in SCRATCH_FIELDS]
        if extra:
            warnings.append(f"dropped field(s) outside the schema: {', '.join(extra)}")
        if not has_content(fields):
            warnings.append("the model's JSON has no caption text; using {\"temporal_caption\": <prompt>}")
            fields = {}
    fallback = not fields
    if fallback:
        fields = {"temporal_caption": prompt.strip()}
    if audio_description and audio_description.strip() and mode != "t2i":
        fields["audio_description"] = audio_description.strip()
    if metadata:
        fields.update({k: v for k, v in metadata.items() if k in schema_fields(mode)})
    return UpsampledPrompt(dumps(fields), fields, tuple(repairs), tuple(warnings), fallback, answer or "")
