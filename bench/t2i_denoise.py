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

from _harness import (
    DTYPES,
    DiffusersStep,
    checkpoint,
    dump,
    free,
    ids,
    interleaved,
    isolated,
    latents,
    load_diffusers,
    machine,
    measured,
    mib,
    ours_step,
    param_bytes,
    parser,
    ratio,
    setup,
    table,
    tokens,
)

from cosmos3 import load_transformer
from cosmos3.runtime.compile import compile_generation_layers
from cosmos3.model.transformer import BatchedTextKV, module_nbytes

VARIANTS = ("diffusers", "ours", "ours cfg-batch")


def build(variant: str, args, config, folder):
    """Load what ``variant`` needs; returns ``step()`` (with ``.resident`` = weight bytes on the device)."""
    dtype, device = DTYPES[args.dtype], args.device
    cond_ids = ids(args.text_tokens, config["vocab_size"], seed=0)
    uncond_ids = ids(args.neg_tokens, config["vocab_size"], seed=1)
    x = latents(args.grid, dtype, device)
    if variant == "diffusers":
        model = load_diffusers(folder, dtype, device)
        run = DiffusersStep(model, cond_ids, uncond_ids, x, args.timestep)

        def step():
            return run(x)

        step.resident = param_bytes(model)
        return step
    model = load_transformer(folder, dtype=dtype, device=device)
    start = time.perf_counter()
    cond, uncond = model.encode_text(cond_ids), model.encode_text(uncond_ids)
    build.encode_s = time.perf_counter() - start
    model.drop_text_tower()
    free()
    if variant.endswith("compiled"):
        compile_generation_layers(model)
    both = BatchedTextKV.from_caches([cond, uncond], device=device) if "cfg-batch" in variant else None
    if both is not None:
        del cond, uncond
        cond = uncond = None

    def step():
        if both is not None:
            return ours_step(model, x, args.timestep, None, both, batched=both)
        return ours_step(model, x, args.timestep, cond, uncond)

    step.resident = module_nbytes(model) + (both.nbytes if both is not None else cond.nbytes + uncond.nbytes)
    return step


def main() -> None:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--timestep", type=float, default=999.0)
    p.add_argument("--compile", action="store_true", help="add a torch.compile'd cfg-batch variant")
    args = p.parse_args()
    config = setup(args)
    variants = (*VARIANTS, "ours cfg-batch compiled") if args.compile else VARIANTS
    with checkpoint(args, config) as folder:
        if args.measure:
            measured(args.device, lambda: build(args.measure, args, config, folder))
            return
        print(machine())
        steps = {v: build(v, args, config, folder) for v in variants}
        timings = interleaved(steps, args.runs)
        memory = isolated(args, folder, variants)
    base = timings["diffusers"]
    resident = {v: steps[v].resident for v in variants}
    header = ("variant", "s/step", "cpu s/step", "speed-up", "speed-up (cpu)", "resident weights MiB", "vs diffusers",
              "peak RSS sampling MiB", "peak RSS load MiB", "peak VRAM MiB", "max|dv|")
    rows = []
    for name, timing in timings.items():
        mem = memory.get(name, {})
        rows.append((name, f"{timing.wall:.3f}", f"{timing.cpu:.3f}", ratio(base.wall, timing.wall),
                     ratio(base, timing), mib(resident[name]), f"{resident[name] / resident['diffusers']:.2f}x",
                     mib(mem.get("rss")), mib(mem.get("rss_setup")), mib(mem.get("vram")),
                     f"{(timing.out - base.out).abs().max().item():.1e}"))
    print(f"{args.dtype} on {args.device}, {args.grid} latent ({tokens(args.grid)} tokens), prompts "
          f"{args.text_tokens}/{args.neg_tokens} tokens; encode_text, once per prompt pair: {build.encode_s:.3f} s")
    table(header, rows)
    dump(args, header, rows, encode_s=build.encode_s)


if __name__ == "__main__":
    main()
