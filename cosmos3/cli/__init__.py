"""Command line: ``python -m cosmos3 generate ...`` and ``python -m cosmos3 demo``.

``generate`` checks every option before loading the weights (:mod:`cosmos3.cli.checks`), prints the settings it
resolved, then reports progress (:mod:`cosmos3.cli.progress`). Bad input exits with status 2 and one
``error:`` line naming the option; Ctrl-C prints ``interrupted`` and exits 130, SIGTERM ``terminated`` and 143 —
an output being written is never left behind half-written.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from ..dtypes import DTYPES
from ..errors import Cosmos3Error
from ..files.media import OUTPUT_FORMATS, write_frames
from ..runtime.parallel import ParallelConfig
from ..sampling.schedulers import SCHEDULE_HELP, SCHEDULES
from .checks import CliError, cli_message, prepare_request
from .progress import Progress, describe_request, format_seconds

EXIT_ERROR, EXIT_INTERRUPTED, EXIT_TERMINATED = 2, 130, 143


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that ``finally`` blocks (temporary outputs) run."""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` where there is a concrete default; ``None`` defaults say so in their help."""

    def _get_help_string(self, action: argparse.Action) -> str:
        default = action.default
        if default is None or isinstance(default, bool) or default is argparse.SUPPRESS or "default" in action.help:
            return action.help or ""
        return super()._get_help_string(action)


def _progress(step: int, total: int, _latents: torch.Tensor) -> None:
    print(f"\r  step {step + 1}/{total}", end="" if step + 1 < total else "\n", file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cosmos3",
        description="NVIDIA Cosmos3 generation (text-to-video, image-to-video, video-to-video, text-to-image)",
        formatter_class=_HelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{generate,demo}")

    gen = sub.add_parser(
        "generate", help="generate a video or image from a checkpoint folder", formatter_class=_HelpFormatter,
        description="Generate a video or an image. Unset sizes, steps, guidance, shift and schedule take the "
        "framework defaults for the mode and checkpoint. No guardrail runs unless --guardrail is given.",
    )
    gen.add_argument("--checkpoint", required=True, type=Path,
                     help="diffusers-layout Cosmos3 checkpoint folder (transformer/, vae/, text_tokenizer/, ...)")
    text = gen.add_mutually_exclusive_group(required=True)
    text.add_argument("--prompt", help="text prompt (plain text or a JSON object)")
    text.add_argument("--prompt-file", type=Path, help="read the prompt from this UTF-8 text file")
    gen.add_argument("--allow-empty-prompt", action="store_true",
                     help="generate even when the prompt is empty or only spaces (refused otherwise)")
    gen.add_argument("--negative-prompt", default=None,
                     help="negative prompt (default: the prompt style's own; may be empty)")
    gen.add_argument("--image", type=Path, default=None, help="conditioning image: image-to-video")
    gen.add_argument("--video", type=Path, default=None, help="conditioning clip: video-to-video")
    gen.add_argument("--frames", type=int, default=None,
                     help="frame count: 1 = text-to-image, else 4k+1 (default: per mode, 121 for video)")
    gen.add_argument("--height", type=int, default=None, help="height in pixels, a multiple of 16 (default: per mode)")
    gen.add_argument("--width", type=int, default=None, help="width in pixels, a multiple of 16 (default: per mode)")
    gen.add_argument("--fps", type=float, default=None,
                     help="frame rate of the video: announced in the prompt, used by the model and the output file "
                     "(default: per checkpoint, usually 24)")
    gen.add_argument("--steps", type=int, default=None, help="denoising steps (default: per mode, e.g. 35 for video)")
    gen.add_argument("--guidance", type=float, default=None,
                     help="classifier-free guidance scale, 1 = no negative pass (default: per mode, e.g. 6)")
    gen.add_argument("--seed", type=int, default=0, help="noise seed")
    gen.add_argument("--schedule", choices=SCHEDULES, default=None,
                     help="sampler schedule (default: native, or distilled for 4-step checkpoints): "
                     + "; ".join(f"{k}: {v}" for k, v in SCHEDULE_HELP.items()))
    gen.add_argument("--shift", type=float, default=None, help="flow shift (default: per mode and variant)")
    gen.add_argument("--prompt-style", choices=("framework", "diffusers"), default="framework",
                     help="prompt templates: framework = as the checkpoints were trained; diffusers = as diffusers")
    gen.add_argument("--system-prompt", dest="system_prompt", action="store_true", default=None,
                     help="prepend the Cosmos3 system prompt (default: off for framework, the checkpoint's for "
                     "diffusers)")
    gen.add_argument("--no-system-prompt", dest="system_prompt", action="store_false",
                     help="never prepend the system prompt")
    gen.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, mps")
    gen.add_argument("--dtype", choices=("auto", *DTYPES), default="auto",
                     help="weights and compute dtype (auto: bf16 on GPU, fp32 on CPU)")
    gen.add_argument("--vae", type=Path, default=None,
                     help="VAE override, e.g. wan2.2_vae.safetensors (default: the checkpoint's vae/)")
    gen.add_argument("--tiled-decode", choices=("auto", "on", "off"), default="auto",
                     help="VAE decode in tiles (auto: when the memory estimate demands it)")
    gen.add_argument("--no-strict-sizes", dest="strict_sizes", action="store_false",
                     help="allow sizes/frames/fps outside the trained envelope of the variant")
    gen.add_argument("--guardrail", type=Path, default=None, metavar="FOLDER",
                     help="run the safety guardrails (prompt blocklist, Qwen3Guard when present, face blur) from "
                     "this folder: models/cosmos3_guardrail (holding Cosmos-Guardrail1/) or the release folder "
                     "itself (default: no guardrail runs)")
    gen.add_argument("--output", required=True, type=Path,
                     help=f"output file: {', '.join(OUTPUT_FORMATS)} (.mp4 is H.264; .png = one frame; .npy = float32)")
    gen.add_argument("--upsample", type=Path, default=None, metavar="MODEL_DIR",
                     help="expand the prompt into Cosmos3's structured JSON caption first, with a local instruct "
                     "model folder (Cosmos3 *-Reasoner, Qwen3-VL or Qwen3 Instruct; offline; default: the prompt "
                     "is used as typed)")
    gen.add_argument("--sound", action="store_true",
                     help="generate sound with the video (sound-capable checkpoints): the .mp4 gets an AAC track")
    gen.add_argument("--sound-output", type=Path, default=None,
                     help="also write the waveform alone to this .wav file (16-bit PCM; implies --sound)")
    gen.add_argument("--parallel", default=None, metavar="LAYOUT",
                     help="split sampling over the processes of a torchrun launch, e.g. ulysses=2,cfg=2 "
                     "(ulysses*ring*cfg = processes); only rank 0 writes the output (default: one process)")
    gen.add_argument("--parallel-timeout", type=float, default=600.0,
                     help="seconds before a stalled exchange between the processes fails the run")

    demo = sub.add_parser("demo", help="install check on a tiny random checkpoint (the outputs are noise)",
                          formatter_class=_HelpFormatter)
    demo.add_argument("--output-dir", type=Path, default=Path("cosmos3-demo-output"), help="where the demo writes")
    demo.add_argument("--steps", type=int, default=4, help="denoising steps per demo run")
    return parser


class _Silent:
    """Progress of a rank other than 0 under torchrun: says nothing (rank 0 reports)."""

    def line(self, *args, **kwargs) -> None:
        pass

    def stage(self, *args, **kwargs) -> None:
        pass

    def step(self, *args, **kwargs) -> None:
        pass


def run_generate(args: argparse.Namespace) -> Path | None:
    start = time.perf_counter()
    layout = ParallelConfig.parse(args.parallel) if getattr(args, "parallel", None) else None
    request = prepare_request(args)  # everything checkable without the weights, before loading them
    sound = check_sound_outputs(args, request.output)
    progress = _Silent() if layout is not None and os.environ.get("RANK", "0") != "0" else Progress()
    progress.line(describe_request(request.plan, request.variant, request.device, request.dtype))
    for warning in request.plan.warnings:
        progress.line(f"warning: {warning}")
    if request.guardrail is not None:
        progress.line(f"guardrail: {request.guardrail.describe()}")
    else:
        progress.line("guardrail: none runs (pass --guardrail FOLDER to check the prompt and the frames)")
    from ..pipeline import Cosmos3Pipeline

    upsampler = None
    if args.upsample is not None:
        from ..text.upsampler import folder_problems, load_upsampler

        problems = folder_problems(Path(args.upsample))
        if problems:
            raise CliError(f"--upsample {args.upsample}: " + "; ".join(problems))
        progress.line(f"  loading the prompt upsampler {args.upsample} ...")
        upsampler = load_upsampler(args.upsample, device=request.device, offload_device="cpu")
    progress.line(f"  loading {args.checkpoint} ...")
    pipe = Cosmos3Pipeline.from_pretrained(args.checkpoint, dtype=request.dtype, device=request.device,
                                           vae_path=args.vae, parallel=layout,
                                           parallel_timeout_s=getattr(args, "parallel_timeout", 600.0))
    try:
        return _generate_and_write(pipe, args, request, sound, progress, start, upsampler)
    finally:
        if getattr(pipe, "parallel", None) is not None:
            pipe.parallel.close()


def _generate_and_write(pipe, args, request, sound: bool, progress, start: float, upsampler=None) -> Path | None:
    from ..pipeline import UNGUARDED_WARNING

    rt = getattr(pipe, "parallel", None)
    if rt is not None:
        progress.line(f"  parallel {rt.config.describe()}: rank {rt.rank} of {rt.world_size} on {rt.device}")
    progress.line(f"  loaded in {format_seconds(time.perf_counter() - start)}")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=re.escape(UNGUARDED_WARNING[:60]))  # said above already
        warnings.showwarning = lambda message, *_args, **_kw: progress.line(f"warning: {message}")
        frames = pipe.generate(
            request.prompt, request.negative_prompt, image=request.image, video=request.video,
            num_frames=args.frames, height=args.height, width=args.width, fps=args.fps, steps=args.steps,
            guidance_scale=args.guidance, seed=args.seed, schedule=args.schedule, shift=args.shift,
            prompt_style=args.prompt_style, use_system_prompt=args.system_prompt, callback=progress.step,
            strict_sizes=args.strict_sizes, tiled_decode={"auto": None, "on": True, "off": False}[args.tiled_decode],
            guardrail=request.guardrail, allow_empty_prompt=args.allow_empty_prompt, stage_callback=progress.stage,
            upsampler=upsampler, **({"sound": True} if sound else {}),
        )
    if rt is not None and not rt.is_main:  # only rank 0 decodes and writes
        return None
    fps = request.plan.geometry.fps
    if sound:
        frames = write_sound_outputs(args, request.output, frames, pipe.sound_sample_rate, fps)
    if not (sound and request.output.suffix.lower() == ".mp4"):
        write_frames(frames, request.output, fps=fps)
    progress.line(
        f"wrote {request.output} ({frames.shape[0]} frames, {frames.shape[2]}x{frames.shape[1]}) "
        f"in {format_seconds(time.perf_counter() - start)}"
    )
    return request.output


def check_sound_outputs(args: argparse.Namespace, output: Path) -> bool:
    """Whether sound is requested (``--sound`` / ``--sound-output``); bad combinations fail before loading."""
    wav = args.sound_output
    if not (args.sound or wav is not None):
        return False
    if wav is not None and Path(wav).suffix.lower() != ".wav":
        raise ValueError(f"{wav}: --sound-output writes a .wav file")
    if wav is not None and not Path(wav).expanduser().parent.is_dir():
        raise ValueError(f"{wav}: the folder {Path(wav).parent} does not exist")
    if args.frames == 1:
        raise ValueError("--sound needs a video: text-to-image (--frames 1) has no duration to give sound")
    if output.suffix.lower() != ".mp4" and wav is None:
        raise ValueError(f"{output}: --sound stores the audio in an .mp4 output; use .mp4 or add --sound-output x.wav")
    return True


def write_sound_outputs(args: argparse.Namespace, output: Path, result, sample_rate: int, fps: float) -> torch.Tensor:
    """Write the .mp4 with its AAC track (when ``output`` is .mp4) and the .wav (``--sound-output``); returns frames."""
    from ..audio.wav import write_wav
    from ..files.video import write_video

    frames, waveform = result
    if output.suffix.lower() == ".mp4":
        write_video(output, frames, fps, audio=waveform, sample_rate=sample_rate)
    if args.sound_output is not None:
        write_wav(Path(args.sound_output).expanduser(), waveform, sample_rate)
        print(f"wrote {args.sound_output} ({waveform.shape[1] / sample_rate:.2f}s of sound, {sample_rate} Hz)",
              file=sys.stderr)
    return frames


def run_demo(args: argparse.Namespace) -> list[Path]:
    from PIL import Image

    from ..demo import build_demo_checkpoint
    from ..pipeline import Cosmos3Pipeline

    print("INSTALL CHECK - tiny random weights: the outputs below are noise, not a model result.", file=sys.stderr)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory(prefix="cosmos3-demo-") as tmp:
        pipe = Cosmos3Pipeline.from_pretrained(build_demo_checkpoint(Path(tmp) / "Cosmos3-Demo"), dtype=torch.float32)
        gradient = torch.linspace(0, 255, 64).to(torch.uint8)
        image = Image.fromarray(torch.stack([gradient.expand(48, 64)] * 3, dim=-1).numpy())
        runs = {
            "t2v": dict(num_frames=9, height=48, width=64),
            "i2v": dict(num_frames=9, height=48, width=64, image=image),
            "t2i": dict(num_frames=1, height=64, width=64),
        }
        for name, kwargs in runs.items():
            frames = pipe.generate(
                "a red ball rolls over the table", steps=args.steps, seed=0, callback=_progress, **kwargs
            )
            suffix = ".png" if frames.shape[0] == 1 else ".mp4"
            written.append(write_frames(frames, args.output_dir / f"demo_{name}{suffix}"))
            print(f"{name}: wrote {written[-1]} ({tuple(frames.shape)})", file=sys.stderr)
    print("install check passed (random weights: noise output is expected)", file=sys.stderr)
    return written


def _fresh_line() -> str:
    """A terminal may show a progress line being rewritten in place: end it first."""
    return "\n" if getattr(sys.stderr, "isatty", lambda: False)() else ""


def _terminate(signum, frame) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    installed = False
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
        installed = True
    except ValueError:  # not the main thread (embedded use): leave signals to the host
        previous = None
    try:
        if args.command == "generate":
            run_generate(args)
        else:
            run_demo(args)
    except KeyboardInterrupt:
        print(_fresh_line() + "interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print(_fresh_line() + "terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except (Cosmos3Error, ValueError, FileNotFoundError, TypeError, OSError) as exc:
        print(f"error: {cli_message(str(exc))}", file=sys.stderr)
        return EXIT_ERROR
    except (torch.OutOfMemoryError, MemoryError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"error: out of memory ({first}); try a smaller size, fewer frames or --dtype bf16", file=sys.stderr)
        return EXIT_ERROR
    finally:
        if installed:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
    return 0
