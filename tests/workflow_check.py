"""Workflow tooling for tests: check UI-format graphs, check API twins, run API workflows in-process.

* :func:`node_specs` — what each node type accepts: ours (from ``NODE_CLASS_MAPPINGS``) plus a frozen list
  of core nodes (:data:`CORE_NODES`, transcribed from ComfyUI v0.3.64's source and checked against a live
  server's ``/object_info`` by the opt-in server test) plus frontend-only nodes (Note, MarkdownNote).
* :func:`check_ui_workflow` — a UI ("workflow", schema 0.4) graph: top-level keys, node ids, types,
  inputs/outputs against the spec, links ``[id, from, from_slot, to, to_slot, TYPE]`` consistent on both
  ends with TYPE equal to the origin output type and the target input type, required sockets connected,
  ``widgets_values`` length = widget count (+1 per ``control_after_generate`` INT, +1 for an image upload
  widget) and widget values of the right kind and range.
* :func:`check_api_workflow` — an API ("prompt") graph, validated like ComfyUI's ``validate_prompt``.
* :func:`ui_to_api` / :func:`check_api_twin` — the API twin of a UI graph must describe the same graph
  (same node ids, class types, links and widget values).
* :func:`run_api_workflow` — execute an API graph in-process, node by node in dependency order (only
  what output nodes need, as ComfyUI does), calling each class's ``FUNCTION`` (a V3 class through a class
  clone, as ComfyUI does) with literal and linked
  inputs; core nodes are replaced by small stand-ins (:data:`CORE_STAND_INS`) that read images from
  ``folder_paths``' input dir and capture what would be saved. Run it with the ComfyUI stub installed.
* :class:`GraphBuilder` — build a UI graph (and its API twin) from node specs in a few lines.

Every check raises :class:`WorkflowError` listing *all* problems found.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN")
CONTROL_VALUES = ("fixed", "increment", "decrement", "randomize")
UI_TOP_LEVEL_KEYS = ("last_node_id", "last_link_id", "nodes", "links", "groups", "config", "extra", "version")
FRONTEND_ONLY = ("Note", "MarkdownNote")  # canvas annotations: no backend class, never in the API prompt
MODES = {0: "always", 2: "muted", 4: "bypassed"}


class WorkflowError(AssertionError):
    def __init__(self, where: str, problems: list[str]):
        self.problems = list(problems)
        super().__init__(f"{where}: {len(problems)} problem(s)\n  - " + "\n  - ".join(problems))


# ------------------------------------------------------------------------------------------------------
# Node specs


@dataclass(frozen=True)
class InputSpec:
    name: str
    type: str  # a type name, or "COMBO" for a choice list
    section: str  # "required" | "optional"
    options: Mapping[str, Any] = field(default_factory=dict)
    choices: tuple[str, ...] | None = None  # combo choices (None when not a combo)
    dynamic: bool = False  # a combo listing files on the server (model names, input images)

    @property
    def is_widget(self) -> bool:
        return not self.options.get("forceInput") and (self.type == "COMBO" or self.type in WIDGET_TYPES)

    @property
    def widget_slots(self) -> int:
        if not self.is_widget:
            return 0
        return 1 + bool(self.options.get("control_after_generate")) + bool(self.options.get("image_upload"))


@dataclass(frozen=True)
class NodeSpec:
    type: str
    inputs: tuple[InputSpec, ...]
    outputs: tuple[str, ...]
    output_node: bool = False
    hidden: Mapping[str, str] = field(default_factory=dict)
    frontend_only: bool = False
    widget_only: bool = False  # frontend-only nodes: widgets_values free-form

    def input(self, name: str) -> InputSpec | None:
        return next((i for i in self.inputs if i.name == name), None)

    @property
    def widgets(self) -> tuple[InputSpec, ...]:
        return tuple(i for i in self.inputs if i.is_widget)

    @property
    def widget_slots(self) -> int:
        return sum(i.widget_slots for i in self.inputs)


def spec_from_class(node_type: str, cls) -> NodeSpec:
    """A :class:`NodeSpec` from a node class's V1 view (``INPUT_TYPES``, ``RETURN_TYPES``, ``OUTPUT_NODE``):
    a V1 class, or a V3 ``io.ComfyNode`` (whose combos read ``("COMBO", {"options": [...]})``).

    Combos are *dynamic* when they list server files (:data:`DYNAMIC_COMBOS`)."""
    declared = cls.INPUT_TYPES()
    inputs = []
    for section in ("required", "optional"):
        for name, entry in (declared.get(section) or {}).items():
            kind = entry[0]
            options = dict(entry[1]) if len(entry) > 1 and entry[1] else {}
            dynamic = (node_type, name) in DYNAMIC_COMBOS
            if isinstance(kind, (list, tuple)):
                inputs.append(InputSpec(name, "COMBO", section, options, tuple(str(c) for c in kind), dynamic))
            elif kind == "COMBO":  # V3 style
                choices = tuple(str(c) for c in options.get("options", ()))
                inputs.append(InputSpec(name, "COMBO", section, options, choices, dynamic))
            else:
                inputs.append(InputSpec(name, str(kind), section, options))
    return NodeSpec(
        type=node_type,
        inputs=tuple(inputs),
        outputs=tuple(getattr(cls, "RETURN_TYPES", ())),
        output_node=bool(getattr(cls, "OUTPUT_NODE", False)),
        hidden=dict(declared.get("hidden") or {}),
    )


def node_specs(node_class_mappings: Mapping[str, type] | None = None) -> dict[str, NodeSpec]:
    """Specs of our nodes (``NODE_CLASS_MAPPINGS``), the frozen core nodes and the frontend-only nodes."""
    specs = {name: spec_from_class(name, cls) for name, cls in CORE_STAND_INS.items()}
    for name in FRONTEND_ONLY:
        specs[name] = NodeSpec(name, (), (), frontend_only=True, widget_only=True)
    for name, cls in (node_class_mappings or {}).items():
        if name in specs:
            raise ValueError(f"node type {name!r} clashes with a core node")
        specs[name] = spec_from_class(name, cls)
    return specs


# ------------------------------------------------------------------------------------------------------
# Value checks shared by the UI and API checks


def _check_widget_value(
    spec: InputSpec, value: Any, check_choices: bool = True, check_dynamic: bool = False
) -> str | None:
    """A problem with a literal widget value, or None. Combo membership is checked for static combos when
    ``check_choices`` and for file-listing (dynamic) combos when ``check_dynamic``."""
    kind = spec.type
    if kind == "COMBO":
        if not isinstance(value, str):
            return f"{spec.name}: expected a choice (string), got {value!r}"
        wanted = check_dynamic if spec.dynamic else check_choices
        if wanted and value not in (spec.choices or ()):
            shown = list(spec.choices) if len(spec.choices) <= 20 else f"(list of {len(spec.choices)})"
            return f"{spec.name}: {value!r} not in {shown}"
        return None
    if kind == "INT":
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or (isinstance(value, float) and not value.is_integer())
        ):
            return f"{spec.name}: expected an integer, got {value!r}"
    elif kind == "FLOAT":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"{spec.name}: expected a number, got {value!r}"
    elif kind == "STRING":
        if not isinstance(value, str):
            return f"{spec.name}: expected a string, got {value!r}"
        return None
    elif kind == "BOOLEAN":
        if not isinstance(value, bool):
            return f"{spec.name}: expected true/false, got {value!r}"
        return None
    if kind in ("INT", "FLOAT"):
        lo, hi = spec.options.get("min"), spec.options.get("max")
        if lo is not None and value < lo:
            return f"{spec.name}: value {value} smaller than min of {lo}"
        if hi is not None and value > hi:
            return f"{spec.name}: value {value} bigger than max of {hi}"
    return None


def _types_match(out_type: str, in_type: str) -> bool:
    return out_type == in_type or "*" in (out_type, in_type)


# ------------------------------------------------------------------------------------------------------
# UI format (schema 0.4)


def check_ui_workflow(graph: Mapping, specs: Mapping[str, NodeSpec], *, check_choices: bool = True,
                      check_dynamic: bool = False, name: str = "workflow") -> None:
    """Raise :class:`WorkflowError` unless ``graph`` is a consistent schema-0.4 UI workflow of known nodes.

    Combo values are checked against static choice lists (``check_choices``); lists of installed files
    (model names, input images) only with ``check_dynamic``."""
    problems: list[str] = []
    p = problems.append
    if not isinstance(graph, Mapping):
        raise WorkflowError(name, [f"top level must be an object, got {type(graph).__name__}"])
    missing = [k for k in UI_TOP_LEVEL_KEYS if k not in graph]
    if missing:
        p(f"missing top-level keys {missing}")
    if graph.get("version") != 0.4:
        p(f"version must be 0.4, got {graph.get('version')!r}")
    nodes = graph.get("nodes") or []
    links = graph.get("links") or []
    by_id: dict[int, Mapping] = {}
    for node in nodes:
        nid = node.get("id")
        if not isinstance(nid, int):
            p(f"node id must be an integer, got {nid!r}")
            continue
        if nid in by_id:
            p(f"duplicate node id {nid}")
        by_id[nid] = node
    link_by_id: dict[int, list] = {}
    for link in links:
        if not (isinstance(link, list) and len(link) == 6):
            p(f"link must be [id, from, from_slot, to, to_slot, TYPE], got {link!r}")
            continue
        if link[0] in link_by_id:
            p(f"duplicate link id {link[0]}")
        link_by_id[link[0]] = link
    if by_id and isinstance(graph.get("last_node_id"), int) and graph["last_node_id"] < max(by_id):
        p(f"last_node_id {graph['last_node_id']} < highest node id {max(by_id)}")
    if link_by_id and isinstance(graph.get("last_link_id"), int) and graph["last_link_id"] < max(link_by_id):
        p(f"last_link_id {graph['last_link_id']} < highest link id {max(link_by_id)}")

    for nid, node in by_id.items():
        where = f"node {nid} ({node.get('type')})"
        spec = specs.get(node.get("type"))
        if spec is None:
            p(f"{where}: unknown node type (not ours, not in the frozen core list)")
            continue
        for key in ("pos", "size", "flags", "order", "mode", "inputs", "outputs", "properties"):
            if key not in node and not (spec.frontend_only and key in ("inputs", "outputs")):
                p(f"{where}: missing key {key!r}")
        if node.get("mode", 0) not in MODES:
            p(f"{where}: mode {node.get('mode')!r} is not one of {sorted(MODES)}")
        if spec.frontend_only:
            if node.get("inputs") or node.get("outputs"):
                p(f"{where}: a frontend-only node has no sockets")
            continue
        ui_inputs = node.get("inputs") or []
        for slot, ui_in in enumerate(ui_inputs):
            in_spec = spec.input(ui_in.get("name"))
            if in_spec is None:
                p(f"{where}: input slot {slot} {ui_in.get('name')!r} is not an input of {spec.type}")
                continue
            expected = in_spec.type
            if ui_in.get("type") != expected:
                p(f"{where}: input {in_spec.name!r} has type {ui_in.get('type')!r}, the node declares {expected!r}")
            if in_spec.is_widget and ui_in.get("widget", {}).get("name") not in (None, in_spec.name):
                p(f"{where}: input {in_spec.name!r} names widget {ui_in['widget'].get('name')!r}")
            lid = ui_in.get("link")
            if lid is not None:
                link = link_by_id.get(lid)
                if link is None:
                    p(f"{where}: input {in_spec.name!r} refers to missing link {lid}")
                elif link[3] != nid or link[4] != slot:
                    p(f"{where}: input {in_spec.name!r} (slot {slot}) refers to link {lid} which targets node "
                      f"{link[3]} slot {link[4]}")
        ui_names = [i.get("name") for i in ui_inputs]
        if len(set(ui_names)) != len(ui_names):
            p(f"{where}: duplicate input names {ui_names}")
        if node.get("mode", 0) == 0:
            for in_spec in spec.inputs:
                if in_spec.section == "required" and not in_spec.is_widget:
                    ui_in = next((i for i in ui_inputs if i.get("name") == in_spec.name), None)
                    if ui_in is None or ui_in.get("link") is None:
                        p(f"{where}: required input {in_spec.name!r} ({in_spec.type}) is not connected")
        ui_outputs = node.get("outputs") or []
        if [o.get("type") for o in ui_outputs] != list(spec.outputs):
            p(f"{where}: outputs {[o.get('type') for o in ui_outputs]} differ from the node's {list(spec.outputs)}")
        for slot, ui_out in enumerate(ui_outputs):
            for lid in ui_out.get("links") or []:
                link = link_by_id.get(lid)
                if link is None:
                    p(f"{where}: output {slot} lists missing link {lid}")
                elif link[1] != nid or link[2] != slot:
                    p(f"{where}: output {slot} lists link {lid} which starts at node {link[1]} slot {link[2]}")
        _check_ui_widgets(node, spec, where, problems, check_choices, check_dynamic)

    for lid, (link_id, src, src_slot, dst, dst_slot, ltype) in link_by_id.items():
        where = f"link {link_id}"
        src_node, dst_node = by_id.get(src), by_id.get(dst)
        if src_node is None or dst_node is None:
            p(f"{where}: connects missing node(s) {src} -> {dst}")
            continue
        src_spec, dst_spec = specs.get(src_node.get("type")), specs.get(dst_node.get("type"))
        outs = src_node.get("outputs") or []
        ins = dst_node.get("inputs") or []
        if not (isinstance(src_slot, int) and 0 <= src_slot < len(outs)):
            p(f"{where}: origin slot {src_slot} does not exist on node {src}")
        else:
            if lid not in (outs[src_slot].get("links") or []):
                p(f"{where}: not listed in node {src} output {src_slot} links")
            if (
                src_spec is not None
                and src_slot < len(src_spec.outputs)
                and not _types_match(src_spec.outputs[src_slot], ltype)
            ):
                p(f"{where}: type {ltype!r} but node {src} ({src_spec.type}) output {src_slot} is "
                  f"{src_spec.outputs[src_slot]!r}")
        if not (isinstance(dst_slot, int) and 0 <= dst_slot < len(ins)):
            p(f"{where}: target slot {dst_slot} does not exist on node {dst}")
        else:
            if ins[dst_slot].get("link") != lid:
                p(f"{where}: node {dst} input slot {dst_slot} does not point back to it")
            in_spec = dst_spec.input(ins[dst_slot].get("name")) if dst_spec else None
            if in_spec is not None and not _types_match(ltype, in_spec.type):
                p(f"{where}: type {ltype!r} but node {dst} ({dst_spec.type}) input {in_spec.name!r} "
                  f"is {in_spec.type!r}")
    if problems:
        raise WorkflowError(name, problems)


def _check_ui_widgets(node, spec: NodeSpec, where: str, problems: list[str], check_choices: bool,
                      check_dynamic: bool) -> None:
    values = node.get("widgets_values", [])
    if isinstance(values, Mapping):  # some nodes save widgets by name
        unknown = set(values) - {w.name for w in spec.widgets}
        if unknown:
            problems.append(f"{where}: widgets_values has unknown names {sorted(unknown)}")
        return
    if not isinstance(values, list):
        problems.append(f"{where}: widgets_values must be a list, got {type(values).__name__}")
        return
    if len(values) != spec.widget_slots:
        names = [w.name + (" (+control)" if w.options.get("control_after_generate") else "")
                 + (" (+upload)" if w.options.get("image_upload") else "") for w in spec.widgets]
        problems.append(
            f"{where}: widgets_values has {len(values)} values, the node has {spec.widget_slots} widget slots {names}"
        )
        return
    for w, value in zip(spec.widgets, _split_widget_values(spec, values)):
        value, extra = value
        msg = _check_widget_value(w, value, check_choices, check_dynamic)
        if msg:
            problems.append(f"{where}: widget {msg}")
        if w.options.get("control_after_generate") and extra not in CONTROL_VALUES:
            problems.append(f"{where}: control value after {w.name!r} must be one of {CONTROL_VALUES}, got {extra!r}")


def _split_widget_values(spec: NodeSpec, values: list):
    """Pair each widget input with its value (and its control/upload extra value, if any)."""
    i = 0
    for w in spec.widgets:
        value = values[i]
        extra = values[i + 1] if w.widget_slots > 1 else None
        i += w.widget_slots
        yield value, extra


def ui_widget_values(node: Mapping, spec: NodeSpec) -> dict[str, Any]:
    """``{widget name: value}`` of a UI node."""
    values = node.get("widgets_values", [])
    if isinstance(values, Mapping):
        return {w.name: values[w.name] for w in spec.widgets if w.name in values}
    return {w.name: v for w, (v, _) in zip(spec.widgets, _split_widget_values(spec, values))}


# ------------------------------------------------------------------------------------------------------
# API format


def ui_to_api(graph: Mapping, specs: Mapping[str, NodeSpec]) -> dict[str, dict]:
    """The API prompt the frontend would queue for a UI graph (muted and bypassed nodes and notes dropped).

    A link from a bypassed node (mode 4) is re-routed as the frontend does (:func:`bypass_source`)."""
    links = {link[0]: link for link in graph.get("links") or []}
    nodes = {n["id"]: n for n in graph.get("nodes") or []}
    prompt: dict[str, dict] = {}
    for nid, node in sorted(nodes.items()):
        spec = specs[node["type"]]
        if spec.frontend_only or node.get("mode", 0) in (2, 4):
            continue
        inputs: dict[str, Any] = dict(ui_widget_values(node, spec))
        for ui_in in node.get("inputs") or []:
            lid = ui_in.get("link")
            if lid is None:
                continue
            link = bypass_source(links[lid], nodes, links, ui_in.get("type"))
            if link is None or nodes[link[1]].get("mode", 0) == 2:
                continue
            inputs[ui_in["name"]] = [str(link[1]), link[2]]
        ordered = {i.name: inputs[i.name] for i in spec.inputs if i.name in inputs}
        prompt[str(nid)] = {"class_type": node["type"], "inputs": ordered}
    return prompt


def bypass_source(link: list, nodes: Mapping, links: Mapping, in_type: str | None) -> list | None:
    """The link that feeds an input once bypassed nodes are skipped, as ComfyUI's frontend does: from a bypassed
    node, take the input at the output's slot index, else its first input, whose type equals the consumer's
    input type, and follow that input's link; ``None`` when that input is unlinked or no input has the type."""
    seen = set()
    while nodes[link[1]].get("mode", 0) == 4:
        parent = nodes[link[1]]
        if parent["id"] in seen:
            return None
        seen.add(parent["id"])
        parent_inputs = parent.get("inputs") or []
        wanted = in_type if in_type is not None else link[5]
        order = [link[2], *range(len(parent_inputs))]
        match = next((i for i in order if i < len(parent_inputs) and parent_inputs[i].get("type") == wanted), None)
        if match is None or parent_inputs[match].get("link") is None:
            return None
        link = links[parent_inputs[match]["link"]]
    return link


def check_api_workflow(prompt: Mapping, specs: Mapping[str, NodeSpec], *, check_choices: bool = True,
                       check_dynamic: bool = False, name: str = "prompt") -> None:
    """Validate an API prompt like ComfyUI's ``validate_prompt`` (types, links, required inputs, min/max,
    combo values, at least one output node)."""
    problems: list[str] = []
    p = problems.append
    if not isinstance(prompt, Mapping) or not prompt:
        raise WorkflowError(name, ["an API prompt is a non-empty object {node_id: {class_type, inputs}}"])
    has_output = False
    for nid, node in prompt.items():
        where = f"node {nid}"
        if not isinstance(nid, str):
            p(f"{where}: node ids are strings in the API format")
        if not isinstance(node, Mapping) or "class_type" not in node:
            p(f"{where}: missing class_type")
            continue
        spec = specs.get(node["class_type"])
        where = f"node {nid} ({node['class_type']})"
        if spec is None or spec.frontend_only:
            p(f"{where}: node type does not exist on the server")
            continue
        has_output |= spec.output_node
        inputs = node.get("inputs") or {}
        for key in inputs:
            if spec.input(key) is None:
                p(f"{where}: unknown input {key!r}")
        for in_spec in spec.inputs:
            if in_spec.name not in inputs:
                if in_spec.section == "required":
                    p(f"{where}: required input {in_spec.name!r} is missing")
                continue
            value = inputs[in_spec.name]
            if isinstance(value, list):
                if len(value) != 2:
                    p(f"{where}: bad linked input {in_spec.name!r}: {value!r}")
                    continue
                src_id, slot = value
                src = prompt.get(src_id) if isinstance(src_id, str) else None
                src_spec = specs.get(src.get("class_type")) if isinstance(src, Mapping) else None
                if src_spec is None:
                    p(f"{where}: input {in_spec.name!r} links to missing node {src_id!r}")
                elif not (isinstance(slot, int) and 0 <= slot < len(src_spec.outputs)):
                    p(f"{where}: input {in_spec.name!r} links to missing output {slot} of node {src_id}")
                elif not _types_match(src_spec.outputs[slot], in_spec.type):
                    p(f"{where}: input {in_spec.name!r} is {in_spec.type!r} but node {src_id} output {slot} "
                      f"is {src_spec.outputs[slot]!r}")
            elif not in_spec.is_widget:
                p(f"{where}: input {in_spec.name!r} ({in_spec.type}) must be linked, got a literal {value!r}")
            else:
                msg = _check_widget_value(in_spec, value, check_choices, check_dynamic)
                if msg:
                    p(f"{where}: {msg}")
    if not has_output:
        p("prompt has no output node")
    cycle = _find_cycle(prompt)
    if cycle:
        p(f"cycle between nodes {cycle}")
    if problems:
        raise WorkflowError(name, problems)


def _find_cycle(prompt: Mapping) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(nid, path):
        if state.get(nid) == 1:
            return path[path.index(nid):]
        if state.get(nid) == 2 or nid not in prompt:
            return None
        state[nid] = 1
        for v in (prompt[nid].get("inputs") or {}).values():
            if isinstance(v, list) and len(v) == 2 and isinstance(v[0], str):
                found = visit(v[0], path + [nid])
                if found:
                    return found
        state[nid] = 2
        return None

    for nid in prompt:
        found = visit(nid, [])
        if found:
            return found
    return None


def _same_value(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or (isinstance(a, bool) and isinstance(b, bool) and a == b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return a == b


def check_api_twin(ui: Mapping, api: Mapping, specs: Mapping[str, NodeSpec], *, name: str = "API twin") -> None:
    """The API twin must reference the same graph as the UI workflow: same node ids and class types, same
    links, same widget values (``_meta`` is ignored)."""
    expected = ui_to_api(ui, specs)
    problems: list[str] = []
    for nid in sorted(set(expected) | set(api), key=lambda s: (len(s), s)):
        if nid not in api:
            problems.append(f"node {nid} ({expected[nid]['class_type']}) is in the UI graph but not in the API twin")
            continue
        if nid not in expected:
            problems.append(
                f"node {nid} ({api[nid].get('class_type')}) is in the API twin but not (active) in the UI graph"
            )
            continue
        e, a = expected[nid], api[nid]
        if e["class_type"] != a.get("class_type"):
            problems.append(
                f"node {nid}: class_type {a.get('class_type')!r} in the API twin, {e['class_type']!r} in the UI"
            )
            continue
        a_inputs = a.get("inputs") or {}
        for key in sorted(set(e["inputs"]) | set(a_inputs)):
            if key not in a_inputs:
                problems.append(f"node {nid}: input {key!r} missing from the API twin (UI: {e['inputs'][key]!r})")
            elif key not in e["inputs"]:
                problems.append(f"node {nid}: input {key!r} is in the API twin ({a_inputs[key]!r}) but not in the UI")
            elif not _same_value(e["inputs"][key], a_inputs[key]):
                problems.append(
                    f"node {nid}: input {key!r} is {a_inputs[key]!r} in the API twin, {e['inputs'][key]!r} in the UI"
                )
    if problems:
        raise WorkflowError(name, problems)


# ------------------------------------------------------------------------------------------------------
# Building graphs


@dataclass
class _BuiltNode:
    id: int
    type: str
    values: dict[str, Any]
    links: dict[str, tuple[int, int]]
    title: str | None = None
    mode: int = 0  # 4 = bypassed (optional step the user can enable)

    def out(self, slot: int | str = 0) -> tuple[int, int | str]:
        return (self.id, slot)


class GraphBuilder:
    """Build a schema-0.4 UI graph and its API twin from node specs::

        g = GraphBuilder(specs)
        vae = g.add("C3MoTVAELoader", vae_name="wan2.2_vae.safetensors")
        lat = g.add("C3MoTEmptyLatent", width=64, height=64, frames=1)
        img = g.add("C3MoTVAEDecode", vae=vae.out(), samples=lat.out("samples"))
        g.add("SaveImage", images=img.out(), filename_prefix="cosmos3/t2i")
        ui, api = g.ui(), g.api()

    Unset widgets take their spec defaults (first choice for combos); ``seed_control`` sets the value saved
    after a ``control_after_generate`` INT. Outputs may be referenced by slot index or RETURN_NAMES-free
    position only (``out(0)``) or by name when the class declares ``RETURN_NAMES`` (pass ``names``)."""

    def __init__(self, specs: Mapping[str, NodeSpec], output_names: Mapping[str, tuple[str, ...]] | None = None):
        self.specs = specs
        self.output_names = dict(output_names or {})
        self.nodes: list[_BuiltNode] = []

    def add(self, node_type: str, *, title: str | None = None, seed_control: str = "fixed", node_mode: int = 0,
            linked_values: Mapping[str, Any] | None = None, **inputs) -> _BuiltNode:
        """``linked_values``: what linked widget inputs show (and save in ``widgets_values``) instead of their
        defaults, e.g. the size an Empty Latent gives them. ``node_mode`` 4 = bypassed."""
        spec = self.specs[node_type]
        values, links = {}, {}
        for key, value in inputs.items():
            in_spec = spec.input(key)
            if in_spec is None and not spec.widget_only:
                raise KeyError(f"{node_type} has no input {key!r}")
            if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], int):
                links[key] = (value[0], self._slot(value[0], value[1]))
            else:
                values[key] = value
        for key, value in (linked_values or {}).items():
            if key not in links:
                raise KeyError(f"{node_type}.{key} is not linked; give its value as an input instead")
            values[key] = value
        node = _BuiltNode(len(self.nodes) + 1, node_type, values, links, title, node_mode)
        node.seed_control = seed_control  # type: ignore[attr-defined]
        self.nodes.append(node)
        return node

    def _slot(self, node_id: int, slot: int | str) -> int:
        if isinstance(slot, int):
            return slot
        node = self.nodes[node_id - 1]
        names = self.output_names.get(node.type)
        if not names or slot not in names:
            raise KeyError(f"{node.type} has no output named {slot!r} (known: {names})")
        return names.index(slot)

    def _widget_value(self, spec: NodeSpec, w: InputSpec, node: _BuiltNode):
        if w.name in node.values:
            return node.values[w.name]
        if "default" in w.options:
            return w.options["default"]
        if w.type == "COMBO":
            if not w.choices:
                raise ValueError(f"{spec.type}.{w.name}: no choices and no value given")
            return w.choices[0]
        return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}[w.type]

    def ui(self) -> dict:
        link_rows: list[list] = []
        outgoing: dict[tuple[int, int], list[int]] = {}
        ui_nodes = []
        for order, node in enumerate(self.nodes):
            spec = self.specs[node.type]
            ui_inputs = []
            for in_spec in spec.inputs:
                linked = in_spec.name in node.links
                if in_spec.is_widget and not linked:
                    continue
                if not in_spec.is_widget and not linked and in_spec.section == "optional":
                    ui_inputs.append({"name": in_spec.name, "type": in_spec.type, "link": None})
                    continue
                entry = {"name": in_spec.name, "type": in_spec.type, "link": None}
                if in_spec.is_widget:
                    entry["widget"] = {"name": in_spec.name}
                if linked:
                    src, slot = node.links[in_spec.name]
                    lid = len(link_rows) + 1
                    ltype = self.specs[self.nodes[src - 1].type].outputs[slot]
                    link_rows.append([lid, src, slot, node.id, len(ui_inputs), ltype])
                    outgoing.setdefault((src, slot), []).append(lid)
                    entry["link"] = lid
                ui_inputs.append(entry)
            widgets = []
            if spec.widget_only:
                widgets = list(node.values.values())
            for w in spec.widgets:
                widgets.append(self._widget_value(spec, w, node))
                if w.options.get("control_after_generate"):
                    widgets.append(node.seed_control)  # type: ignore[attr-defined]
                if w.options.get("image_upload"):
                    widgets.append("image")
            ui_node = {
                "id": node.id, "type": node.type, "pos": [40 + 360 * order, 80], "size": [320, 200], "flags": {},
                "order": order, "mode": node.mode, "inputs": ui_inputs, "outputs": [],
                "properties": {"Node name for S&R": node.type}, "widgets_values": widgets,
            }
            if node.title:
                ui_node["title"] = node.title
            ui_nodes.append(ui_node)
        for ui_node, node in zip(ui_nodes, self.nodes):
            spec = self.specs[node.type]
            names = self.output_names.get(node.type) or spec.outputs
            ui_node["outputs"] = [
                {"name": names[i], "type": t, "links": outgoing.get((node.id, i), []), "slot_index": i}
                for i, t in enumerate(spec.outputs)
            ]
        return {
            "last_node_id": len(self.nodes), "last_link_id": len(link_rows), "nodes": ui_nodes, "links": link_rows,
            "groups": [], "config": {}, "extra": {"ds": {"scale": 1.0, "offset": [0, 0]}}, "version": 0.4,
        }

    def api(self) -> dict:
        return ui_to_api(self.ui(), self.specs)


def output_names_of(node_class_mappings: Mapping[str, type]) -> dict[str, tuple[str, ...]]:
    """``RETURN_NAMES`` (or RETURN_TYPES) per node type, for :class:`GraphBuilder`."""
    out = {name: tuple(getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES) for name, cls in CORE_STAND_INS.items()}
    out.update(
        {
            name: tuple(getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES)
            for name, cls in node_class_mappings.items()
        }
    )
    return out


# ------------------------------------------------------------------------------------------------------
# What the frontend checks on load, and the canvas layout

# The frontend's zod schema for a node's properties.models entry (workflowSchema.ts zModelFile, the same in 1.27
# and 1.58): name, url (a URL) and directory are required, hash / hash_type optional strings. Its missing-models
# dialog (1.27 MissingModelsWarning.vue) offers only these sources and file types.
MODEL_ENTRY_REQUIRED = ("name", "url", "directory")
MODEL_ENTRY_OPTIONAL = ("hash", "hash_type")
MODEL_URL_SOURCES = ("https://civitai.com/", "https://huggingface.co/")
MODEL_FILE_SUFFIXES = (".safetensors", ".sft")
TITLE_HEIGHT = 30  # LiteGraph.NODE_TITLE_HEIGHT
BADGE_HEIGHT = 24  # the 1.5x frontends draw a node's source badge above its title bar


def model_hint_problems(ui: Mapping) -> list[str]:
    """Problems the frontend reports for ``properties.models`` entries (the zod alert, or an entry its
    missing-models dialog cannot offer)."""
    from urllib.parse import urlparse

    problems = []
    for node in ui.get("nodes", []):
        entries = (node.get("properties") or {}).get("models")
        if entries is None:
            continue
        where = f"node {node.get('id')} ({node.get('type')}) properties.models"
        if not isinstance(entries, list):
            problems.append(f"{where}: not a list")
            continue
        for i, entry in enumerate(entries):
            at = f"{where}[{i}]"
            if not isinstance(entry, Mapping):
                problems.append(f"{at}: not an object")
                continue
            for key in MODEL_ENTRY_REQUIRED:
                if not isinstance(entry.get(key), str):
                    problems.append(f"{at}.{key}: Required (a string)")
            for key in MODEL_ENTRY_OPTIONAL:
                if key in entry and not isinstance(entry[key], str):
                    problems.append(f"{at}.{key}: must be a string")
            url = entry.get("url")
            if isinstance(url, str):
                parsed = urlparse(url)
                if parsed.scheme not in ("http", "https") or not parsed.netloc:
                    problems.append(f"{at}.url: Invalid url {url!r}")
                elif not url.startswith(MODEL_URL_SOURCES):
                    problems.append(f"{at}.url: not from {MODEL_URL_SOURCES} (the missing-models dialog skips it)")
            name = entry.get("name")
            if isinstance(name, str) and not name.endswith(MODEL_FILE_SUFFIXES):
                problems.append(f"{at}.name: {name!r} is not a {'/'.join(MODEL_FILE_SUFFIXES)} file")
    return problems


def node_box(node: Mapping, badge: bool = True) -> tuple[float, float, float, float]:
    """``(left, top, right, bottom)`` of a UI node on the canvas: its body, its title bar and (``badge``) the
    space of the source badge above the title."""
    (x, y), (w, h) = node["pos"], node["size"]
    return (x, y - TITLE_HEIGHT - (BADGE_HEIGHT if badge else 0), x + w, y + h)


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def layout_problems(ui: Mapping, boxes: Mapping[Any, tuple] | None = None) -> list[str]:
    """Overlapping node boxes (:func:`node_box`; or ``boxes`` measured in a frontend, by node id) and nodes
    outside every group."""
    nodes = list(ui.get("nodes", []))
    measured = {str(k): v for k, v in (boxes or {}).items()}
    box = {n["id"]: (measured[str(n["id"])] if boxes is not None else node_box(n)) for n in nodes}
    problems = []
    for i, a in enumerate(nodes):
        for b in nodes[i + 1:]:
            if _overlap(box[a["id"]], box[b["id"]]):
                problems.append(f"node {a['id']} ({a['type']}) {box[a['id']]} overlaps node {b['id']} ({b['type']}) "
                                f"{box[b['id']]}")
    for n in nodes:
        left, top, right, bottom = box[n["id"]]
        if not any(g["bounding"][0] <= left and g["bounding"][1] <= top
                   and right <= g["bounding"][0] + g["bounding"][2] and bottom <= g["bounding"][1] + g["bounding"][3]
                   for g in ui.get("groups", [])):
            problems.append(f"node {n['id']} ({n['type']}) {box[n['id']]} lies outside every group")
    return problems


MIN_TEXT_SCALE = 0.6  # below this zoom the frontends draw nodes without text (low-quality rendering)


def view_problems(ui: Mapping, *, left: float, top: float, width: float, height: float) -> list[str]:
    """Where ``extra.ds`` (screen = (canvas + offset) * scale) puts the groups: their top-left corner inside the
    ``width x height`` canvas, right of ``left`` and below ``top`` (the 1.5x sidebar and toolbar), at a zoom
    that still shows node text."""
    ds = ui.get("extra", {}).get("ds") or {}
    scale, (ox, oy) = ds.get("scale", 1.0), ds.get("offset", [0, 0])
    problems = [] if scale >= MIN_TEXT_SCALE else [f"view scale {scale} hides node text (< {MIN_TEXT_SCALE})"]
    for g in ui.get("groups", []):
        x, y = g["bounding"][:2]
        sx, sy = (x + ox) * scale, (y + oy) * scale
        if not (left <= sx < width and top <= sy < height):
            problems.append(f"group {g['title']!r} starts at ({sx:.0f}, {sy:.0f}) on screen; wanted inside "
                            f"({left}, {top})-({width}, {height})")
    return problems


# ------------------------------------------------------------------------------------------------------
# Core nodes: frozen declarations (ComfyUI v0.3.64) + in-process stand-ins


def _folder_paths():
    import folder_paths  # the ComfyUI stub (tests/comfy_stub) when run under the comfy_stub fixture

    return folder_paths


def _check_image_batch(images, who: str) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[-1] not in (3, 4):
        raise TypeError(f"{who}: IMAGE must be a tensor [N, H, W, 3], got {getattr(images, 'shape', type(images))}")
    if images.dtype != torch.float32:
        raise TypeError(f"{who}: IMAGE must be float32, got {images.dtype}")
    if images.device.type != "cpu":
        raise TypeError(f"{who}: IMAGE must be on the CPU (intermediate device), got {images.device}")
    if images.numel() and (images.min() < 0 or images.max() > 1):
        raise ValueError(f"{who}: IMAGE values must lie in 0..1, got {float(images.min())}..{float(images.max())}")


class _StandIn:
    CATEGORY = "core stand-in"
    capture = None  # set by the executor: callable(dict)

    def _record(self, **data):
        if self.capture is not None:
            self.capture({"class_type": type(self).__name__.removeprefix("Core"), **data})


class CoreLoadImage(_StandIn):
    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "load_image"

    @classmethod
    def INPUT_TYPES(cls):
        try:
            root = Path(_folder_paths().get_input_directory())
        except ImportError:  # no ComfyUI stub installed: the list is unknown
            root = None
        files = sorted(f.name for f in root.iterdir() if f.is_file()) if root and root.is_dir() else []
        return {"required": {"image": (files, {"image_upload": True})}}

    def load_image(self, image):
        import numpy as np
        from PIL import Image, ImageOps, ImageSequence

        path = _folder_paths().get_annotated_filepath(image)
        frames, masks = [], []
        with Image.open(path) as img:  # like core: every frame of an animated image (same size as the first)
            for frame in ImageSequence.Iterator(img):
                frame = ImageOps.exif_transpose(frame)
                if frames and frame.size != (frames[0].shape[1], frames[0].shape[0]):
                    continue
                rgb = np.array(frame.convert("RGB")).astype(np.float32) / 255.0
                frames.append(torch.from_numpy(rgb))
                if "A" in frame.getbands():
                    masks.append(1.0 - torch.from_numpy(np.array(frame.getchannel("A")).astype(np.float32) / 255.0))
                else:
                    masks.append(torch.zeros((64, 64), dtype=torch.float32))
        return (torch.stack(frames), torch.stack(masks) if len({m.shape for m in masks}) == 1 else masks[0][None])


class CoreSaveImage(_StandIn):
    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    kind = "output"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE", {"tooltip": "The images to save."}),
                             "filename_prefix": ("STRING", {"default": "ComfyUI"})},
                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    def save_images(self, images, filename_prefix="ComfyUI", prompt=None, extra_pnginfo=None):
        import numpy as np
        from PIL import Image

        _check_image_batch(images, type(self).__name__)
        fp = _folder_paths()
        base = fp.get_output_directory() if self.kind == "output" else fp.get_temp_directory()
        folder, filename, counter, subfolder, _ = fp.get_save_image_path(
            filename_prefix, base, images.shape[2], images.shape[1]
        )
        results = []
        for i, image in enumerate(images):
            name = f"{filename}_{counter + i:05}_.png"
            array = (image[..., :3].numpy() * 255.0).round().clip(0, 255).astype(np.uint8)
            Image.fromarray(array).save(Path(folder) / name)
            results.append({"filename": name, "subfolder": subfolder, "type": self.kind})
        self._record(images=images, filename_prefix=filename_prefix, files=results)
        return {"ui": {"images": results}}


class CorePreviewImage(CoreSaveImage):
    kind = "temp"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",)}, "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    def save_images(self, images, filename_prefix="ComfyUI_temp", prompt=None, extra_pnginfo=None):
        return super().save_images(images, filename_prefix, prompt, extra_pnginfo)


@dataclass
class StubVideo:
    """What the CreateVideo stand-in returns (core returns a ``VideoFromComponents``)."""

    images: torch.Tensor
    fps: float
    audio: Any = None

    def get_dimensions(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[1])


class CoreCreateVideo(_StandIn):
    RETURN_TYPES = ("VIDEO",)
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE", {"tooltip": "The images to create a video from."}),
                             "fps": ("FLOAT", {"default": 30.0, "min": 1.0, "max": 120.0, "step": 1.0})},
                "optional": {"audio": ("AUDIO", {"tooltip": "The audio to add to the video."})}}

    def execute(self, images, fps, audio=None):
        _check_image_batch(images, "CreateVideo")
        return (StubVideo(images, float(fps), audio),)


class CoreSaveVideo(_StandIn):
    RETURN_TYPES = ()
    FUNCTION = "execute"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"video": ("VIDEO", {"tooltip": "The video to save."}),
                             "filename_prefix": ("STRING", {"default": "video/ComfyUI"}),
                             "format": (["auto", "mp4"], {"default": "auto"}),
                             "codec": (["auto", "h264"], {"default": "auto"})},
                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    def execute(self, video, filename_prefix, format, codec, prompt=None, extra_pnginfo=None):
        if not isinstance(video, StubVideo):
            raise TypeError(f"SaveVideo: expected a VIDEO (from CreateVideo), got {type(video).__name__}")
        width, height = video.get_dimensions()
        if width % 2 or height % 2:
            raise ValueError(f"SaveVideo: h264 needs even dimensions, got {width}x{height}")
        name = f"{Path(filename_prefix).name}_00001_.mp4"
        entry = {"filename": name, "subfolder": str(Path(filename_prefix).parent).replace(".", ""), "type": "output"}
        self._record(video=video, filename_prefix=filename_prefix, format=format, codec=codec, files=[entry])
        return {"ui": {"images": [entry], "animated": (True,)}}


class CoreSaveAnimatedWEBP(_StandIn):
    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",),
                             "filename_prefix": ("STRING", {"default": "ComfyUI"}),
                             "fps": ("FLOAT", {"default": 6.0, "min": 0.01, "max": 1000.0, "step": 0.01}),
                             "lossless": ("BOOLEAN", {"default": True}),
                             "quality": ("INT", {"default": 80, "min": 0, "max": 100}),
                             "method": (["default", "fastest", "slowest"],)},
                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    def save_images(self, images, fps, filename_prefix, lossless, quality, method, prompt=None, extra_pnginfo=None):
        _check_image_batch(images, "SaveAnimatedWEBP")
        entry = {"filename": f"{Path(filename_prefix).name}_00001_.webp", "subfolder": "", "type": "output"}
        self._record(images=images, fps=fps, filename_prefix=filename_prefix, files=[entry])
        return {"ui": {"images": [entry], "animated": (images.shape[0] != 1,)}}


class CoreSaveWEBM(_StandIn):
    RETURN_TYPES = ()
    FUNCTION = "execute"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",),
                             "filename_prefix": ("STRING", {"default": "ComfyUI"}),
                             "codec": (["vp9", "av1"],),
                             "fps": ("FLOAT", {"default": 24.0, "min": 0.01, "max": 1000.0, "step": 0.01}),
                             "crf": ("FLOAT", {"default": 32.0, "min": 0, "max": 63.0, "step": 1})},
                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    def execute(self, images, codec, fps, filename_prefix, crf, prompt=None, extra_pnginfo=None):
        _check_image_batch(images, "SaveWEBM")
        entry = {"filename": f"{Path(filename_prefix).name}_00001_.webm", "subfolder": "", "type": "output"}
        self._record(images=images, fps=fps, codec=codec, filename_prefix=filename_prefix, files=[entry])
        return {"ui": {"images": [entry], "animated": (True,)}}


# comfy.samplers.KSampler.SAMPLERS / SCHEDULERS of ComfyUI v0.3.64 (the stand-in runs euler only)
KSAMPLER_SAMPLERS = [
    "euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2", "dpm_2",
    "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral", "dpmpp_2s_ancestral_cfg_pp",
    "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu",
    "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm", "ipndm",
    "ipndm_v", "deis", "res_multistep", "res_multistep_cfg_pp", "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp", "gradient_estimation", "gradient_estimation_cfg_pp", "er_sde", "seeds_2",
    "seeds_3", "sa_solver", "sa_solver_pece", "ddim", "uni_pc", "uni_pc_bh2",
]
KSAMPLER_SCHEDULERS = ["simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal",
                       "linear_quadratic", "kl_optimal"]


class CoreKSampler(_StandIn):
    """Core KSampler: runs ``comfy.sample.sample`` (the stub's Euler driver under the stand-in)."""

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL",),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True}),
            "steps": ("INT", {"default": 20, "min": 1, "max": 10000}),
            "cfg": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}),
            "sampler_name": (list(KSAMPLER_SAMPLERS),),
            "scheduler": (list(KSAMPLER_SCHEDULERS),),
            "positive": ("CONDITIONING",),
            "negative": ("CONDITIONING",),
            "latent_image": ("LATENT",),
            "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
        }}

    def sample(self, model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise=1.0):
        import comfy.sample

        latent = latent_image["samples"]
        noise = comfy.sample.prepare_noise(latent, seed)
        samples = comfy.sample.sample(model, noise, steps, cfg, sampler_name, scheduler, positive, negative, latent,
                                      denoise=denoise, seed=seed)
        self._record(samples=samples, sampler_name=sampler_name, scheduler=scheduler)
        return ({**latent_image, "samples": samples},)


def _primitive(node_type: str, type_name: str, options: dict):
    class Primitive(_StandIn):
        RETURN_TYPES = (type_name,)
        FUNCTION = "execute"

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value": (type_name, dict(options))}}

        def execute(self, value):
            return (value,)

    Primitive.__name__ = Primitive.__qualname__ = "Core" + node_type
    return Primitive


_MAXSIZE = 2**63 - 1
CORE_STAND_INS: dict[str, type] = {
    "LoadImage": CoreLoadImage,
    "SaveImage": CoreSaveImage,
    "PreviewImage": CorePreviewImage,
    "CreateVideo": CoreCreateVideo,
    "SaveVideo": CoreSaveVideo,
    "SaveAnimatedWEBP": CoreSaveAnimatedWEBP,
    "SaveWEBM": CoreSaveWEBM,
    "KSampler": CoreKSampler,
    "PrimitiveString": _primitive("PrimitiveString", "STRING", {}),
    "PrimitiveStringMultiline": _primitive("PrimitiveStringMultiline", "STRING", {"multiline": True}),
    "PrimitiveInt": _primitive(
        "PrimitiveInt", "INT", {"min": -_MAXSIZE, "max": _MAXSIZE, "control_after_generate": True}
    ),
    "PrimitiveFloat": _primitive("PrimitiveFloat", "FLOAT", {"min": -_MAXSIZE, "max": _MAXSIZE}),
    "PrimitiveBoolean": _primitive("PrimitiveBoolean", "BOOLEAN", {}),
}
CORE_NODES = tuple(CORE_STAND_INS)
# Combos whose choices are files on the server (not checked against the frozen list)
# Combos listing files on the server: core's, and our model pickers
DYNAMIC_COMBOS = {
    ("LoadImage", "image"),
    ("C3MoTModelLoader", "checkpoint"), ("C3MoTModelLoader", "tokenizer"), ("C3MoTVAELoader", "vae_name"),
    ("C3MoTLoraLoader", "lora_name"),
}


# ------------------------------------------------------------------------------------------------------
# Executor


class NodeExecutionError(RuntimeError):
    """A node raised while running (what the server reports as ``execution_error``)."""

    def __init__(self, node_id: str, class_type: str, exc: BaseException):
        self.node_id, self.class_type, self.original = node_id, class_type, exc
        super().__init__(f"node {node_id} ({class_type}) raised {type(exc).__name__}: {exc}")


@dataclass
class RunResult:
    order: list[str]  # node ids in execution order
    outputs: dict[str, tuple]  # node id -> returned values
    ui: dict[str, dict]  # node id -> "ui" dict of output nodes
    captured: list[dict]  # what the core stand-ins received (SaveImage, SaveVideo, …), in order

    def captured_by(self, class_type: str) -> list[dict]:
        return [c for c in self.captured if c["class_type"] == class_type]


def check_output_value(type_name: str, value: Any, who: str) -> None:
    """Check the ComfyUI conventions of core socket types (IMAGE, LATENT, MASK, INT, FLOAT, STRING, BOOLEAN)."""
    if type_name == "IMAGE":
        _check_image_batch(value, who)
    elif type_name == "LATENT":
        if not (isinstance(value, dict) and isinstance(value.get("samples"), torch.Tensor)):
            raise TypeError(f"{who}: LATENT must be a dict with a 'samples' tensor, got {type(value).__name__}")
        if value["samples"].device.type != "cpu":
            raise TypeError(f"{who}: LATENT samples must be on the CPU (intermediate device)")
    elif type_name == "MASK":
        if not (isinstance(value, torch.Tensor) and value.ndim in (2, 3)):
            raise TypeError(f"{who}: MASK must be a tensor [B, H, W]")
    elif type_name == "INT" and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(f"{who}: INT output must be an int, got {value!r}")
    elif type_name == "FLOAT" and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise TypeError(f"{who}: FLOAT output must be a number, got {value!r}")
    elif type_name == "STRING" and not isinstance(value, str):
        raise TypeError(f"{who}: STRING output must be a str, got {value!r}")
    elif type_name == "BOOLEAN" and not isinstance(value, bool):
        raise TypeError(f"{who}: BOOLEAN output must be a bool, got {value!r}")


def _coerce(spec: InputSpec | None, value: Any) -> Any:
    """The server converts literal INT/FLOAT/STRING/BOOLEAN values before running a node."""
    if spec is None:
        return value
    try:
        return {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}.get(spec.type, lambda v: v)(value)
    except (TypeError, ValueError):
        return value


def run_api_workflow(prompt: Mapping, node_class_mappings: Mapping[str, type], *, validate: bool = True,
                     extra_pnginfo: Mapping | None = None) -> RunResult:
    """Execute an API prompt in-process with our node classes and the core stand-ins.

    Only nodes needed by output nodes run, each once, dependencies first. Literal inputs are converted
    like the server does; linked inputs come from the producing node's outputs; hidden inputs get
    ``PROMPT`` / ``EXTRA_PNGINFO`` / ``UNIQUE_ID``. Outputs of core socket types are checked against
    ComfyUI's conventions (:func:`check_output_value`). A node exception is re-raised as
    :class:`NodeExecutionError` (the original is chained)."""
    classes = {**CORE_STAND_INS, **node_class_mappings}
    specs = node_specs(node_class_mappings)
    if validate:  # like the server: every combo, file lists included, is checked against what is there now
        check_api_workflow(prompt, specs, check_choices=True, check_dynamic=True)
    outputs: dict[str, tuple] = {}
    ui: dict[str, dict] = {}
    captured: list[dict] = []
    order: list[str] = []

    def run(nid: str, stack: tuple[str, ...] = ()) -> tuple:
        if nid in outputs:
            return outputs[nid]
        if nid in stack:
            raise WorkflowError("run", [f"cycle through node {nid}"])
        node = prompt[nid]
        cls = classes[node["class_type"]]
        spec = specs[node["class_type"]]
        kwargs = {}
        for name, value in (node.get("inputs") or {}).items():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                kwargs[name] = run(value[0], stack + (nid,))[value[1]]
            else:
                kwargs[name] = _coerce(spec.input(name), value)
        hidden_values = {"PROMPT": dict(prompt), "EXTRA_PNGINFO": extra_pnginfo, "UNIQUE_ID": nid}
        v3 = hasattr(cls, "PREPARE_CLASS_CLONE")
        if not v3:  # V1 gets hidden values as keyword arguments, V3 reads them from cls.hidden
            for name, kind in spec.hidden.items():
                kwargs[name] = hidden_values.get(kind)
        if getattr(cls, "INPUT_IS_LIST", False) or any(getattr(cls, "OUTPUT_IS_LIST", None) or ()):
            raise WorkflowError("run", [f"node {nid}: INPUT_IS_LIST/OUTPUT_IS_LIST is not supported by this executor"])
        if v3:  # as ComfyUI runs a V3 node: a class clone carrying the hidden values
            target = cls.PREPARE_CLASS_CLONE(hidden_values)
        else:
            target = cls()
            if isinstance(target, _StandIn):
                target.capture = lambda data, _nid=nid: captured.append({"node": _nid, **data})
        try:
            result = getattr(target, cls.FUNCTION)(**kwargs)
        except Exception as exc:
            raise NodeExecutionError(nid, node["class_type"], exc) from exc
        if v3:
            if result.ui is not None:
                ui[nid] = result.ui
            result = tuple(result.args)
        elif isinstance(result, dict):
            if "ui" in result:
                ui[nid] = result["ui"]
            result = tuple(result.get("result", ()))
        if not isinstance(result, tuple) or len(result) != len(spec.outputs):
            got = len(result) if isinstance(result, tuple) else type(result).__name__
            raise WorkflowError(
                "run", [f"node {nid} ({node['class_type']}) returned {got} values, declares {len(spec.outputs)}"]
            )
        for slot, (type_name, value) in enumerate(zip(spec.outputs, result)):
            check_output_value(type_name, value, f"node {nid} ({node['class_type']}) output {slot}")
        outputs[nid] = result
        order.append(nid)
        return result

    for nid in sorted(prompt, key=lambda s: (len(s), s)):
        if specs[prompt[nid]["class_type"]].output_node:
            run(nid)
    return RunResult(order, outputs, ui, captured)


# ------------------------------------------------------------------------------------------------------
# Files


def load_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def write_json(path: str | Path, data: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return path
