"""transformer/config.json parsing: every variant's fields accepted, unknown/inconsistent ones named."""

from __future__ import annotations

import json

import pytest

from cosmos3 import TransformerConfig
from cosmos3.model.config import ConfigError

NANO = {
    "_class_name": "Cosmos3OmniTransformer", "_diffusers_version": "0.38.0.dev0", "action_dim": 64,
    "action_gen": True, "attention_bias": False, "attention_dropout": 0.0, "base_fps": 24,
    "enable_fps_modulation": True, "head_dim": 128, "hidden_act": "silu", "hidden_size": 4096,
    "intermediate_size": 12288, "latent_channel": 48, "latent_patch_size": 2, "num_attention_heads": 32,
    "num_embodiment_domains": 32, "num_hidden_layers": 36, "num_key_value_heads": 8, "patch_latent_dim": 192,
    "qk_norm_for_text": True, "rms_norm_eps": 1e-06,
    "rope_scaling": {"mrope_interleaved": True, "mrope_section": [24, 20, 20], "rope_type": "default"},
    "rope_axes_dim": [24, 20, 20], "rope_theta": 5000000.0, "sound_dim": 64, "sound_gen": True,
    "sound_latent_fps": 25.0, "timestep_scale": 0.001, "unified_3d_mrope_reset_spatial_ids": True,
    "unified_3d_mrope_temporal_modality_margin": 15000, "use_und_k_norm_for_gen": False, "vocab_size": 151936,
    "dtype": "bfloat16",
}
EDGE = {
    **{k: v for k, v in NANO.items() if k not in ("rms_norm_eps", "sound_dim", "sound_gen")},
    "hidden_size": 2048, "num_hidden_layers": 28, "num_attention_heads": 16, "intermediate_size": 9216,
    "hidden_act": "relu2", "qk_norm_for_text": False, "use_und_k_norm_for_gen": True, "layer_norm_epsilon": 1e-5,
    "rope_theta": 100000000.0, "vocab_size": 131072, "backbone_type": "cosmos3_edge_nemotron_dense",
    "position_embedding_type": "unified_3d_mrope", "joint_attn_implementation": "two_way",
    "temporal_compression_factor": 4,
}


def test_nano_config():
    cfg = TransformerConfig.from_dict(NANO)
    assert cfg == TransformerConfig(sound_gen=True, sound_dim=64, action_gen=True, action_dim=64)
    assert not cfg.is_edge and cfg.norm_flavour == "qwen" and cfg.q_dim == 4096 and cfg.kv_dim == 1024
    assert isinstance(cfg.base_fps, float)
    assert TransformerConfig.from_dict(cfg.to_dict()) == cfg


def test_super_shape_with_q_dim_above_hidden():
    cfg = TransformerConfig.from_dict({**NANO, "hidden_size": 5120, "num_hidden_layers": 64,
                                       "num_attention_heads": 64, "intermediate_size": 25600})
    assert cfg.q_dim == 8192 != cfg.hidden_size


def test_edge_config_and_defaults(tmp_path):
    cfg = TransformerConfig.from_dict(EDGE)
    assert cfg.is_edge and cfg.norm_flavour == "nemotron" and cfg.rms_norm_eps == 1e-5
    assert (
        cfg.rope_theta == 1e8 and cfg.vocab_size == 131072 and cfg.use_und_k_norm_for_gen and not cfg.qk_norm_for_text
    )
    # Missing constants fall back to the Edge values, not the Nano ones.
    sparse = {k: v for k, v in EDGE.items() if k not in ("layer_norm_epsilon", "rope_theta", "vocab_size")}
    cfg2 = TransformerConfig.from_dict(sparse)
    assert (cfg2.rms_norm_eps, cfg2.rope_theta, cfg2.vocab_size) == (1e-5, 1e8, 131072)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(EDGE))
    assert TransformerConfig.from_file(path) == cfg


def test_head_dim_derived_when_absent():
    cfg = TransformerConfig.from_dict({k: v for k, v in NANO.items() if k != "head_dim"})
    assert cfg.head_dim == 128
    with pytest.raises(ConfigError, match="'head_dim' is absent"):
        TransformerConfig.from_dict({**{k: v for k, v in NANO.items() if k != "head_dim"}, "num_attention_heads": 30})


def test_unknown_fields_are_named():
    with pytest.raises(ConfigError, match=r"unknown field\(s\) 'frobnicate', 'zz_top'"):
        TransformerConfig.from_dict({**NANO, "zz_top": 1, "frobnicate": True})
    with pytest.raises(ConfigError, match="'_class_name' is 'WanTransformer3DModel'"):
        TransformerConfig.from_dict({**NANO, "_class_name": "WanTransformer3DModel"})
    with pytest.raises(ConfigError, match="rope_scaling' has unknown key"):
        TransformerConfig.from_dict({**NANO, "rope_scaling": {"mrope_section": [24, 20, 20], "factor": 2}})


@pytest.mark.parametrize(
    "change, message",
    [
        ({"num_attention_heads": 30}, r"'num_attention_heads' \(30\) must be a multiple of num_key_value_heads \(8\)"),
        (
            {"rope_axes_dim": [24, 20, 16], "rope_scaling": None},
            r"'rope_axes_dim' \[24, 20, 16\] must sum to head_dim/2 = 64",
        ),
        ({"rope_axes_dim": [4, 30, 30], "rope_scaling": None}, "interleaved layout"),
        ({"rope_axes_dim": [22, 22, 20]}, "'rope_axes_dim' .* and 'rope_scaling.mrope_section' .* disagree"),
        ({"hidden_act": "gelu"}, "'hidden_act' is 'gelu'; allowed: silu, relu2"),
        ({"use_und_k_norm_for_gen": True}, "'use_und_k_norm_for_gen' is true but 'qk_norm_for_text' is also true"),
        ({"patch_latent_dim": 128}, r"'patch_latent_dim' \(128\) must equal"),
        ({"hidden_size": 0}, "'hidden_size' must be a positive integer"),
        ({"num_hidden_layers": 2.5}, "'num_hidden_layers' must be a positive integer"),
        ({"rms_norm_eps": -1.0}, "'rms_norm_eps' must be a positive number"),
        ({"qk_norm_for_text": "yes"}, "'qk_norm_for_text' must be true or false"),
        ({"sound_dim": None}, "'sound_dim' must be a positive integer when sound_gen is true"),
        ({"backbone_type": "cosmos3_edge_nemotron_dense"}, "'hidden_act' is 'silu' but backbone_type"),
        ({"backbone_type": "llama"}, "'backbone_type' is 'llama'"),
        ({"layer_norm_epsilon": 1e-5}, "'layer_norm_epsilon' .* and 'rms_norm_eps' .* disagree"),
        ({"joint_attn_implementation": "one_way"}, "'joint_attn_implementation' is 'one_way'"),
        ({"rope_scaling": {"mrope_interleaved": False}}, "mrope_interleaved' must be true"),
        ({"head_dim": 127, "rope_axes_dim": None, "rope_scaling": None}, "'head_dim' must be even"),
    ],
)
def test_inconsistent_fields_are_named(change, message):
    with pytest.raises(ConfigError, match=message):
        TransformerConfig.from_dict({**NANO, **change}, source="transformer/config.json")


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        TransformerConfig.from_file(tmp_path / "nope.json")
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="unreadable config JSON"):
        TransformerConfig.from_file(bad)
    bad.write_text(json.dumps({**NANO, "vocab_size": -3}))
    with pytest.raises(ConfigError, match=r"config.json: field 'vocab_size'"):
        TransformerConfig.from_file(bad)
