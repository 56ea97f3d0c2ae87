"""Pytest fixtures that run the pack against the ComfyUI stand-in in ``tests/comfy_stub``.

``conftest.py`` registers this module as a plugin, so a test module just asks for the fixtures::

    def test_something(comfy_pack, comfy_stub):
        node = comfy_pack.nodes.NODE_CLASS_MAPPINGS["C3MoTEmptyLatent"]  # an io.ComfyNode class
        latent, width, height, frames = node.execute("custom", 64, 32, 9)  # an io.NodeOutput
        ...
        assert comfy_stub.progress_calls

``comfy_stub`` (function scope) installs the stub modules (``folder_paths``, ``comfy.*``,
``latent_preview``, ``comfy_api.latest``) in ``sys.modules`` with the stub folder first on ``sys.path``,
resets all their state,
roots ``folder_paths`` at a fresh ``tmp_path/comfyui`` (``models/``, ``input/``, ``output/``, ``temp/``)
and removes everything again afterwards, restoring whatever was there before (other tests expect no
ComfyUI). ``comfy_pack`` imports the pack folder the way ComfyUI does (``support.load_pack_as_comfyui``,
once per session under its own module name; our ComfyUI accesses are lazy, so the per-test stub state
is what the nodes see). ``comfy_api_only()`` / ``load_pack_with_v3_api()`` provide just the V3 node API,
which the pack needs to import at all (its node classes derive from ``io.ComfyNode``).
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest
from support import REPO_ROOT, load_pack_as_comfyui

STUB_DIR = Path(__file__).resolve().parent / "comfy_stub"
STUB_MODULES = (
    "comfy",
    "comfy.cli_args",
    "comfy.model_management",
    "comfy.utils",
    "comfy.model_patcher",
    "comfy.latent_formats",
    "comfy.ops",
    "comfy.model_sampling",
    "comfy.model_base",
    "comfy.conds",
    "comfy.weight_adapter",
    "comfy.lora",
    "comfy.sd",
    "comfy.samplers",
    "comfy.sample",
    "folder_paths",
    "latent_preview",
    "comfy_api",
    "comfy_api.latest",
    "comfy_api.latest._io",
    "comfy_execution",
    "comfy_execution.utils",
    "server",
)
PACK_MODULE_NAME = "c3mot_pack_under_comfy_stub"

_modules: dict[str, ModuleType] = {}
_pack: ModuleType | None = None


def _is_comfy_name(name: str) -> bool:
    return name in ("comfy", "folder_paths", "latent_preview", "comfy_api", "comfy_execution", "server") or (
        name.startswith(("comfy.", "comfy_api.", "comfy_execution."))
    )


def _stub_modules() -> dict[str, ModuleType]:
    """Import the stub modules once (isolated from sys.modules) and keep the module objects."""
    if _modules:
        return _modules
    saved = {n: sys.modules.pop(n) for n in list(sys.modules) if _is_comfy_name(n)}
    sys.path.insert(0, str(STUB_DIR))
    try:
        for name in STUB_MODULES:
            module = importlib.import_module(name)
            origin = Path(module.__file__).resolve()
            if STUB_DIR not in origin.parents:
                raise RuntimeError(f"{name} resolved to {origin}, not the stub in {STUB_DIR}")
            _modules[name] = module
    finally:
        sys.path.remove(str(STUB_DIR))
        for name in [n for n in sys.modules if _is_comfy_name(n)]:
            del sys.modules[name]
        sys.modules.update(saved)
    return _modules


class ComfyStub:
    """Handle on the installed stub: its modules, directories and recorded calls."""

    def __init__(self, modules: dict[str, ModuleType], base_dir: Path):
        self.modules = modules
        self.folder_paths = modules["folder_paths"]
        self.model_management = self.mm = modules["comfy.model_management"]
        self.utils = modules["comfy.utils"]
        self.model_patcher = modules["comfy.model_patcher"]
        self.latent_formats = modules["comfy.latent_formats"]
        self.latent_preview = modules["latent_preview"]
        self.ops = modules["comfy.ops"]
        self.cli_args = modules["comfy.cli_args"]
        self.io = modules["comfy_api.latest._io"]
        self.server = modules["server"]
        self.execution = modules["comfy_execution.utils"]
        self.args = self.cli_args.args
        self.base_dir = base_dir
        self.hook_calls: list[dict] = []

    # -- directories -----------------------------------------------------------------------------------
    @property
    def models_dir(self) -> Path:
        return Path(self.folder_paths.models_dir)

    @property
    def input_dir(self) -> Path:
        return Path(self.folder_paths.get_input_directory())

    @property
    def output_dir(self) -> Path:
        return Path(self.folder_paths.get_output_directory())

    @property
    def temp_dir(self) -> Path:
        return Path(self.folder_paths.get_temp_directory())

    def model_dir(self, key: str) -> Path:
        """The first directory registered for ``key`` (created)."""
        path = Path(self.folder_paths.get_folder_paths(key)[0])
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- recordings --------------------------------------------------------------------------------------
    @property
    def progress_calls(self) -> list[dict]:
        return self.utils.progress_calls

    @property
    def ui_messages(self) -> list[dict]:
        """What the nodes sent to the frontend through ``PromptServer.instance`` (toasts, node text)."""
        return self.server.PromptServer.instance.messages

    def executing(self, node_id: str, prompt_id: str = "prompt-1"):
        """``with stub.executing("7"):`` — run code as ComfyUI runs node 7 (its executing context)."""
        return self.execution.CurrentNodeContext(prompt_id, node_id)

    @property
    def load_calls(self) -> list[dict]:
        return self.mm.load_calls

    @property
    def loaded(self) -> list:
        """Patchers currently in the model-management ledger (most recently loaded first)."""
        return [entry.model for entry in self.mm.current_loaded_models]

    # -- controls ----------------------------------------------------------------------------------------
    def interrupt(self) -> None:
        """What the Cancel button does: set the interrupt flag."""
        self.mm.interrupt_current_processing(True)

    def set_preview_method(self, method: str) -> None:
        """``none`` (default, as the server without --preview-method), ``auto``, ``latent2rgb`` or ``taesd``."""
        self.args.preview_method = self.cli_args.LatentPreviewMethod(method)

    def configure(self, **flags) -> None:
        """Set CLI flags (``gpu_only``, ``cpu_vae``, ``highvram``, ``preview_size`` …) or memory/devices
        (``torch_device``, ``total_vram``, ``free_ram``)."""
        mm_keys = {"torch_device", "total_vram", "free_ram"}
        self.mm._configure(**{k: v for k, v in flags.items() if k in mm_keys})
        for key, value in flags.items():
            if key not in mm_keys:
                if not hasattr(self.args, key):
                    raise AttributeError(f"the stub has no CLI flag {key!r}")
                setattr(self.args, key, value)

    def install_server_hook(self) -> list[dict]:
        """Install a progress hook that behaves like the server's (``main.hijack_progress``): it raises
        ``InterruptProcessingException`` when Cancel was pressed and records every update in ``hook_calls``."""
        def hook(value, total, preview_image, prompt_id=None, node_id=None):
            self.mm.throw_exception_if_processing_interrupted()
            self.hook_calls.append({"value": value, "max": total, "preview": preview_image, "node": node_id})

        self.utils.set_progress_bar_global_hook(hook)
        return self.hook_calls

    def reset(self) -> None:
        self.cli_args._reset()
        self.folder_paths._reset(self.base_dir)
        self.mm._reset()
        self.utils._reset()
        self.latent_preview._reset()
        self.server._reset()
        self.hook_calls.clear()


@contextlib.contextmanager
def install_comfy_stub(base_dir: Path):
    """Install the stub (fresh state rooted at ``base_dir``) for the duration of the ``with`` block."""
    modules = _stub_modules()
    saved = {n: sys.modules.pop(n) for n in list(sys.modules) if _is_comfy_name(n)}
    sys.modules.update(modules)
    sys.path.insert(0, str(STUB_DIR))
    stub = ComfyStub(modules, Path(base_dir))
    stub.reset()
    try:
        yield stub
    finally:
        stub.reset()
        with contextlib.suppress(ValueError):
            sys.path.remove(str(STUB_DIR))
        for name in [n for n in sys.modules if _is_comfy_name(n)]:
            del sys.modules[name]
        sys.modules.update(saved)


@contextlib.contextmanager
def comfy_api_only():
    """Only the ``comfy_api`` stand-in (the V3 node API the pack needs to import), no other ComfyUI module:
    for loading the pack the way a ComfyUI without our other services would, e.g. to test the fallbacks."""
    modules = {n: m for n, m in _stub_modules().items() if n.split(".")[0] == "comfy_api"}
    saved = {n: sys.modules.pop(n) for n in list(sys.modules) if n.split(".")[0] == "comfy_api"}
    sys.modules.update(modules)
    try:
        yield modules["comfy_api.latest"]
    finally:
        for name in [n for n in sys.modules if n.split(".")[0] == "comfy_api"]:
            del sys.modules[name]
        sys.modules.update(saved)


def load_pack_with_v3_api(module_name: str) -> ModuleType:
    """The pack imported as ComfyUI does, with only the ``comfy_api`` stand-in present (enough to inspect the
    node classes; runtime services then use their fallbacks)."""
    with comfy_api_only():
        return load_pack_as_comfyui(REPO_ROOT, module_name)


def pack_under_stub() -> ModuleType:
    """The pack imported like ComfyUI does (once per session); call with the stub installed."""
    global _pack
    if _pack is None:
        _pack = load_pack_as_comfyui(REPO_ROOT, PACK_MODULE_NAME)
    return _pack


@pytest.fixture
def comfy_stub(tmp_path):
    with install_comfy_stub(tmp_path / "comfyui") as stub:
        yield stub


@pytest.fixture
def comfy_pack(comfy_stub):
    return pack_under_stub()


__all__ = [
    "comfy_stub", "comfy_pack", "install_comfy_stub", "comfy_api_only", "load_pack_with_v3_api", "pack_under_stub",
    "ComfyStub", "STUB_DIR",
]
