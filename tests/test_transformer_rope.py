"""mRoPE positions/tables, RMSNorm flavours and the timestep embedding against diffusers' building blocks."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.normalization import RMSNorm as DiffusersRMSNorm
from diffusers.models.transformers.transformer_cosmos3 import Cosmos3NemotronRMSNorm, Cosmos3VLTextRotaryEmbedding
from diffusers.pipelines.cosmos.pipeline_cosmos3_omni import get_3d_mrope_ids_text_tokens, get_3d_mrope_ids_vae_tokens

from cosmos3 import Cosmos3Transformer, TransformerConfig
from cosmos3.model.norms import RMSNorm
from cosmos3.model.rope import (
    apply_rope,
    inverse_frequencies,
    media_temporal_offset,
    rope_tables,
    text_position_ids,
    vision_position_ids,
)
from cosmos3.model.transformer import timestep_sinusoid


def test_text_positions_match_pipeline():
    for flag in (True, False):
        expected, next_offset = get_3d_mrope_ids_text_tokens(37, 0, use_float_positions=flag)
        got = text_position_ids(37, float_positions=flag)
        assert got.dtype == expected.dtype and torch.equal(got, expected)
        assert media_temporal_offset(37, 15000) == next_offset + 15000


@pytest.mark.parametrize(
    "grid, fps, reset",
    [((5, 3, 4), 24.0, True), ((5, 3, 4), 16.0, True), ((7, 2, 3), 30.0, True), ((4, 2, 2), 10.0, False),
     ((1, 3, 5), 24.0, True), ((3, 2, 2), None, True)],
)
def test_vision_positions_match_pipeline(grid, fps, reset):
    frames, rows, cols = grid
    offset = 15013
    expected, _ = get_3d_mrope_ids_vae_tokens(
        frames, rows, cols, temporal_offset=offset, reset_spatial_indices=reset, fps=fps, base_fps=24.0,
        temporal_compression_factor=4,
    )
    got = vision_position_ids(frames, rows, cols, offset, fps=fps, base_fps=24.0, reset_spatial=reset)
    assert got.dtype == expected.dtype and torch.equal(got, expected)


def test_fps_modulation_values():
    # 16 fps against base 24: latent frames are 1.5 base-frame steps apart; spatial ids restart at 0.
    ids = vision_position_ids(3, 2, 2, 100, fps=16.0, base_fps=24.0)
    assert ids[0].tolist() == [100.0] * 4 + [101.5] * 4 + [103.0] * 4
    assert ids[1].tolist() == [0, 0, 1, 1] * 3 and ids[2].tolist() == [0, 1, 0, 1] * 3
    assert vision_position_ids(1, 2, 2, 100, fps=16.0)[0].tolist() == [100] * 4  # single frame: integer branch


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("theta, axes", [(5e6, (24, 20, 20)), (1e8, (24, 20, 20))])
def test_rope_tables_match_diffusers(dtype, theta, axes):
    reference = Cosmos3VLTextRotaryEmbedding(head_dim=128, rope_theta=theta, rope_axes_dim=list(axes))
    text = text_position_ids(40)
    vision = vision_position_ids(4, 3, 5, 15040, fps=16.0)
    positions = torch.cat([text, vision], dim=1)
    cos_ref, sin_ref = reference(positions.unsqueeze(1), device=torch.device("cpu"), dtype=dtype)
    cos, sin = rope_tables(positions, 128, theta, axes, dtype)
    assert cos.dtype == dtype and torch.equal(cos, cos_ref[0]) and torch.equal(sin, sin_ref[0])
    assert torch.equal(inverse_frequencies(128, theta), reference.inv_freq)


def test_interleaved_slot_map():
    """t on {0,3,..,57} U {60..63}; h on {1,4,..,58}; w on {2,5,..,59}."""
    base = torch.zeros(3, 1)
    owners = {}
    for axis in range(3):
        positions = base.clone()
        positions[axis] = 1000.0
        _, sin = rope_tables(positions, 128, 5e6, (24, 20, 20), torch.float32)
        moved = (sin[0, :64] != 0.0).nonzero().flatten().tolist()
        assert torch.equal(sin[0, 64:], sin[0, :64])
        owners[axis] = set(moved)
    assert owners[0] == set(range(0, 60, 3)) | {60, 61, 62, 63}
    assert owners[1] == set(range(1, 60, 3)) and owners[2] == set(range(2, 60, 3))


def test_apply_rope_is_rotate_half():
    x = torch.randn(5, 2, 8)
    cos, sin = torch.randn(5, 8), torch.randn(5, 8)
    rotated = torch.cat([-x[..., 4:], x[..., :4]], dim=-1)
    assert torch.equal(apply_rope(x, cos, sin), x * cos[:, None] + rotated * sin[:, None])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rmsnorm_flavours_match_diffusers(dtype):
    x = (3 * torch.randn(6, 64)).to(dtype)
    weight = (1 + 0.1 * torch.randn(64)).to(dtype)
    qwen, nemotron = RMSNorm(64, 1e-6, "qwen", dtype=dtype), RMSNorm(64, 1e-5, "nemotron", dtype=dtype)
    ref_qwen = DiffusersRMSNorm(64, eps=1e-6).to(dtype)
    ref_nemotron = Cosmos3NemotronRMSNorm(64, eps=1e-5).to(dtype)
    with torch.no_grad():
        for module in (qwen, nemotron, ref_qwen, ref_nemotron):
            module.weight.copy_(weight)
        assert torch.equal(qwen(x), ref_qwen(x)) and qwen(x).dtype == dtype
        assert torch.equal(nemotron(x), ref_nemotron(x)) and nemotron(x).dtype == dtype
        if dtype == torch.bfloat16:  # same eps, different rounding points -> different bits
            other = RMSNorm(64, 1e-6, "nemotron", dtype=dtype)
            other.weight.copy_(weight)
            assert not torch.equal(qwen(x), other(x))
    with pytest.raises(ValueError, match="allowed: qwen, nemotron"):
        RMSNorm(4, 1e-6, "layer")


@pytest.mark.parametrize("timestep", [999, 937.5, 0, 1, 625])
def test_timestep_embedding_matches_diffusers(timestep):
    cfg = TransformerConfig.from_dict(
        {
            "hidden_size": 64,
            "num_attention_heads": 1,
            "num_key_value_heads": 1,
            "head_dim": 128,
            "num_hidden_layers": 1,
            "intermediate_size": 32,
            "vocab_size": 8,
        }
    )
    model = Cosmos3Transformer(cfg, dtype=torch.bfloat16)
    projector = Timesteps(num_channels=256, flip_sin_to_cos=True, downscale_freq_shift=0)
    embedder = TimestepEmbedding(in_channels=256, time_embed_dim=64)
    with torch.no_grad():
        for name in ("linear_1", "linear_2"):
            ours = getattr(model.gen_tower.time_embedder, name)
            theirs = getattr(embedder, name)
            ours.weight.copy_(theirs.weight)
            ours.bias.copy_(theirs.bias)
        # the pipeline passes a per-token tensor filled with the scheduler's python number
        sinusoid = projector(torch.full((3,), timestep) * 0.001)
        expected = embedder(sinusoid)
        got = model._timestep_embedding(timestep, torch.device("cpu"))
    # Bit-identical MLP input. The MLP runs once instead of once per token; a GEMM's rounding depends on its
    # row count (diffusers' own rows differ by ~1e-7 between 1 and 900 tokens), hence the tolerance.
    assert torch.equal(timestep_sinusoid(timestep, 0.001), sinusoid[:1])
    assert got.dtype == torch.float32
    assert (got[0] - expected[0]).abs().max() <= 1e-6
