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
* T2I: 960x960 (720p 1:1 preset), 50 steps, cfg 4.0, shift 3 — the framework's Nano image defaults.

Every graph checks the prompt with the guardrails before the text encode and the frames after the decode.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: tests/ holds the helpers

import workflow_check as wc  # noqa: E402
from comfy_fixtures import load_pack_with_v3_api  # noqa: E402
from support import REPO_ROOT  # noqa: E402

WORKFLOW_DIR = REPO_ROOT / "workflows"
API_DIR = WORKFLOW_DIR / "api"
NAMES = ("cosmos3_t2v", "cosmos3_i2v", "cosmos3_t2i", "cosmos3_t2v_sound")

CHECKPOINT = "cosmos3/Cosmos3-Nano"
VAE = "wan2.2_vae.safetensors"
VAE_URL = "https://huggingface.co/Comfy-Org/Wan_2.2_ComfyUI_Repackaged/resolve/main/split_files/vae/wan2.2_vae.safetensors"
CHECKPOINT_REPO = "https://huggingface.co/nvidia/Cosmos3-Nano"
GUARDRAIL_RELEASE = "Cosmos-Guardrail1"
GUARDRAIL_REPO = "https://huggingface.co/nvidia/Cosmos-Guardrail1"
# Folders cannot be downloaded by the frontend, so their hints carry no "url" (the frontend only checks
# and offers entries with a url; a folder would always look missing). The VAE file is downloadable.
MODEL_HINTS = {
    "C3MoTModelLoader": [{"name": CHECKPOINT, "directory": "cosmos3", "repository": CHECKPOINT_REPO,
                          "note": "the whole repository (transformer/, vae/, text_tokenizer/, scheduler/, "
                                  "model_index.json) into ComfyUI/models/cosmos3/Cosmos3-Nano/"}],
    "C3MoTVAELoader": [{"name": VAE, "url": VAE_URL, "directory": "vae"}],
    "C3MoTGuardrailLoader": [{"name": GUARDRAIL_RELEASE, "directory": "cosmos3_guardrail", "repository": GUARDRAIL_REPO,
                              "note": "into ComfyUI/models/cosmos3_guardrail/Cosmos-Guardrail1/ (the loader's "
                                      "error lists every missing file of the enabled checks)"}],
}

VIDEO = dict(preset="480p 16:9 (832x480)", width=832, height=480, frames=121, fps=24.0, steps=35, cfg=6.0, shift=10.0)
IMAGE = dict(preset="720p 1:1 (960x960)", width=960, height=960, frames=1, fps=24.0, steps=50, cfg=4.0, shift=3.0)
PROMPTS = {
    "cosmos3_t2v": "A red robot arm picks up a white ceramic cup from a wooden kitchen table and places it on a "
                   "shelf. Soft morning light comes through a window; the camera slowly pushes in.",
    "cosmos3_i2v": "The scene comes to life: the camera slowly moves forward while leaves sway in a gentle "
                   "breeze and sunlight flickers through the branches.",
    "cosmos3_t2i": "A cozy reading nook by a rain-streaked window, warm lamp light, a stack of old books and a "
                   "steaming cup of tea on a small wooden table, photorealistic.",
    "cosmos3_t2v_sound": "A steam locomotive rushes past a small country station, whistle blowing and wheels "
                         "clattering on the rails, while pigeons scatter from the platform roof.",
}
SEEDS = {"cosmos3_t2v": 42, "cosmos3_i2v": 42, "cosmos3_t2i": 7, "cosmos3_t2v_sound": 42}
TITLES = {"cosmos3_t2v": "Text to video", "cosmos3_i2v": "Image to video", "cosmos3_t2i": "Text to image",
          "cosmos3_t2v_sound": "Text to video with sound"}
SOUND_NOTE = """
**Sound**: the Sampler's `sound` is `on`: the checkpoint's sound stream is denoised with the video (a
sound-capable checkpoint with its `sound_tokenizer/` folder); Audio Decode turns it into AUDIO for Create Video
(an mp4 with an AAC track); connect it to Save Audio for the waveform alone.
"""

NOTE = """## Cosmos3 MoT — {title}

**Files** (ComfyUI/models/…):
* `cosmos3/Cosmos3-Nano/` — the whole [nvidia/Cosmos3-Nano]({repo}) repository (diffusers layout). Other
  Cosmos3 checkpoints work the same way (Edge: use the 256p/480p presets).
* `vae/wan2.2_vae.safetensors` — ComfyUI's Wan 2.2 VAE, or pick `cosmos3/Cosmos3-Nano/vae` in the VAE loader.
* `cosmos3_guardrail/Cosmos-Guardrail1/` — [nvidia/Cosmos-Guardrail1]({guard}) for the safety checks; the
  guardrail loader's error lists exactly what is missing.

**Settings**: {settings}. In the Sampler, 0 = auto (framework defaults for the mode and checkpoint).
The prompt is encoded once; re-queuing with a new seed reuses it.
"""


CORE_TITLES = {"MarkdownNote": "Note", "LoadImage": "Load Image", "SaveImage": "Save Image",
               "CreateVideo": "Create Video", "SaveVideo": "Save Video"}


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
    note = NOTE.format(title=TITLES[name], repo=CHECKPOINT_REPO, guard=GUARDRAIL_REPO, settings=_settings_text(name, s))
    with_sound = name.endswith("_sound")
    ids["note"] = g.add("MarkdownNote", text=note + (SOUND_NOTE if with_sound else ""))
    guard = ids["guard"] = g.add("C3MoTGuardrailLoader")
    check = ids["check"] = g.add("C3MoTGuardrailPromptCheck", guardrail=guard.out("guardrail"), prompt=PROMPTS[name],
                                 negative_prompt="", check_negative=False)
    model = ids["model"] = g.add("C3MoTModelLoader", checkpoint=CHECKPOINT, dtype="auto", tokenizer="auto")
    latent = ids["latent"] = g.add("C3MoTEmptyLatent", preset=s["preset"], width=s["width"], height=s["height"],
                                   frames=s["frames"])
    text = ids["text"] = g.add(
        "C3MoTTextEncode", model=model.out("model"), prompt=check.out("prompt"),
        negative_prompt=check.out("negative_prompt"), prompt_style="framework", use_system_prompt="auto",
        width=latent.out("width"), height=latent.out("height"), frames=latent.out("frames"), fps=s["fps"],
    )
    vae = ids["vae"] = g.add("C3MoTVAELoader", vae_name=VAE, dtype="auto")
    cond = {}
    if name == "cosmos3_i2v":
        image = ids["image"] = g.add("LoadImage", image="example.png")
        ids["cond"] = g.add("C3MoTImageCondition", vae=vae.out("vae"), image=image.out("IMAGE"),
                            width=latent.out("width"), height=latent.out("height"), frames=latent.out("frames"))
        cond["image_cond"] = ids["cond"].out("image_cond")
    sampler = ids["sampler"] = g.add(
        "C3MoTSampler", seed_control="randomize", model=model.out("model"), text=text.out("text"),
        samples=latent.out("samples"), seed=SEEDS[name], steps=s["steps"], cfg=s["cfg"], shift=s["shift"],
        schedule="auto", attention="sdpa", cfg_interval=False, **cond, **({"sound": "on"} if with_sound else {}),
    )
    decode = ids["decode"] = g.add("C3MoTVAEDecode", vae=vae.out("vae"), samples=sampler.out("samples"), tiled="auto",
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


def _display_title(node_type: str) -> str:
    return _titles.get(node_type, node_type)


# Canvas layout: columns left to right in data-flow order ([x, y], [width, height]).
LAYOUT = {
    "note": ([20, 20], [420, 470]),
    "guard": ([20, 520], [420, 330]),
    "check": ([20, 880], [420, 330]),
    "model": ([480, 20], [380, 130]),
    "latent": ([480, 190], [380, 200]),
    "vae": ([480, 430], [380, 110]),
    "image": ([480, 580], [380, 420]),
    "text": ([900, 20], [420, 420]),
    "cond": ([900, 480], [420, 200]),
    "sampler": ([1360, 20], [360, 420]),
    "decode": ([1760, 20], [320, 180]),
    "frames": ([1760, 240], [320, 130]),
    "audio": ([1760, 410], [320, 110]),
    "video": ([2120, 20], [300, 80]),
    "save": ([2120, 140], [520, 560]),
}
TITLED = {"check": "Guardrail Prompt Check (your prompt here)", "image": "Load Image (first frame)"}


def _lay_out(ui: dict, keys: dict[int, str], name: str) -> None:
    for node in ui["nodes"]:
        key = keys[node["id"]]
        node["pos"], node["size"] = [list(v) for v in LAYOUT[key]]
        if key in TITLED:
            node["title"] = TITLED[key]
        hints = MODEL_HINTS.get(node["type"])
        if hints:
            node["properties"]["models"] = json.loads(json.dumps(hints))
    ui["groups"] = [{"title": TITLES[name] + " with Cosmos3 MoT", "bounding": [0, -40, 2680, 1290], "color": "#3f789e",
                     "font_size": 24, "flags": {}}]
    ui["extra"] = {"ds": {"scale": 0.6, "offset": [40, 120]}}


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 on differences")
    args = parser.parse_args(argv)
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
