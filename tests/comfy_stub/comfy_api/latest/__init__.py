"""Stand-in for ``comfy_api.latest`` (ComfyUI v0.3.64): the V3 node API the pack uses.

``io`` is :mod:`._io` (node schema types, ``ComfyNode``, ``NodeOutput``); :class:`ComfyExtension` is what a
pack's ``comfy_entrypoint()`` returns. The opt-in ``comfyui`` test in ``tests/test_comfy_stub.py`` compares
these names, their parameters and the V1 info our nodes produce with the real module.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from . import _io as io


class ComfyExtension(ABC):
    """A pack's V3 entry: ComfyUI awaits :meth:`get_node_list` and registers each class under its node id."""

    async def on_load(self) -> None:  # noqa: B027 (optional hook, like ComfyUI's: not abstract)
        """Called once when the extension is loaded (nothing by default)."""

    @abstractmethod
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        """The ``io.ComfyNode`` classes this extension provides."""


comfy_io = io

__all__ = ["ComfyExtension", "io", "comfy_io"]
