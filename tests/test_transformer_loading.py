"""load_transformer: every checkpoint layout, shape-inferred configs, and clear errors for bad inputs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import save_file
from tiny_transformer import (
    build_reference,
    edit_config,
    reference_velocity,
    save_folder,
    tiny_config,
    write_random_checkpoint,
    write_single_file,
)

from cosmos3 import load_transformer
from cosmos3.files.safetensors import CheckpointError, CheckpointKeyError
from cosmos3.model.config import ConfigError
from cosmos3.model.loading import checkpoint_key, normalize_key


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    """Reference model with sound + action heads (Nano-like) and its diffusers folder."""
    config = tiny_config(
        "qwen128", sound_gen=True, sound_dim=64, action_gen=True, action_dim=64, num_embodiment_domains=4
    )
    reference = build_reference(config, seed=5)
    return reference, save_folder(reference, tmp_path_factory.mktemp("qwen")), config


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    config = tiny_config("edge128", action_gen=True, action_dim=64, num_embodiment_domains=2)
    reference = build_reference(config, seed=6)
    return reference, save_folder(reference, tmp_path_factory.mktemp("edge")), config


def _assert_same_weights(model, reference) -> None:
    """Every parameter equals the reference's (under its diffusers name); nothing extra was kept."""
    ref = reference.state_dict()
    ours = model.state_dict()
    last = model.config.num_hidden_layers - 1
    last_text_output = re.compile(  # the last text layer's query/output/MLP: their result feeds nothing
        rf"layers\.{last}\.(self_attn\.(to_q|to_out|norm_q)\.|mlp\.|post_attention_layernorm\.)"
    )
    never_read = {"lm_head.weight", "norm.weight"} | {k for k in ref if last_text_output.match(k)}
    assert len(never_read) >= 7
    assert {checkpoint_key(n) for n in ours} == set(ref) - never_read
    for name, value in ours.items():
        assert torch.equal(value.float(), ref[checkpoint_key(name)].float()), name


def _assert_runs_like(model, reference, config) -> None:
    ids = torch.arange(1, 12) % config["vocab_size"]
    latents = torch.randn(1, 48, 2, 3, 4, generator=torch.Generator().manual_seed(0))
    got = model.velocity(latents, 999, model.encode_text(ids), fps=16.0)
    assert (got - reference_velocity(reference, ids, latents, 999, 16.0)).abs().max() <= 1e-5


# ---------------------------------------------------------------------------------------------- layouts


def test_diffusers_folder(qwen, tmp_path):
    reference, folder, config = qwen
    model = load_transformer(folder, dtype=torch.float32)
    assert model.config.sound_gen and model.config.action_gen
    _assert_same_weights(model, reference)
    _assert_runs_like(model, reference, config)
    # The pipeline root (holding transformer/) is accepted too.
    root = tmp_path / "pipeline_root"
    root.mkdir()
    (root / "transformer").symlink_to(folder, target_is_directory=True)
    assert load_transformer(root, dtype=torch.float32).config == model.config


def test_sharded_diffusers_folder(qwen, tmp_path):
    reference, _, config = qwen
    folder = save_folder(reference, tmp_path / "sharded", max_shard_size="150KB")
    assert len(list(folder.glob("*.safetensors"))) > 2 and list(folder.glob("*.safetensors.index.json"))
    model = load_transformer(folder, dtype=torch.float32)
    _assert_same_weights(model, reference)


def test_bf16_load_keeps_time_embedder_fp32(qwen):
    reference, folder, _ = qwen
    model = load_transformer(folder)  # default dtype bf16
    for name, param in model.named_parameters():
        expected = torch.float32 if name.startswith("gen_tower.time_embedder.") else torch.bfloat16
        assert param.dtype == expected, name
        assert not param.requires_grad
    assert not model.training


def test_single_file_diffusers_keys(qwen, tmp_path):
    reference, folder, config = qwen
    path = write_single_file(reference, tmp_path / "cosmos3_tiny.safetensors")
    model = load_transformer(path, dtype=torch.float32)
    assert model.config == load_transformer(folder, dtype=torch.float32).config  # inferred == config.json
    _assert_same_weights(model, reference)


@pytest.mark.parametrize(
    "style, prefix", [("framework", ""), ("hf", ""), ("framework", "net."), ("hf", "model.diffusion_model.")]
)
def test_single_file_original_keys(qwen, tmp_path, style, prefix):
    reference, _, config = qwen
    path = write_single_file(reference, tmp_path / "orig.safetensors", layout="original", style=style,
                             prefix=prefix, vision_keys=True)
    model = load_transformer(path, dtype=torch.float32)
    _assert_same_weights(model, reference)
    _assert_runs_like(model, reference, config)


def test_edge_folder_with_edge_fields(edge):
    reference, folder, config = edge
    edit_config(folder, _drop_rms_norm_eps=None, layer_norm_epsilon=1e-5, backbone_type="cosmos3_edge_nemotron_dense",
                position_embedding_type="unified_3d_mrope", joint_attn_implementation="two_way",
                temporal_compression_factor=4, dtype="bfloat16")
    model = load_transformer(folder, dtype=torch.float32)
    assert model.config.is_edge and model.config.rms_norm_eps == 1e-5
    assert model.text_tower.layers[0].norm_q is None and model.text_tower.layers[0].k_norm_und_for_gen is not None
    _assert_same_weights(model, reference)
    _assert_runs_like(model, reference, config)


def test_edge_single_file_infers_edge_constants(edge, tmp_path):
    reference, _, config = edge
    path = write_single_file(reference, tmp_path / "edge.safetensors", layout="original", style="hf")
    model = load_transformer(path, dtype=torch.float32)
    cfg = model.config
    assert cfg.hidden_act == "relu2" and cfg.use_und_k_norm_for_gen and not cfg.qk_norm_for_text
    assert (cfg.rms_norm_eps, cfg.rope_theta) == (1e-5, 1e8)
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim) == (4, 2, 128)
    assert cfg.action_gen and cfg.action_dim == 64 and cfg.num_embodiment_domains == 2 and not cfg.sound_gen
    _assert_runs_like(model, reference, config)


def test_config_override(qwen, tmp_path):
    reference, folder, _ = qwen
    path = write_single_file(reference, tmp_path / "one.safetensors")
    assert load_transformer(path, dtype=torch.float32, config={"base_fps": 16}).config.base_fps == 16.0
    override = tmp_path / "override.json"
    override.write_text(json.dumps({"base_fps": 16, "timestep_scale": 0.001}))
    assert load_transformer(folder, dtype=torch.float32, config=override).config.base_fps == 16.0
    with pytest.raises(ConfigError, match="unknown field.*'bogus'"):
        load_transformer(path, config={"bogus": 1})


def test_single_file_base_fps_follows_the_checkpoint_name(qwen, tmp_path):
    """A single file has no config.json: Image2Video-4Step's base_fps 16 comes from its name; overrides win."""
    reference = qwen[0]
    distilled = write_single_file(reference, tmp_path / "Cosmos3-Super-Image2Video-4Step.safetensors")
    assert load_transformer(distilled, dtype=torch.float32).config.base_fps == 16.0
    assert load_transformer(distilled, dtype=torch.float32, config={"base_fps": 24}).config.base_fps == 24.0
    base = write_single_file(reference, tmp_path / "cosmos3_super_image2video.safetensors")
    assert load_transformer(base, dtype=torch.float32).config.base_fps == 24.0


def test_unused_heads_are_not_kept(qwen):
    model = load_transformer(qwen[1], dtype=torch.float32)
    assert not hasattr(model, "lm_head")
    assert not any("lm_head" in name for name, _ in model.named_parameters())


def test_last_text_layer_keeps_only_its_kv_weights(qwen, tmp_path):
    """The last text layer's query/output/MLP are shape-checked but never loaded; a file without them loads."""
    reference, folder, config = qwen
    model = load_transformer(folder, dtype=torch.float32)
    last = model.text_tower.layers[-1]
    assert last.kv_only and not any(hasattr(last, n) for n in ("to_q", "to_out", "mlp", "post_attention_layernorm"))
    assert all(hasattr(layer, "mlp") for layer in model.text_tower.layers[:-1])

    tensors = {k: v.clone() for k, v in reference.state_dict().items()}
    n = len(model.text_tower.layers) - 1
    pruned = {k: v for k, v in tensors.items() if not k.startswith((f"layers.{n}.mlp.", f"layers.{n}.self_attn.to_q."))}
    path = tmp_path / "pruned.safetensors"
    save_file(pruned, str(path))
    _assert_runs_like(load_transformer(path, dtype=torch.float32), reference, config)

    tensors[f"layers.{n}.mlp.up_proj.weight"] = torch.zeros(7, 128)
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad))
    with pytest.raises(
        CheckpointKeyError, match=rf"layers\.{n}\.mlp\.up_proj\.weight  expected \[\d+, 128\], found \[7, 128\]"
    ):
        load_transformer(bad, dtype=torch.float32)


def test_key_normalization_table():
    assert (
        normalize_key("language_model.model.layers.3.self_attn.k_proj_moe_gen.weight")
        == "layers.3.self_attn.add_k_proj.weight"
    )
    assert normalize_key("model.language_model.layers.0.self_attn.k_norm.weight") == "layers.0.self_attn.norm_k.weight"
    assert (
        normalize_key("layers.0.self_attn.k_norm_und_for_gen.weight") == "layers.0.self_attn.k_norm_und_for_gen.weight"
    )
    assert normalize_key("net.time_embedder.mlp.2.bias") == "time_embedder.linear_2.bias"
    assert normalize_key("vae2llm.weight") == "proj_in.weight" and normalize_key("llm2vae.bias") == "proj_out.bias"
    assert normalize_key("language_model.lm_head.weight") == "lm_head.weight"
    assert normalize_key("model.visual.blocks.0.attn.qkv.weight") is None
    assert checkpoint_key("gen_tower.layers.1.mlp_moe_gen.up_proj.weight") == "layers.1.mlp_moe_gen.up_proj.weight"
    assert checkpoint_key("text_tower.layers.1.norm_q.weight") == "layers.1.self_attn.norm_q.weight"


# ---------------------------------------------------------------------------------------------- bad inputs


def test_key_problems_reported_together(qwen, tmp_path):
    reference, _, _ = qwen
    tensors = {k: v.clone() for k, v in reference.state_dict().items()}
    del tensors["layers.1.self_attn.to_v.weight"]
    tensors["layers.0.self_attn.extra_gate.weight"] = torch.zeros(3)
    tensors["layers.0.mlp_moe_gen.up_proj.weight"] = torch.zeros(7, 128)
    tensors["lm_head.weight"] = torch.zeros(5, 128)
    folder = tmp_path / "bad"
    folder.mkdir()
    save_file(tensors, str(folder / "diffusion_pytorch_model.safetensors"))
    (folder / "config.json").write_text(json.dumps(reference.config))
    with pytest.raises(CheckpointKeyError) as info:
        load_transformer(folder, dtype=torch.float32)
    message = str(info.value)
    assert str(folder) in message
    assert "missing keys (1)" in message and "layers.1.self_attn.to_v.weight  expected shape [128, 128]" in message
    assert "unexpected keys (1)" in message and "layers.0.self_attn.extra_gate.weight  shape [3]" in message
    assert "mis-shaped keys (2)" in message
    assert "layers.0.mlp_moe_gen.up_proj.weight  expected [192, 128], found [7, 128]" in message
    assert "lm_head.weight  expected [320, 128], found [5, 128]" in message


def test_unusable_fp8_scales_are_reported(qwen, tmp_path):
    # FP8 checkpoints themselves load (tests/test_perf_fp8.py); scales that fit no weight are refused.
    tensors = {k: v.clone() for k, v in qwen[0].state_dict().items()}
    tensors["layers.0.self_attn.to_q.weight_scale"] = torch.ones(4, 4)
    tensors["layers.0.self_attn.nothing.weight_scale"] = torch.ones(())
    path = tmp_path / "fp8.safetensors"
    save_file(tensors, str(path))
    with pytest.raises(CheckpointKeyError, match="unusable fp8 scale tensors") as info:
        load_transformer(path)
    assert "to_q.weight_scale: shape [4, 4]; expected a per-tensor scalar or [256] per output channel" in str(
        info.value
    )
    assert "nothing.weight_scale: no matching weight" in str(info.value)


def test_ambiguous_keys(qwen, tmp_path):
    tensors = {k: v.clone() for k, v in qwen[0].state_dict().items()}
    tensors["vae2llm.bias"] = tensors["proj_in.bias"].clone()
    path = tmp_path / "twice.safetensors"
    save_file(tensors, str(path))
    with pytest.raises(CheckpointKeyError, match="'proj_in.bias' and 'vae2llm.bias' both map to 'proj_in.bias'"):
        load_transformer(path)


def test_truncated_and_corrupt_files(qwen, tmp_path):
    source = write_single_file(qwen[0], tmp_path / "good.safetensors")
    data = source.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) - 1000])
    with pytest.raises(CheckpointError, match=r"truncated\.safetensors: truncated file"):
        load_transformer(truncated)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(data[:8] + b"{garbage" + data[16:])
    with pytest.raises(CheckpointError, match=r"corrupt\.safetensors: corrupt safetensors header"):
        load_transformer(corrupt)
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.safetensors"):
        load_transformer(empty)


def test_pickle_formats_refused(qwen, tmp_path):
    for suffix in (".bin", ".pt", ".ckpt"):
        path = tmp_path / f"model{suffix}"
        torch.save({"a": torch.zeros(1)}, path)
        with pytest.raises(CheckpointError, match="only safetensors files are supported"):
            load_transformer(path)
    folder = tmp_path / "bin_folder"
    folder.mkdir()
    torch.save({"a": torch.zeros(1)}, folder / "diffusion_pytorch_model.bin")
    (folder / "config.json").write_text(json.dumps(qwen[0].config))
    with pytest.raises(CheckpointError, match=r"no \.safetensors weights .*diffusion_pytorch_model\.bin"):
        load_transformer(folder)


def test_missing_path(tmp_path):
    with pytest.raises(CheckpointError, match="no such file or folder"):
        load_transformer(tmp_path / "not_there")


def test_bad_config_fields_in_folder(qwen, tmp_path):
    folder = save_folder(qwen[0], tmp_path / "cfg")
    edit_config(folder, shiny_new_field=3)
    with pytest.raises(ConfigError, match=r"config\.json: unknown field\(s\) 'shiny_new_field'"):
        load_transformer(folder)
    edit_config(folder, _drop_shiny_new_field=None, num_key_value_heads=3)
    with pytest.raises(ConfigError, match=r"config\.json: field 'num_attention_heads' \(2\) must be a multiple"):
        load_transformer(folder)
    edit_config(folder, num_key_value_heads=2)  # valid config that does not fit the tensors
    with pytest.raises(
        CheckpointKeyError, match=r"layers.0.self_attn.to_k.weight  expected \[256, 128\], found \[128, 128\]"
    ):
        load_transformer(folder)


def test_rejects_non_float_dtype(qwen):
    with pytest.raises(ValueError, match="dtype must be a floating"):
        load_transformer(qwen[1], dtype=torch.int8)


# ---------------------------------------------------------------------------------------------- memory

_RSS_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    import torch
    import cosmos3
    from cosmos3.model.loading import load_transformer

    def current_rss_kib():
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    # One-time costs that do not scale with the weights: torch's meta-tensor machinery imports ~800
    # modules (~70 MB) on first use, and the reader's first file open.
    torch.nn.Embedding(8, 8, device="meta")
    before = current_rss_kib()
    model = load_transformer(sys.argv[1], dtype=torch.float32)
    touched = sum(float(p.float().sum()) for p in model.parameters())  # every page resident
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kept = sum(p.numel() * p.element_size() for p in model.parameters())
    print(json.dumps({"delta": (peak - before) * 1024, "kept": kept, "before": before * 1024}))
    """
)


def test_peak_host_memory_while_loading(tmp_path):
    # ~170 MB of fp32 weights, so interpreter noise is small next to them.
    config = tiny_config("qwen128", hidden_size=1024, num_attention_heads=8, num_key_value_heads=2,
                         intermediate_size=2816, vocab_size=4096, num_hidden_layers=2)
    path = tmp_path / "big.safetensors"
    file_bytes = write_random_checkpoint(config, path)
    assert file_bytes >= 100e6
    # Launched through a forking shell: a child exec'd straight from pytest inherits pytest's own peak RSS
    # into ru_maxrss (Linux records the replaced address space's high-water mark at exec).
    command = ["/bin/sh", "-c", '"$0" -c "$1" "$2"; exit $?', sys.executable, _RSS_SCRIPT, str(path)]
    out = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["kept"] >= 100e6
    assert result["delta"] <= 1.2 * result["kept"], result
    print(f"peak RSS delta while loading: {result['delta'] / result['kept']:.3f} x kept weight bytes")


def test_mismatch_error_starts_with_what_the_file_is(qwen, tmp_path):
    """A file of another width gives one summary line first, then a capped listing."""
    reference, _, config = qwen
    folder = tmp_path / "wider"
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()},
              str(folder / "diffusion_pytorch_model.safetensors"))
    (folder / "config.json").write_text(json.dumps({**reference.config, "hidden_size": 256, "num_hidden_layers": 3}))
    with pytest.raises(CheckpointKeyError) as info:
        load_transformer(folder, dtype=torch.float32)
    lines = str(info.value).splitlines()
    assert "a Cosmos3 transformer that does not match its config: hidden 128 vs config 256" in lines[0]
    assert "2 layers vs config 3" in lines[0] and "expected keys" in lines[0]
    assert any(line.strip().startswith("... and ") and line.strip().endswith(" more") for line in lines)
    assert len(lines) <= 3 * (12 + 2) + 1


def test_mismatch_error_names_a_foreign_file(tmp_path):
    path = tmp_path / "flux.safetensors"
    save_file({"double_blocks.0.img_attn.qkv.weight": torch.zeros(6, 2)}, str(path))
    folder = tmp_path / "foreign"
    folder.mkdir()
    path.rename(folder / "diffusion_pytorch_model.safetensors")
    (folder / "config.json").write_text(json.dumps(tiny_config()))
    with pytest.raises(CheckpointKeyError) as info:
        load_transformer(folder, dtype=torch.float32)
    assert "not a Cosmos3 transformer" in str(info.value).splitlines()[0]


def test_single_file_without_inferable_rope_points_to_the_folder(tmp_path):
    model = build_reference(tiny_config("qwen_small"), seed=3)
    path = tmp_path / "small.safetensors"
    write_single_file(model, path)
    with pytest.raises(ConfigError) as info:
        load_transformer(path, dtype=torch.float32)
    message = str(info.value)
    assert "diffusers checkpoint folder" in message and "head_dim is 32" in message
