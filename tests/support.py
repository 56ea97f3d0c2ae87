"""Helpers shared by the tests (importable as ``support`` thanks to pytest's ``pythonpath``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TESTS_DIR = Path(__file__).resolve().parent


def load_pack_as_comfyui(folder: Path = REPO_ROOT, module_name: str | None = None):
    """Import the pack folder the way ComfyUI does: a package named after its absolute path."""
    name = module_name or str(folder).replace(".", "_x_")
    spec = importlib.util.spec_from_file_location(
        name, str(folder / "__init__.py"), submodule_search_locations=[str(folder)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
