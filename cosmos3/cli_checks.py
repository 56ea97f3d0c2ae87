"""Everything the ``generate`` command checks before it loads a single weight.

:func:`prepare_request` reads the prompt, checks every option that does not need the weights (numbers, sizes,
frames, fps against the output format, the output path, the condition media, the device, the checkpoint's
config and the memory the request needs), resolves the settings the run will use and builds the guardrail.
Errors are :class:`CliError` naming the command-line option (``--frames``), never the library argument, and
the requested output path.
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .dtypes import DTYPES
from .errors import Cosmos3Error

MAX_SEED = 2**63 - 1
EMPTY_PROMPT_HINT = (
    "pass the text with --prompt TEXT or --prompt-file PATH (or --allow-empty-prompt to generate from an empty "
    "prompt on purpose)"
)
# Library argument names as they appear in library errors -> the command-line option.
_OPTION_OF = {
    "num_frames": "--frames", "guidance_scale": "--guidance", "negative_prompt": "--negative-prompt",
    "steps": "--steps", "shift": "--shift", "fps": "--fps", "height": "--height", "width": "--width",
    "schedule": "--schedule",
}
_ALWAYS_RENAMED = ("num_frames", "guidance_scale", "negative_prompt")


class CliError(Cosmos3Error):
    """A command-line option is invalid (the message names the option)."""


def cli_message(message: str) -> str:
    """A library error message with library argument names replaced by command-line options."""
    for name in _ALWAYS_RENAMED:
        message = re.sub(rf"\b{name}\b", _OPTION_OF[name], message)
    return re.sub(r"^(steps|shift|fps|height|width|schedule)\b", lambda m: _OPTION_OF[m.group(1)], message)


@dataclass
class Request:
    """The checked inputs of one ``generate`` run (the settings the library will resolve, already resolved)."""

    prompt: str
    negative_prompt: str | None
    image: Any
    video: Any
    output: Path
    device: torch.device
    dtype: torch.dtype
    plan: Any  # cosmos3.sampling.plan.SamplingPlan
    variant: str
    guardrail: Any = None


# ---------------------------------------------------------------------------------------------------- prompt


def read_prompt(args: argparse.Namespace) -> str:
    """The prompt from ``--prompt`` or ``--prompt-file`` (strict UTF-8), checked (not empty unless allowed)."""
    from .text.prompt_checks import EmptyPromptError, check_prompt_text
    from .text.prompting import PromptError

    option = "--prompt"
    if args.prompt_file is not None:
        option = "--prompt-file"
        path = Path(args.prompt_file)
        if not path.is_file():
            raise CliError(f"--prompt-file {path}: no such file")
        data = path.read_bytes()
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise CliError(
                f"--prompt-file {path} is not UTF-8 text: byte {exc.start} is 0x{data[exc.start]:02x}; "
                "save the file as UTF-8"
            ) from None
    else:
        text = args.prompt
    try:
        return check_prompt_text(text, allow_empty=args.allow_empty_prompt, where=EMPTY_PROMPT_HINT)
    except EmptyPromptError as exc:
        raise CliError(f"{option}: {exc}") from None
    except PromptError as exc:
        raise CliError(f"{option}: {exc} (the shell passed bytes that are not UTF-8)") from None


def read_negative(args: argparse.Namespace) -> str | None:
    from .text.prompt_checks import check_negative_text

    try:
        return check_negative_text(args.negative_prompt)
    except Cosmos3Error as exc:
        raise CliError(f"--negative-prompt: {exc}") from None


# ---------------------------------------------------------------------------------------------------- device


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available else CPU; anything else must name a usable device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise CliError(f"--device {name!r} is not a device name; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise CliError(
                f"--device {name}: {build} (torch {torch.__version__}); use --device cpu, or install a CUDA build "
                "of torch"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise CliError(f"--device {name}: there are {count} CUDA device(s) (cuda:0 to cuda:{count - 1})")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise CliError(f"--device {name}: MPS is not available on this machine; use --device cpu")
    elif device.type != "cpu":
        raise CliError(f"--device {name}: unsupported device type {device.type!r}; use auto, cpu, cuda[:N] or mps")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return DTYPES[name]


# ---------------------------------------------------------------------------------------------------- numbers


def _finite(option: str, value: float | None, low: float, high: float, *, low_open: bool = False) -> None:
    if value is None:
        return
    ok = math.isfinite(value) and (value > low if low_open else value >= low) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise CliError(f"{option} {value:g} is out of range; allowed: {bracket}{low:g}, {high:g}]")


def check_numbers(args: argparse.Namespace) -> None:
    """Ranges of the numeric options that hold whatever the checkpoint (errors name the option)."""
    from .geometry import MAX_FRAMES, MAX_SIDE
    from .sampling.loop import MAX_GUIDANCE
    from .sampling.sigmas import MAX_STEPS, MIN_STEPS

    if args.frames is not None and not 1 <= args.frames <= MAX_FRAMES:
        raise CliError(f"--frames {args.frames} is out of range; allowed: 1 (an image) or 4k+1 up to {MAX_FRAMES}")
    for option, value in (("--height", args.height), ("--width", args.width)):
        if value is not None and value < 16:
            raise CliError(f"{option} {value} is too small; use a multiple of 16, at least 16")
        if value is not None and value > MAX_SIDE and args.strict_sizes:
            raise CliError(f"{option} {value} is larger than {MAX_SIDE} (pass --no-strict-sizes to try anyway)")
    if args.steps is not None and not MIN_STEPS <= args.steps <= MAX_STEPS:
        raise CliError(f"--steps {args.steps} is out of range; allowed: {MIN_STEPS} to {MAX_STEPS}")
    _finite("--guidance", args.guidance, 0.0, MAX_GUIDANCE)
    _finite("--shift", args.shift, 0.0, 1000.0, low_open=True)
    if args.fps is not None and not (math.isfinite(args.fps) and args.fps > 0):
        raise CliError(f"--fps {args.fps:g} is not a frame rate; give a positive number such as 24")
    if not 0 <= args.seed <= MAX_SEED:
        raise CliError(f"--seed {args.seed} is out of range; allowed: 0 to {MAX_SEED}")


def check_output(args: argparse.Namespace, frames: int, fps: float) -> Path:
    """The output path (extension, folder, not a folder itself, .png = one frame) and fps within its format."""
    from .files.media import check_output_path
    from .files.video import VideoWriteError, check_video_fps

    output = Path(args.output)
    if output.suffix.lower() in (".mp4", ".webp") and frames > 1:
        try:
            check_video_fps(fps, what="--fps")
        except VideoWriteError as exc:
            raise CliError(f"{exc} (output {output})") from None
    try:
        return check_output_path(output, frames)
    except Cosmos3Error as exc:
        message = str(exc).replace(" frames were requested", " frames were requested (--frames)")
        raise CliError(f"--output: {message}") from None


# ---------------------------------------------------------------------------------------------------- all


def _read_config(checkpoint: Path):
    from .files.checkpoint import CheckpointInfo
    from .model.config import TransformerConfig

    info = CheckpointInfo.read(checkpoint)
    config_path = info.root / "transformer" / "config.json"
    if not config_path.is_file():
        raise CliError(f"--checkpoint {checkpoint}: no transformer/config.json (a diffusers-layout folder is needed)")
    return info, TransformerConfig.from_file(config_path)


def prepare_request(args: argparse.Namespace) -> Request:
    """Check everything that does not need the weights; see the module docstring."""
    from .files.media import read_image, read_video
    from .runtime.memory_budget import check_request_memory
    from .sampling.plan import resolve_sampling_plan
    from .variants import variant_from_config

    prompt = read_prompt(args)
    negative = read_negative(args)
    check_numbers(args)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    if args.vae is not None and not Path(args.vae).exists():
        raise CliError(f"--vae {args.vae}: no such file or folder")
    info, config = _read_config(args.checkpoint)
    variant = variant_from_config(config)
    try:
        plan = resolve_sampling_plan(
            num_frames=args.frames, height=args.height, width=args.width, fps=args.fps,
            has_image=args.image is not None, has_video=args.video is not None, variant=variant, kind=info.kind,
            distilled=info.distilled, steps=args.steps, guidance=args.guidance, shift=args.shift,
            schedule=args.schedule, strict=args.strict_sizes,
        )
        plan.build_sampler(info)
    except Cosmos3Error as exc:
        raise CliError(cli_message(str(exc))) from None
    geometry = plan.geometry
    output = check_output(args, geometry.frames, geometry.fps)
    try:
        check_request_memory(config, geometry, dtype, device, guidance=plan.guidance != 1.0)
    except Cosmos3Error as exc:
        raise CliError(f"--height/--width/--frames: {exc}") from None
    try:
        image = read_image(args.image) if args.image is not None else None
        video = read_video(args.video) if args.video is not None else None
    except (Cosmos3Error, ValueError, OSError) as exc:
        raise CliError(f"{'--image' if args.image is not None else '--video'}: {exc}") from None
    guardrail = None
    if args.guardrail is not None:
        guardrail = build_guardrail(args.guardrail, device)
        guardrail.ensure_prompt_safe(prompt)  # a blocked prompt stops here, before the weights load
    return Request(prompt, negative, image, video, output, device, dtype, plan, variant.value, guardrail)


def build_guardrail(folder: Path, device: torch.device) -> Any:
    """A :class:`guardrails.Guardrail` from ``models/cosmos3_guardrail`` (or the release folder itself):
    keyword blocklist, Qwen3Guard when ``Qwen3Guard-Gen-0.6B/`` is there, face pixelation. Missing files: one
    error listing them."""
    import guardrails
    from guardrails.assets import DEFAULT_ASSETS_DIR, QWEN3GUARD_REPO

    folder = Path(folder)
    if not folder.is_dir():
        raise CliError(f"--guardrail {folder}: no such folder (expected models/cosmos3_guardrail)")
    release = folder if (folder / "blocklist").is_dir() else folder / DEFAULT_ASSETS_DIR.name
    judge = folder / QWEN3GUARD_REPO.split("/")[-1]
    config = guardrails.GuardrailConfig(
        assets_dir=release, qwen3guard="auto", qwen3guard_dir=judge,
        device=str(device) if device.type == "cuda" else "cpu",
    )
    try:
        return guardrails.Guardrail.from_config(config)
    except (guardrails.GuardrailSetupError, ValueError) as exc:
        raise CliError(f"--guardrail {folder}: {exc}") from None
