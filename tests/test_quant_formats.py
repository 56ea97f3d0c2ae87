"""int8 / int4 / GGUF weights: exact dequantisation, converter round trips, quality bounds, refused bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny_transformer import build_reference, save_folder, tiny_config, write_single_file

from cosmos3 import load_transformer
from cosmos3.convert import ConversionError, convert, main
from cosmos3.files.gguf_reader import GGUFFileReader
from cosmos3.files.safetensors import CheckpointError, CheckpointKeyError
from cosmos3.model.fp8 import error_stats
from cosmos3.model.quant import ggml
from cosmos3.model.quant.intq import dequantize_int4, int4_group, quantize_int4, quantize_int8
from cosmos3.model.quant.linear import QuantLinear, quantize_model, quantize_weight

gguf = pytest.importorskip("gguf")

# hidden 256 / MLP 512: every projection fits the K-quants' 256-value blocks
CONFIG = tiny_config("qwen128", num_hidden_layers=3, hidden_size=256, intermediate_size=512)
FORMATS = [("int8", None), ("int4", None), ("gguf", "Q8_0"), ("gguf", "Q6_K"), ("gguf", "Q5_K"), ("gguf", "Q4_K"),
           ("gguf", "BF16"), ("gguf", "F16")]
# PSNR (dB) of the tiny model's velocity vs the unquantised one; measured: int8 49.8, int4 27.0, Q8_0 52.5,
# Q6_K 41.1, Q5_K 35.0, Q4_K 28.7, BF16 62.4
TINY_PSNR = {"int8": 45, "int4": 24, "Q8_0": 45, "Q6_K": 37, "Q5_K": 31, "Q4_K": 25, "BF16": 55, "F16": 60}


@pytest.fixture(scope="module")
def reference():
    return build_reference(CONFIG, seed=11)


@pytest.fixture(scope="module")
def folder(reference, tmp_path_factory):
    return save_folder(reference, tmp_path_factory.mktemp("src"))


def _velocity(model, seed=0):
    latents = torch.randn(1, 48, 2, 4, 4, generator=torch.Generator().manual_seed(seed))
    text = model.encode_text(torch.arange(2, 15))
    return model.velocity(latents.to(model.compute_dtype), 937, text, fps=24.0).float()


def _suffix(to):
    return ".gguf" if to == "gguf" else ".safetensors"


# ---------------------------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("qtype", ggml.SUPPORTED_TYPES)
def test_dequantisation_matches_gguf_reference_exactly(qtype):
    """Our torch dequantisation == ``gguf.quants.dequantize`` bit for bit, on quantised data and on random bytes."""
    x = torch.randn(6, 512, generator=torch.Generator().manual_seed(3)) * 0.05
    packed = np.ascontiguousarray(ggml.quantize(x, qtype))
    reference = gguf.quants.dequantize(packed, gguf.GGMLQuantizationType[qtype]).reshape(6, 512)
    ours = ggml.dequantize(torch.from_numpy(packed.copy()), qtype, (6, 512))
    assert ours.dtype == torch.float32 and np.array_equal(ours.numpy(), reference)
    raw = np.random.default_rng(5).integers(0, 256, size=(6, ggml.row_bytes(qtype, 512)), dtype=np.uint8)
    if qtype in ("F32", "F16"):  # float payloads are read as their own dtype
        raw_in = raw.view(np.float32 if qtype == "F32" else np.float16)
    else:
        raw_in = raw
    with np.errstate(all="ignore"):
        reference = gguf.quants.dequantize(raw_in, gguf.GGMLQuantizationType[qtype]).reshape(6, 512)
    ours = ggml.dequantize(torch.from_numpy(raw.copy()), qtype, (6, 512)).numpy()
    assert np.array_equal(ours, reference, equal_nan=True)


@pytest.mark.parametrize("qtype,bound", [("Q8_0", 0.01), ("Q6_K", 0.03), ("Q5_K", 0.05), ("Q4_K", 0.1)])
def test_quantisers_decode_with_the_reference(qtype, bound):
    x = torch.randn(8, 512, generator=torch.Generator().manual_seed(1))
    packed = ggml.quantize(x, qtype)
    back = torch.from_numpy(gguf.quants.dequantize(packed, gguf.GGMLQuantizationType[qtype]).reshape(8, 512))
    assert error_stats(x, back)["rel_l2"] < bound
    assert torch.equal(ggml.dequantize(torch.zeros(2, ggml.row_bytes(qtype, 256), dtype=torch.uint8), qtype,
                                       (2, 256)), torch.zeros(2, 256))


def test_int8_and_int4_formats():
    w = torch.randn(48, 192, generator=torch.Generator().manual_seed(2))
    q8, s8 = quantize_int8(w)
    assert q8.dtype == torch.int8 and s8.shape == (48,) and q8.abs().max() == 127
    assert error_stats(w, q8.float() * s8[:, None])["rel_l2"] < 0.01
    packed, scale = quantize_int4(w, 128)
    assert int4_group(192, 128) == 64 and packed.shape == (48, 96) and scale.shape == (48, 3)
    assert packed.dtype == torch.uint8 and scale.dtype == torch.float16
    assert error_stats(w, dequantize_int4(packed, scale, torch.float32))["rel_l2"] < 0.12
    zero_packed, zero_scale = quantize_int4(torch.zeros(4, 64), 64)
    assert (zero_scale == 1).all() and not dequantize_int4(zero_packed, zero_scale, torch.float32).any()
    with pytest.raises(ValueError, match="cannot be split into groups"):
        quantize_int4(torch.zeros(4, 20))


@pytest.mark.parametrize("fmt", ["int8", "int4", "Q8_0", "Q4_K"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_quant_linear_computes_in_the_activation_dtype(fmt, dtype):
    linear = torch.nn.Linear(256, 64)
    module = QuantLinear.from_linear(linear, fmt)
    x = torch.randn(5, 256).to(dtype)
    y = module(x)
    assert y.dtype == dtype and y.shape == (5, 64)
    exact = torch.nn.functional.linear(x.float(), module.dequantized_weight(torch.float32), linear.bias)
    assert (y.float() - exact).abs().max() < (1e-4 if dtype == torch.float32 else 5e-2)
    assert module.weight.dtype in (torch.int8, torch.uint8)


# ---------------------------------------------------------------------------------------------- converter


@pytest.mark.parametrize("to,quant", FORMATS)
def test_converter_round_trip(folder, tmp_path, to, quant):
    """Convert, load: packed weights are exactly the quantised source weights; velocity error within bounds."""
    dst = tmp_path / f"model{_suffix(to)}"
    summary = convert(folder, dst, to, quant)
    assert dst.is_file() and not (tmp_path / f"{dst.name}.partial").exists()
    fmt = quant or to
    model = load_transformer(dst, dtype=torch.float32)
    source = load_transformer(folder, dtype=torch.float32)
    module = model.gen_tower.layers[1].mlp_moe_gen.down_proj
    if fmt in ("BF16", "F16"):
        assert not isinstance(module, QuantLinear)
        assert summary["formats"]["bfloat16" if fmt == "BF16" else "float16"] == 42
    else:
        assert isinstance(module, QuantLinear) and module.fmt == fmt and summary["formats"][fmt] == 42
        expected = quantize_weight(source.gen_tower.layers[1].mlp_moe_gen.down_proj.weight, fmt)
        assert torch.equal(module.weight, expected.data)
    # norms / embeddings / latent projections keep the base dtype
    assert torch.equal(model.text_tower.embed_tokens.weight, source.text_tower.embed_tokens.weight)
    assert torch.equal(model.gen_tower.proj_in.weight, source.gen_tower.proj_in.weight)
    err = error_stats(_velocity(source), _velocity(model))
    assert err["psnr"] > TINY_PSNR[fmt], err
    print(f"{fmt}: PSNR {err['psnr']:.1f} dB, max abs {err['max_abs']:.3g}, {summary['bytes']} bytes")


def test_original_key_names_and_requantising(reference, folder, tmp_path):
    source = write_single_file(reference, tmp_path / "framework.safetensors", layout="original")
    dst = tmp_path / "framework.gguf"
    convert(source, dst, "gguf", "Q8_0")
    reader = GGUFFileReader(dst)
    assert any("q_proj_moe_gen" in key for key in reader) and reader.variant == "custom"
    assert reader.config["hidden_size"] == 256
    from_gguf = load_transformer(dst, dtype=torch.float32)
    from_folder = load_transformer(folder, dtype=torch.float32, weight_storage=None)
    assert error_stats(_velocity(from_folder), _velocity(from_gguf))["psnr"] > 45
    # GGUF -> int8 safetensors, and a GGUF requantised on load
    int8 = tmp_path / "from_gguf.safetensors"
    convert(dst, int8, "int8")
    assert load_transformer(int8).gen_tower.layers[0].add_q_proj.fmt == "int8"
    requantised = load_transformer(dst, dtype=torch.bfloat16, weight_storage="int4_g64")
    assert requantised.gen_tower.layers[0].add_q_proj.fmt == "int4"
    assert requantised.gen_tower.layers[0].add_q_proj.weight_scale.shape == (256, 4)
    # weight_storage="default" keeps the packed projections of a pre-quantised file
    assert isinstance(load_transformer(dst).gen_tower.layers[0].add_q_proj, QuantLinear)


def test_quantise_on_load_equals_converted_file(folder, tmp_path):
    convert(folder, tmp_path / "m.safetensors", "int4")
    on_load = load_transformer(folder, dtype=torch.float32, weight_storage="int4")
    stored = load_transformer(tmp_path / "m.safetensors", dtype=torch.float32)
    for a, b in zip(on_load.gen_tower.state_dict().values(), stored.gen_tower.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(_velocity(on_load), _velocity(stored))


def test_converter_refuses_bad_arguments(folder, tmp_path, capsys):
    with pytest.raises(ConversionError, match="--quant 'Q4_0' is not supported for GGUF"):
        convert(folder, tmp_path / "x.gguf", "gguf", "Q4_0")
    with pytest.raises(ConversionError, match="must be a .gguf file"):
        convert(folder, tmp_path / "x.safetensors", "gguf", "Q8_0")
    (tmp_path / "exists.safetensors").write_bytes(b"")
    with pytest.raises(ConversionError, match="already exists"):
        convert(folder, tmp_path / "exists.safetensors", "int8")
    with pytest.raises(ConversionError, match="no such file"):
        convert(tmp_path / "missing", tmp_path / "y.safetensors", "int8")
    assert main(["--to", "int8", str(tmp_path / "missing"), str(tmp_path / "z.safetensors")]) == 2
    assert "error:" in capsys.readouterr().err
    assert main(["--to", "gguf", "--quant", "Q8_0", str(folder), str(tmp_path / "ok.gguf")]) == 0
    assert not list(tmp_path.glob("*.partial"))


# ---------------------------------------------------------------------------------------------- bad input


def _write_gguf(path, tensors, arch="cosmos3", config=None):
    writer = gguf.GGUFWriter(str(path), arch)
    if config is not None:
        writer.add_string("cosmos3.config", json.dumps(config))
    for name, (qtype, array) in tensors.items():
        raw = None if qtype in ("F32", "F16") else gguf.GGMLQuantizationType[qtype]
        writer.add_tensor(name, array, raw_dtype=raw)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _tensors_of(folder):
    model = load_transformer(folder, dtype=torch.float32)
    from cosmos3.model.loading import checkpoint_key

    return {checkpoint_key(k): ("F32", v.numpy()) for k, v in model.state_dict().items()}


def test_loader_refuses_bad_gguf(folder, tmp_path):
    tensors = _tensors_of(folder)
    config = json.loads((folder / "config.json").read_text())
    good = tmp_path / "good.gguf"
    _write_gguf(good, tensors, config=config)
    assert torch.equal(_velocity(load_transformer(good, dtype=torch.float32)),
                       _velocity(load_transformer(folder, dtype=torch.float32)))
    # another architecture
    _write_gguf(tmp_path / "llama.gguf", tensors, arch="llama")
    with pytest.raises(CheckpointError, match=r"llama\.gguf: GGUF architecture is 'llama', not 'cosmos3'"):
        load_transformer(tmp_path / "llama.gguf")
    # an unsupported quant type, named with its tensor
    q4_0 = dict(tensors)
    key = "layers.0.self_attn.to_q.weight"
    q4_0[key] = ("Q4_0", gguf.quants.quantize(tensors[key][1], gguf.GGMLQuantizationType.Q4_0))
    _write_gguf(tmp_path / "q4_0.gguf", q4_0, config=config)
    with pytest.raises(CheckpointKeyError, match=r"q4_0\.gguf: unsupported GGUF tensor types .*\n.*to_q.weight: Q4_0"):
        load_transformer(tmp_path / "q4_0.gguf")
    # a mis-shaped tensor
    bad = dict(tensors)
    bad["layers.1.mlp_moe_gen.down_proj.weight"] = ("F32", np.zeros((256, 511), dtype=np.float32))
    _write_gguf(tmp_path / "shape.gguf", bad, config=config)
    with pytest.raises(CheckpointKeyError, match=r"shape\.gguf.*\n(.*\n)*.*down_proj\.weight  expected \[256, 512\], "
                                                 r"found \[256, 511\]"):
        load_transformer(tmp_path / "shape.gguf")
    # truncated: in the tensor data (names the tensor) and in the header
    data = good.read_bytes()
    (tmp_path / "cut.gguf").write_bytes(data[: len(data) - 5000])
    with pytest.raises(CheckpointError, match=r"cut\.gguf: truncated file: tensor '[^']+' needs bytes up to"):
        load_transformer(tmp_path / "cut.gguf")
    (tmp_path / "head.gguf").write_bytes(data[:300])
    with pytest.raises(CheckpointError, match=r"head\.gguf: (not a readable GGUF file|truncated file)"):
        load_transformer(tmp_path / "head.gguf")
    (tmp_path / "empty.gguf").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.gguf: not a readable GGUF file"):
        load_transformer(tmp_path / "empty.gguf")


def test_loader_refuses_bad_int_files(folder, tmp_path):
    from safetensors.torch import load_file, save_file

    path = tmp_path / "m.safetensors"
    convert(folder, path, "int4")
    tensors = load_file(str(path))
    key = "layers.0.self_attn.to_q.weight_scale"
    tensors[key] = torch.ones(255, 2, dtype=torch.float16)  # one row short
    save_file(tensors, str(tmp_path / "bad.safetensors"))
    with pytest.raises(CheckpointError, match=r"bad\.safetensors: tensor 'layers\.0\.self_attn\.to_q\.weight': int4 "
                                              r"scale .* has shape \[255, 2\]"):
        load_transformer(tmp_path / "bad.safetensors", config=CONFIG)
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-100])
    with pytest.raises(CheckpointError, match=r"cut\.safetensors: truncated file: tensor '[^']+'"):
        load_transformer(tmp_path / "cut.safetensors")


# ---------------------------------------------------------------------------------------------- scaled model

# bench/_harness.SCALED: Nano / 4 in width, 4 layers (weight-shape ratios of Nano)
SCALED = dict(hidden_size=1024, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2, head_dim=128,
              intermediate_size=3072, vocab_size=4224, rope_axes_dim=[24, 20, 20])
# (min PSNR dB, max |error|) of the velocity vs bf16; measured: int8 45.6 dB / 0.055, Q8_0 48.0 / 0.043,
# int4 25.6 / 0.49, Q4_K 27.4 / 0.47
SCALED_BOUNDS = {"int8": (40, 0.1), "Q8_0": (40, 0.1), "int4": (25, 1.0), "Q4_K": (25, 1.0)}


def _scaled_model():
    from cosmos3 import TransformerConfig
    from cosmos3.model.transformer import Cosmos3Transformer

    model = Cosmos3Transformer(TransformerConfig.from_dict(SCALED), device="meta", dtype=torch.bfloat16)
    model = model.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() == 1 and "norm" in name:
                param.fill_(1.0)
            else:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.02)
    return model.eval().requires_grad_(False)


@pytest.mark.slow
def test_scaled_model_quality_bounds():
    """Velocity error of each format vs the bf16 model on the scaled Nano-shaped model (bf16 activations).

    Slow (~100M parameters quantised four times): ``pytest -m slow tests/test_quant_formats.py``."""
    ids = torch.randint(0, SCALED["vocab_size"], (24,), generator=torch.Generator().manual_seed(0))
    latents = torch.randn(1, 48, 1, 8, 8, generator=torch.Generator().manual_seed(1)).bfloat16()
    model = _scaled_model()
    text = model.encode_text(ids)
    reference = model.velocity(latents, 937, text, fps=24.0).float()
    state = {k: v.clone() for k, v in model.gen_tower.state_dict().items()}
    for fmt, (bound, max_abs) in SCALED_BOUNDS.items():
        quantize_model(model, fmt)
        err = error_stats(reference, model.velocity(latents, 937, text, fps=24.0).float())
        print(f"scaled model {fmt}: PSNR {err['psnr']:.1f} dB, max abs {err['max_abs']:.3g}")
        assert err["psnr"] >= bound and err["max_abs"] <= max_abs, (fmt, err)
        model = _scaled_model()  # fresh bf16 projections for the next format
        assert all(torch.equal(v, state[k]) for k, v in model.gen_tower.state_dict().items())
