"""Opt-in: the pack inside a real ComfyUI server (marker ``comfyui``; skipped unless ``COMFYUI_DIR`` is set).

Run (about 1–3 minutes on a CPU)::

    COMFYUI_DIR=/path/to/ComfyUI python -m pytest -m comfyui tests/test_comfyui_server.py -v

``COMFYUI_PYTHON`` selects the interpreter of ComfyUI's venv (default ``$COMFYUI_DIR/../comfyui-venv/bin/python``
when it exists, else ``python``); it needs ComfyUI's requirements plus this pack's ``requirements.txt``.

What it checks: the server starts with the pack symlinked into a custom-node folder and tiny fixture
weights (:mod:`tiny_models`) mounted through ``--extra-model-paths-config``; the log has no
``IMPORT FAILED`` for the pack; ``/object_info`` lists every node id of ours, exactly as the V1 classes
declared them (``tests/fixtures/object_info_v1.json``), and the core nodes frozen
in :mod:`workflow_check` match the server's declarations; every API workflow in ``workflows/api/*.json``
(plus built-in smoke workflows for the VAE / latent nodes, plus ``*.json`` in the folders named by
``C3MOT_API_WORKFLOWS``) is rewritten to the fixture names, queued on
``/prompt``, finishes with status success, and each output file is fetched through ``/view``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import object_info as oi
import pytest
import workflow_check as wc
from comfy_fixtures import comfy_api_only
from comfyui_server import ComfyServer, file_kind, output_files, prepare_workspace
from support import REPO_ROOT, load_pack_as_comfyui

pytestmark = pytest.mark.comfyui

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
API_WORKFLOW_GLOBS = ("workflows/api/*.json",)
BUILTIN = ("smoke_t2i_decode", "smoke_video_decode", "smoke_encode_decode")


def _skip_without_comfyui():
    if not COMFYUI_DIR:
        pytest.skip("set COMFYUI_DIR to a ComfyUI checkout to run the real-server tests")


@pytest.fixture(scope="module")
def pack():
    with comfy_api_only():
        return load_pack_as_comfyui(REPO_ROOT, "c3mot_pack_for_server_tests")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    _skip_without_comfyui()
    pytest.importorskip("cosmos3.vae.model")
    from tiny_models import install_fixtures

    ws = prepare_workspace(tmp_path_factory.mktemp("comfyui"))
    fixtures = install_fixtures(ws.models, ws.input)
    srv = ComfyServer.start(Path(COMFYUI_DIR), ws)
    srv.fixtures = fixtures
    try:
        yield srv
    finally:
        srv.stop()


def builtin_workflow(name: str, pack) -> dict:
    """Small API workflows over the VAE / latent nodes and the core save nodes."""
    specs = wc.node_specs(pack.nodes.NODE_CLASS_MAPPINGS)
    g = wc.GraphBuilder(specs, wc.output_names_of(pack.nodes.NODE_CLASS_MAPPINGS))
    vae = g.add("C3MoTVAELoader", vae_name="wan2.2_vae.safetensors", dtype="auto")
    if name == "smoke_t2i_decode":
        lat = g.add("C3MoTEmptyLatent", preset="custom", width=48, height=32, frames=1)
        img = g.add("C3MoTVAEDecode", vae=vae.out(), samples=lat.out("samples"))
        g.add("SaveImage", images=img.out(), filename_prefix="c3mot/t2i")
    elif name == "smoke_video_decode":
        lat = g.add("C3MoTEmptyLatent", preset="custom", width=32, height=32, frames=5)
        img = g.add(
            "C3MoTVAEDecode", vae=vae.out(), samples=lat.out("samples"), tiled="on", tile_size=32, tile_overlap=16
        )
        video = g.add("CreateVideo", images=img.out(), fps=16.0)
        g.add("SaveVideo", video=video.out(), filename_prefix="video/c3mot")
        g.add("SaveAnimatedWEBP", images=img.out(), filename_prefix="c3mot/anim", fps=16.0)
    elif name == "smoke_encode_decode":
        image = g.add("LoadImage", image="example.png")
        lat = g.add("C3MoTVAEEncode", vae=vae.out(), images=image.out(0))
        img = g.add("C3MoTVAEDecode", vae=vae.out(), samples=lat.out())
        g.add("SaveImage", images=img.out(), filename_prefix="c3mot/roundtrip")
    else:
        raise KeyError(name)
    api = g.api()
    wc.check_api_workflow(api, specs)
    return api


def _shipped() -> list[Path]:
    """``workflows/api/*.json`` plus ``*.json`` in the folders listed in ``C3MOT_API_WORKFLOWS``
    (``os.pathsep``-separated; for trying your own API workflows against the server)."""
    found = [p for pattern in API_WORKFLOW_GLOBS for p in REPO_ROOT.glob(pattern)]
    for folder in filter(None, os.environ.get("C3MOT_API_WORKFLOWS", "").split(os.pathsep)):
        found.extend(Path(folder).glob("*.json"))
    return sorted(found)


def test_pack_imports_and_registers(server, pack):
    log = server.log_text()
    failed = [line for line in log.splitlines() if "IMPORT FAILED" in line]
    assert not [line for line in failed if "cosmos3-mot" in line], "\n".join(failed) + "\n" + server.log_tail()
    info = server.object_info()
    missing = sorted(set(pack.nodes.NODE_CLASS_MAPPINGS) - set(info))
    assert not missing, f"not in /object_info: {missing}"
    for node_id, cls in pack.nodes.NODE_CLASS_MAPPINGS.items():
        declared = cls.INPUT_TYPES()
        served = info[node_id]
        for section in ("required", "optional"):
            assert list(served["input"].get(section, {})) == list(declared.get(section, {})), (node_id, section)
        assert list(served["output"]) == list(cls.RETURN_TYPES), node_id
        assert served["display_name"] == pack.nodes.NODE_DISPLAY_NAME_MAPPINGS[node_id]


def test_object_info_matches_the_v1_snapshot(server):
    """What the server serves for our (V3) nodes keeps the V1 classes' /object_info (tests/fixtures) contract
    (``oi.compatibility_breaks``: only growth), up to V1/V3 spelling; choices of the file-listing combos differ
    only because the server has fixture models."""
    info = server.object_info()
    snapshot = json.loads(oi.SNAPSHOT.read_text())["nodes"]
    problems = []
    for node_id, expected in snapshot.items():
        if node_id not in info:
            problems.append(f"{node_id}: not served")
            continue
        served = oi.canonical(info[node_id], dynamic=True)
        problems += oi.compatibility_breaks(oi.canonical(expected, dynamic=True), served, node_id,
                                            oi.INTENDED_CHANGES.get(node_id))
    assert not problems, "\n".join(problems)


def _served_inputs(entry: dict) -> list[tuple[str, str, tuple | None, dict]]:
    out = []
    order = entry.get("input_order") or {s: list(entry["input"].get(s, {})) for s in ("required", "optional")}
    for section in ("required", "optional"):
        for name in order.get(section, []):
            decl = entry["input"][section][name]
            kind, opts = decl[0], (decl[1] if len(decl) > 1 else {}) or {}
            if isinstance(kind, list):
                out.append((name, "COMBO", tuple(kind), opts))
            elif kind == "COMBO":
                out.append((name, "COMBO", tuple(opts.get("options", ())), opts))
            else:
                out.append((name, kind, None, opts))
    return out


def test_frozen_core_nodes_match_the_server(server, pack):
    info = server.object_info()
    specs = wc.node_specs(pack.nodes.NODE_CLASS_MAPPINGS)
    problems = []
    for name in wc.CORE_NODES:
        if name not in info:
            problems.append(f"{name}: not on the server")
            continue
        spec, served = specs[name], info[name]
        got = _served_inputs(served)
        if [(n, t) for n, t, _, _ in got] != [(i.name, i.type) for i in spec.inputs]:
            problems.append(
                f"{name}: inputs {[(n, t) for n, t, _, _ in got]} vs frozen {[(i.name, i.type) for i in spec.inputs]}"
            )
            continue
        for (n, t, choices, opts), i in zip(got, spec.inputs):
            if t == "COMBO" and not i.dynamic and tuple(choices) != tuple(i.choices):
                problems.append(f"{name}.{n}: choices {choices} vs frozen {i.choices}")
            for key in ("default", "min", "max", "control_after_generate", "image_upload", "multiline"):
                if key in i.options and opts.get(key) != i.options[key]:
                    problems.append(f"{name}.{n}: {key} {opts.get(key)!r} vs frozen {i.options[key]!r}")
        if list(served["output"]) != list(spec.outputs):
            problems.append(f"{name}: outputs {served['output']} vs frozen {spec.outputs}")
        if bool(served.get("output_node")) != spec.output_node:
            problems.append(f"{name}: output_node {served.get('output_node')} vs frozen {spec.output_node}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("workflow", [*BUILTIN, *(p.name for p in _shipped())])
def test_workflow_runs_on_the_server(server, pack, workflow):
    from tiny_models import rewrite_names

    if workflow in BUILTIN:
        api = builtin_workflow(workflow, pack)
    else:
        api = json.loads(next(p for p in _shipped() if p.name == workflow).read_text())
        wc.check_api_workflow(api, wc.node_specs(pack.nodes.NODE_CLASS_MAPPINGS), name=workflow)
    api = rewrite_names(api, server.fixtures.names)
    prompt_id = server.queue(api)
    entry = server.wait(prompt_id, timeout=600)
    status = entry.get("status", {})
    assert status.get("status_str") == "success", json.dumps(status.get("messages"), indent=1)[-6000:]
    files = output_files(entry)
    assert files, f"no outputs in {entry.get('outputs')}"
    for f in files:
        data = server.view(f)
        assert data and file_kind(data) in ("png", "webp", "mp4", "webm", "jpeg"), (f, data[:16])
    if workflow == "smoke_video_decode":
        kinds = sorted(file_kind(server.view(f)) for f in files)
        assert kinds == ["mp4", "webp"], kinds


def test_frozen_widget_layout_matches_real_templates():
    """Core nodes in the official workflow templates (installed in ComfyUI's venv) have exactly the widget
    slots and socket types that the frozen declarations predict (a handful of legacy files excepted)."""
    _skip_without_comfyui()
    import subprocess

    from comfyui_server import comfyui_python

    probe = subprocess.run(
        [
            comfyui_python(Path(COMFYUI_DIR)),
            "-c",
            "import comfyui_workflow_templates as t, os; print(os.path.dirname(t.__file__))",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if probe.returncode != 0:
        pytest.skip("comfyui_workflow_templates is not installed in ComfyUI's venv")
    specs = wc.node_specs({})
    checked, problems = 0, []
    for path in sorted(Path(probe.stdout.strip()).glob("templates/*.json")):
        try:
            graph = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        for node in graph.get("nodes", []) if isinstance(graph, dict) else []:
            spec = specs.get(node.get("type"))
            if spec is None or spec.frontend_only:
                continue
            checked += 1
            found: list[str] = []
            wc._check_ui_widgets(node, spec, f"{path.name} node {node.get('id')} ({spec.type})", found, True, False)
            if [o.get("type") for o in node.get("outputs") or []] != list(spec.outputs):
                found.append(f"{path.name} node {node.get('id')} ({spec.type}): outputs differ")
            problems.extend(found)
    assert checked > 100, f"only {checked} core nodes found in the templates"
    assert len(problems) <= checked // 100, "\n".join(problems)


def test_sound_workflow_saves_an_mp4_with_audio(server, pack, tmp_path):
    """The T2V+sound API workflow, plus core SaveAudio on the Audio Decode output: the mp4 has an AAC audio track
    as long as the video, and SaveAudio writes the waveform alone."""
    av = pytest.importorskip("av")
    from tiny_models import rewrite_names

    api = json.loads((REPO_ROOT / "workflows/api/cosmos3_t2v_sound.json").read_text())
    decode_id = next(i for i, n in api.items() if n["class_type"] == "C3MoTAudioDecode")
    api["900"] = {"class_type": "SaveAudio", "inputs": {"audio": [decode_id, 0], "filename_prefix": "audio/c3mot"}}
    api = rewrite_names(api, server.fixtures.names)
    entry = server.wait(server.queue(api), timeout=600)
    status = entry.get("status", {})
    assert status.get("status_str") == "success", json.dumps(status.get("messages"), indent=1)[-6000:]
    files = output_files(entry)
    videos = [f for f in files if f["filename"].endswith(".mp4")]
    audios = [f for f in files if f["filename"].endswith(".flac")]
    assert len(videos) == 1 and len(audios) == 1, files
    path = tmp_path / "out.mp4"
    path.write_bytes(server.view(videos[0]))
    with av.open(str(path)) as container:
        (video,) = container.streams.video
        (audio,) = container.streams.audio
        frames = sum(1 for _ in container.decode(video=0))
        container.seek(0)
        samples = sum(f.samples for f in container.decode(audio=0))
        assert audio.codec_context.name == "aac" and audio.channels == 2
        rate = audio.sample_rate
    duration = frames / 24.0
    assert abs(samples / rate - duration) <= 0.05, (samples, rate, frames)  # AAC frames pad by < 1024 samples
    assert server.view(audios[0])[:4] == b"fLaC"
