"""T2I denoising step with CFG: ours (cached text K/V, generation tower only) vs diffusers (full joint forward).

Per step both sides run the cond and the uncond pass (300-token prompts by default) and the CFG combine on
the same random Nano-shaped weights. Ours encodes each prompt once (reported separately: paid once per
prompt) and drops the text tower before sampling; "ours cfg-batch" runs cond+uncond as one batch of two.

    python bench/t2i_denoise.py                     # bf16, 900 latent tokens (60x60 latent), 300/300 tokens
    python bench/t2i_denoise.py --dtype fp32 --neg-tokens 120
    python bench/t2i_denoise.py --compile           # + "ours cfg-batch compiled" (torch.compile, inductor)
"""

from __future__ import annotations

import time
from functools import partial

from _harness import Bench, free, max_abs, mib, ours_step, ratio, tokens

from cosmos3 import load_transformer
from cosmos3.model.transformer import BatchedTextKV, module_nbytes
from cosmos3.runtime.compile import compile_generation_layers

VARIANTS = ("ours", "ours cfg-batch")


def build(bench: Bench, variant: str):
    """Load what ``variant`` needs; returns ``step()`` (with ``.resident`` = weight bytes on the device)."""
    model = load_transformer(bench.folder, dtype=bench.dtype, device=bench.device)
    start = time.perf_counter()
    cond, uncond = bench.encode(model)
    build.encode_s = time.perf_counter() - start
    model.drop_text_tower()
    free()
    if variant.endswith("compiled"):
        compile_generation_layers(model)
    x = bench.latents()
    both = BatchedTextKV.from_caches([cond, uncond], device=bench.device) if "cfg-batch" in variant else None
    if both is not None:
        del cond, uncond
        cond = uncond = None

    def step():
        if both is not None:
            return ours_step(model, x, bench.timestep, None, both, batched=both)
        return ours_step(model, x, bench.timestep, cond, uncond)

    step.resident = module_nbytes(model) + (both.nbytes if both is not None else cond.nbytes + uncond.nbytes)
    return step


def main() -> None:
    bench = Bench(__doc__)
    bench.parser.add_argument("--timestep", type=float, default=999.0)
    bench.parser.add_argument("--compile", action="store_true", help="add a torch.compile'd cfg-batch variant")
    args = bench.parse()
    bench.timestep = args.timestep
    variants = (*VARIANTS, "ours cfg-batch compiled") if args.compile else VARIANTS
    with bench.checkpoint():
        result = bench.run(partial(build, bench), variants)
    base = result["diffusers"]
    header = ("variant", "s/step", "cpu s/step", "speed-up", "speed-up (cpu)", "resident weights MiB", "vs diffusers",
              "peak RSS sampling MiB", "peak RSS load MiB", "peak VRAM MiB", "max|dv|")
    rows = []
    for name, v in result.items():
        resident = v.step.resident
        rows.append((name, *v.seconds(), ratio(base.timing.wall, v.timing.wall), ratio(base.timing, v.timing),
                     mib(resident), f"{resident / base.step.resident:.2f}x", v.mib("rss"), v.mib("rss_setup"),
                     v.mib("vram"), max_abs(v.out, base.out)))
    bench.report(f"{args.dtype} on {args.device}, {args.grid} latent ({tokens(args.grid)} tokens), prompts "
                 f"{args.text_tokens}/{args.neg_tokens} tokens; encode_text, once per prompt pair: "
                 f"{build.encode_s:.3f} s",
                 header, rows, encode_s=build.encode_s)


if __name__ == "__main__":
    main()
