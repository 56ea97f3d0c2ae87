"""Step cache (TeaCache-style): time per sampling run and the quality cost against uncached sampling.

Full ``cosmos3.sampling.loop.sample`` runs (CFG, native UniPC schedule) on the random Nano-shaped weights, once
without the cache and once per threshold; reports skipped steps, seconds per run and per step, and the
final latents' error against the uncached run (max |diff|, relative L2, PSNR). Random weights give a
velocity field unlike a trained model's, so the error figures show the mechanism's cost, not a promise
about image quality (measure on real weights before enabling it by default: it is off by default).

    python bench/step_cache.py                      # T2I 960x960 (900 tokens), 30 steps, CFG 4, shift 3
    python bench/step_cache.py --thresholds 0.05,0.1 --warmup 5 --steps 35
"""

from __future__ import annotations

from _harness import Bench, free, grid, interleaved, machine, psnr, ratio

from cosmos3.geometry import Geometry
from cosmos3.model.fp8 import error_stats
from cosmos3.runtime.step_cache import StepCache
from cosmos3.sampling.loop import sample
from cosmos3.sampling.schedulers import build_sampler
from cosmos3.text.encoding import EncodedPrompt


def main() -> None:
    bench = Bench(__doc__, runs=2)
    bench.parser.add_argument("--steps", type=int, default=30)
    bench.parser.add_argument("--guidance", type=float, default=4.0)
    bench.parser.add_argument("--shift", type=float, default=3.0)
    bench.parser.add_argument("--thresholds", default="0.02,0.05,0.1,0.2")
    bench.parser.add_argument("--warmup", type=int, default=3, help="StepCache warmup_steps")
    args = bench.parse()
    frames, h, w = grid(args.grid)
    num_frames, height, width = (frames - 1) * 4 + 1, h * 16, w * 16
    print(machine())
    with bench.checkpoint():
        model, cond, uncond = bench.ours()
        prompt = EncodedPrompt(cond, uncond, geometry=Geometry(num_frames, height, width), style="framework",
                               cond_text="", uncond_text="")
        kwargs = dict(guidance_scale=args.guidance, seed=0, device=args.device)
        caches = {"off": None}
        for value in args.thresholds.split(","):
            caches[f"threshold {float(value):g}"] = StepCache(threshold=float(value), warmup_steps=args.warmup)

        def runner(cache):
            return lambda: sample(
                model, prompt, build_sampler("native", args.steps, args.shift), step_cache=cache, **kwargs
            )

        timings = interleaved({name: runner(cache) for name, cache in caches.items()}, args.runs)
        model = prompt = cond = uncond = None  # the diffusers baseline below runs alone
        free()
        reference = interleaved({"diffusers": bench.diffusers()}, max(2, args.runs))["diffusers"]
    base = timings["off"]
    print(f"diffusers (no cache) CFG step on the same weights: {reference.wall:.3f} s/step "
          f"({reference.cpu:.3f} cpu s) -> {reference.wall * args.steps:.2f} s per {args.steps}-step run")
    header = ("step cache", "skipped steps", "s/run", "s/step", "speed-up (cpu)", "ideal speed-up",
              "speed-up vs diffusers (cpu)", "max|diff|", "rel L2", "PSNR dB")
    rows = []
    for name, t in timings.items():
        cache = caches[name]
        err = error_stats(base.out, t.out)
        skipped = len(cache.skipped_steps) if cache is not None else 0
        rows.append((name, f"{skipped}/{args.steps}", f"{t.wall:.2f}", f"{t.wall / args.steps:.3f}", ratio(base, t),
                     f"{args.steps / (args.steps - skipped):.2f}x", ratio(reference.cpu * args.steps, t.cpu),
                     f"{err['max_abs']:.3f}", f"{err['rel_l2']:.2e}", psnr(err["psnr"])))
    bench.report(f"{args.dtype} on {args.device}, {width}x{height}x{num_frames}, {args.steps} steps, "
                 f"CFG {args.guidance}, shift {args.shift}, warm-up {args.warmup}", header, rows)


if __name__ == "__main__":
    main()
