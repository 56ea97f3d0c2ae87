"""requirements.txt tells the truth: every third-party import of the pack is listed, and every listed package is used.

Run-time code is ``cosmos3/``, ``guardrails/`` and ``nodes/``. torch and ComfyUI's own modules come from the
host application; the optional attention kernels are imported by name only when selected.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_PACKAGES = ("cosmos3", "guardrails", "nodes")
# distribution name -> the top-level modules it provides
IMPORT_NAMES = {
    "safetensors": {"safetensors"},
    "transformers": {"transformers", "tokenizers"},  # tokenizers is transformers' own dependency
    "einops": {"einops"},
    "numpy": {"numpy"},
    "pillow": {"PIL"},
    "opencv-python": {"cv2"},
    "av": {"av"},
    "better_profanity": {"better_profanity"},
    "gguf": {"gguf"},
}
# Provided by the host (ComfyUI brings torch) or by this repository itself.
HOST_OR_OWN = {
    "torch",
    "comfy",
    "comfy_api",
    "folder_paths",
    "latent_preview",
    "node_helpers",
    "server",
    *RUNTIME_PACKAGES,
}


def runtime_imports() -> dict[str, set[str]]:
    """``{top-level module: files importing it}`` for absolute imports in the run-time packages."""
    found: dict[str, set[str]] = {}
    for package in RUNTIME_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for name in names:
                    found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return {m: f for m, f in found.items() if m not in sys.stdlib_module_names and m not in HOST_OR_OWN}


def listed_requirements() -> list[str]:
    lines = (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
    return [
        re.split(r"[<>=!~ ;\[]", line.strip(), maxsplit=1)[0]
        for line in lines
        if line.strip() and not line.startswith("#")
    ]


def test_every_runtime_import_is_listed():
    listed = listed_requirements()
    unknown = sorted(set(listed) - set(IMPORT_NAMES))
    assert not unknown, f"add the import names of {unknown} to IMPORT_NAMES"
    provided = set().union(*(IMPORT_NAMES[name] for name in listed))
    missing = {m: sorted(files) for m, files in runtime_imports().items() if m not in provided}
    assert not missing, f"imported at run time but not in requirements.txt: {missing}"


def test_every_listed_requirement_is_used():
    used = set(runtime_imports())
    unused = [name for name in listed_requirements() if not IMPORT_NAMES[name] & used]
    assert not unused, f"listed in requirements.txt but never imported by cosmos3/, guardrails/ or nodes/: {unused}"
