"""ComfyUI V1 node adapters over :mod:`cosmos3` and :mod:`guardrails`.

Every node id starts with :data:`NODE_PREFIX`. Node modules import ComfyUI only through
:mod:`._comfy`, lazily, so this package imports (and its classes can be inspected) without ComfyUI.
"""

from .registry import NODE_PREFIX, collect_mappings

NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = collect_mappings()

__all__ = ["NODE_PREFIX", "NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
