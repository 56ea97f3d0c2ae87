"""ComfyUI entry point of the Cosmos3 MoT node pack (V3 node API: ``comfy_entrypoint``).

ComfyUI imports this folder as a package named after its absolute path, so everything below is
imported relatively and works under any folder name. Nothing here touches ``sys.path``.
"""

from .nodes import comfy_entrypoint

# The frontend extension (web/cosmos3_mot.js): shows the nodes' warnings as toasts (nodes/_comfy.warn_user).
WEB_DIRECTORY = "./web"

__all__ = ["comfy_entrypoint"]
