"""Generate the shipped example workflows from the node declarations: UI graphs (schema 0.4) in
``workflows/`` and their API twins in ``workflows/api/``.

    python tests/make_workflows.py            # (re)write the files
    python tests/make_workflows.py --check    # exit 1 when a committed file differs from what this builds

``tests/test_cosmos3_workflows.py`` runs the check, so a node change that shifts widgets or sockets fails
until the workflows are regenerated (and reviewed: saved user workflows shift the same way).

Defaults, chosen for the Nano checkpoint (``models/cosmos3/Cosmos3-Nano``; framework values from
``cosmos3.defaults.generation_defaults``):

* T2V / I2V: 832x480 (480p 16:9 preset), 121 frames (5 s at 24 fps), 35 steps, cfg 6.0, shift 10 — the
  framework's Nano video settings at the lighter 480p tier instead of its 1280x720x189 default (about a
  quarter of the tokens per step; switch the preset/frames for the full 720p clip);
* T2I: 960x960 (720p 1:1 preset), 50 steps, cfg 4.0, shift 3 — the framework's Nano image defaults;
* V2V: the T2V settings, continuing the example clip from its last 5 frames (Video Condition, 2 latent frames).

Every graph checks the prompt with the guardrails before the text encode and the frames after the decode.
Between the prompt check and the text encode sits the Prompt Upsampler, bypassed (mode 4): bypassed, the
checked prompt passes straight through; enabled, a local instruct LLM (``models/LLM/``) writes the
structured JSON caption first.

Seeds are fixed (the values the README names), so a re-queue reproduces the result.

Media (written by the same run, byte-reproducible with one Pillow version; ``--check`` compares the pixels):
``workflows/<name>.jpg`` — the template browser's thumbnail of each workflow; ``workflows/input/`` — the
example inputs the I2V and V2V graphs load (an 832x480 picture and a 9-frame animated PNG), which the pack
copies into ComfyUI's input folder at start-up when they are not there yet (``nodes/_comfy.py``).

Layout: every node box, title bar and (1.5x frontends) source badge included, keeps clear of its neighbours
(:data:`GAP` between a node's bottom and the next node's title); ``extra.ds`` puts the group right of the 1.5x
sidebar and below its toolbar.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: tests/ holds the helpers

import workflow_check as wc  # noqa: E402
import workflow_media  # noqa: E402
from comfy_fixtures import load_pack_with_v3_api  # noqa: E402
from support import REPO_ROOT  # noqa: E402

WORKFLOW_DIR = REPO_ROOT / "workflows"
API_DIR = WORKFLOW_DIR / "api"
KSAMPLER_LORA = "cosmos3_t2v_ksampler_lora"  # T2V through core KSampler with a LoRA (issue 16)
INPUT_DIR = WORKFLOW_DIR / "input"
NAMES = ("cosmos3_t2v", "cosmos3_i2v", "cosmos3_t2i", "cosmos3_v2v", "cosmos3_t2v_sound", KSAMPLER_LORA)
LORA = "cosmos3_lora.safetensors"  # placeholder: the note says to pick your own LoRA
EXAMPLE_IMAGE = "cosmos3_example.png"  # the I2V start frame
EXAMPLE_CLIP = "cosmos3_example_clip.png"  # the V2V source: an animated PNG (LoadImage gives its frames)

CHECKPOINT = "cosmos3/Cosmos3-Nano"
VAE = "wan2.2_vae.safetensors"
VAE_URL = "https://huggingface.co/Comfy-Org/Wan_2.2_ComfyUI_Repackaged/resolve/main/split_files/vae/wan2.2_vae.safetensors"
CHECKPOINT_REPO = "https://huggingface.co/nvidia/Cosmos3-Nano"
GUARDRAIL_RELEASE = "Cosmos-Guardrail1"
GUARDRAIL_REPO = "https://huggingface.co/nvidia/Cosmos-Guardrail1"
JUDGE_REPO = "https://huggingface.co/Qwen/Qwen3Guard-Gen-0.6B"
# Only downloadable single files get a properties.models entry: the frontend's schema requires a url for each
# (an entry without one shows "Invalid workflow against zod schema"), and folder checkpoints (the Cosmos3
# checkpoint, the guardrail release) cannot be downloaded by it; the notes say where those go.
MODEL_HINTS = {
    "C3MoTVAELoader": [{"name": VAE, "url": VAE_URL, "directory": "vae"}],
}

UPSAMPLER_MODEL = "LLM/Qwen3-VL-8B-Instruct"  # the node's always-offered default
UPSAMPLER_MODES = {"cosmos3_t2v": "t2v", "cosmos3_i2v": "i2v", "cosmos3_t2i": "t2i", "cosmos3_v2v": "t2v",
                   "cosmos3_t2v_sound": "t2v", KSAMPLER_LORA: "t2v"}

VIDEO = dict(preset="480p 16:9 (832x480)", width=832, height=480, frames=121, fps=24.0, steps=35, cfg=6.0, shift=10.0)
IMAGE = dict(preset="720p 1:1 (960x960)", width=960, height=960, frames=1, fps=24.0, steps=50, cfg=4.0, shift=3.0)
PROMPTS = {
    "cosmos3_t2v": "A red robot arm picks up a white ceramic cup from a wooden kitchen table and places it on a "
                   "shelf. Soft morning light comes through a window; the camera slowly pushes in.",
    "cosmos3_i2v": "The scene comes to life: the camera slowly moves forward while leaves sway in a gentle "
                   "breeze and sunlight flickers through the branches.",
    KSAMPLER_LORA: "A red robot arm picks up a white ceramic cup from a wooden kitchen table and places it on a "
                   "shelf. Soft morning light comes through a window; the camera slowly pushes in.",
    "cosmos3_t2i": "A cozy reading nook by a rain-streaked window, warm lamp light, a stack of old books and a "
                   "steaming cup of tea on a small wooden table, photorealistic.",
    "cosmos3_t2v_sound": "A steam locomotive rushes past a small country station, whistle blowing and wheels "
                         "clattering on the rails, while pigeons scatter from the platform roof.",
}
PROMPTS["cosmos3_v2v"] = ("The camera keeps gliding along the quiet country road; the sun sinks slowly behind the "
                          "green hills while a light breeze moves the tree's leaves.")
SEEDS = {"cosmos3_t2v": 42, "cosmos3_i2v": 42, "cosmos3_t2i": 7, "cosmos3_v2v": 42, "cosmos3_t2v_sound": 42,
         KSAMPLER_LORA: 42}
TITLES = {"cosmos3_t2v": "Text to video", "cosmos3_i2v": "Image to video", "cosmos3_t2i": "Text to image",
          "cosmos3_v2v": "Video to video", "cosmos3_t2v_sound": "Text to video with sound",
          KSAMPLER_LORA: "Text to video with core KSampler and a LoRA"}
SOUND_NOTE = """
**Sound**: the Sampler's `sound` is `on`: the checkpoint's sound stream is denoised with the video (a
sound-capable checkpoint with its `sound_tokenizer/` folder); Audio Decode turns it into AUDIO for Create Video
(an mp4 with an AAC track); connect it to Save Audio for the waveform alone.
"""
LORA_NOTE = """
**LoRA**: `{lora}` is a placeholder — put your Cosmos3 LoRA (`.safetensors`, diffusers or cosmos-framework
key names) in `ComfyUI/models/loras/` and pick it in the LoRA Loader. It patches both towers: its `model`
output feeds the Text Encode (text-tower updates), its `MODEL` output the core KSampler (generation tower).
Core KSampler runs Euler over the `simple` schedule with the checkpoint's shift (use ModelSamplingSD3 to
change it); the Cosmos3 Sampler node stays the exact reference path.
"""
INPUT_NOTES = {
    "cosmos3_i2v": f"\n**Start image**: `{EXAMPLE_IMAGE}` ships in the pack's `workflows/input/` and is copied into "
                   "`ComfyUI/input/` when ComfyUI starts; pick or upload your own in Load Image.\n",
    "cosmos3_v2v": f"\n**Source clip**: `{EXAMPLE_CLIP}` (9 frames, an animated PNG) ships in the pack's "
                   "`workflows/input/` and is copied into `ComfyUI/input/` when ComfyUI starts; Load Image gives all "
                   "frames of an animated PNG/WebP/GIF. Video Condition keeps the clip's last 5 frames (2 latent "
                   "frames, `keep` = last) and generates the rest; `keep` = first re-imagines it from its start.\n",
}

NOTE = """## Cosmos3 MoT — {title}

**Files** (ComfyUI/models/…):
* `cosmos3/Cosmos3-Nano/` — the whole [nvidia/Cosmos3-Nano]({repo}) repository (diffusers layout). Other
  Cosmos3 checkpoints work the same way (Edge: use the 256p/480p presets).
* `vae/wan2.2_vae.safetensors` — ComfyUI's Wan 2.2 VAE, or pick `cosmos3/Cosmos3-Nano/vae` in the VAE loader.
* `cosmos3_guardrail/Cosmos-Guardrail1/` — [nvidia/Cosmos-Guardrail1]({guard}) for the safety checks, and
  `cosmos3_guardrail/Qwen3Guard-Gen-0.6B/` — [Qwen/Qwen3Guard-Gen-0.6B]({judge}), the prompt judge (the loader's
  `llm_judge` = on needs it; `auto`/`off` run without it, with a warning). The loader's error lists exactly what
  is missing.
{inputs}
**Settings**: {settings}. In the Sampler, 0 = auto (framework defaults for the mode and checkpoint).
The prompt is encoded once; re-queuing with a new seed reuses it.

**Prompt Upsampler** (bypassed): select it and press Ctrl+B to expand a short prompt into the structured
JSON caption Cosmos3 was trained on, written offline by an instruct model folder in `LLM/` (e.g.
Qwen/Qwen3-VL-8B-Instruct, or a Cosmos3 Reasoner). Worth it for one-line prompts; skip it for detailed or JSON ones.
"""


CORE_TITLES = {"KSampler": "KSampler", "MarkdownNote": "Note", "LoadImage": "Load Image", "SaveImage": "Save Image",
               "CreateVideo": "Create Video", "SaveVideo": "Save Video"}


@functools.lru_cache(maxsize=1)
def _specs_and_names():
    pack = load_pack_with_v3_api("c3mot_pack_for_workflow_generator")
    _titles.update(pack.nodes.NODE_DISPLAY_NAME_MAPPINGS)
    return wc.node_specs(pack.nodes.NODE_CLASS_MAPPINGS), wc.output_names_of(pack.nodes.NODE_CLASS_MAPPINGS)


_titles: dict[str, str] = dict(CORE_TITLES)


def _settings_text(name: str, s: dict) -> str:
    size = f"{s['width']}x{s['height']}"
    if s["frames"] == 1:
        return f"{size} image, {s['steps']} steps, cfg {s['cfg']:g}, shift {s['shift']:g}"
    return (f"{size}, {s['frames']} frames at {s['fps']:g} fps, {s['steps']} steps, cfg {s['cfg']:g}, "
            f"shift {s['shift']:g} (the framework's Nano default is 1280x720 with 189 frames)")


def build(name: str, specs, output_names) -> tuple[dict, dict]:
    """``(ui, api)`` for one of :data:`NAMES`."""
    s = IMAGE if name == "cosmos3_t2i" else VIDEO
    g = wc.GraphBuilder(specs, output_names)
    ids = {}
    with_sound = name.endswith("_sound")
    note = NOTE.format(title=TITLES[name], repo=CHECKPOINT_REPO, guard=GUARDRAIL_REPO, judge=JUDGE_REPO,
                       inputs=INPUT_NOTES.get(name, ""), settings=_settings_text(name, s))
    if name == KSAMPLER_LORA:
        note = note.replace("In the Sampler, 0 = auto (framework defaults for the mode and checkpoint).\n", "")
        note += LORA_NOTE.format(lora=LORA)
    ids["note"] = g.add("MarkdownNote", text=note + (SOUND_NOTE if with_sound else ""))
    guard = ids["guard"] = g.add("C3MoTGuardrailLoader")
    check = ids["check"] = g.add("C3MoTGuardrailPromptCheck", guardrail=guard.out("guardrail"), prompt=PROMPTS[name],
                                 negative_prompt="", check_negative=False)
    model = ids["model"] = g.add("C3MoTModelLoader", checkpoint=CHECKPOINT, dtype="auto", tokenizer="auto")
    latent = ids["latent"] = g.add("C3MoTEmptyLatent", preset=s["preset"], width=s["width"], height=s["height"],
                                   frames=s["frames"])
    text_model = model.out("model")
    if name == KSAMPLER_LORA:
        lora = ids["lora"] = g.add("C3MoTLoraLoader", model=model.out("model"), lora_name=LORA,
                                   strength_generation=1.0, strength_text=1.0)
        text_model = lora.out("model")
    image = None
    if name == "cosmos3_i2v":
        image = ids["image"] = g.add("LoadImage", image=EXAMPLE_IMAGE)
    upsampler = ids["upsampler"] = g.add(
        "C3MoTPromptUpsampler", node_mode=4, model_folder=UPSAMPLER_MODEL, prompt=check.out("prompt"),
        mode=UPSAMPLER_MODES[name], width=latent.out("width"), height=latent.out("height"),
        frames=latent.out("frames"), fps=s["fps"], seed=0, max_new_tokens=2048, temperature=0.0, after="offload",
        **({"image": image.out("IMAGE")} if image is not None else {}), audio_description="",
    )
    text = ids["text"] = g.add(
        "C3MoTTextEncode", model=text_model, prompt=upsampler.out("prompt"),
        negative_prompt=check.out("negative_prompt"), prompt_style="framework", use_system_prompt="auto",
        width=latent.out("width"), height=latent.out("height"), frames=latent.out("frames"), fps=s["fps"],
        linked_values=_size(s),  # what the linked widgets hold: the Empty Latent's size, never stale defaults
    )
    vae = ids["vae"] = g.add("C3MoTVAELoader", vae_name=VAE, dtype="auto")
    cond = {}
    if image is not None:
        ids["cond"] = g.add("C3MoTImageCondition", vae=vae.out("vae"), image=image.out("IMAGE"),
                            width=latent.out("width"), height=latent.out("height"), frames=latent.out("frames"),
                            linked_values=_size(s))
        cond["image_cond"] = ids["cond"].out("image_cond")
    elif name == "cosmos3_v2v":
        clip = ids["image"] = g.add("LoadImage", image=EXAMPLE_CLIP)
        ids["cond"] = g.add("C3MoTVideoCondition", vae=vae.out("vae"), video=clip.out("IMAGE"),
                            width=latent.out("width"), height=latent.out("height"), frames=latent.out("frames"),
                            condition_frames=2, keep="last", linked_values=_size(s))
        cond["image_cond"] = ids["cond"].out("video_cond")
    if name == KSAMPLER_LORA:
        sampler = ids["sampler"] = g.add(
            "KSampler", seed_control="fixed", model=lora.out("MODEL"), seed=SEEDS[name], steps=s["steps"],
            cfg=s["cfg"], sampler_name="euler", scheduler="simple", positive=text.out("positive"),
            negative=text.out("negative"), latent_image=latent.out("samples"), denoise=1.0,
        )
    else:
        sampler = ids["sampler"] = g.add(
            "C3MoTSampler", seed_control="fixed", model=model.out("model"), text=text.out("text"),
            samples=latent.out("samples"), seed=SEEDS[name], steps=s["steps"], cfg=s["cfg"], shift=s["shift"],
            schedule="auto", attention="auto", cfg_interval=False, **cond, **({"sound": "on"} if with_sound else {}),
        )
    samples_out = sampler.out("LATENT") if name == KSAMPLER_LORA else sampler.out("samples")
    decode = ids["decode"] = g.add("C3MoTVAEDecode", vae=vae.out("vae"), samples=samples_out, tiled="auto",
                                   tile_size=256, tile_overlap=64)
    frames = ids["frames"] = g.add("C3MoTGuardrailFrameCheck", guardrail=guard.out("guardrail"),
                                   images=decode.out("images"), on_block="error")
    if s["frames"] == 1:
        ids["save"] = g.add("SaveImage", images=frames.out("images"), filename_prefix="cosmos3/t2i")
    else:
        audio = {}
        if with_sound:
            ids["audio"] = g.add("C3MoTAudioDecode", sound=sampler.out("sound"), sound_tokenizer="auto")
            audio["audio"] = ids["audio"].out("audio")
        video = ids["video"] = g.add("CreateVideo", images=frames.out("images"), fps=text.out("fps"), **audio)
        ids["save"] = g.add("SaveVideo", video=video.out("VIDEO"), filename_prefix=f"video/{name}", format="auto",
                            codec="auto")
    ui = g.ui()
    _lay_out(ui, {node.id: key for key, node in ids.items()}, name)
    api = wc.ui_to_api(ui, specs)
    titles = {str(n["id"]): n.get("title") or _display_title(n["type"]) for n in ui["nodes"]}
    for nid, entry in api.items():
        entry["_meta"] = {"title": titles[nid]}
    return ui, api


def _size(s: dict) -> dict:
    return {"width": s["width"], "height": s["height"], "frames": s["frames"]}


def _display_title(node_type: str) -> str:
    return _titles.get(node_type, node_type)


# Canvas layout: columns left to right in data-flow order ([x, y], [width, height]); y is the top of the node's
# body, its title bar (TITLE px) sits above it and the 1.5x frontends draw the node's source badge above that.
# Heights are at least what both frontends compute for the node (checked by tests/test_frontend_workflows.py).
TITLE = 30
GAP = 80  # a node's bottom to the next node's body top: title bar + badge + clear space
COLUMNS = {
    20: (420, [("note", 470), ("guard", 330), ("check", 330)]),
    480: (380, [("model", 190), ("latent", 200), ("vae", 110), ("image", 420), ("upsampler", 520)]),
    900: (420, [("text", 420), ("cond", 250), ("lora", 160)]),
    1360: (380, [("sampler", 460)]),
    1780: (320, [("decode", 180), ("frames", 130), ("audio", 110)]),
    2140: (300, [("video", 80), ("save", 560)]),
}
TOP = 20


def _layout() -> dict[str, tuple[list[int], list[int]]]:
    out = {}
    for x, (width, column) in COLUMNS.items():
        y = TOP
        for key, height in column:
            out[key] = ([x, y], [width, height])
            y += height + GAP
    return out


LAYOUT = _layout()
GROUP_PAD = 20
TITLED = {"check": "Guardrail Prompt Check (your prompt here)", "image": "Load Image (first frame)",
          "upsampler": "Prompt Upsampler (optional: Ctrl+B to enable)"}
TITLED_BY_NAME = {"cosmos3_v2v": {"image": "Load Image (source clip)"}}
# Saved view (screen = (canvas + offset) * scale, from the canvas element's corner): scale 0.6 is the smallest at
# which both frontends still draw node text; the group's left edge lands 90 px right of the canvas's left (the
# 1.5x frontends' sidebar overlays it) and its title bar 96 px down (below their toolbar and action bar). The
# right part of the graph is reached by panning (tests/test_frontend_workflows.py measures it in both frontends).
VIEW = {"scale": 0.6, "offset": [150, 220]}


def _lay_out(ui: dict, keys: dict[int, str], name: str) -> None:
    for node in ui["nodes"]:
        key = keys[node["id"]]
        node["pos"], node["size"] = [list(v) for v in LAYOUT[key]]
        title = TITLED_BY_NAME.get(name, {}).get(key) or TITLED.get(key)
        if title:
            node["title"] = title
        hints = MODEL_HINTS.get(node["type"])
        if hints:
            node["properties"]["models"] = json.loads(json.dumps(hints))
    right = max(n["pos"][0] + n["size"][0] for n in ui["nodes"]) + GROUP_PAD
    bottom = max(n["pos"][1] + n["size"][1] for n in ui["nodes"]) + GROUP_PAD
    top = TOP - TITLE - 50  # the group's own title bar above the first row's titles and badges
    ui["groups"] = [{"title": TITLES[name] + " with Cosmos3 MoT", "bounding": [0, top, right, bottom - top],
                     "color": "#3f789e", "font_size": 24, "flags": {}}]
    ui["extra"] = {"ds": json.loads(json.dumps(VIEW))}


def render(data: dict) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def expected_files() -> dict[Path, str]:
    specs, names = _specs_and_names()
    files = {}
    for name in NAMES:
        ui, api = build(name, specs, names)
        files[WORKFLOW_DIR / f"{name}.json"] = render(ui)
        files[API_DIR / f"{name}.json"] = render(api)
    return files


def media_problems() -> list[str]:
    """Missing or malformed thumbnails / example inputs (see :mod:`workflow_media`)."""
    return workflow_media.media_problems(WORKFLOW_DIR, NAMES, INPUT_DIR, EXAMPLE_IMAGE, EXAMPLE_CLIP)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 on differences")
    parser.add_argument("--media", action="store_true", help="redraw the thumbnails and example inputs too")
    args = parser.parse_args(argv)
    if args.check:
        problems = media_problems()
        for problem in problems:
            print("media: " + problem)
        if problems:
            return 1
    else:
        for path in workflow_media.write_media(WORKFLOW_DIR, TITLES, INPUT_DIR, EXAMPLE_IMAGE, EXAMPLE_CLIP,
                                               only_missing=not args.media):
            print("wrote: " + str(path.relative_to(REPO_ROOT)))
    stale = []
    for path, text in expected_files().items():
        current = path.read_text() if path.is_file() else None
        if current == text:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    for path in stale:
        print(("differs: " if args.check else "wrote: ") + str(path.relative_to(REPO_ROOT)))
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
