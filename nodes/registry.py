"""Collects the V3 node classes of every node module and checks their ids and display names."""

from __future__ import annotations

from . import (
    conditioning_nodes,
    core_nodes,
    guardrail_nodes,
    latent_nodes,
    lora_nodes,
    model_nodes,
    parallel_nodes,
    prompt_nodes,
    sampler_nodes,
    sound_nodes,
    text_nodes,
    vae_nodes,
    video_condition_nodes,
)
from .common import DISPLAY_PREFIX

NODE_PREFIX = "C3MoT"

# Node modules in registration order. Each defines ``NODES``: a list of ``io.ComfyNode`` classes whose schema's
# node id starts with NODE_PREFIX and whose display name starts with DISPLAY_PREFIX.
NODE_MODULES = (
    guardrail_nodes, vae_nodes, latent_nodes, model_nodes, text_nodes, conditioning_nodes, sampler_nodes, sound_nodes,
    core_nodes, lora_nodes, prompt_nodes, video_condition_nodes, parallel_nodes,  # added after the snapshot
)


def collect_nodes() -> dict[str, type]:
    """``{node id: class}`` of every node in :data:`NODE_MODULES`, in registration order."""
    classes: dict[str, type] = {}
    for module in NODE_MODULES:
        module_name = module.__name__.rsplit(".", 1)[-1]
        for cls in module.NODES:
            schema = cls.define_schema()
            node_id = schema.node_id
            if not node_id.startswith(NODE_PREFIX):
                raise ValueError(f"node id {node_id!r} in nodes/{module_name}.py lacks the prefix {NODE_PREFIX!r}")
            if not (schema.display_name or "").startswith(DISPLAY_PREFIX + " "):
                raise ValueError(f"{node_id}: display name {schema.display_name!r} lacks the prefix {DISPLAY_PREFIX!r}")
            if node_id in classes:
                raise ValueError(f"node id {node_id!r} is defined twice (nodes/{module_name}.py)")
            classes[node_id] = cls
    return classes
