"""Attention backends behind one interface: registry, clear errors, key padding, and the kernel wrappers.

The CUDA kernels (flash-attn, FlashAttention-3, SageAttention) cannot run here; their wrappers are driven
with stand-in modules that implement each package's documented call convention in plain torch, so the
layout / GQA / causal / dtype plumbing is checked on the CPU. ComfyUI's optimized attention is checked
against a real ComfyUI checkout when ``COMFYUI_DIR`` is set.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import cosmos3.model.attention as attn_mod
from cosmos3.model.attention import (
    AttentionBackendUnavailable,
    KeyPadding,
    attention,
    attention_backends,
    available_attention_backends,
    check_backend,
)

REPO = Path(__file__).resolve().parent.parent


def _qkv(b, nh, nkv, lq, lk, hd=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, nh, lq, hd, generator=g), torch.randn(b, nkv, lk, hd, generator=g),
            torch.randn(b, nkv, lk, hd, generator=g))


def test_registry_lists_every_backend_and_only_installed_ones_are_available():
    assert {"sdpa", "math", "flash_attn", "flash_attn3", "sage", "comfy"} <= set(attention_backends())
    assert {"sdpa", "math"} <= set(available_attention_backends())
    assert check_backend("sdpa") == "sdpa"


@pytest.mark.parametrize(
    "name, package, hint",
    [("sage", "sageattention", "pip install sageattention"), ("flash_attn", "flash_attn", "pip install flash-attn"),
     ("flash_attn3", "flash_attn_interface", "hopper")],
)
def test_missing_package_gives_a_clear_error(name, package, hint, monkeypatch):
    monkeypatch.setitem(sys.modules, package, None)  # behaves as "not installed" even if it were
    monkeypatch.setattr(attn_mod.importlib.util, "find_spec", lambda n, *a: None if n == package else object())
    with pytest.raises(
        AttentionBackendUnavailable, match=f"attention backend '{name}' needs the '{package}' package: .*{hint}"
    ):
        check_backend(name)
    # at call time too (e.g. a backend name stored before the package vanished)
    monkeypatch.setattr(attn_mod, "REQUIRE_CUDA", False)
    q, k, v = _qkv(1, 2, 1, 3, 3)
    with pytest.raises(AttentionBackendUnavailable, match=package):
        attention(q, k, v, False, name)


def test_comfy_backend_without_comfyui_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "comfy.ldm.modules.attention", None)
    q, k, v = _qkv(1, 2, 1, 3, 3)
    with pytest.raises(AttentionBackendUnavailable, match="needs ComfyUI"):
        attention(q, k, v, False, "comfy")


def test_model_rejects_an_unavailable_backend(monkeypatch):
    from cosmos3 import Cosmos3Transformer, TransformerConfig

    cfg = TransformerConfig.from_dict(dict(hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
                                           num_key_value_heads=1, head_dim=32, intermediate_size=64,
                                           vocab_size=50, rope_axes_dim=[8, 4, 4]))
    model = Cosmos3Transformer(cfg, device="meta")
    monkeypatch.setattr(attn_mod.importlib.util, "find_spec", lambda n, *a: None)
    with pytest.raises(AttentionBackendUnavailable, match="pip install sageattention"):
        model.attention_backend = "sage"
    assert model.attention_backend == "sdpa"


@pytest.mark.parametrize("backend", ["flash_attn", "flash_attn3", "sage"])
def test_cuda_kernels_refuse_cpu_tensors(backend, monkeypatch):
    monkeypatch.setattr(attn_mod, "_missing_package", lambda entry: None)
    q, k, v = _qkv(1, 2, 1, 3, 3)
    with pytest.raises(ValueError, match=f"'{backend}' runs on CUDA tensors only, got cpu tensors; use 'sdpa'"):
        attention(q, k, v, False, backend)


# ---------------------------------------------------------------------------------------------- stand-in kernels


def _reference(q, k, v, causal):  # [B, H, L, D] fp32 reference with GQA
    return attention(q.float(), k.float(), v.float(), causal, "math")


def _fake_flash_module(calls):
    def flash_attn_func(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False):
        # documented layout: [B, L, H, D], fp16/bf16, GQA via fewer k/v heads
        calls.append((tuple(q.shape), q.dtype, causal))
        assert q.dtype in (torch.float16, torch.bfloat16) and q.stride(-1) == 1
        out = _reference(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), causal)
        return out.transpose(1, 2).to(q.dtype)

    return types.SimpleNamespace(flash_attn_func=flash_attn_func)


def _fake_sage_module(calls):
    def sageattn(q, k, v, tensor_layout="HND", is_causal=False, sm_scale=None, **kw):
        calls.append((tuple(q.shape), q.dtype, is_causal, tensor_layout))
        assert tensor_layout == "HND" and q.dtype in (torch.float16, torch.bfloat16)
        return _reference(q, k, v, is_causal).to(q.dtype)

    return types.SimpleNamespace(sageattn=sageattn)


@pytest.mark.parametrize("backend, module", [("flash_attn", "flash_attn"), ("flash_attn3", "flash_attn_interface"),
                                             ("sage", "sageattention")])
@pytest.mark.parametrize("causal", [False, True])
def test_kernel_wrappers_follow_each_packages_convention(backend, module, causal, monkeypatch):
    calls = []
    fake = _fake_sage_module(calls) if backend == "sage" else _fake_flash_module(calls)
    monkeypatch.setitem(sys.modules, module, fake)
    monkeypatch.setattr(attn_mod, "REQUIRE_CUDA", False)
    q, k, v = _qkv(2, 4, 2, 6, 6, seed=1)
    for dtype in (torch.bfloat16, torch.float32):  # fp32 input runs in bf16 and comes back as fp32
        out = attention(q.to(dtype), k.to(dtype), v.to(dtype), causal, backend)
        assert out.dtype == dtype and out.shape == q.shape
        assert (out.float() - _reference(q, k, v, causal)).abs().max() < 3e-2
    assert all(c[1] == torch.bfloat16 for c in calls)
    unbatched = attention(q[0], k[0], v[0], causal, backend)
    assert unbatched.shape == q[0].shape


def test_padded_batches_use_per_sample_calls_for_kernels_without_masks(monkeypatch):
    calls = []
    monkeypatch.setitem(sys.modules, "sageattention", _fake_sage_module(calls))
    monkeypatch.setattr(attn_mod, "REQUIRE_CUDA", False)
    monkeypatch.setattr(attn_mod, "_missing_package", lambda entry: None)
    q, k, v = _qkv(2, 4, 2, 5, 9, seed=2)
    padding = KeyPadding.from_starts([0, 3], 9, "cpu")
    out = attention(q, k, v, False, "sage", key_padding=padding)
    assert [c[0] for c in calls] == [(1, 4, 5, 32), (1, 4, 5, 32)]
    expected = attention(q, k, v, False, "math", key_padding=padding)
    assert (out - expected).abs().max() < 3e-2


# ---------------------------------------------------------------------------------------------- key padding


@pytest.mark.parametrize("heads", [(4, 4), (4, 2), (6, 1)])
def test_key_padding_mask_equals_unpadded_attention(heads):
    nh, nkv = heads
    q, k, v = _qkv(2, nh, nkv, 5, 11, seed=3)
    padding = KeyPadding.from_starts([0, 4], 11, "cpu")
    assert padding.mask.shape == (2, 1, 1, 11) and padding.mask[1, 0, 0].tolist() == [False] * 4 + [True] * 7
    serial = torch.cat([F.scaled_dot_product_attention(q[:1], k[:1], v[:1], enable_gqa=True),
                        F.scaled_dot_product_attention(q[1:], k[1:, :, 4:], v[1:, :, 4:], enable_gqa=True)])
    for backend in ("sdpa", "math"):
        masked = attention(q, k, v, False, backend, key_padding=padding)
        split = attention(q, k, v, False, backend, key_padding=KeyPadding.from_starts([0, 4], 11, "cpu", split=True))
        assert (masked - serial).abs().max() < 1e-5, backend
        assert (split - serial).abs().max() < 1e-5, backend


def test_key_padding_checks_its_input():
    q, k, v = _qkv(2, 2, 1, 3, 5)
    with pytest.raises(ValueError, match=r"must be in \[0, 4\]"):
        KeyPadding.from_starts([0, 5], 5, "cpu")
    with pytest.raises(ValueError, match="needs batched 4-D"):
        attention(q[0], k[0], v[0], False, "sdpa", key_padding=KeyPadding.from_starts([0, 1], 5, "cpu"))


def test_comfy_backend_calling_convention(monkeypatch):
    """The call ComfyUI's optimized_attention receives: [B, H, L, D] with as many k/v heads, skip reshapes."""
    seen = []

    def optimized_attention(q, k, v, heads, mask=None, attn_precision=None, skip_reshape=False,
                            skip_output_reshape=False, **kwargs):
        seen.append((tuple(q.shape), tuple(k.shape), heads, mask, skip_reshape, skip_output_reshape))
        return F.scaled_dot_product_attention(q, k, v)

    fake = types.ModuleType("comfy.ldm.modules.attention")
    fake.optimized_attention = optimized_attention
    monkeypatch.setitem(sys.modules, "comfy.ldm.modules.attention", fake)
    q, k, v = _qkv(1, 4, 2, 5, 7, seed=4)
    out = attention(q, k, v, False, "comfy")
    assert seen == [((1, 4, 5, 32), (1, 4, 7, 32), 4, None, True, True)]
    assert (out - attention(q, k, v, False, "math")).abs().max() < 1e-5
    # causal (text tower, once per prompt) stays on SDPA: ComfyUI's kernels have no causal flag
    qc, kc, vc = _qkv(1, 4, 2, 6, 6, seed=5)
    assert (attention(qc, kc, vc, True, "comfy") - attention(qc, kc, vc, True, "math")).abs().max() < 1e-5
    assert len(seen) == 1


_COMFY_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.argv = ["main.py", "--cpu", *sys.argv[1:]]
    import comfy.options
    comfy.options.enable_args_parsing()
    import torch
    from comfy.ldm.modules import attention as comfy_attention
    from cosmos3.model.attention import attention
    g = torch.Generator().manual_seed(0)
    worst = 0.0
    for nh, nkv, causal in ((4, 2, False), (4, 4, False), (8, 2, True)):
        lk = 9 if causal else 13
        q = torch.randn(2, nh, 9, 32, generator=g)
        k, v = torch.randn(2, nkv, lk, 32, generator=g), torch.randn(2, nkv, lk, 32, generator=g)
        diff = attention(q, k, v, causal, "comfy") - attention(q, k, v, causal, "math")
        worst = max(worst, diff.abs().max().item())
    print("RESULT", comfy_attention.optimized_attention.__name__, worst)
    """
)


@pytest.mark.comfyui
@pytest.mark.parametrize("flag", ["", "--use-pytorch-cross-attention", "--use-split-cross-attention"])
def test_comfy_backend_with_real_comfyui(flag, tmp_path):
    comfy_dir = os.environ.get("COMFYUI_DIR")
    if not comfy_dir:
        pytest.skip("set COMFYUI_DIR to a ComfyUI checkout to run ComfyUI's attention kernels")
    venv = Path(comfy_dir).parent / "comfyui-venv" / "bin" / "python"
    python = os.environ.get("COMFYUI_PYTHON") or (str(venv) if venv.exists() else sys.executable)
    script = tmp_path / "check.py"
    script.write_text(_COMFY_SCRIPT)
    env = dict(os.environ, PYTHONPATH=f"{comfy_dir}{os.pathsep}{REPO}")
    out = subprocess.run([python, str(script), *([flag] if flag else [])], capture_output=True, text=True,
                         cwd=comfy_dir, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    kernel, worst = out.stdout.split("RESULT", 1)[1].split()
    assert float(worst) < 1e-5, kernel
