"""Fixtures for sound: a tiny diffusers ``Cosmos3AVAEAudioTokenizer`` and a sound-capable tiny pipeline.

* :func:`make_reference_sound_tokenizer` — random tiny tokenizer (decoder and encoder);
* :func:`reference_velocity_av` — one diffusers forward on ``[text ; vision ; sound]`` packed like
  ``Cosmos3OmniPipeline`` does with ``enable_sound=True``;
* :func:`build_sound_pipeline` — in-memory diffusers pipeline (fp32) with a sound-capable transformer.

diffusers is the test oracle only.
"""

from __future__ import annotations

import torch
from tiny_checkpoint import PIPELINE_TRANSFORMER, build_reference_pipeline
from tiny_transformer import pack_reference_inputs

SOUND_DIM = 16
# 960 Hz, hop 6: a 9-frame clip at 24 fps is 360 samples = 60 latent frames.
TINY_SOUND_TOKENIZER = dict(
    sampling_rate=960, vocoder_input_dim=SOUND_DIM, dec_dim=8, dec_c_mults=(1, 2), dec_strides=(2, 3),
    enc_dim=8, enc_latent_dim=2 * SOUND_DIM, enc_c_mults=(1, 2), enc_strides=(2, 3), enc_n_fft=16, enc_hop_length=6,
)
SOUND_TRANSFORMER = dict(PIPELINE_TRANSFORMER, sound_gen=True, sound_dim=SOUND_DIM, sound_latent_fps=25.0)


def make_reference_sound_tokenizer(seed: int = 0, std: float = 0.3, **overrides):
    """diffusers ``Cosmos3AVAEAudioTokenizer`` (fp32) with random weights (Snake parameters N(0, 0.3) too)."""
    import warnings

    from diffusers import Cosmos3AVAEAudioTokenizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's weight_norm deprecation
        model = Cosmos3AVAEAudioTokenizer(**{**TINY_SOUND_TOKENIZER, **overrides})
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, param in model.named_parameters():
            param.copy_(std * torch.randn(param.shape, generator=generator))
    return model.eval()


def reference_velocity_av(
    model,
    input_ids: torch.Tensor,
    latents: torch.Tensor,
    sound: torch.Tensor,
    timestep: int | float,
    fps: float = 24.0,
    condition_frames: tuple[int, ...] = (),
) -> tuple[torch.Tensor, torch.Tensor]:
    """diffusers forward with sound tokens: ``latents`` [1, C, T, h, w], ``sound`` [1, sound_dim, T_s] ->
    (vision velocity [1, C, T, h, w], sound velocity [1, sound_dim, T_s])."""
    from diffusers.pipelines.cosmos.pipeline_cosmos3_omni import get_3d_mrope_ids_vae_tokens

    cfg = model.config
    kwargs, offset, start = pack_reference_inputs(model, input_ids, latents, timestep, fps, condition_frames)
    sound_len = sound.shape[-1]
    sound_ids, _ = get_3d_mrope_ids_vae_tokens(
        grid_t=sound_len, grid_h=1, grid_w=1, temporal_offset=offset,
        reset_spatial_indices=cfg.unified_3d_mrope_reset_spatial_ids,
        fps=float(cfg.sound_latent_fps) if cfg.enable_fps_modulation else None, base_fps=float(cfg.base_fps),
        temporal_compression_factor=1,
    )
    kwargs["position_ids"] = torch.cat([kwargs["position_ids"], sound_ids], dim=1)
    sound_index = torch.arange(start, start + sound_len)
    with torch.no_grad():
        preds, preds_sound, _ = model(
            **kwargs,
            sequence_length=start + sound_len,
            sound_tokens=[sound[0].to(model.proj_in.weight.dtype)],
            sound_token_shapes=[(sound_len, 1, 1)],
            sound_sequence_indexes=sound_index,
            sound_mse_loss_indexes=sound_index.clone(),
            sound_timesteps=torch.full((sound_len,), timestep),
            sound_noisy_frame_indexes=[torch.arange(sound_len)],
            return_dict=False,
        )
    return preds[0], preds_sound[0].unsqueeze(0)


def build_sound_pipeline(seed: int = 0, scheduler=None, **pipeline_flags):
    """An in-memory diffusers ``Cosmos3OmniPipeline`` (fp32) with a sound-capable transformer and tokenizer."""
    return build_reference_pipeline(seed, scheduler, transformer_config=SOUND_TRANSFORMER,
                                    sound_tokenizer=make_reference_sound_tokenizer(seed=seed + 1), **pipeline_flags)


def reference_av(pipe, seed: int = 0, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """diffusers output with sound: (frames float32 [F, H, W, 3] in [0, 1], waveform float32 [C, N])."""
    out = pipe(
        generator=torch.Generator("cpu").manual_seed(seed), output_type="np", enable_safety_check=False,
        enable_sound=True, **kwargs,
    )
    return torch.from_numpy(out.video).float(), out.sound.float()
