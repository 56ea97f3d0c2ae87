"""Our LATENT is ComfyUI's Wan 2.2 latent: core VAEDecode/VAEEncode with ComfyUI's own Wan 2.2 VAE (0.3.64)
decode our latents and encode latents our nodes take, matching our VAE on the same file (opt-in, real ComfyUI;
full-size random weights because ComfyUI hard-codes the Wan 2.2 widths)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


@pytest.mark.comfyui
def test_comfy_wan22_vae_nodes_on_our_latent(tmp_path):
    comfy_dir = os.environ.get("COMFYUI_DIR")
    if not comfy_dir:
        pytest.skip("set COMFYUI_DIR to a ComfyUI checkout")
    venv = Path(comfy_dir).parent / "comfyui-venv" / "bin" / "python"
    python = os.environ.get("COMFYUI_PYTHON") or (str(venv) if venv.exists() else sys.executable)
    env = dict(os.environ, PYTHONPATH=comfy_dir)
    done = subprocess.run([python, str(TESTS / "comfy_wan_vae_scenario.py"), str(tmp_path)], capture_output=True,
                          text=True, cwd=comfy_dir, env=env, timeout=1200)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.split("RESULT", 1)[1])
    (ours_img, theirs_img), (ours_lat, theirs_lat) = result["decode_shape"], result["encode_shape"]
    assert ours_img == theirs_img == [5, 48, 64, 3]
    assert ours_lat == theirs_lat == [1, 48, 2, 3, 4]
    assert result["decode_max_abs"] <= 1e-3, result
    assert result["encode_max_abs"] <= 1e-3 * max(1.0, result["latent_scale"]), result
