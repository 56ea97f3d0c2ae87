"""Stand-in for ``comfy_api.latest._io`` (ComfyUI v0.3.64), written from reading its behaviour.

Covers what the pack's V3 nodes use, with ComfyUI's names, constructor parameters (same names, order and
defaults) and serialisation:

* socket types ``Boolean``, ``Int``, ``Float``, ``String``, ``Combo`` (widgets), ``Image``, ``Latent``,
  ``Mask`` and :func:`Custom` types, each with ``.Input(...)`` / ``.Output(...)``;
* :class:`Schema` (``validate``, ``finalize``, ``get_v1_info``: the V1-style info ``/object_info`` serves),
  :class:`Hidden`, :class:`HiddenHolder`, :class:`NodeInfoV1`;
* :class:`ComfyNode`: ``define_schema`` / ``execute`` classmethods, and the V1 compatibility surface the
  executor and server read (``INPUT_TYPES``, ``RETURN_TYPES``, ``RETURN_NAMES``, ``OUTPUT_TOOLTIPS``,
  ``OUTPUT_NODE``, ``CATEGORY``, ``DESCRIPTION``, ``FUNCTION`` → ``EXECUTE_NORMALIZED``,
  ``PREPARE_CLASS_CLONE``, ``GET_SCHEMA``, ``GET_NODE_INFO_V1``);
* :class:`NodeOutput`.

Not covered (the pack does not use them): dynamic inputs (Autogrow, MatchType, MultiType), multi-select
combos, the V3 info dict, resources, UI outputs beyond passing ``ui=`` through.
"""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any

import torch


def _without_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


class _classproperty:
    """A read-only property evaluated on the class."""

    def __init__(self, fget):
        self.fget = fget

    def __get__(self, obj, owner):
        return self.fget(owner)


class FolderType(str, Enum):
    input = "input"
    output = "output"
    temp = "temp"


class UploadType(str, Enum):
    image = "image_upload"
    audio = "audio_upload"
    video = "video_upload"
    model = "file_upload"


class NumberDisplay(str, Enum):
    number = "number"
    slider = "slider"


# ------------------------------------------------------------------------------------------------------
# Inputs and outputs


class _ComfyType:
    Type = Any
    io_type: str = None


class _IO_V3:
    Parent: type[_ComfyType] = None

    @property
    def io_type(self):
        return self.Parent.io_type

    @property
    def Type(self):
        return self.Parent.Type


class Input(_IO_V3):
    """A node input: its V1 entry is ``(io type, {display_name, tooltip, lazy, ...})`` without ``None``s."""

    def __init__(self, id: str, display_name: str = None, optional=False, tooltip: str = None, lazy: bool = None,
                 extra_dict=None):
        self.id = id
        self.display_name = display_name
        self.optional = optional
        self.tooltip = tooltip
        self.lazy = lazy
        self.extra_dict = extra_dict if extra_dict is not None else {}

    def as_dict(self) -> dict:
        own = {"display_name": self.display_name, "optional": self.optional, "tooltip": self.tooltip, "lazy": self.lazy}
        return _without_none(own) | _without_none(self.extra_dict)

    def get_io_type(self):
        return self.io_type


class WidgetInput(Input):
    """An input shown as a widget (a value typed on the node unless linked)."""

    def __init__(self, id: str, display_name: str = None, optional=False, tooltip: str = None, lazy: bool = None,
                 default: Any = None, socketless: bool = None, widget_type: str = None, force_input: bool = None,
                 extra_dict=None):
        super().__init__(id, display_name, optional, tooltip, lazy, extra_dict)
        self.default = default
        self.socketless = socketless
        self.widget_type = widget_type
        self.force_input = force_input

    def as_dict(self) -> dict:
        return super().as_dict() | _without_none({
            "default": self.default, "socketless": self.socketless, "widgetType": self.widget_type,
            "forceInput": self.force_input,
        })

    def get_io_type(self):
        return self.widget_type if self.widget_type is not None else super().get_io_type()


class Output(_IO_V3):
    """A node output; V1 shows ``display_name`` (else the type) as its name."""

    def __init__(self, id: str = None, display_name: str = None, tooltip: str = None, is_output_list=False):
        self.id = id
        self.display_name = display_name
        self.tooltip = tooltip
        self.is_output_list = is_output_list

    def as_dict(self) -> dict:
        return _without_none({"display_name": self.display_name, "tooltip": self.tooltip,
                              "is_output_list": self.is_output_list})

    def get_io_type(self):
        return self.io_type


class ComfyTypeI(_ComfyType):
    class Input(Input):
        pass


class ComfyTypeIO(ComfyTypeI):
    class Output(Output):
        pass


def comfytype(io_type: str, **kwargs):
    """Class decorator: bind ``io_type`` to a socket type and give it its own ``Input``/``Output`` classes."""

    def bind(cls):
        if not issubclass(cls, _ComfyType):
            cls = type(cls.__name__, (cls, ComfyTypeIO), {k: v for k, v in cls.__dict__.items()
                                                          if k not in ("__dict__", "__weakref__")})
        cls.io_type = io_type
        for part in ("Input", "Output"):
            base = getattr(cls, part, None)
            if base is not None:
                namespace = {"Parent": cls, "__qualname__": f"{cls.__name__}.{part}"}
                setattr(cls, part, type(base.__name__, (base,), namespace))
        return cls

    return bind


def Custom(io_type: str) -> type[ComfyTypeIO]:
    """A socket type of our own (e.g. ``Custom("C3MOT_MODEL")``)."""

    @comfytype(io_type=io_type)
    class CustomComfyType(ComfyTypeIO):
        pass

    return CustomComfyType


@comfytype(io_type="BOOLEAN")
class Boolean(ComfyTypeIO):
    Type = bool

    class Input(WidgetInput):
        def __init__(
            self,
            id: str,
            display_name: str = None,
            optional=False,
            tooltip: str = None,
            lazy: bool = None,
            default: bool = None,
            label_on: str = None,
            label_off: str = None,
            socketless: bool = None,
            force_input: bool = None,
        ):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input)
            self.label_on = label_on
            self.label_off = label_off

        def as_dict(self) -> dict:
            return super().as_dict() | _without_none({"label_on": self.label_on, "label_off": self.label_off})


@comfytype(io_type="INT")
class Int(ComfyTypeIO):
    Type = int

    class Input(WidgetInput):
        def __init__(
            self,
            id: str,
            display_name: str = None,
            optional=False,
            tooltip: str = None,
            lazy: bool = None,
            default: int = None,
            min: int = None,
            max: int = None,
            step: int = None,
            control_after_generate: bool = None,
            display_mode: NumberDisplay = None,
            socketless: bool = None,
            force_input: bool = None,
        ):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input)
            self.min, self.max, self.step = min, max, step
            self.control_after_generate = control_after_generate
            self.display_mode = display_mode

        def as_dict(self) -> dict:
            return super().as_dict() | _without_none(
                {
                    "min": self.min,
                    "max": self.max,
                    "step": self.step,
                    "control_after_generate": self.control_after_generate,
                    "display": self.display_mode.value if self.display_mode else None,
                }
            )


@comfytype(io_type="FLOAT")
class Float(ComfyTypeIO):
    Type = float

    class Input(WidgetInput):
        def __init__(
            self,
            id: str,
            display_name: str = None,
            optional=False,
            tooltip: str = None,
            lazy: bool = None,
            default: float = None,
            min: float = None,
            max: float = None,
            step: float = None,
            round: float = None,
            display_mode: NumberDisplay = None,
            socketless: bool = None,
            force_input: bool = None,
        ):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input)
            self.min, self.max, self.step, self.round = min, max, step, round
            self.display_mode = display_mode

        def as_dict(self) -> dict:
            return super().as_dict() | _without_none(
                {
                    "min": self.min,
                    "max": self.max,
                    "step": self.step,
                    "round": self.round,
                    "display": self.display_mode,
                }
            )


@comfytype(io_type="STRING")
class String(ComfyTypeIO):
    Type = str

    class Input(WidgetInput):
        def __init__(
            self,
            id: str,
            display_name: str = None,
            optional=False,
            tooltip: str = None,
            lazy: bool = None,
            multiline=False,
            placeholder: str = None,
            default: str = None,
            dynamic_prompts: bool = None,
            socketless: bool = None,
            force_input: bool = None,
        ):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input)
            self.multiline = multiline
            self.placeholder = placeholder
            self.dynamic_prompts = dynamic_prompts

        def as_dict(self) -> dict:
            return super().as_dict() | _without_none(
                {
                    "multiline": self.multiline,
                    "placeholder": self.placeholder,
                    "dynamicPrompts": self.dynamic_prompts,
                }
            )


@comfytype(io_type="COMBO")
class Combo(ComfyTypeIO):
    Type = str

    class Input(WidgetInput):
        """A drop-down: V1 shows it as ``("COMBO", {"options": [...], "multiselect": False, ...})``."""

        def __init__(
            self,
            id: str,
            options: list[str] | list[int] | type[Enum] = None,
            display_name: str = None,
            optional=False,
            tooltip: str = None,
            lazy: bool = None,
            default: str | int | Enum = None,
            control_after_generate: bool = None,
            upload: UploadType = None,
            image_folder: FolderType = None,
            remote=None,
            socketless: bool = None,
        ):
            if isinstance(options, type) and issubclass(options, Enum):
                options = [member.value for member in options]
            if isinstance(default, Enum):
                default = default.value
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless)
            self.multiselect = False
            self.options = options
            self.control_after_generate = control_after_generate
            self.upload = upload
            self.image_folder = image_folder
            self.remote = remote

        def as_dict(self) -> dict:
            return super().as_dict() | _without_none(
                {
                    "multiselect": self.multiselect,
                    "options": self.options,
                    "control_after_generate": self.control_after_generate,
                    **({self.upload.value: True} if self.upload is not None else {}),
                    "image_folder": self.image_folder.value if self.image_folder else None,
                    "remote": self.remote.as_dict() if self.remote else None,
                }
            )

    class Output(Output):
        """An output carrying a choice list (its type is the list itself)."""

        def __init__(
            self,
            id: str = None,
            display_name: str = None,
            options: list[str] = None,
            tooltip: str = None,
            is_output_list=False,
        ):
            super().__init__(id, display_name, tooltip, is_output_list)
            self.options = options if options is not None else []

        @property
        def io_type(self):
            return self.options


@comfytype(io_type="IMAGE")
class Image(ComfyTypeIO):
    Type = torch.Tensor


@comfytype(io_type="MASK")
class Mask(ComfyTypeIO):
    Type = torch.Tensor


@comfytype(io_type="LATENT")
class Latent(ComfyTypeIO):
    Type = dict


@comfytype(io_type="AUDIO")
class Audio(ComfyTypeIO):
    Type = dict  # {"waveform": [B, C, N] float tensor, "sample_rate": int}


# ------------------------------------------------------------------------------------------------------
# Hidden inputs


class Hidden(str, Enum):
    unique_id = "UNIQUE_ID"
    prompt = "PROMPT"
    extra_pnginfo = "EXTRA_PNGINFO"
    dynprompt = "DYNPROMPT"
    auth_token_comfy_org = "AUTH_TOKEN_COMFY_ORG"
    api_key_comfy_org = "API_KEY_COMFY_ORG"


class HiddenHolder:
    """``cls.hidden`` while a node runs: the hidden values it asked for (any other name reads ``None``)."""

    def __init__(
        self,
        unique_id: str,
        prompt: Any,
        extra_pnginfo: Any,
        dynprompt: Any,
        auth_token_comfy_org: str,
        api_key_comfy_org: str,
        **kwargs,
    ):
        self.unique_id = unique_id
        self.prompt = prompt
        self.extra_pnginfo = extra_pnginfo
        self.dynprompt = dynprompt
        self.auth_token_comfy_org = auth_token_comfy_org
        self.api_key_comfy_org = api_key_comfy_org

    def __getattr__(self, key: str):
        return None

    @classmethod
    def from_dict(cls, d: dict | None):
        d = d or {}
        return cls(**{member.name: d.get(member) for member in Hidden})


# ------------------------------------------------------------------------------------------------------
# Schema


@dataclass
class NodeInfoV1:
    input: dict = None
    input_order: dict[str, list[str]] = None
    output: list[str] = None
    output_is_list: list[bool] = None
    output_name: list[str] = None
    output_tooltips: list[str] = None
    name: str = None
    display_name: str = None
    description: str = None
    python_module: Any = None
    category: str = None
    output_node: bool = None
    deprecated: bool = None
    experimental: bool = None
    api_node: bool = None


@dataclass
class Schema:
    """A V3 node's declaration."""

    node_id: str
    display_name: str = None
    category: str = "sd"
    inputs: list[Input] = None
    outputs: list[Output] = None
    hidden: list[Hidden] = None
    description: str = ""
    is_input_list: bool = False
    is_output_node: bool = False
    is_deprecated: bool = False
    is_experimental: bool = False
    is_api_node: bool = False
    not_idempotent: bool = False
    enable_expand: bool = False

    def validate(self) -> None:
        """Input ids unique, output ids unique, and no id used by both (``ValueError`` listing them)."""
        ins = [i.id for i in self.inputs or []]
        outs = [o.id for o in self.outputs or []]
        issues = []
        for kind, ids in (("Input", ins), ("Output", outs)):
            twice = sorted({i for i in ids if ids.count(i) > 1}, key=str)
            if twice:
                issues.append(f"{kind} ids must be unique, but {twice} are not.")
        both = set(ins) & set(outs)
        if both:
            issues.append(f"Ids must be unique between inputs and outputs, but {both} are not.")
        if issues:
            raise ValueError("\n".join(issues))

    def finalize(self) -> None:
        """Add the hidden inputs the flags imply and default ids ``_<slot>_<type>_`` for unnamed outputs."""
        needed = []
        if self.is_api_node:
            needed += [Hidden.auth_token_comfy_org, Hidden.api_key_comfy_org]
        if self.is_output_node:
            needed += [Hidden.prompt, Hidden.extra_pnginfo]
        for hidden in needed:
            self.hidden = self.hidden if self.hidden is not None else []
            if hidden not in self.hidden:
                self.hidden.append(hidden)
        for slot, output in enumerate(self.outputs or []):
            if output.id is None:
                output.id = f"_{slot}_{output.io_type}_"

    def get_v1_info(self, cls) -> NodeInfoV1:
        inputs: dict[str, dict] = {"required": {}}
        for item in self.inputs or []:
            add_to_dict_v1(item, inputs)
        for hidden in self.hidden or []:
            inputs.setdefault("hidden", {})[hidden.name] = (hidden.value,)
        outputs = self.outputs or []
        return NodeInfoV1(
            input=inputs,
            input_order={section: list(entries) for section, entries in inputs.items()},
            output=[o.io_type for o in outputs],
            output_is_list=[o.is_output_list for o in outputs],
            output_name=[o.display_name or o.io_type for o in outputs],
            output_tooltips=[o.tooltip or None for o in outputs],
            name=self.node_id,
            display_name=self.display_name,
            category=self.category,
            description=self.description,
            output_node=self.is_output_node,
            deprecated=self.is_deprecated,
            experimental=self.is_experimental,
            api_node=self.is_api_node,
            python_module=getattr(cls, "RELATIVE_PYTHON_MODULE", "nodes"),
        )


def add_to_dict_v1(i: Input, input: dict) -> None:
    entry = i.as_dict()
    entry.pop("optional", None)
    input.setdefault("optional" if i.optional else "required", {})[i.id] = (i.get_io_type(), entry)


# ------------------------------------------------------------------------------------------------------
# Nodes


class NodeOutput:
    """What ``execute`` returns: the output values in slot order, plus optional ``ui`` data."""

    def __init__(self, *args: Any, ui=None, expand: dict = None, block_execution: str = None):
        self.args = args
        self.ui = ui
        self.expand = expand
        self.block_execution = block_execution

    @property
    def result(self):
        return self.args if self.args else None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NodeOutput:
        return cls(*data.get("result", ()), ui=data.get("ui"), expand=data.get("expand"))

    def __getitem__(self, index) -> Any:
        return self.args[index]


def _normalized(cls, value) -> NodeOutput:
    if value is None:
        value = NodeOutput()
    elif isinstance(value, tuple):
        value = NodeOutput(*value)
    elif isinstance(value, dict):
        value = NodeOutput.from_dict(value)
    elif not isinstance(value, NodeOutput):
        raise Exception(f"Invalid return type from node: {type(value)}")
    if value.expand is not None and not cls.GET_SCHEMA().enable_expand:
        raise Exception(f"Node {cls.__name__} is not expandable, but expand included in NodeOutput")
    return value


def _from_schema(read) -> _classproperty:
    """A V1 class attribute computed from the node's (validated) schema."""
    return _classproperty(lambda cls: read(cls.GET_SCHEMA()))


class ComfyNode:
    """Base of every V3 node: override the classmethods ``define_schema()`` and ``execute(**inputs)``."""

    RELATIVE_PYTHON_MODULE = None
    SCHEMA = None
    hidden: HiddenHolder = None

    def __init__(self):
        self.local_resources = None
        self.__class__._check_class()

    @classmethod
    def _check_class(cls) -> None:
        if cls.define_schema.__func__ is ComfyNode.define_schema.__func__:
            raise Exception(f"No define_schema function was defined for node class {cls.__name__}.")
        if cls.execute.__func__ is ComfyNode.execute.__func__:
            raise Exception(f"No execute function was defined for node class {cls.__name__}.")

    @classmethod
    def define_schema(cls) -> Schema:
        raise NotImplementedError

    @classmethod
    def execute(cls, **kwargs) -> NodeOutput:
        raise NotImplementedError

    @classmethod
    def validate_inputs(cls, **kwargs) -> bool:
        raise NotImplementedError

    @classmethod
    def fingerprint_inputs(cls, **kwargs) -> Any:
        raise NotImplementedError

    @classmethod
    def check_lazy_status(cls, **kwargs) -> list[str]:
        return [name for name, value in kwargs.items() if value is None]

    # -- what the executor calls -----------------------------------------------------------------------
    @_classproperty
    def FUNCTION(cls):  # noqa: N802
        return "EXECUTE_NORMALIZED_ASYNC" if inspect.iscoroutinefunction(cls.execute) else "EXECUTE_NORMALIZED"

    @classmethod
    def EXECUTE_NORMALIZED(cls, *args, **kwargs) -> NodeOutput:  # noqa: N802
        return _normalized(cls, cls.execute(*args, **kwargs))

    @classmethod
    async def EXECUTE_NORMALIZED_ASYNC(cls, *args, **kwargs) -> NodeOutput:  # noqa: N802
        return _normalized(cls, await cls.execute(*args, **kwargs))

    @classmethod
    def PREPARE_CLASS_CLONE(cls, hidden_inputs: dict) -> type[ComfyNode]:  # noqa: N802
        """A throw-away subclass carrying this run's hidden values (the real class is never modified)."""
        clone = type(cls.__name__, (cls,), {})
        clone.hidden = HiddenHolder.from_dict(hidden_inputs)
        return clone

    # -- schema and V1 view ----------------------------------------------------------------------------
    @classmethod
    def FINALIZE_SCHEMA(cls) -> Schema:  # noqa: N802
        schema = cls.define_schema()
        schema.finalize()
        return schema

    @classmethod
    def GET_SCHEMA(cls) -> Schema:  # noqa: N802
        cls._check_class()
        schema = cls.FINALIZE_SCHEMA()
        schema.validate()
        cls.SCHEMA = schema
        return schema

    @classmethod
    def GET_NODE_INFO_V1(cls) -> dict[str, Any]:  # noqa: N802
        return asdict(cls.GET_SCHEMA().get_v1_info(cls))

    @classmethod
    def INPUT_TYPES(cls, include_hidden=True, return_schema=False):  # noqa: N802
        schema = cls.FINALIZE_SCHEMA()
        inputs = schema.get_v1_info(cls).input
        if not include_hidden:
            inputs.pop("hidden", None)
        return (inputs, schema) if return_schema else inputs

    # V1 attributes, read from the schema
    DESCRIPTION = _from_schema(lambda schema: schema.description)
    CATEGORY = _from_schema(lambda schema: schema.category)
    EXPERIMENTAL = _from_schema(lambda schema: schema.is_experimental)
    DEPRECATED = _from_schema(lambda schema: schema.is_deprecated)
    API_NODE = _from_schema(lambda schema: schema.is_api_node)
    OUTPUT_NODE = _from_schema(lambda schema: schema.is_output_node)
    INPUT_IS_LIST = _from_schema(lambda schema: schema.is_input_list)
    NOT_IDEMPOTENT = _from_schema(lambda schema: schema.not_idempotent)
    OUTPUT_IS_LIST = _from_schema(lambda schema: [o.is_output_list for o in schema.outputs or []])
    RETURN_TYPES = _from_schema(lambda schema: [o.io_type for o in schema.outputs or []])
    RETURN_NAMES = _from_schema(lambda schema: [o.display_name or o.io_type for o in schema.outputs or []])
    OUTPUT_TOOLTIPS = _from_schema(lambda schema: [o.tooltip or None for o in schema.outputs or []])


__all__ = [
    "FolderType",
    "UploadType",
    "NumberDisplay",
    "comfytype",
    "Custom",
    "Input",
    "WidgetInput",
    "Output",
    "ComfyTypeI",
    "ComfyTypeIO",
    "Boolean",
    "Int",
    "Float",
    "String",
    "Combo",
    "Image",
    "Mask",
    "Latent",
    "HiddenHolder",
    "Hidden",
    "NodeInfoV1",
    "Schema",
    "ComfyNode",
    "NodeOutput",
    "add_to_dict_v1",
]
