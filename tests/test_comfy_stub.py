"""The ComfyUI stand-in behaves like ComfyUI v0.3.64 where the pack relies on it.

The ``comfyui``-marked test at the end runs the same scenarios against the real modules of a ComfyUI
checkout (``COMFYUI_DIR``) and compares the results.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from comfy_fixtures import STUB_DIR, install_comfy_stub


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------------------------------------------
# installation


def test_fixture_installs_the_stub_and_removes_it(tmp_path):
    with install_comfy_stub(tmp_path) as stub:
        import comfy.model_management as mm
        import folder_paths

        assert Path(folder_paths.__file__).parent == STUB_DIR
        assert mm is stub.mm
        assert folder_paths.models_dir == str(tmp_path / "models")
    assert "folder_paths" not in sys.modules and "comfy.model_management" not in sys.modules
    with pytest.raises(ImportError):
        importlib.import_module("folder_paths")


def test_state_is_reset_between_uses(tmp_path):
    with install_comfy_stub(tmp_path / "a") as stub:
        stub.folder_paths.add_model_folder_path("extra", str(tmp_path / "x"))
        stub.interrupt()
        stub.utils.ProgressBar(3).update_absolute(1)
    with install_comfy_stub(tmp_path / "b") as stub:
        assert "extra" not in stub.folder_paths.folder_names_and_paths
        assert not stub.mm.processing_interrupted()
        assert stub.progress_calls == [] and stub.load_calls == []


def test_pack_nodes_use_the_stub(comfy_pack, comfy_stub):
    from_pack = sys.modules[comfy_pack.__name__ + ".nodes._comfy"]
    assert from_pack.available()
    assert from_pack.intermediate_device() == torch.device("cpu")
    comfy_stub.configure(gpu_only=True, torch_device="meta")
    assert from_pack.intermediate_device() == torch.device("meta")


# ------------------------------------------------------------------------------------------------------
# folder_paths


def test_folder_paths_listing_rules(comfy_stub):
    fp = comfy_stub.folder_paths
    vae = Path(fp.get_folder_paths("vae")[0])
    _touch(vae / "wan2.2_vae.safetensors")
    _touch(vae / "sub" / "b.sft")
    _touch(vae / "old.ckpt")
    _touch(vae / "notes.txt")
    _touch(vae / ".git" / "x.safetensors")
    (vae / "folder.safetensors").mkdir()  # a directory is never listed
    assert fp.get_filename_list("vae") == ["old.ckpt", "sub/b.sft", "wan2.2_vae.safetensors"]
    # legacy names map to the new keys
    assert fp.get_folder_paths("unet") == fp.get_folder_paths("diffusion_models")
    assert [Path(p).name for p in fp.get_folder_paths("diffusion_models")] == ["unet", "diffusion_models"]
    # full paths: files only, no escaping the folder
    assert fp.get_full_path("vae", "sub/b.sft") == str(vae / "sub" / "b.sft")
    assert fp.get_full_path("vae", "folder.safetensors") is None
    assert fp.get_full_path("vae", "../vae/wan2.2_vae.safetensors") is None
    assert fp.get_full_path("no_such_key", "x") is None
    with pytest.raises(FileNotFoundError, match="Model in folder 'vae' with filename 'nope.safetensors' not found."):
        fp.get_full_path_or_raise("vae", "nope.safetensors")
    with pytest.raises(KeyError):
        fp.get_folder_paths("no_such_key")


def test_folder_paths_new_keys_list_every_file(comfy_stub, tmp_path):
    fp = comfy_stub.folder_paths
    extra = tmp_path / "extra"
    _touch(extra / "a.txt")
    _touch(extra / "b.safetensors")
    fp.add_model_folder_path("mine", str(extra))
    assert fp.folder_names_and_paths["mine"] == ([str(extra)], set())
    assert fp.get_filename_list("mine") == ["a.txt", "b.safetensors"]
    first = tmp_path / "first"
    fp.add_model_folder_path("mine", str(first), is_default=True)
    fp.add_model_folder_path("mine", str(extra))  # no duplicate
    assert fp.get_folder_paths("mine") == [str(first), str(extra)]
    paths = fp.get_folder_paths("mine")
    paths.append("mutated")
    assert "mutated" not in fp.get_folder_paths("mine")  # a copy


def test_folder_paths_io_dirs(comfy_stub):
    fp = comfy_stub.folder_paths
    assert Path(fp.get_input_directory()).is_dir() and Path(fp.get_output_directory()).is_dir()
    assert fp.get_annotated_filepath("a.png") == os.path.join(fp.get_input_directory(), "a.png")
    assert fp.get_annotated_filepath("a.png [output]") == os.path.join(fp.get_output_directory(), "a.png")
    folder, name, counter, sub, _ = fp.get_save_image_path("video/clip", fp.get_output_directory(), 64, 32)
    assert (Path(folder), name, counter, sub) == (Path(fp.get_output_directory()) / "video", "clip", 1, "video")
    _touch(Path(folder) / "clip_00004_.png")
    assert fp.get_save_image_path("video/clip", fp.get_output_directory())[2] == 5
    with pytest.raises(Exception, match="outside the output folder"):
        fp.get_save_image_path("../escape", fp.get_output_directory())


# ------------------------------------------------------------------------------------------------------
# model management, patchers


class _Holder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)


class _ReadOnlyDevice(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    @property
    def device(self):
        return self.lin.weight.device


def test_devices_and_flags(comfy_stub):
    mm = comfy_stub.mm
    cpu = torch.device("cpu")
    assert (mm.get_torch_device(), mm.intermediate_device(), mm.vae_device(), mm.unet_offload_device()) == (cpu,) * 4
    comfy_stub.configure(torch_device="meta")
    assert mm.vae_device() == torch.device("meta") and mm.intermediate_device() == cpu
    comfy_stub.configure(cpu_vae=True, highvram=True)
    assert mm.vae_device() == cpu and mm.unet_offload_device() == torch.device("meta")
    with pytest.raises(AttributeError):
        comfy_stub.configure(no_such_flag=1)


def test_interrupt_flag_semantics(comfy_stub):
    mm = comfy_stub.mm
    mm.throw_exception_if_processing_interrupted()  # nothing pending
    comfy_stub.interrupt()
    assert mm.processing_interrupted() and mm.processing_interrupted()  # peeking does not reset
    with pytest.raises(mm.InterruptProcessingException):
        mm.throw_exception_if_processing_interrupted()
    assert not mm.processing_interrupted()  # raising resets it
    mm.throw_exception_if_processing_interrupted()


def test_model_patcher_and_loading(comfy_stub):
    mm, mp = comfy_stub.mm, comfy_stub.model_patcher
    model = _Holder()
    patcher = mp.ModelPatcher(model, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))
    assert model.device == torch.device("cpu")  # set because the module had none
    assert patcher.model_size() == 4 * 4 * 4 + 4 * 4
    assert patcher.model_options == {"transformer_options": {}}
    clone = patcher.clone()
    clone.model_options["transformer_options"]["x"] = 1
    assert clone.model is model and clone.parent is patcher and patcher.is_clone(clone)
    assert patcher.model_options == {"transformer_options": {}}  # deep copy
    mm.load_models_gpu([patcher], memory_required=123, force_full_load=True)
    assert comfy_stub.loaded == [patcher] and patcher.loaded_size() == patcher.model_size()
    assert comfy_stub.load_calls[-1]["memory_required"] == 123 and comfy_stub.load_calls[-1]["force_full_load"]
    mm.load_models_gpu([clone])  # a clone of loaded weights replaces it in the ledger
    assert comfy_stub.loaded == [clone]
    mm.unload_all_models()  # frees the main device (here the CPU) completely
    assert comfy_stub.loaded == [] and clone.loaded_size() == 0


def test_model_patcher_assigns_device_like_comfyui(comfy_stub):
    patcher = comfy_stub.model_patcher.ModelPatcher(_ReadOnlyDevice(), torch.device("cpu"), torch.device("cpu"))
    with pytest.raises(AttributeError):
        comfy_stub.mm.load_models_gpu([patcher])


def test_free_memory_evicts_least_recently_used(comfy_stub):
    mm, mp = comfy_stub.mm, comfy_stub.model_patcher
    comfy_stub.configure(torch_device="meta", total_vram=200)
    a = mp.ModelPatcher(_Holder(), torch.device("meta"), torch.device("cpu"), size=80)
    b = mp.ModelPatcher(_Holder(), torch.device("meta"), torch.device("cpu"), size=80)
    for p in (a, b):  # bookkeeping only: pretend both are loaded on the accelerator
        mm.current_loaded_models.insert(0, mm.LoadedModel(p))
        p.model.model_loaded_weight_memory = 80
    assert mm.get_free_memory(torch.device("meta")) == 40
    unloaded = mm.free_memory(100, torch.device("meta"))
    assert [e.model for e in unloaded] == [a]  # the older one goes first
    assert comfy_stub.loaded == [b] and a.loaded_size() == 0
    assert mm.empty_cache_calls  # evicting empties the cache


# ------------------------------------------------------------------------------------------------------
# progress, previews, latent format, ops


def test_progress_bar(comfy_stub):
    utils = comfy_stub.utils
    silent = utils.ProgressBar(4)
    seen = comfy_stub.install_server_hook()
    bar = utils.ProgressBar(4, node_id="7")
    bar.update_absolute(2)
    bar.update(1)
    bar.update_absolute(9)  # clamped to the total
    silent.update_absolute(1)  # constructed before the hook: it never calls it
    assert [(c["value"], c["max"], c["node"]) for c in seen] == [(2, 4, "7"), (3, 4, "7"), (4, 4, "7")]
    assert [c["value"] for c in comfy_stub.progress_calls] == [2, 3, 4, 1]
    comfy_stub.interrupt()
    with pytest.raises(comfy_stub.mm.InterruptProcessingException):
        bar.update_absolute(1, 10, preview=("JPEG", None, 512))
    assert (
        comfy_stub.progress_calls[-1]["preview"] == ("JPEG", None, 512) and comfy_stub.progress_calls[-1]["total"] == 10
    )


def test_latent_preview(comfy_stub):
    lp, fmt = comfy_stub.latent_preview, comfy_stub.latent_formats.Wan22()
    assert lp.get_previewer(torch.device("cpu"), fmt) is None  # the server default: no previews
    comfy_stub.set_preview_method("latent2rgb")
    previewer = lp.get_previewer(torch.device("cpu"), fmt)
    x0 = torch.randn(1, 48, 3, 5, 7)
    kind, image, size = previewer.decode_latent_to_preview_image("JPEG", x0)
    assert (kind, image.size, image.mode, size) == ("JPEG", (7, 5), "RGB", 512)
    factors = torch.tensor(fmt.latent_rgb_factors)
    expected = ((x0[0, :, 0].movedim(0, -1) @ factors + torch.tensor(fmt.latent_rgb_factors_bias) + 1) / 2)
    got = torch.tensor(__import__("numpy").array(image), dtype=torch.float32) / 255
    assert torch.allclose(got, expected.clamp(0, 1), atol=1 / 255 + 1e-6)
    assert previewer.calls[0]["shape"] == (1, 48, 3, 5, 7) and lp.preview_calls == previewer.calls


def test_wan22_latent_format_matches_the_vae_config(comfy_stub):
    vae_config = pytest.importorskip("cosmos3.vae.config")
    WAN22_LATENTS_MEAN, WAN22_LATENTS_STD = vae_config.WAN22_LATENTS_MEAN, vae_config.WAN22_LATENTS_STD
    fmt = comfy_stub.latent_formats.Wan22()
    assert fmt.latent_channels == 48 and len(fmt.latent_rgb_factors) == 48
    assert all(len(r) == 3 for r in fmt.latent_rgb_factors) and len(fmt.latent_rgb_factors_bias) == 3
    assert torch.allclose(fmt.latents_mean.flatten(), torch.tensor(WAN22_LATENTS_MEAN), atol=1e-4)
    assert torch.allclose(fmt.latents_std.flatten(), torch.tensor(WAN22_LATENTS_STD), atol=1e-4)
    raw = torch.randn(1, 48, 2, 3, 3)
    assert torch.allclose(fmt.process_out(fmt.process_in(raw)), raw, atol=1e-5)


def test_ops_manual_cast_layers(comfy_stub):
    ops = comfy_stub.ops.manual_cast
    ref = torch.nn.Linear(8, 5)
    lin = ops.Linear(8, 5)
    assert lin.comfy_cast_weights and isinstance(lin, torch.nn.Linear)
    lin.load_state_dict(ref.state_dict())
    lin.to(torch.bfloat16)  # weights stored in bf16, computed in the input dtype
    x = torch.randn(3, 8)
    out = lin(x)
    assert out.dtype == torch.float32
    assert torch.allclose(
        out, torch.nn.functional.linear(x, ref.weight.bfloat16().float(), ref.bias.bfloat16().float())
    )
    emb_ref = torch.nn.Embedding(10, 4)
    emb = ops.Embedding(10, 4)
    emb.load_state_dict(emb_ref.state_dict())
    ids = torch.tensor([[1, 2, 9]])
    assert torch.equal(emb(ids), emb_ref(ids))
    plain = comfy_stub.ops.disable_weight_init.Linear(8, 5)
    plain.load_state_dict(ref.state_dict())
    assert not plain.comfy_cast_weights and torch.equal(plain(x), ref(x))


# ------------------------------------------------------------------------------------------------------
# against the real ComfyUI (opt-in)

_SCENARIO = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    base = Path(sys.argv[1])
    out = {}
    import folder_paths as fp
    vae = base / "vae"
    for rel in ("wan2.2_vae.safetensors", "sub/b.sft", "old.ckpt", "notes.txt", ".git/x.safetensors"):
        (vae / rel).parent.mkdir(parents=True, exist_ok=True)
        (vae / rel).write_bytes(b"x")
    (vae / "folder.safetensors").mkdir(exist_ok=True)
    fp.folder_names_and_paths["vae"] = ([str(vae)], fp.supported_pt_extensions)
    out["vae_list"] = fp.get_filename_list("vae")
    out["full_dir"] = fp.get_full_path("vae", "folder.safetensors")
    out["full_escape"] = fp.get_full_path("vae", "../vae/wan2.2_vae.safetensors")
    try:
        fp.get_full_path_or_raise("vae", "nope.safetensors")
    except FileNotFoundError as e:
        out["raise"] = str(e)
    fp.add_model_folder_path("mine", str(base / "extra"))
    out["new_key_exts"] = sorted(fp.folder_names_and_paths["mine"][1])
    out["legacy"] = fp.get_folder_paths("unet") == fp.get_folder_paths("diffusion_models")
    import comfy.cli_args
    comfy.cli_args.args.cpu = True  # before comfy.model_management is imported
    import comfy.utils, comfy.model_management as mm
    seen = []
    silent = comfy.utils.ProgressBar(4)
    comfy.utils.set_progress_bar_global_hook(lambda v, t, p, node_id=None: seen.append([v, t, node_id]))
    bar = comfy.utils.ProgressBar(4, node_id="7")
    bar.update_absolute(2); bar.update(1); bar.update_absolute(9); silent.update_absolute(1)
    out["progress"] = seen
    mm.interrupt_current_processing(True)
    out["peek"] = [mm.processing_interrupted(), mm.processing_interrupted()]
    try:
        mm.throw_exception_if_processing_interrupted()
    except mm.InterruptProcessingException:
        out["raised"] = True
    out["after"] = mm.processing_interrupted()
    import comfy.latent_formats as lf
    w = lf.Wan22()
    out["wan22"] = [w.latent_rgb_factors, w.latent_rgb_factors_bias, w.latents_mean.flatten().tolist(),
                    w.latents_std.flatten().tolist()]
    from comfy_execution.utils import CurrentNodeContext, get_executing_context
    before = get_executing_context()
    with CurrentNodeContext("p1", "7"):
        inside = list(get_executing_context())
    out["executing"] = [before, inside, get_executing_context()]
    import ast, importlib.util  # server.py is read, not imported (importing it starts the server's imports)
    tree = ast.parse(Path(importlib.util.find_spec("server").origin).read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "PromptServer")
    out["prompt_server"] = {f.name: [a.arg for a in f.args.args] for f in cls.body
                            if isinstance(f, ast.FunctionDef) and f.name in ("send_sync", "send_progress_text")}
    print("RESULT" + json.dumps(out))
    """
)


def _comfyui_python(comfy_dir: Path) -> str:
    explicit = os.environ.get("COMFYUI_PYTHON")
    if explicit:
        return explicit
    venv = comfy_dir.parent / "comfyui-venv" / "bin" / "python"
    return str(venv) if venv.exists() else "python"


@pytest.mark.comfyui
def test_stub_matches_real_comfyui(tmp_path):
    comfy_dir = os.environ.get("COMFYUI_DIR")
    if not comfy_dir:
        pytest.skip("set COMFYUI_DIR to a ComfyUI checkout to compare the stub with it")
    script = tmp_path / "scenario.py"
    script.write_text(_SCENARIO)
    env = dict(os.environ, PYTHONPATH=str(Path(comfy_dir)))
    real = subprocess.run([_comfyui_python(Path(comfy_dir)), str(script), str(tmp_path / "real")],
                          capture_output=True, text=True, cwd=comfy_dir, env=env, timeout=300)
    assert real.returncode == 0, real.stderr[-3000:]
    real_out = json.loads(real.stdout.split("RESULT", 1)[1])
    env = dict(os.environ, PYTHONPATH=str(STUB_DIR))
    stub = subprocess.run([sys.executable, str(script), str(tmp_path / "stub")], capture_output=True, text=True,
                          cwd=str(tmp_path), env=env, timeout=300)
    assert stub.returncode == 0, stub.stderr[-3000:]
    stub_out = json.loads(stub.stdout.split("RESULT", 1)[1])
    assert stub_out == real_out


# ------------------------------------------------------------------------------------------------------
# the V3 node API (comfy_api.latest): stand-in vs the real module (opt-in)

# Runs under the real ComfyUI (PYTHONPATH = the checkout) and under the stand-in (PYTHONPATH = the stub):
# prints what a V3 node author and ComfyUI's loader/server/executor see of the names the stand-in defines,
# and of our pack's nodes.
_V3_SCENARIO = textwrap.dedent(
    """
    import asyncio, dataclasses, enum, inspect, json, sys
    from pathlib import Path
    repo, stub_io = Path(sys.argv[1]), Path(sys.argv[2])
    sys.path.insert(0, str(repo / "tests"))
    import object_info as oi
    from support import load_pack_as_comfyui
    from comfy_api.latest import ComfyExtension, io

    def params(fn):
        return [[p.name, p.kind.name, repr(p.default)] for p in inspect.signature(fn).parameters.values()]

    # the names our stand-in defines (read from its source, so the real module must have every one)
    names = {}
    exec(compile(stub_io.read_text(), str(stub_io), "exec"), names)
    out = {"missing": [], "api": {}, "nodes": {}}
    for name in names["__all__"]:
        if not hasattr(io, name):
            out["missing"].append(name)
            continue
        obj = getattr(io, name)
        entry = {}
        if dataclasses.is_dataclass(obj):
            entry["fields"] = [[f.name, "<required>" if f.default is dataclasses.MISSING else repr(f.default)]
                               for f in dataclasses.fields(obj)]
        elif isinstance(obj, type) and issubclass(obj, enum.Enum):
            entry["members"] = {m.name: m.value for m in obj}
        elif isinstance(obj, type):
            entry["init"] = params(obj.__init__)
            for part in ("Input", "Output"):
                if isinstance(getattr(obj, part, None), type):
                    entry[part] = params(getattr(obj, part).__init__)
            if isinstance(getattr(obj, "io_type", None), str):
                entry["io_type"] = str(obj.io_type)
        else:
            entry["call"] = params(obj)
        out["api"][name] = entry
    out["ComfyExtension"] = [callable(getattr(ComfyExtension, "get_node_list", None)),
                             inspect.iscoroutinefunction(ComfyExtension.get_node_list)]
    out["custom"] = [io.Custom("C3MOT_X").io_type, io.Custom("C3MOT_X").Input("a").get_io_type()]

    import comfy.cli_args
    comfy.cli_args.args.cpu = True  # before comfy.model_management is imported (the node run asks for devices)
    pack = load_pack_as_comfyui(repo, "c3mot_pack_v3_scenario")
    ext = pack.comfy_entrypoint()
    node_ids = [c.GET_SCHEMA().node_id for c in asyncio.run(ext.get_node_list())]
    out["extension"] = [isinstance(ext, ComfyExtension), node_ids]
    for node_id, cls in pack.nodes.NODE_CLASS_MAPPINGS.items():
        info = oi.canonical(cls.GET_NODE_INFO_V1(), dynamic=True)
        v1 = {attr: getattr(cls, attr) for attr in ("RETURN_TYPES", "RETURN_NAMES", "OUTPUT_TOOLTIPS", "OUTPUT_IS_LIST",
              "OUTPUT_NODE", "CATEGORY", "DESCRIPTION", "FUNCTION", "INPUT_IS_LIST", "NOT_IDEMPOTENT")}
        v1 = {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in v1.items()}
        types = oi.canonical({"input": cls.INPUT_TYPES()}, dynamic=True)["input"]
        out["nodes"][node_id] = {"info": info, "v1": v1, "input_types": types}
    latent = pack.nodes.NODE_CLASS_MAPPINGS["C3MoTEmptyLatent"]
    clone = latent.PREPARE_CLASS_CLONE({"UNIQUE_ID": "5"})
    result = getattr(clone, latent.FUNCTION)(preset="custom", width=64, height=32, frames=9)
    out["run"] = [
        type(result).__name__, list(result.args[0]["samples"].shape), list(result.args[1:]), clone.hidden.unique_id,
        latent.hidden is None,
    ]
    print("RESULT" + json.dumps(out, default=str))
    """
)


@pytest.mark.comfyui
def test_v3_api_stub_matches_real_comfyui(tmp_path):
    """Same class names, constructor parameters, dataclass fields and enum members for everything the
    stand-in defines; and our nodes give identical V1 info, V1 attributes and execution under both."""
    comfy_dir = os.environ.get("COMFYUI_DIR")
    if not comfy_dir:
        pytest.skip("set COMFYUI_DIR to a ComfyUI checkout to compare the stub with it")
    script = tmp_path / "v3_scenario.py"
    script.write_text(_V3_SCENARIO)
    repo = Path(__file__).resolve().parent.parent
    args = [str(script), str(repo), str(STUB_DIR / "comfy_api" / "latest" / "_io.py")]
    results = {}
    for label, python, path, cwd in (
        ("real", _comfyui_python(Path(comfy_dir)), comfy_dir, comfy_dir),
        ("stub", sys.executable, str(STUB_DIR), str(tmp_path)),
    ):
        run = subprocess.run(
            [python, *args], capture_output=True, text=True, cwd=cwd, env=dict(os.environ, PYTHONPATH=path), timeout=600
        )
        assert run.returncode == 0, f"{label}: {run.stderr[-3000:]}"
        results[label] = json.loads(run.stdout.split("RESULT", 1)[1])
    real, stub = results["real"], results["stub"]
    assert real["missing"] == [], real["missing"]
    assert stub["nodes"] and stub["run"][0] == "NodeOutput"
    problems = []
    for key in ("api", "ComfyExtension", "custom", "extension", "nodes", "run"):
        if isinstance(real[key], dict):
            problems += [
                f"{key}/{name}: stub {stub[key].get(name)} != real {real[key][name]}"
                for name in real[key]
                if stub[key].get(name) != real[key][name]
            ]
        elif stub[key] != real[key]:
            problems.append(f"{key}: stub {stub[key]} != real {real[key]}")
    assert not problems, "\n".join(problems)
