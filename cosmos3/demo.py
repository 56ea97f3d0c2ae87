"""Install check: build a tiny random-weight Cosmos3 checkpoint and run T2V, I2V and T2I on it.

Everything here uses the runtime dependencies only (no diffusers, no downloads). The weights are random,
so the outputs are noise: this proves that loading, tokenizing, sampling, decoding and writing work.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .audio.config import SoundTokenizerConfig
from .audio.decoder import SoundDecoder
from .model.config import TransformerConfig
from .model.loading import checkpoint_key
from .model.transformer import Cosmos3Transformer
from .vae.config import WanVAEConfig
from .vae.model import WanVAE

DEMO_WORDS = (
    "a the red green blue ball cat dog robot arm table car street rolls walks drives slowly quickly over on in "
    "of with and video image seconds long is are this resolution fps not 0 1 2 3 4 5 6 7 8 9 x . , : ; { } [ ] \" "
    "you helpful assistant user system who will generate videos images from give prompt"
).split()
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<unk>")
# Plain ChatML, the conversation format of Qwen-family tokenizers.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
DEMO_TRANSFORMER = dict(
    hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
    intermediate_size=128, vocab_size=256, rope_axes_dim=[8, 4, 4],
)
DEMO_VAE = dict(base_dim=16, decoder_base_dim=24)
# Sound like the real checkpoints (a sound head + sound_tokenizer/), tiny: 16 kHz stereo, 80 samples per latent.
DEMO_SOUND_DIM = 16
DEMO_SOUND = dict(sampling_rate=16000, vocoder_input_dim=DEMO_SOUND_DIM, dec_dim=4, dec_c_mults=(1, 2, 2),
                  dec_strides=(4, 4, 5), dec_out_channels=2)


def _randomize(module: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            noise = torch.randn(param.shape, generator=gen)
            if name.endswith(("norm.weight", "layernorm.weight", "gamma")) or ".norm_" in name or "_norm" in name:
                param.copy_(1.0 + 0.1 * noise)
            elif param.dim() <= 1:
                param.copy_(0.02 * noise)
            else:
                param.copy_(noise / max(1, param[0].numel()) ** 0.5)


def _save_safetensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(path))


def write_tokenizer(folder: Path) -> None:
    """A word-level tokenizer with the special tokens Cosmos3 prompts need, saved with transformers."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for word in DEMO_WORDS:
        vocab.setdefault(word, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token="<unk>",
        additional_special_tokens=list(SPECIAL_TOKENS[1:5]),
    )
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(str(folder))


def write_sound_tokenizer(folder: Path, seed: int = 0) -> None:
    """A tiny random sound tokenizer (decoder only) in the diffusers layout: weight-normed convs as
    ``weight_g`` (the per-output-channel norm) + ``weight_v``."""
    folder.mkdir(parents=True, exist_ok=True)
    config = SoundTokenizerConfig(**DEMO_SOUND)
    decoder = SoundDecoder(config, dtype=torch.float32)
    _randomize(decoder, seed)
    with torch.no_grad():
        decoder.decoder.conv2.weight.mul_(0.02)  # a quiet noise instead of a clipped one
    state: dict[str, torch.Tensor] = {}
    for name, tensor in decoder.state_dict().items():
        owner = decoder.get_submodule(name.rpartition(".")[0])
        if name.endswith(".weight") and isinstance(owner, (torch.nn.Conv1d, torch.nn.ConvTranspose1d)):
            stem = name[: -len("weight")]
            state[stem + "weight_g"] = tensor.norm(dim=(1, 2), keepdim=True)
            state[stem + "weight_v"] = tensor
        else:
            state[name] = tensor
    _save_safetensors(state, folder / "diffusion_pytorch_model.safetensors")
    (folder / "config.json").write_text(json.dumps({
        "_class_name": "Cosmos3AVAEAudioTokenizer", "model_type": "autoencoder_v2", "encoder_enabled": False,
        **{k: list(v) if isinstance(v, tuple) else v for k, v in DEMO_SOUND.items()},
    }, indent=2))


def build_demo_checkpoint(root: str | Path, seed: int = 0, sound: bool = True) -> Path:
    """Write a complete tiny checkpoint (diffusers layout) under ``root``; returns ``root``.

    ``sound``: with a sound head and a ``sound_tokenizer/`` (like the real checkpoints); the other weights are
    the same either way.
    """
    root = Path(root)
    (root / "transformer").mkdir(parents=True, exist_ok=True)
    (root / "vae").mkdir(exist_ok=True)
    (root / "scheduler").mkdir(exist_ok=True)
    (root / "text_tokenizer").mkdir(exist_ok=True)

    extra = {"sound_gen": True, "sound_dim": DEMO_SOUND_DIM} if sound else {}
    config = TransformerConfig.from_dict({**DEMO_TRANSFORMER, **extra}, source="demo transformer")
    model = Cosmos3Transformer(config, dtype=torch.float32)
    _randomize(model, seed)
    state = {checkpoint_key(name): t for name, t in model.state_dict().items()}
    _save_safetensors(state, root / "transformer" / "diffusion_pytorch_model.safetensors")
    (root / "transformer" / "config.json").write_text(
        json.dumps({"_class_name": "Cosmos3OmniTransformer", **config.to_dict()}, indent=2)
    )

    vae_config = WanVAEConfig().with_changes(**DEMO_VAE)
    vae = WanVAE(vae_config)
    _randomize(vae, seed + 1)
    _save_safetensors(vae.state_dict(), root / "vae" / "diffusion_pytorch_model.safetensors")
    (root / "vae" / "config.json").write_text(
        json.dumps({"_class_name": "AutoencoderKLWan", **vae_config.to_diffusers()}, indent=2)
    )

    write_tokenizer(root / "text_tokenizer")
    if sound:
        write_sound_tokenizer(root / "sound_tokenizer", seed + 2)
    (root / "scheduler" / "scheduler_config.json").write_text(json.dumps({
        "_class_name": "UniPCMultistepScheduler", "use_karras_sigmas": True, "use_flow_sigmas": True,
        "prediction_type": "flow_prediction", "sigma_max": 200.0, "sigma_min": 0.147,
    }, indent=2))
    (root / "model_index.json").write_text(json.dumps({
        "_class_name": "Cosmos3OmniPipeline", "default_use_system_prompt": False,
        "use_native_flow_schedule": False, "enable_safety_checker": False,
    }, indent=2))
    return root
