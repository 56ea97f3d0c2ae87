"""Stand-in for ComfyUI's ``folder_paths`` (behaviour of v0.3.64, our own code).

State lives in module globals exactly like the real module; :func:`_reset` points everything at a fresh
base directory (``<base>/models``, ``<base>/input``, ``<base>/output``, ``<base>/temp``).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Collection

supported_pt_extensions: set[str] = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}

# key -> ([directories], extensions); an empty extension collection means "every file"
folder_names_and_paths: dict[str, tuple[list[str], Collection[str]]] = {}
base_path = ""
models_dir = ""
output_directory = ""
temp_directory = ""
input_directory = ""
user_directory = ""

_LEGACY = {"unet": "diffusion_models", "clip": "text_encoders"}

# (key, directory) pairs under models_dir, as in the real module; "diffusers" lists folders only
_DEFAULT_KEYS = (
    ("checkpoints", ("checkpoints",), None),
    ("configs", ("configs",), [".yaml"]),
    ("loras", ("loras",), None),
    ("vae", ("vae",), None),
    ("text_encoders", ("text_encoders", "clip"), None),
    ("diffusion_models", ("unet", "diffusion_models"), None),
    ("clip_vision", ("clip_vision",), None),
    ("style_models", ("style_models",), None),
    ("embeddings", ("embeddings",), None),
    ("diffusers", ("diffusers",), ["folder"]),
    ("vae_approx", ("vae_approx",), None),
    ("controlnet", ("controlnet", "t2i_adapter"), None),
    ("upscale_models", ("upscale_models",), None),
    ("model_patches", ("model_patches",), None),
    ("audio_encoders", ("audio_encoders",), None),
)


def _reset(base_dir: str | os.PathLike, create: bool = True) -> None:
    """Fresh state rooted at ``base_dir`` (the stub's equivalent of a ComfyUI start with ``--base-directory``);
    ``create`` makes the models/input/output/temp directories (the real module creates only input/)."""
    global base_path, models_dir, output_directory, temp_directory, input_directory, user_directory
    base_path = os.path.abspath(os.fspath(base_dir))
    models_dir = os.path.join(base_path, "models")
    folder_names_and_paths.clear()
    for key, subdirs, exts in _DEFAULT_KEYS:
        folder_names_and_paths[key] = (
            [os.path.join(models_dir, d) for d in subdirs],
            supported_pt_extensions if exts is None else exts,
        )
    folder_names_and_paths["custom_nodes"] = ([os.path.join(base_path, "custom_nodes")], set())
    output_directory = os.path.join(base_path, "output")
    temp_directory = os.path.join(base_path, "temp")
    input_directory = os.path.join(base_path, "input")
    user_directory = os.path.join(base_path, "user")
    if create:
        for d in (models_dir, output_directory, temp_directory, input_directory):
            os.makedirs(d, exist_ok=True)
    filename_list_cache.clear()


filename_list_cache: dict[str, tuple[list[str], dict[str, float], float]] = {}


def map_legacy(folder_name: str) -> str:
    return _LEGACY.get(folder_name, folder_name)


def set_output_directory(output_dir: str) -> None:
    global output_directory
    output_directory = output_dir


def set_temp_directory(temp_dir: str) -> None:
    global temp_directory
    temp_directory = temp_dir


def set_input_directory(input_dir: str) -> None:
    global input_directory
    input_directory = input_dir


def get_output_directory() -> str:
    return output_directory


def get_temp_directory() -> str:
    return temp_directory


def get_input_directory() -> str:
    return input_directory


def get_user_directory() -> str:
    return user_directory


def get_directory_by_type(type_name: str) -> str | None:
    return {"output": output_directory, "temp": temp_directory, "input": input_directory}.get(type_name)


def annotated_filepath(name: str) -> tuple[str, str | None]:
    for tag, directory in (("[output]", output_directory), ("[input]", input_directory), ("[temp]", temp_directory)):
        if name.endswith(tag):
            return name[: -len(tag)].rstrip(" "), directory
    return name, None


def get_annotated_filepath(name: str, default_dir: str | None = None) -> str:
    name, base_dir = annotated_filepath(name)
    if base_dir is None:
        base_dir = default_dir if default_dir is not None else input_directory
    return os.path.join(base_dir, name)


def exists_annotated_filepath(name: str) -> bool:
    return os.path.exists(get_annotated_filepath(name))


def add_model_folder_path(folder_name: str, full_folder_path: str, is_default: bool = False) -> None:
    """Append (or with ``is_default`` move/insert first) a directory. A *new* key gets an empty extension
    set, which means every file is listed — set extensions yourself for new keys."""
    folder_name = map_legacy(folder_name)
    if folder_name in folder_names_and_paths:
        paths = folder_names_and_paths[folder_name][0]
        if full_folder_path in paths:
            if is_default and paths[0] != full_folder_path:
                paths.remove(full_folder_path)
                paths.insert(0, full_folder_path)
        elif is_default:
            paths.insert(0, full_folder_path)
        else:
            paths.append(full_folder_path)
    else:
        folder_names_and_paths[folder_name] = ([full_folder_path], set())


def get_folder_paths(folder_name: str) -> list[str]:
    """A copy of the directories of a key; ``KeyError`` for an unknown key (like the real one)."""
    return list(folder_names_and_paths[map_legacy(folder_name)][0])


def recursive_search(directory: str, excluded_dir_names: list[str] | None = None) -> tuple[list[str], dict[str, float]]:
    if not os.path.isdir(directory):
        return [], {}
    excluded = set(excluded_dir_names or [])
    files: list[str] = []
    dirs = {directory: os.path.getmtime(directory)}
    for dirpath, subdirs, filenames in os.walk(directory, followlinks=True, topdown=True):
        subdirs[:] = [d for d in subdirs if d not in excluded]
        files.extend(os.path.relpath(os.path.join(dirpath, f), directory) for f in filenames)
        for d in subdirs:
            path = os.path.join(dirpath, d)
            dirs[path] = os.path.getmtime(path)
    return files, dirs


def filter_files_extensions(files: Collection[str], extensions: Collection[str]) -> list[str]:
    return sorted(f for f in files if len(extensions) == 0 or os.path.splitext(f)[-1].lower() in extensions)


def get_full_path(folder_name: str, filename: str) -> str | None:
    """Absolute path of ``filename`` in the first directory of the key that holds it as a *file*."""
    folder_name = map_legacy(folder_name)
    if folder_name not in folder_names_and_paths:
        return None
    filename = os.path.relpath(os.path.join("/", filename), "/")  # no escaping the folder with ../
    for folder in folder_names_and_paths[folder_name][0]:
        full_path = os.path.join(folder, filename)
        if os.path.isfile(full_path):
            return full_path
    return None


def get_full_path_or_raise(folder_name: str, filename: str) -> str:
    full_path = get_full_path(folder_name, filename)
    if full_path is None:
        raise FileNotFoundError(f"Model in folder '{folder_name}' with filename '{filename}' not found.")
    return full_path


def get_filename_list_(folder_name: str) -> tuple[list[str], dict[str, float], float]:
    folder_name = map_legacy(folder_name)
    paths, extensions = folder_names_and_paths[folder_name]
    found: set[str] = set()
    dirs: dict[str, float] = {}
    for folder in paths:
        files, folder_dirs = recursive_search(folder, excluded_dir_names=[".git"])
        found.update(filter_files_extensions(files, extensions))
        dirs.update(folder_dirs)
    return sorted(found), dirs, time.perf_counter()


def get_filename_list(folder_name: str) -> list[str]:
    """Sorted relative paths of the *files* under every directory of the key (recursive), filtered by the
    key's extensions. (The real module caches by directory mtimes; listing afresh is observably the same.)"""
    out = get_filename_list_(folder_name)
    filename_list_cache[map_legacy(folder_name)] = out
    return list(out[0])


def get_save_image_path(filename_prefix: str, output_dir: str, image_width: int = 0, image_height: int = 0):
    """``(full_output_folder, filename, counter, subfolder, filename_prefix)`` like the real one (no %date% vars)."""
    filename_prefix = filename_prefix.replace("%width%", str(image_width)).replace("%height%", str(image_height))
    subfolder = os.path.dirname(os.path.normpath(filename_prefix))
    filename = os.path.basename(os.path.normpath(filename_prefix))
    full_output_folder = os.path.join(output_dir, subfolder)
    if os.path.commonpath((output_dir, os.path.abspath(full_output_folder))) != output_dir:
        raise Exception("**** ERROR: Saving image outside the output folder is not allowed.")
    os.makedirs(full_output_folder, exist_ok=True)
    counter = 1
    for name in os.listdir(full_output_folder):
        if name.startswith(filename + "_"):
            try:
                counter = max(counter, int(name[len(filename) + 1 :].split("_")[0]) + 1)
            except ValueError:
                pass
    return full_output_folder, filename, counter, subfolder, filename_prefix


# Until a test calls _reset(tmp_path), point at a directory that is never created.
_reset(os.path.join(tempfile.gettempdir(), "c3mot-comfy-stub-unset"), create=False)
