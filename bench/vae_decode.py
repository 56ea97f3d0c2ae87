"""Benchmark: Wan 2.2 VAE decode time and peak memory, ours (untiled / tiled) vs diffusers' AutoencoderKLWan.

All variants decode the same latent with the same random weights (real Wan 2.2 widths: base_dim 160,
decoder_base_dim 256, z_dim 48; fan-in scaled so activations stay O(1)). Run from the repo root:

    python bench/vae_decode.py                       # 256x256, 5 frames, bf16, 2 threads
    python bench/vae_decode.py --height 480 --width 832 --frames 5 --dtype float32

How memory is measured (CPU, honest): every variant runs in a fresh subprocess. After the model and the
latent are loaded and every weight page has been touched (safetensors loads may be memory-mapped; weight
page-ins are not activation memory), the process resets its resident-set high-water mark
(``echo 5 > /proc/self/clear_refs``, Linux >= 4.0) and reads its current RSS; after decoding it reads ``VmHWM``.
Peak = VmHWM - RSS before decode, i.e. every byte the decode made resident (activations, caches, backend
scratch and the output tensor), and nothing from model construction or loading. If ``clear_refs`` is not
writable the script falls back to ``ru_maxrss`` minus the RSS before decoding and says so (an upper bound only
if loading peaked lower). On CUDA (``--device cuda``) it uses ``torch.cuda.reset_peak_memory_stats`` /
``max_memory_allocated``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

VARIANTS = ("diffusers", "ours", "ours-tiled", "diffusers-tiled")


def _status_kib(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1))


def _reset_peak() -> str:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return "VmHWM after clear_refs"
    except OSError:
        return "ru_maxrss (clear_refs unavailable)"


def _peak_kib(method: str) -> int:
    if method.startswith("VmHWM"):
        return _status_kib("VmHWM")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def make_checkpoint(folder: Path, dtype: torch.dtype, seed: int) -> None:
    """Write a diffusers-layout vae folder with random Wan 2.2-width weights (both loaders read it)."""
    from safetensors.torch import save_file

    from cosmos3.vae.config import WanVAEConfig
    from cosmos3.vae.model import WanVAE

    gen = torch.Generator().manual_seed(seed)
    config = WanVAEConfig(
        latents_mean=tuple((torch.randn(48, generator=gen) * 0.2).tolist()),
        latents_std=tuple((torch.rand(48, generator=gen) * 0.8 + 0.4).tolist()),
    )
    with torch.device("meta"):
        model = WanVAE(config)
    tensors = {}
    for name, p in model.state_dict().items():
        if name.endswith("gamma"):
            t = 1 + 0.1 * torch.randn(p.shape, generator=gen)
        elif name.endswith("bias"):
            t = 0.02 * torch.randn(p.shape, generator=gen)
        else:
            t = torch.randn(p.shape, generator=gen) / p[0].numel() ** 0.5
        tensors[name] = t.to(dtype).contiguous()
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "diffusion_pytorch_model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config.to_diffusers(), indent=1))


def worker(args: argparse.Namespace) -> None:
    from safetensors.torch import load_file, save_file

    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    device = torch.device(args.device)
    latent = load_file(str(Path(args.workdir) / "latent.safetensors"))["z"].to(device)
    if args.worker.startswith("diffusers"):
        from diffusers import AutoencoderKLWan

        model = AutoencoderKLWan.from_pretrained(args.workdir + "/vae", torch_dtype=dtype).to(device).eval()
        if args.worker == "diffusers-tiled":
            model.enable_tiling(
                tile_sample_min_height=args.tile_size,
                tile_sample_min_width=args.tile_size,
                tile_sample_stride_height=args.tile_size - args.tile_overlap,
                tile_sample_stride_width=args.tile_size - args.tile_overlap,
            )

        def run() -> torch.Tensor:
            with torch.no_grad():
                return model.decode(latent).sample

    else:
        from cosmos3 import load_vae

        model = load_vae(args.workdir + "/vae", dtype=dtype, device=device)
        kwargs = {"tiled": False}
        if args.worker == "ours-tiled":
            kwargs = {"tiled": True, "tile_size": args.tile_size, "tile_overlap": args.tile_overlap}

        def run() -> torch.Tensor:
            return model.decode(latent, **kwargs)

    # Fault every weight page in before measuring: safetensors loads can be memory-mapped, and page-ins of
    # weights during the first decode are not activation memory.
    with torch.no_grad():
        for p in model.parameters():
            p.float().sum()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base, method = torch.cuda.memory_allocated(), "torch.cuda.max_memory_allocated"
    else:
        method = _reset_peak()
        base = _status_kib("VmRSS") * 1024
    start = time.perf_counter()
    out = run()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else _peak_kib(method) * 1024
    save_file({"x": out.float().cpu().contiguous()}, str(Path(args.workdir) / f"out-{args.worker}.safetensors"))
    print(json.dumps({"variant": args.worker, "seconds": seconds, "peak_bytes": peak - base, "method": method}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--height", type=int, default=256, help="output height in pixels (multiple of 16)")
    ap.add_argument("--width", type=int, default=256, help="output width in pixels (multiple of 16)")
    ap.add_argument("--frames", type=int, default=5, help="output frames (4k+1)")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32", "float16"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--tile-size", type=int, default=160, help="ours-tiled tile size in pixels")
    ap.add_argument("--tile-overlap", type=int, default=32, help="ours-tiled overlap in pixels")
    ap.add_argument("--variants", default="diffusers,ours,ours-tiled", help=f"comma list of {', '.join(VARIANTS)}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=None, help="keep checkpoint/outputs here (default: a temp folder)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return

    from safetensors.torch import load_file, save_file

    from cosmos3.vae.config import WAN22_VAE_CONFIG
    from cosmos3.vae.tiling import check_pixel_size

    check_pixel_size(args.frames, args.height, args.width, WAN22_VAE_CONFIG)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        ap.error(f"unknown variants {unknown}")
    tmp = tempfile.TemporaryDirectory(prefix="vae-bench-") if args.workdir is None else None
    workdir = Path(args.workdir or tmp.name)
    dtype = getattr(torch, args.dtype)
    if not (workdir / "vae" / "config.json").is_file():
        print(f"writing random Wan 2.2-width weights to {workdir / 'vae'} ...", flush=True)
        make_checkpoint(workdir / "vae", dtype, args.seed)
    t = 1 + (args.frames - 1) // 4
    gen = torch.Generator().manual_seed(args.seed + 1)
    z = torch.randn(1, 48, t, args.height // 16, args.width // 16, generator=gen).to(dtype)
    save_file({"z": z}, str(workdir / "latent.safetensors"))

    print(
        f"decode latent {list(z.shape)} -> video [1, 3, {args.frames}, {args.height}, {args.width}], {args.dtype}, "
        f"device {args.device}, {args.threads} threads; ours-tiled: tile {args.tile_size}px "
        f"overlap {args.tile_overlap}px",
        flush=True,
    )
    results = {}
    for variant in variants:
        cmd = [sys.executable, __file__, "--worker", variant, "--workdir", str(workdir)]
        for key in ("dtype", "device", "threads", "tile_size", "tile_overlap"):
            cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        if proc.returncode != 0:
            print(proc.stdout, proc.stderr, file=sys.stderr)
            raise SystemExit(f"variant {variant} failed")
        results[variant] = json.loads(proc.stdout.strip().splitlines()[-1])
        r = results[variant]
        print(f"  {variant:16s} {r['seconds']:8.1f} s   peak {r['peak_bytes'] / 2**20:9.1f} MiB", flush=True)

    base = results.get("diffusers")
    ref_out = load_file(str(workdir / "out-diffusers.safetensors"))["x"] if base else None
    print(f"\nmemory method: {next(iter(results.values()))['method']}")
    print(f"{'variant':16s} {'time s':>8s} {'peak MiB':>10s} {'time/diff':>10s} {'peak/diff':>10s} "
          f"{'max|d| vs diff':>15s}")
    for variant, r in results.items():
        row = f"{variant:16s} {r['seconds']:8.1f} {r['peak_bytes'] / 2**20:10.1f}"
        if base:
            out = load_file(str(workdir / f"out-{variant}.safetensors"))["x"]
            diff = (out - ref_out).abs().max().item()
            row += f" {r['seconds'] / base['seconds']:10.2f} {r['peak_bytes'] / base['peak_bytes']:10.3f} {diff:15.3g}"
        print(row)
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
