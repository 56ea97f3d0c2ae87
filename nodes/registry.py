"""Collects the node classes of every node module into ComfyUI's V1 mappings."""

from __future__ import annotations

import importlib

NODE_PREFIX = "C3MoT"
DISPLAY_PREFIX = "Cosmos3 MoT"

# Node modules, relative to this package. Each defines ``NODES``: a list of node classes, each with
# ``NODE_ID`` (starting with NODE_PREFIX) and ``DISPLAY_NAME``.
NODE_MODULES: tuple[str, ...] = (
    "guardrail_nodes", "vae_nodes", "latent_nodes", "model_nodes", "text_nodes", "conditioning_nodes", "sampler_nodes",
)


def collect_mappings() -> tuple[dict[str, type], dict[str, str]]:
    """Return ``(NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS)`` built from :data:`NODE_MODULES`."""
    classes: dict[str, type] = {}
    names: dict[str, str] = {}
    for module_name in NODE_MODULES:
        module = importlib.import_module(f".{module_name}", __package__)
        for cls in module.NODES:
            node_id = cls.NODE_ID
            if not node_id.startswith(NODE_PREFIX):
                raise ValueError(f"node id {node_id!r} in nodes/{module_name}.py lacks the prefix {NODE_PREFIX!r}")
            if node_id in classes:
                raise ValueError(f"node id {node_id!r} is defined twice (nodes/{module_name}.py)")
            classes[node_id] = cls
            names[node_id] = f"{DISPLAY_PREFIX} {cls.DISPLAY_NAME}"
    return classes, names
