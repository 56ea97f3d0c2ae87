"""ComfyUI V3 node adapters over :mod:`cosmos3` and :mod:`guardrails`.

Every node id starts with :data:`NODE_PREFIX`. ComfyUI is imported only through :mod:`._comfy` (the V3 API at
import, runtime services lazily). :func:`comfy_entrypoint` is what ComfyUI loads; ``NODE_CLASS_MAPPINGS`` /
``NODE_DISPLAY_NAME_MAPPINGS`` are the same nodes by id, for tools and tests (the pack root does not export
them: ComfyUI 0.3.64 would then register the pack the V1 way and never call the entrypoint).
"""

from __future__ import annotations

from pathlib import Path

from . import _comfy
from ._comfy import ComfyExtension, io
from .registry import NODE_PREFIX, collect_nodes

NODE_CLASS_MAPPINGS: dict[str, type[io.ComfyNode]] = collect_nodes()
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    node_id: cls.define_schema().display_name for node_id, cls in NODE_CLASS_MAPPINGS.items()
}


class Cosmos3MoTExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODE_CLASS_MAPPINGS.values())


EXAMPLE_INPUTS = Path(__file__).resolve().parent.parent / "workflows" / "input"


def comfy_entrypoint() -> Cosmos3MoTExtension:
    """ComfyUI's V3 entry point: the extension listing every node of the pack. Also copies the example
    workflows' inputs (``workflows/input/``) into ComfyUI's input folder when they are not there yet, so the
    I2V / V2V templates open with their Load Image filled."""
    _comfy.install_example_inputs(sorted(p for p in EXAMPLE_INPUTS.glob("*") if p.is_file()))
    return Cosmos3MoTExtension()


__all__ = [
    "NODE_PREFIX",
    "NODE_CLASS_MAPPINGS",
    "NODE_DISPLAY_NAME_MAPPINGS",
    "Cosmos3MoTExtension",
    "comfy_entrypoint",
]
