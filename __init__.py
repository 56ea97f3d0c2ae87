"""ComfyUI entry point of the Cosmos3 MoT node pack.

ComfyUI imports this folder as a package named after its absolute path, so everything below is
imported relatively and works under any folder name. Nothing here touches ``sys.path``.
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
