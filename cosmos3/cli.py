"""Command line: ``python -m cosmos3 generate ...`` and ``python -m cosmos3 demo``."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from .dtypes import DTYPES
from .files.media import (
    OUTPUT_FORMATS,
    check_output_path,
    read_image,
    read_video,
    write_frames,
)
from .runtime.parallel import ParallelConfig
from .sampling.schedulers import SCHEDULE_HELP, SCHEDULES


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return DTYPES[name]


def _progress(step: int, total: int, _latents: torch.Tensor) -> None:
    print(f"\r  step {step + 1}/{total}", end="" if step + 1 < total else "\n", file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cosmos3", description="NVIDIA Cosmos3 generation (T2V, I2V, T2I)")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="generate a video or image from a checkpoint folder")
    gen.add_argument("--checkpoint", required=True, type=Path, help="diffusers-layout Cosmos3 checkpoint folder")
    gen.add_argument("--prompt", required=True, help="text prompt (plain text or a JSON object)")
    gen.add_argument("--negative-prompt", default=None, help="negative prompt (default: per prompt style)")
    gen.add_argument("--image", type=Path, default=None, help="conditioning image for image-to-video")
    gen.add_argument("--video", type=Path, default=None, help="conditioning clip for video-to-video")
    gen.add_argument("--frames", type=int, default=None, help="frame count, 4k+1 (1 = text-to-image)")
    gen.add_argument("--height", type=int, default=None, help="height in pixels, a multiple of 16")
    gen.add_argument("--width", type=int, default=None, help="width in pixels, a multiple of 16")
    gen.add_argument("--fps", type=float, default=24.0, help="frame rate (prompt metadata and mRoPE)")
    gen.add_argument("--steps", type=int, default=None, help="denoising steps (default per mode)")
    gen.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale")
    gen.add_argument("--seed", type=int, default=0, help="noise seed")
    gen.add_argument("--schedule", choices=SCHEDULES, default=None,
                     help="; ".join(f"{k}: {v}" for k, v in SCHEDULE_HELP.items()))
    gen.add_argument("--shift", type=float, default=None, help="flow shift (default per mode and variant)")
    gen.add_argument("--prompt-style", choices=("framework", "diffusers"), default="framework")
    gen.add_argument("--system-prompt", dest="system_prompt", action="store_true", default=None)
    gen.add_argument("--no-system-prompt", dest="system_prompt", action="store_false")
    gen.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    gen.add_argument(
        "--dtype", choices=("auto", *DTYPES), default="auto", help="weights (auto: bf16 on GPU, fp32 on CPU)"
    )
    gen.add_argument("--vae", type=Path, default=None, help="VAE override (e.g. wan2.2_vae.safetensors)")
    gen.add_argument("--tiled-decode", choices=("auto", "on", "off"), default="auto")
    gen.add_argument(
        "--no-strict-sizes",
        dest="strict_sizes",
        action="store_false",
        help="allow sizes/frames outside the trained envelope of the variant",
    )
    gen.add_argument("--output", required=True, type=Path, help=f"output file: {', '.join(OUTPUT_FORMATS)}")
    gen.add_argument(
        "--parallel", default=None, metavar="LAYOUT",
        help="split sampling over the processes of a torchrun launch, e.g. ulysses=2,cfg=2 (ulysses*ring*cfg = "
        "--nproc-per-node x nodes); only rank 0 writes the output",
    )
    gen.add_argument(
        "--parallel-timeout", type=float, default=600.0, help="seconds before a stalled collective fails the run"
    )

    demo = sub.add_parser("demo", help="install check on a tiny random checkpoint (the outputs are noise)")
    demo.add_argument("--output-dir", type=Path, default=Path("cosmos3-demo-output"))
    demo.add_argument("--steps", type=int, default=4)
    return parser


def run_generate(args: argparse.Namespace) -> Path | None:
    from .pipeline import Cosmos3Pipeline

    output = check_output_path(args.output, args.frames)
    if output.suffix.lower() == ".png" and args.frames != 1:
        raise ValueError(f"{output}: .png holds one image; pass --frames 1 (text-to-image) or use .mp4/.webp/.npy")
    image = read_image(args.image) if args.image is not None else None
    video = read_video(args.video) if args.video is not None else None
    layout = ParallelConfig.parse(args.parallel) if getattr(args, "parallel", None) else None
    device = _device(args.device)
    dtype = _dtype(args.dtype, device)
    start = time.perf_counter()
    pipe = Cosmos3Pipeline.from_pretrained(
        args.checkpoint, dtype=dtype, device=device, vae_path=args.vae, parallel=layout,
        parallel_timeout_s=getattr(args, "parallel_timeout", 600.0),
    )
    try:
        return _generate_and_write(pipe, args, output, image, video, dtype, start)
    finally:
        if pipe.parallel is not None:
            pipe.parallel.close()


def _generate_and_write(pipe, args, output, image, video, dtype, start) -> Path | None:
    main = pipe.parallel is None or pipe.parallel.is_main
    where = pipe.transformer.gen_tower.proj_in.weight.device
    if pipe.parallel is not None:
        where = f"{where}, rank {pipe.parallel.rank} of {pipe.parallel.world_size}, {pipe.parallel.config.describe()}"
    if main:
        print(
            f"loaded {args.checkpoint} ({pipe.variant.value}, {dtype}, {where}) in {time.perf_counter() - start:.1f}s",
            file=sys.stderr,
        )
    frames = pipe.generate(
        args.prompt,
        args.negative_prompt,
        image=image,
        video=video,
        num_frames=args.frames,
        height=args.height,
        width=args.width,
        fps=args.fps,
        steps=args.steps,
        guidance_scale=args.guidance,
        seed=args.seed,
        schedule=args.schedule,
        shift=args.shift,
        prompt_style=args.prompt_style,
        use_system_prompt=args.system_prompt,
        callback=_progress if main else None,
        strict_sizes=args.strict_sizes,
        tiled_decode={"auto": None, "on": True, "off": False}[args.tiled_decode],
    )
    if not main:  # only rank 0 decodes and writes
        return None
    write_frames(frames, output, fps=args.fps)
    print(
        f"wrote {output} ({frames.shape[0]} frames, {frames.shape[2]}x{frames.shape[1]}) "
        f"in {time.perf_counter() - start:.1f}s",
        file=sys.stderr,
    )
    return output


def run_demo(args: argparse.Namespace) -> list[Path]:
    from PIL import Image

    from .demo import build_demo_checkpoint
    from .pipeline import Cosmos3Pipeline

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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "generate":
            run_generate(args)
        else:
            run_demo(args)
    except (ValueError, FileNotFoundError, TypeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
