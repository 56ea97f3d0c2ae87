"""File layout of the guardrail assets and the all-at-once check of what an enabled check needs.

Layout of the NVIDIA guardrail release folder (``nvidia/Cosmos-Guardrail1``), relative to ``assets_dir``::

    blocklist/custom/*            keyword lists (one entry per line)
    blocklist/whitelist/*         words never treated as hits (optional)
    blocklist/exact_match/*       phrases matched as whole words, plus fuzzy matching (optional)
    blocklist/nltk_data/corpora/wordnet/  or  .../wordnet.zip   (optional; better lemmatisation)
    face_blur_filter/retinaface_resnet50.safetensors            converted from Resnet50_Final.pth
    video_content_safety_filter/safety_filter.safetensors       converted from safety_filter.pt (optional)
"""

from __future__ import annotations

from pathlib import Path

import torch

from ._weights import CheckpointError, check_state_keys, safetensors_shapes
from .config import GuardrailConfig
from .text.lemmatize import find_wordnet
from .text.qwen3guard import required_files_problems as qwen3guard_problems
from .text.wordlists import WordListError, list_files, read_word_folder
from .video.content_filter import siglip_problems

BLOCKLIST_CUSTOM = Path("blocklist/custom")
BLOCKLIST_WHITELIST = Path("blocklist/whitelist")
BLOCKLIST_EXACT = Path("blocklist/exact_match")
NLTK_DATA = Path("blocklist/nltk_data")
RETINAFACE_WEIGHTS = Path("face_blur_filter/retinaface_resnet50.safetensors")
RETINAFACE_PICKLE = Path("face_blur_filter/Resnet50_Final.pth")
SAFETY_HEAD_WEIGHTS = Path("video_content_safety_filter/safety_filter.safetensors")
SAFETY_HEAD_PICKLE = Path("video_content_safety_filter/safety_filter.pt")

RELEASE_REPO = "nvidia/Cosmos-Guardrail1"
QWEN3GUARD_REPO = "Qwen/Qwen3Guard-Gen-0.6B"
SIGLIP_REPO = "google/siglip-so400m-patch14-384"
CONVERT_COMMAND = "python -m guardrails.convert"
DEFAULT_ASSETS_DIR = Path("models/cosmos3_guardrail/Cosmos-Guardrail1")


def wordnet_location(config: GuardrailConfig) -> Path | None:
    """WordNet folder/zip to use: the configured one, else one under ``blocklist/nltk_data``."""
    if config.wordnet_path is not None:
        return find_wordnet(config.wordnet_path)
    if config.assets_dir is not None:
        return find_wordnet(config.assets_dir / NLTK_DATA)
    return None


def qwen3guard_enabled(config: GuardrailConfig) -> bool:
    """``on`` always; ``auto`` when the configured folder exists."""
    if config.qwen3guard == "on":
        return True
    if config.qwen3guard == "auto":
        return config.qwen3guard_dir is not None and config.qwen3guard_dir.is_dir()
    return False


def _converter_hint(assets: Path, pickle_rel: Path, what: str) -> str:
    pickle = assets / pickle_rel
    if pickle.is_file():
        return f"found {pickle.name} next to it: convert once with  {CONVERT_COMMAND} \"{assets}\""
    return (
        f"download {pickle_rel.as_posix()} from the {RELEASE_REPO} release into {pickle.parent}, then run  "
        f"{CONVERT_COMMAND} \"{assets}\"  ({what})"
    )


def _module_key_problem(path: Path, module_factory) -> str | None:
    try:
        shapes = safetensors_shapes(path)
        with torch.device("meta"):
            module = module_factory(shapes)
        check_state_keys(module, shapes, str(path))
    except CheckpointError as exc:
        return str(exc)
    return None


def _network_weights_problem(check: str, what: str, assets: Path, weights_rel: Path, pickle_rel: Path,
                             module_factory) -> str | None:
    """The converted weights of one guardrail network: missing (with how to get them) or not matching the net."""
    weights = assets / weights_rel
    if not weights.is_file():
        hint = _converter_hint(assets, pickle_rel, "the converter writes the safetensors file")
        return f"{check}: {what} {weights} are missing — {hint}"
    issue = _module_key_problem(weights, module_factory)
    return f"{check}: {issue}" if issue else None


def find_problems(config: GuardrailConfig) -> list[str]:
    """Every missing or unusable file for the enabled checks, each with where it belongs and how to
    get it. Cheap: only folders, word lists and safetensors headers are read."""
    from .video.content_filter import SafetyHead
    from .video.retinaface import RetinaFaceNet

    problems: list[str] = []
    assets = config.assets_dir
    needs_assets = config.blocklist in ("release", "release+builtin") or config.face_blur or config.content_filter
    if needs_assets and (assets is None or not assets.is_dir()):
        assets = assets if assets is not None else DEFAULT_ASSETS_DIR
        problems.append(
            f"guardrail release folder {assets} does not exist — download {RELEASE_REPO} there; "
            "the files the enabled checks need from it are listed below"
        )

    if config.blocklist != "off" and assets is not None:
        try:
            custom_words = read_word_folder(assets / BLOCKLIST_CUSTOM)
            read_word_folder(assets / BLOCKLIST_WHITELIST)
            read_word_folder(assets / BLOCKLIST_EXACT)
        except WordListError as exc:
            problems.append(f"keyword blocklist: {exc}")
        else:
            if config.blocklist in ("release", "release+builtin") and not custom_words:
                folder = assets / BLOCKLIST_CUSTOM
                state = "has no words" if list_files(folder) else "is missing or empty"
                problems.append(
                    f"keyword blocklist: {folder} {state} — copy blocklist/custom/ from {RELEASE_REPO} "
                    "(or pick the 'builtin' word list in the loader)"
                )
        if config.wordnet_path is not None and wordnet_location(config) is None:
            problems.append(f"WordNet: no index.noun/noun.exc or wordnet.zip under {config.wordnet_path}")

    if qwen3guard_enabled(config):
        if config.qwen3guard_dir is None:
            problems.append(
                f"Qwen3Guard: no model folder given — download {QWEN3GUARD_REPO} into models/cosmos3_guardrail/"
            )
        else:
            for p in qwen3guard_problems(config.qwen3guard_dir):
                problems.append(
                    f"Qwen3Guard: {p} — download {QWEN3GUARD_REPO} (safetensors) into {config.qwen3guard_dir}"
                )

    if config.face_blur and assets is not None:
        problem = _network_weights_problem(
            "face blur",
            "RetinaFace weights",
            assets,
            RETINAFACE_WEIGHTS,
            RETINAFACE_PICKLE,
            lambda shapes: RetinaFaceNet(),
        )
        if problem:
            problems.append(problem)

    if config.content_filter:
        if assets is not None:
            problem = _network_weights_problem(
                "content filter",
                "classifier weights",
                assets,
                SAFETY_HEAD_WEIGHTS,
                SAFETY_HEAD_PICKLE,
                lambda shapes: SafetyHead(
                    in_dim=shapes.get("layers.0.weight", (512, 1152))[1],
                    num_classes=shapes.get("layers.6.weight", (7, 256))[0],
                ),
            )
            if problem:
                problems.append(problem)
        if config.siglip_dir is None:
            problems.append(
                f"content filter: no SigLIP folder given — download {SIGLIP_REPO} into models/cosmos3_guardrail/"
            )
        else:
            for p in siglip_problems(config.siglip_dir):
                problems.append(
                    f"content filter: SigLIP {p} — download {SIGLIP_REPO} (safetensors) into {config.siglip_dir}"
                )
    return problems
