"""The pack loads like a ComfyUI custom-node folder under any name (with only ComfyUI's V3 API present); the
libraries import without ComfyUI."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import textwrap

from comfy_fixtures import comfy_api_only
from support import REPO_ROOT, load_pack_as_comfyui


def test_pack_loads_under_any_folder_name(tmp_path):
    target = tmp_path / "some.odd-folder name"
    target.mkdir()
    for entry in ("__init__.py", "nodes", "cosmos3", "guardrails"):
        src = REPO_ROOT / entry
        if src.is_dir():
            shutil.copytree(src, target / entry, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, target / entry)
    with comfy_api_only() as api:
        pack = load_pack_as_comfyui(target)
        from_repo = load_pack_as_comfyui(REPO_ROOT, "pack_under_other_name")
    assert set(pack.nodes.NODE_CLASS_MAPPINGS) == set(from_repo.nodes.NODE_CLASS_MAPPINGS)
    extension = pack.comfy_entrypoint()
    assert isinstance(extension, api.ComfyExtension)
    listed = asyncio.run(extension.get_node_list())
    assert listed == list(pack.nodes.NODE_CLASS_MAPPINGS.values())
    for node_id, cls in pack.nodes.NODE_CLASS_MAPPINGS.items():
        assert node_id.startswith("C3MoT"), node_id
        assert issubclass(cls, api.io.ComfyNode) and cls.GET_SCHEMA().node_id == node_id
        assert pack.nodes.NODE_DISPLAY_NAME_MAPPINGS[node_id] == cls.GET_SCHEMA().display_name
        assert isinstance(cls.INPUT_TYPES(), dict)
    # ComfyUI 0.3.64 registers a pack the V1 way when its root exports NODE_CLASS_MAPPINGS and then never
    # calls comfy_entrypoint: the root exports only the entry point.
    assert not hasattr(pack, "NODE_CLASS_MAPPINGS") and pack.__all__ == ["comfy_entrypoint"]
    # the frontend extension (warning toasts) that ComfyUI serves from WEB_DIRECTORY
    assert (REPO_ROOT / from_repo.WEB_DIRECTORY / "cosmos3_mot.js").is_file()


def test_libraries_never_import_comfyui():
    code = textwrap.dedent(
        """
        import importlib, pkgutil, sys
        import cosmos3, guardrails
        for pkg in (cosmos3, guardrails):
            for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
                if info.name.endswith("__main__"):
                    continue
                importlib.import_module(info.name)
        bad = sorted(m for m in sys.modules if m == "comfy" or m.startswith("comfy.") or m in ("folder_paths", "nodes"))
        assert not bad, bad
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_install_exposes_only_the_libraries():
    # ComfyUI has its own top-level `nodes` module; the editable install must never shadow it.
    code = "import importlib.util as u; import cosmos3, guardrails; print(u.find_spec('nodes') is None)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"


def test_every_public_name_resolves():
    import importlib

    for package in ("cosmos3", "guardrails"):
        module = importlib.import_module(package)
        for name in module.__all__:
            assert getattr(module, name) is not None, f"{package}.{name}"


def test_every_library_error_derives_from_cosmos3error():
    import importlib
    import inspect
    import pkgutil

    import cosmos3
    from cosmos3.errors import Cosmos3Error

    errors = {}
    for info in pkgutil.walk_packages(cosmos3.__path__, "cosmos3."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, Exception) and obj.__module__ == info.name:
                errors[f"{info.name}.{name}"] = obj
    assert len(errors) >= 11, sorted(errors)
    strays = sorted(name for name, cls in errors.items() if not issubclass(cls, Cosmos3Error))
    assert not strays, f"library errors not derived from Cosmos3Error: {strays}"
    assert issubclass(Cosmos3Error, ValueError)  # callers that caught ValueError keep working


def test_layout_shows_the_architecture():
    """A reader finds the model, the VAE, text handling and sampling from folder names alone; no module is huge."""
    library = REPO_ROOT / "cosmos3"
    for folder in ("model", "vae", "text", "sampling", "runtime", "files"):
        assert (library / folder / "__init__.py").is_file(), folder
    flat = sorted(p.name for p in library.glob("*.py"))
    assert len(flat) <= 12, flat
    too_long = {str(p.relative_to(library)): n for p in library.rglob("*.py")
                if (n := len(p.read_text(encoding="utf-8").splitlines())) > 460}
    assert not too_long, f"split these modules (over ~450 lines): {too_long}"
