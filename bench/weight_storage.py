"""Weight storage: fp32 / bf16 / fp16 / fp8 e4m3 (scaled, upcast per layer) — speed, memory and error.

Every variant samples with the text tower evicted (generation tower + K/V resident). Error is the CFG
velocity of one step against the fp32 model (relative L2, PSNR). fp8 on a CPU is a memory feature only:
the per-layer fp8 -> bf16 upcast is not vectorised there (on a GPU it is a memory-bound pass that is small
next to the GEMMs, and ``Fp8Linear.fp8_matmul`` can use fp8 tensor cores on compute capability >= 8.9).

    python bench/weight_storage.py
    python bench/weight_storage.py --grid 4x30x52
"""

from __future__ import annotations

import torch
from _harness import (
    checkpoint,
    diffusers_step,
    dump,
    free,
    ids,
    interleaved,
    isolated,
    latents,
    machine,
    measured,
    mib,
    ours_step,
    parser,
    ratio,
    setup,
    table,
)

from cosmos3 import load_transformer
from cosmos3.model.fp8 import error_stats
from cosmos3.model.transformer import module_nbytes

VARIANTS = {  # name: (compute dtype, weight storage)
    "fp32": (torch.float32, None),
    "bf16": (torch.bfloat16, None),
    "fp16": (torch.float16, None),
    "fp8 e4m3 / bf16": (torch.bfloat16, "fp8_e4m3fn"),
}


def build(variant: str, args, config, folder):
    if variant == "diffusers":
        step = diffusers_step(args, config, folder)
        step.full = step.resident
        return step
    dtype, storage = VARIANTS[variant]
    device = args.device
    model = load_transformer(folder, dtype=dtype, device=device, weight_storage=storage)
    full = module_nbytes(model)
    cond = model.encode_text(ids(args.text_tokens, config["vocab_size"], seed=0))
    uncond = model.encode_text(ids(args.neg_tokens, config["vocab_size"], seed=1))
    model.drop_text_tower()
    free()
    x = latents(args.grid, dtype, device)

    def step():
        return ours_step(model, x, 999.0, cond, uncond)

    step.resident = module_nbytes(model) + cond.nbytes + uncond.nbytes
    step.full = full
    return step


def main() -> None:
    args = parser(__doc__.split("\n\n")[0]).parse_args()
    config = setup(args)
    with checkpoint(args, config) as folder:
        if args.measure:
            measured(args.device, lambda: build(args.measure, args, config, folder))
            return
        print(machine())
        names = [f"diffusers {args.dtype}", *VARIANTS]
        steps = {v: build("diffusers" if v.startswith("diffusers") else v, args, config, folder) for v in names}
        timings = interleaved(steps, args.runs)
        memory = isolated(args, folder, ["diffusers", *VARIANTS])
        memory[names[0]] = memory.pop("diffusers", {})
    reference, base, ref = timings["fp32"], timings["bf16"], timings[names[0]]
    header = ("storage / compute", "model MiB", "sampling resident MiB", "vs bf16", "vs diffusers", "peak RSS sampling MiB",
              "peak VRAM MiB", "s/step", "cpu time vs bf16", "speed-up vs diffusers (cpu)", "rel L2 vs fp32", "PSNR dB")
    rows = []
    for name, timing in timings.items():
        err = error_stats(reference.out, timing.out)
        mem = memory.get(name, {})
        rows.append((name, mib(steps[name].full), mib(steps[name].resident),
                     f"{steps[name].resident / steps['bf16'].resident:.2f}x",
                     f"{steps[name].resident / steps[names[0]].resident:.2f}x", mib(mem.get("rss")), mib(mem.get("vram")),
                     f"{timing.wall:.3f}", ratio(timing, base), ratio(ref, timing), f"{err['rel_l2']:.2e}",
                     "inf" if err["psnr"] == float("inf") else f"{err['psnr']:.1f}"))
    print(f"{args.grid} latent, prompts {args.text_tokens}/{args.neg_tokens} tokens, device {args.device}, "
          f"diffusers in {args.dtype} (--dtype)")
    table(header, rows)
    dump(args, header, rows)


if __name__ == "__main__":
    main()
