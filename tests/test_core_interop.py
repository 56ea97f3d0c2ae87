"""Core ComfyUI interop (issue 16): the Model Loader's MODEL + Text Encode's CONDITIONING through ComfyUI's
sampling entry points equal an independent Euler loop over our velocity (fp32, <= 1e-4), CFG 1 and > 1,
batched cond/uncond, ModelSamplingSD3's shift, I2V keeping frame 0 clean.

The stand-in's sampler (``tests/comfy_stub/comfy/samplers.py``) follows ComfyUI's calling convention; the
opt-in ``comfyui`` test runs the same scenarios (plus the KSampler/KSamplerAdvanced/SamplerCustomAdvanced
nodes and uni_pc_bh2) under a real ComfyUI and checks the stand-in gives the same numbers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parent
TOL = 1e-4
W, H = 64, 48


def _check(result: dict, real: bool) -> None:
    for key in ("euler_cfg1", "euler_cfg4", "sd3_shift3", "i2v"):
        assert result[key]["max_err"] <= TOL, (key, result[key])
    assert result["shift"] == 10.0  # the Nano video shift of the demo checkpoint
    assert result["euler_cfg4"]["batched_calls"] == STEPS  # cond + uncond ran as one batch per step
    assert result["euler_cfg1"]["batched_calls"] == 0
    assert result["i2v"]["frame0_err"] <= 1e-5
    if real:
        for key in ("node_ksampler_err", "node_ksampler_advanced_err", "custom_cfg_guider_err",
                    "custom_basic_guider_err"):
            assert result[key] <= TOL, (key, result[key])
        assert result["uni_pc_bh2"]["finite"]
        assert result["preview"] == [W // 16, H // 16] or min(result["preview"]) > 0  # previews work
        latent_nodes = result["latent_nodes"]  # core latent nodes keep our raw LATENT as it is
        assert latent_nodes["roundtrip_bitwise"]
        assert latent_nodes["batch_shape"] == [2, 48, 3, 3, 4] and latent_nodes["concat_shape"] == [1, 48, 6, 3, 4]
        # multistep UniPC combines clean estimates with coefficients that do not sum to exactly 1 on the last
        # step: frame 0 ends within ~4e-3 of the clean latent (normalised units), Euler-type samplers exactly
        assert result["uni_pc_bh2_i2v_frame0_err"] <= 1e-2


STEPS = 3


def _check_lora(lora: dict) -> None:
    assert lora["counts"] == {"gen_tower": 4, "text_tower": 2}
    assert lora["text_kv_err"] <= 1e-5 and lora["velocity_err"] <= 1e-5, lora
    assert lora["text_kv_changed"] > 1e-3 and lora["velocity_changed"] > 1e-3, lora
    assert lora["tags"] == ["base", "base+c3_test_lora.safetensors@0.5", "base+c3_test_lora.safetensors@0.5"]
    assert lora["base_kv_restored"] and lora["base_velocity_restored"], lora
    assert lora["stale_refused"]
    assert lora["core_loader_err"] <= 1e-5, lora
    assert lora["strength0_bitwise"]
    first, *rest = lora["unknown_error"].splitlines()
    assert "2 LoRA key(s) match no Cosmos3 transformer weight" in first
    assert [r.strip() for r in rest] == ["something_else", "transformer.layers.0.self_attn.no_such.down"]


def test_core_samplers_match_an_independent_euler_loop(comfy_pack, comfy_stub):
    import core_interop_scenario as scenario
    from tiny_models import demo_checkpoint

    torch.manual_seed(0)
    result = scenario.run(comfy_pack.__name__, demo_checkpoint(), real=False)
    _check(result, real=False)


def test_lora_loaders_match_a_hand_merge(comfy_pack, comfy_stub, tmp_path):
    import core_interop_scenario as scenario
    from tiny_models import demo_checkpoint

    _check_lora(scenario.run_lora(comfy_pack.__name__, demo_checkpoint(), tmp_path))


def test_core_model_refuses_foreign_or_mismatched_conditioning(comfy_pack, comfy_stub):
    import comfy.sample
    from tiny_models import demo_checkpoint

    mods = sys.modules
    model_nodes = mods[f"{comfy_pack.__name__}.nodes.model_nodes"]
    text_nodes = mods[f"{comfy_pack.__name__}.nodes.text_nodes"]
    latent_nodes = mods[f"{comfy_pack.__name__}.nodes.latent_nodes"]
    model = model_nodes.load_model(demo_checkpoint(), "fp32", "auto")
    positive, negative = text_nodes.TextEncode.execute(model, "a cat", "", "framework", "auto", 64, 48, 9, 24.0)[2:4]
    other = latent_nodes.EmptyLatent.execute("custom", 64, 32, 9)[0]["samples"]
    noise = comfy.sample.prepare_noise(other, 0)
    with pytest.raises(ValueError, match=r"not the clip the prompt was encoded for.*Link the Text Encode"):
        comfy.sample.sample(model.gen_patcher, noise, 2, 1.0, "euler", "simple", positive, negative, other)
    foreign = [[torch.zeros(1, 7, 16), {"pooled_output": None}]]
    ok = latent_nodes.EmptyLatent.execute("custom", 64, 48, 9)[0]["samples"]
    with pytest.raises(ValueError, match="needs CONDITIONING from the Cosmos3 MoT Text Encode"):
        comfy.sample.sample(model.gen_patcher, comfy.sample.prepare_noise(ok, 0), 2, 1.0, "euler", "simple", foreign,
                            negative, ok)


def _comfyui_python(comfy_dir: Path) -> str:
    explicit = os.environ.get("COMFYUI_PYTHON")
    if explicit:
        return explicit
    venv = comfy_dir.parent / "comfyui-venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


@pytest.mark.comfyui
def test_core_samplers_in_real_comfyui_and_the_stub_agrees(tmp_path):
    comfy_dir = os.environ.get("COMFYUI_DIR")
    if not comfy_dir:
        pytest.skip("set COMFYUI_DIR to a ComfyUI checkout")
    script = TESTS / "core_interop_scenario.py"
    outputs = {}
    for mode, path in (("real", comfy_dir), ("stub", str(TESTS / "comfy_stub"))):
        env = dict(os.environ, PYTHONPATH=path)
        python = _comfyui_python(Path(comfy_dir)) if mode == "real" else sys.executable
        done = subprocess.run([python, str(script), str(tmp_path / mode), mode], capture_output=True, text=True,
                              cwd=comfy_dir if mode == "real" else str(tmp_path), env=env, timeout=900)
        assert done.returncode == 0, done.stderr[-4000:]
        outputs[mode] = json.loads(done.stdout.split("RESULT", 1)[1])
    _check(outputs["real"], real=True)
    _check(outputs["stub"], real=False)
    _check_lora(outputs["real"]["lora"])
    _check_lora(outputs["stub"]["lora"])
    for key in ("euler_cfg1", "euler_cfg4"):  # the stand-in's sampler gives ComfyUI's numbers
        assert outputs["stub"][key]["digest"] == pytest.approx(outputs["real"][key]["digest"], rel=1e-5, abs=1e-5)
