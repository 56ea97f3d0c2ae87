"""The declarative node table (nodes/spec.py) generates valid V1 declarations and rejects bad ones."""

from __future__ import annotations

import inspect

import pytest
from support import REPO_ROOT, load_pack_as_comfyui


@pytest.fixture(scope="module")
def pack():
    return load_pack_as_comfyui(REPO_ROOT, "c3mot_pack_for_spec_tests")


@pytest.fixture(scope="module")
def spec(pack):
    return pack.nodes.spec


def _declare(spec, inputs, outputs=None, function=None, **attrs):
    def run(self, **kwargs):
        return ()

    body = dict(NODE_ID="C3MoTTest", DISPLAY_NAME="Test", CATEGORY="Cosmos3 MoT/test", DESCRIPTION="d",
                FUNCTION="run", INPUTS=tuple(inputs), OUTPUTS=tuple(outputs or ()), run=function or run)
    body.update(attrs)
    return type("TestNode", (spec.Node,), body)


def test_generated_declaration(spec):
    def run(self, model, steps, seed, mode, prompt, flag, strength=0.5, unique_id=None):
        return (None,)

    cls = _declare(spec, [
        spec.Socket("model", spec.C3MOT_MODEL, "The model."),
        spec.Int("steps", 35, "Steps.", min=1, max=200),
        spec.Int("seed", 0, "Seed.", min=0, max=2**64 - 1, control_after_generate=True),
        spec.Combo("mode", ["a", "b"], "Mode.", default="b"),
        spec.String("prompt", "", "Prompt.", multiline=True, dynamicPrompts=False),
        spec.Bool("flag", True, "Flag."),
        spec.Float("strength", 0.5, "Strength.", min=0.0, max=1.0, optional=True),
    ], [spec.Output("samples", spec.LATENT, "Latents.")], function=run, HIDDEN={"unique_id": "UNIQUE_ID"})
    declared = cls.INPUT_TYPES()
    assert list(declared) == ["required", "optional", "hidden"]
    assert list(declared["required"]) == ["model", "steps", "seed", "mode", "prompt", "flag"]
    assert declared["required"]["seed"] == ("INT", {"default": 0, "min": 0, "max": 2**64 - 1, "step": 1,
                                                     "control_after_generate": True, "tooltip": "Seed."})
    assert declared["required"]["mode"] == (["a", "b"], {"default": "b", "tooltip": "Mode."})
    assert declared["required"]["prompt"][1] == {"default": "", "multiline": True, "dynamicPrompts": False,
                                                 "tooltip": "Prompt."}
    assert declared["optional"] == {"strength": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01,
                                                           "tooltip": "Strength."})}
    assert declared["hidden"] == {"unique_id": "UNIQUE_ID"}
    assert (cls.RETURN_TYPES, cls.RETURN_NAMES, cls.OUTPUT_TOOLTIPS) == (("LATENT",), ("samples",), ("Latents.",))
    assert cls.widget_names() == ["steps", "seed", "mode", "prompt", "flag", "strength"]
    assert cls.widget_slot_count() == 7  # the seed's control value takes a slot


def test_dynamic_combo_is_reevaluated(spec):
    choices = ["x.safetensors"]
    cls = _declare(spec, [spec.Combo("name", lambda: choices, "File.")])
    assert cls.INPUT_TYPES()["required"]["name"][0] == ["x.safetensors"]
    choices.append("y.safetensors")
    assert cls.INPUT_TYPES()["required"]["name"][0] == ["x.safetensors", "y.safetensors"]


@pytest.mark.parametrize("inputs, message", [
    (lambda s: [s.Int("steps", 5, "", min=1, max=9)], "tooltip"),
    (lambda s: [s.Int("steps", 0, "t", min=1, max=9)], "below min"),
    (lambda s: [s.Float("x", 2.0, "t", min=0.0, max=1.0)], "above max"),
    (lambda s: [s.Combo("m", ["a"], "t", default="b")], "not one of"),
    (lambda s: [s.Combo("m", [], "t")], "at least one choice"),
    (lambda s: [s.Int("a", 1, "t", min=0, max=2), s.Int("a", 1, "t", min=0, max=2)], "duplicate input"),
    (lambda s: [s.Int("a", 1, "t", min=0, max=2, optional=True), s.Int("b", 1, "t", min=0, max=2)], "before optional"),
    (lambda s: [s.Input("f", "FLOAT", "t", 1.0, control_after_generate=True)], "only for INT"),
    (lambda s: [s.Input("f", "INT", "t", 1, multiline=True)], "only for STRING"),
    (lambda s: [s.Int("a", 1, "t", min=0, max=2, bogus=True)], "unknown options"),
    (lambda s: [s.Int("not accepted", 1, "t", min=0, max=2)], "identifiers"),
])
def test_bad_declarations_fail_at_class_definition(spec, inputs, message):
    with pytest.raises((spec.SpecError, TypeError), match=message):
        _declare(spec, inputs(spec), function=lambda self, **kw: ())


def test_function_must_accept_every_input(spec):
    with pytest.raises(spec.SpecError, match="does not accept the input 'b'"):
        _declare(spec, [spec.Int("a", 1, "t", min=0, max=2), spec.Int("b", 1, "t", min=0, max=2)],
                 function=lambda self, a: ())
    with pytest.raises(spec.SpecError, match="needs a default"):
        _declare(spec, [spec.Int("a", 1, "t", min=0, max=2, optional=True)], function=lambda self, a: ())
    with pytest.raises(spec.SpecError, match="missing DESCRIPTION"):
        _declare(spec, [], DESCRIPTION="")


def test_every_pack_node_follows_the_rules(pack, spec):
    """Contract for all our nodes (also those not built on spec.Node)."""
    core = {"INT", "FLOAT", "STRING", "BOOLEAN", "IMAGE", "LATENT", "MASK"}
    for node_id, cls in pack.NODE_CLASS_MAPPINGS.items():
        declared = cls.INPUT_TYPES()
        assert set(declared) <= {"required", "optional", "hidden"}, node_id
        params = inspect.signature(getattr(cls, cls.FUNCTION)).parameters
        for section in ("required", "optional"):
            for name, (kind, opts) in declared.get(section, {}).items():
                assert opts.get("tooltip"), f"{node_id}.{name} has no tooltip"
                assert name in params, f"{node_id}.{cls.FUNCTION} does not take {name}"
                if isinstance(kind, list):
                    assert kind and opts.get("default", kind[0]) in kind, (node_id, name)
                else:
                    assert kind in core or kind in spec.CUSTOM_TYPES, (node_id, name, kind)
                    if "default" in opts and kind in ("INT", "FLOAT"):
                        assert opts.get("min", opts["default"]) <= opts["default"] <= opts.get("max", opts["default"])
        assert all(t in core or t in spec.CUSTOM_TYPES for t in cls.RETURN_TYPES), node_id
        assert cls.CATEGORY.startswith(spec.CATEGORY_ROOT) and cls.DESCRIPTION, node_id
        if issubclass(cls, spec.Node):
            assert len(cls.RETURN_NAMES) == len(cls.OUTPUT_TOOLTIPS) == len(cls.RETURN_TYPES)
