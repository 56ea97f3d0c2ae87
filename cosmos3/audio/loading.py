"""Load the sound tokenizer's decoder from a checkpoint's ``sound_tokenizer/`` folder (diffusers layout).

Accepted locations: a diffusers ``Cosmos3AVAEAudioTokenizer`` folder (``config.json`` +
``diffusion_pytorch_model.safetensors``, possibly sharded), a model root holding ``sound_tokenizer/``, or a single
``.safetensors`` file (a ``config.json`` beside it is used if present, else the shipped AVAE defaults).

Every decoder conv is stored weight-normalised (``weight_g`` [out, 1, 1] and ``weight_v``, or the newer
``parametrizations.weight.original0/1``); the loader folds ``g * v / ||v||`` (fp32, norm over all but the first
axis) into a plain weight. The model is built on the meta device and filled tensor by tensor; encoder weights
(``encoder.*``) are skipped, since generation only decodes. Key problems are reported together in one
:class:`~cosmos3.files.safetensors.CheckpointKeyError`, unreadable files raise ``CheckpointError`` naming them.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..files.json_files import read_json_object
from ..files.safetensors import (
    CheckpointError,
    CheckpointKeyError,
    SafetensorsReader,
    assign_tensor,
    check_keys,
    finish_loading,
    module_shapes,
    resolve_component,
)
from .config import SoundConfigError, SoundTokenizerConfig
from .decoder import SoundDecoder

FOLDER = "sound_tokenizer"
_FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
_WEIGHT_NORM_NAMES = (
    ("weight_g", "weight_v"),
    ("parametrizations.weight.original0", "parametrizations.weight.original1"),
)
_SKIPPED_PREFIXES = ("encoder.",)


def sound_tokenizer_folder(root: str | Path) -> Path | None:
    """``root/sound_tokenizer`` when it exists, else ``None``."""
    folder = Path(root).expanduser() / FOLDER
    return folder if folder.is_dir() else None


def _read_config(path: Path) -> SoundTokenizerConfig:
    raw = read_json_object(path, CheckpointError, "sound tokenizer config")
    try:
        return SoundTokenizerConfig.from_diffusers(raw, source=str(path))
    except SoundConfigError as exc:
        raise CheckpointError(str(exc)) from None


def resolve_sound_location(path: str | Path) -> tuple[list[Path], SoundTokenizerConfig, str]:
    """``(safetensors files, config, description)`` of a sound tokenizer location."""
    return resolve_component(path, FOLDER, "sound tokenizer", _read_config, SoundTokenizerConfig(),
                             missing_hint=f" (expected the checkpoint's {FOLDER}/ folder)")


def read_sound_config(path: str | Path) -> SoundTokenizerConfig:
    """Only the config of a sound tokenizer location (no weights are opened)."""
    path = Path(path).expanduser()
    if path.is_dir():
        for folder in (path, path / FOLDER):
            if (folder / "config.json").is_file():
                return _read_config(folder / "config.json")
    elif path.is_file() and (path.parent / "config.json").is_file():
        return _read_config(path.parent / "config.json")
    elif path.is_file():
        return SoundTokenizerConfig()
    return resolve_sound_location(path)[1]


def check_sound_dim(config: SoundTokenizerConfig, sound_dim: int | None, source: str) -> None:
    """Raise :class:`CheckpointError` unless the tokenizer's latent width equals the transformer's ``sound_dim``."""
    if sound_dim is not None and config.vocoder_input_dim != sound_dim:
        raise CheckpointError(
            f"{source}: the sound tokenizer does not fit the transformer: its latent width (vocoder_input_dim) is "
            f"{config.vocoder_input_dim} but the transformer's sound_dim is {sound_dim}"
        )


def _stored_names(model: SoundDecoder, found: set[str]) -> dict[str, tuple[str, ...]]:
    """``{our key: checkpoint keys}``: conv weights map to their (g, v) pair, everything else to itself."""
    names: dict[str, tuple[str, ...]] = {}
    for key in module_shapes(model):
        owner, _, leaf = key.rpartition(".")
        module = model.get_submodule(owner) if owner else model
        if leaf == "weight" and isinstance(module, (torch.nn.Conv1d, torch.nn.ConvTranspose1d)):
            pairs = [(f"{owner}.{g}", f"{owner}.{v}") for g, v in _WEIGHT_NORM_NAMES]
            names[key] = next((p for p in pairs if p[1] in found), pairs[0])
        else:
            names[key] = (key,)
    return names


def _fold_weight_norm(g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``v * (g / ||v||)`` with the norm over every axis but the first, in fp32."""
    v = v.float()
    norm = v.norm(dim=tuple(range(1, v.dim())), keepdim=True)
    return v * (g.float() / norm)


def _checked_layout(
    reader: SafetensorsReader, config: SoundTokenizerConfig, source: str
) -> tuple[SoundDecoder, dict[str, tuple[str, ...]]]:
    """A meta-device decoder and ``{our key: checkpoint keys}`` after checking every key, shape and dtype."""
    found = {k: info.shape for k, info in reader.items()}
    with torch.device("meta"):
        model = SoundDecoder(config)
    shapes = module_shapes(model)
    names = _stored_names(model, set(found))
    expected: dict[str, tuple[int, ...]] = {}
    for key, stored in names.items():
        if len(stored) == 2:
            expected[stored[0]] = (shapes[key][0], *([1] * (len(shapes[key]) - 1)))
            expected[stored[1]] = shapes[key]
        else:
            expected[stored[0]] = shapes[key]
    check_keys(expected, found, f"{source} (sound tokenizer)", ignored_unexpected=_SKIPPED_PREFIXES)
    bad = [f"{k} ({reader[k].dtype})" for k in expected if reader[k].dtype not in _FLOAT_DTYPES]
    if bad:
        raise CheckpointKeyError(f"{source}: non-floating tensors: {', '.join(bad)}")
    return model, names


def inspect_sound_tokenizer(path: str | Path, *, sound_dim: int | None = None) -> SoundTokenizerConfig:
    """Check a sound tokenizer without loading its weights (config, latent width, file headers, keys and shapes);
    returns its config. Raises what :func:`load_sound_decoder` would raise for the same files."""
    files, config, source = resolve_sound_location(path)
    check_sound_dim(config, sound_dim, source)
    with SafetensorsReader(files) as reader:
        _checked_layout(reader, config, source)
    return config


def load_sound_decoder(
    path: str | Path,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    *,
    sound_dim: int | None = None,
) -> SoundDecoder:
    """Load the decoder of the sound tokenizer at ``path`` in ``dtype`` on ``device``.

    ``sound_dim``: the transformer's sound latent width; a tokenizer of another width is refused naming both.
    """
    if dtype not in _FLOAT_DTYPES:
        raise TypeError(f"load_sound_decoder: dtype must be one of {', '.join(map(str, _FLOAT_DTYPES))}, got {dtype!r}")
    device = torch.device(device)
    files, config, source = resolve_sound_location(path)
    check_sound_dim(config, sound_dim, source)
    with SafetensorsReader(files) as reader:
        model, names = _checked_layout(reader, config, source)
        for key, stored in names.items():
            if len(stored) == 2:
                tensor = _fold_weight_norm(reader.load(stored[0]), reader.load(stored[1]))
            else:
                tensor = reader.load(stored[0])
            assign_tensor(model, key, tensor.to(device=device, dtype=dtype))
    finish_loading(model, source)
    return model
