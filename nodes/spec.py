"""Declarative node inputs/outputs: each node lists its sockets once, ``INPUT_TYPES`` etc. are generated.

Why: ComfyUI stores widget values *by position* in saved workflows, so the input order of a node is part of
its public contract, and our rules require a tooltip on every input. Declaring inputs as one ordered table
makes the order explicit, checks the table when the class is defined (tooltips, defaults inside min/max,
combo defaults among the choices, required before optional, every input accepted by ``FUNCTION``) and
keeps a later V3 ``define_schema`` a mechanical translation.

How to declare a node::

    from .spec import Node, Int, Combo, Socket, Output, LATENT, C3MOT_VAE

    class MyNode(Node):
        NODE_ID = "C3MoTMyNode"            # prefix C3MoT; never rename once released
        DISPLAY_NAME = "My Node"           # shown as "Cosmos3 MoT My Node"
        CATEGORY = CATEGORY_ROOT + "/latent"
        DESCRIPTION = "What it does."
        FUNCTION = "run"
        INPUTS = (
            Socket("vae", C3MOT_VAE, "From the VAE loader."),
            Int("frames", 121, "Frame count (4k+1).", min=1, max=1025, step=4),
            Combo("mode", ["a", "b"], "Which mode.", default="a"),
            Int("seed", 0, "Noise seed.", min=0, max=2**64 - 1, control_after_generate=True, optional=True),
        )
        OUTPUTS = (Output("samples", LATENT, "Raw latents."),)

        def run(self, vae, frames, mode, seed=0):
            return ({"samples": ...},)

Then add the module to ``NODE_MODULES`` in :mod:`.registry` and list the class in the module's ``NODES``.

Rules enforced here: add new inputs only at the end (as optional) once a node is released; widget inputs
(INT/FLOAT/STRING/BOOLEAN/combos) take one slot in a UI workflow's ``widgets_values`` each, plus one for an
INT with ``control_after_generate``. Combo choices may be a callable (re-evaluated every time ComfyUI asks
for ``INPUT_TYPES``, e.g. to list model files).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

# ----------------------------------------------------------------------------------------------------
# Socket type names

# ComfyUI core types
IMAGE = "IMAGE"
LATENT = "LATENT"
MASK = "MASK"
INT = "INT"
FLOAT = "FLOAT"
STRING = "STRING"
BOOLEAN = "BOOLEAN"
WIDGET_TYPES = (INT, FLOAT, STRING, BOOLEAN)

# Our custom sockets (prefixed so they never connect to another pack's sockets by accident)
C3MOT_MODEL = "C3MOT_MODEL"  # the loaded Cosmos3 transformer (+ its ModelPatchers)
C3MOT_TEXT = "C3MOT_TEXT"  # encoded prompt(s): text-tower K/V cache, token counts
C3MOT_VAE = "C3MOT_VAE"  # the Wan 2.2 VAE (nodes.vae_nodes.VAEHandle)
C3MOT_IMAGE_COND = "C3MOT_IMAGE_COND"  # image-to-video condition: clean frame-0 latent + mask
C3MOT_GUARDRAIL = "C3MOT_GUARDRAIL"  # the configured guardrail (nodes.guardrail_nodes)
CUSTOM_TYPES = (C3MOT_MODEL, C3MOT_TEXT, C3MOT_VAE, C3MOT_IMAGE_COND, C3MOT_GUARDRAIL)

CATEGORY_ROOT = "Cosmos3 MoT"

_UNSET: Any = object()
# Options passed through to ComfyUI untouched (besides the ones with their own fields)
_PASSTHROUGH = {"display", "placeholder", "dynamicPrompts", "lazy", "image_upload", "round", "label_on", "label_off"}


class SpecError(TypeError):
    """A node declaration is invalid (raised when the class is defined, i.e. at import)."""


@dataclass(frozen=True)
class Input:
    """One input socket or widget. Prefer the helpers :func:`Int`, :func:`Float`, :func:`String`,
    :func:`Bool`, :func:`Combo`, :func:`Socket`."""

    name: str
    type: str | Sequence[str] | Callable[[], Sequence[str]]  # a type name, or combo choices (list/callable)
    tooltip: str
    default: Any = _UNSET
    min: float | int | None = None
    max: float | int | None = None
    step: float | int | None = None
    multiline: bool = False
    control_after_generate: bool = False
    force_input: bool = False
    optional: bool = False
    options: dict = field(default_factory=dict)  # further ComfyUI options (display, placeholder, …)

    @property
    def is_combo(self) -> bool:
        return not isinstance(self.type, str)

    def choices(self) -> list[str]:
        if not self.is_combo:
            raise SpecError(f"input {self.name!r} is not a combo")
        values = self.type() if callable(self.type) else self.type
        return [str(v) for v in values]

    @property
    def is_widget(self) -> bool:
        """True when the input is a widget in the UI (one ``widgets_values`` slot, two with control_after_generate)."""
        return not self.force_input and (self.is_combo or self.type in WIDGET_TYPES)

    @property
    def widget_slots(self) -> int:
        return (2 if self.control_after_generate else 1) if self.is_widget else 0

    def comfy_entry(self) -> tuple:
        """``(TYPE or choices, {options})`` as ComfyUI's ``INPUT_TYPES`` expects."""
        opts: dict[str, Any] = {}
        if self.default is not _UNSET:
            opts["default"] = self.default
        for key in ("min", "max", "step"):
            value = getattr(self, key)
            if value is not None:
                opts[key] = value
        if self.multiline:
            opts["multiline"] = True
        if self.control_after_generate:
            opts["control_after_generate"] = True
        if self.force_input:
            opts["forceInput"] = True
        opts.update(self.options)
        opts["tooltip"] = self.tooltip
        kind = self.choices() if self.is_combo else self.type
        return (kind, opts)

    def validate(self, owner: str) -> None:
        where = f"{owner}.{self.name}"
        if not self.name.isidentifier():
            raise SpecError(f"{where}: input names must be Python identifiers")
        if not (isinstance(self.tooltip, str) and self.tooltip.strip()):
            raise SpecError(f"{where}: every input needs a tooltip")
        unknown = set(self.options) - _PASSTHROUGH
        if unknown:
            raise SpecError(f"{where}: unknown options {sorted(unknown)}; allowed {sorted(_PASSTHROUGH)}")
        if self.is_combo:
            if callable(self.type):
                return  # dynamic lists (e.g. model files) may be empty or change; checked at run time
            choices = self.choices()
            if not choices:
                raise SpecError(f"{where}: a combo needs at least one choice")
            if len(set(choices)) != len(choices):
                raise SpecError(f"{where}: duplicate combo choices")
            if self.default is not _UNSET and self.default not in choices:
                raise SpecError(f"{where}: default {self.default!r} is not one of {choices}")
            return
        if self.type in (INT, FLOAT) and self.default is not _UNSET:
            if self.min is not None and self.default < self.min:
                raise SpecError(f"{where}: default {self.default} is below min {self.min}")
            if self.max is not None and self.default > self.max:
                raise SpecError(f"{where}: default {self.default} is above max {self.max}")
        if self.control_after_generate and self.type != INT:
            raise SpecError(f"{where}: control_after_generate is only for INT inputs")
        if self.multiline and self.type != STRING:
            raise SpecError(f"{where}: multiline is only for STRING inputs")


def Int(name: str, default: int, tooltip: str, *, min: int, max: int, step: int = 1,
        control_after_generate: bool = False, optional: bool = False, **options) -> Input:
    return Input(name, INT, tooltip, default, min, max, step, control_after_generate=control_after_generate,
                 optional=optional, options=options)


def Float(name: str, default: float, tooltip: str, *, min: float, max: float, step: float = 0.01,
          optional: bool = False, **options) -> Input:
    return Input(name, FLOAT, tooltip, default, min, max, step, optional=optional, options=options)


def String(name: str, default: str, tooltip: str, *, multiline: bool = False, optional: bool = False,
           **options) -> Input:
    return Input(name, STRING, tooltip, default, multiline=multiline, optional=optional, options=options)


def Bool(name: str, default: bool, tooltip: str, *, optional: bool = False, **options) -> Input:
    return Input(name, BOOLEAN, tooltip, default, optional=optional, options=options)


def Combo(name: str, choices: Sequence[str] | Callable[[], Sequence[str]], tooltip: str, *, default: Any = _UNSET,
          optional: bool = False, **options) -> Input:
    if not callable(choices):
        choices = tuple(choices)
    return Input(name, choices, tooltip, default, optional=optional, options=options)


def Socket(name: str, type_name: str, tooltip: str, *, optional: bool = False, **options) -> Input:
    """A link-only input (a custom type, IMAGE, LATENT …). For a widget type that must be linked, use
    ``Input(..., force_input=True)``."""
    return Input(name, type_name, tooltip, optional=optional, options=options)


@dataclass(frozen=True)
class Output:
    name: str
    type: str
    tooltip: str


class Node:
    """Base for our V1 nodes: declare ``INPUTS``/``OUTPUTS`` (and ``HIDDEN``), get ``INPUT_TYPES``,
    ``RETURN_TYPES``, ``RETURN_NAMES`` and ``OUTPUT_TOOLTIPS`` generated and checked at class definition.

    Required class attributes: ``NODE_ID``, ``DISPLAY_NAME``, ``CATEGORY``, ``DESCRIPTION``, ``FUNCTION``,
    ``INPUTS``, ``OUTPUTS``. Optional: ``HIDDEN = {"unique_id": "UNIQUE_ID"}``, ``OUTPUT_NODE``.
    """

    INPUTS: tuple[Input, ...] = ()
    OUTPUTS: tuple[Output, ...] = ()
    HIDDEN: dict[str, str] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "INPUTS" not in cls.__dict__ and "OUTPUTS" not in cls.__dict__:
            return  # an intermediate base class
        for attr in ("NODE_ID", "DISPLAY_NAME", "CATEGORY", "DESCRIPTION", "FUNCTION"):
            if not getattr(cls, attr, None):
                raise SpecError(f"{cls.__name__}: missing {attr}")
        cls.INPUTS = tuple(cls.INPUTS)
        cls.OUTPUTS = tuple(cls.OUTPUTS)
        _check_inputs(cls)
        cls.RETURN_TYPES = tuple(o.type for o in cls.OUTPUTS)
        cls.RETURN_NAMES = tuple(o.name for o in cls.OUTPUTS)
        cls.OUTPUT_TOOLTIPS = tuple(o.tooltip for o in cls.OUTPUTS)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        spec: dict[str, dict] = {"required": {}}
        for item in cls.INPUTS:
            spec.setdefault("optional" if item.optional else "required", {})[item.name] = item.comfy_entry()
        if cls.HIDDEN:
            spec["hidden"] = dict(cls.HIDDEN)
        return spec

    @classmethod
    def input(cls, name: str) -> Input:
        for item in cls.INPUTS:
            if item.name == name:
                return item
        raise KeyError(f"{cls.NODE_ID} has no input {name!r}")

    @classmethod
    def widget_names(cls) -> list[str]:
        """Widget inputs in ``widgets_values`` order (a control_after_generate INT is followed by its control
        value, which has no input name)."""
        return [i.name for i in cls.INPUTS if i.is_widget]

    @classmethod
    def widget_slot_count(cls) -> int:
        return sum(i.widget_slots for i in cls.INPUTS)


def _check_inputs(cls) -> None:
    names = [i.name for i in cls.INPUTS]
    if len(set(names)) != len(names):
        raise SpecError(f"{cls.NODE_ID}: duplicate input names in {names}")
    seen_optional = False
    for item in cls.INPUTS:
        if not isinstance(item, Input):
            raise SpecError(f"{cls.NODE_ID}: INPUTS must hold Input objects, got {item!r}")
        item.validate(cls.NODE_ID)
        if item.optional:
            seen_optional = True
        elif seen_optional:
            raise SpecError(
                f"{cls.NODE_ID}.{item.name}: required inputs must come before optional ones "
                "(ComfyUI orders widgets required-then-optional)"
            )
    hidden_clash = set(cls.HIDDEN) & set(names)
    if hidden_clash:
        raise SpecError(f"{cls.NODE_ID}: hidden inputs {sorted(hidden_clash)} clash with inputs")
    out_names = [o.name for o in cls.OUTPUTS]
    if len(set(out_names)) != len(out_names):
        raise SpecError(f"{cls.NODE_ID}: duplicate output names in {out_names}")
    for out in cls.OUTPUTS:
        if not (isinstance(out, Output) and out.tooltip and out.type):
            raise SpecError(f"{cls.NODE_ID}: every output needs a type and a tooltip ({out!r})")
    function = getattr(cls, cls.FUNCTION, None)
    if not callable(function):
        raise SpecError(f"{cls.NODE_ID}: FUNCTION {cls.FUNCTION!r} is not a method")
    params = inspect.signature(function).parameters
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for name in (*names, *cls.HIDDEN):
        if name not in params and not takes_kwargs:
            raise SpecError(f"{cls.NODE_ID}.{cls.FUNCTION}() does not accept the input {name!r}")
    for item in cls.INPUTS:
        param = params.get(item.name)
        if item.optional and param is not None and param.default is inspect.Parameter.empty:
            raise SpecError(f"{cls.NODE_ID}.{cls.FUNCTION}(): optional input {item.name!r} needs a default value")


__all__ = [
    "IMAGE", "LATENT", "MASK", "INT", "FLOAT", "STRING", "BOOLEAN", "WIDGET_TYPES",
    "C3MOT_MODEL", "C3MOT_TEXT", "C3MOT_VAE", "C3MOT_IMAGE_COND", "C3MOT_GUARDRAIL", "CUSTOM_TYPES",
    "CATEGORY_ROOT", "SpecError", "Input", "Int", "Float", "String", "Bool", "Combo", "Socket", "Output", "Node",
]
