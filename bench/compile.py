"""torch.compile of the generation layers: compile time, then step time vs eager (same weights, same inputs).

    python bench/compile.py                                  # inductor, default mode
    python bench/compile.py --backend inductor --mode max-autotune-no-cudagraphs --device cuda
"""

from __future__ import annotations

import time

from _harness import (
    DTYPES,
    checkpoint,
    diffusers_step,
    dump,
    free,
    ids,
    interleaved,
    latents,
    machine,
    ours_step,
    parser,
    ratio,
    setup,
    sync,
    table,
    tokens,
)

from cosmos3 import load_transformer
from cosmos3.runtime.compile import compile_generation_layers
from cosmos3.model.fp8 import error_stats
from cosmos3.model.transformer import BatchedTextKV


def main() -> None:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--backend", default="inductor")
    p.add_argument("--mode", default=None)
    p.add_argument("--weight-storage", default=None, help="e.g. fp8_e4m3fn (the fp8 upcast is compiled too)")
    args = p.parse_args()
    config = setup(args)
    dtype, device = DTYPES[args.dtype], args.device
    print(machine())
    with checkpoint(args, config) as folder:
        models = {}
        for name in ("eager", "compiled"):
            model = load_transformer(folder, dtype=dtype, device=device, weight_storage=args.weight_storage)
            cond = model.encode_text(ids(args.text_tokens, config["vocab_size"], seed=0))
            uncond = model.encode_text(ids(args.neg_tokens, config["vocab_size"], seed=1))
            model.drop_text_tower()
            models[name] = (model, cond, uncond, BatchedTextKV.from_caches([cond, uncond], device=device))
        free()
        x = latents(args.grid, dtype, device)
        compiled = models["compiled"][0]
        compile_generation_layers(compiled, backend=args.backend, mode=args.mode)
        first = {}
        for batched in (False, True):
            model, cond, uncond, both = models["compiled"]
            start = time.perf_counter()
            ours_step(model, x, 999.0, cond, uncond, batched=both if batched else None)
            sync()
            first["batched" if batched else "serial"] = time.perf_counter() - start

        def runner(name, batched):
            model, cond, uncond, both = models[name]
            return lambda: ours_step(model, x, 999.0, cond, uncond, batched=both if batched else None)

        fns = {f"{name} {mode}": runner(name, mode == "cfg-batch") for mode in ("serial", "cfg-batch")
               for name in ("eager", "compiled")}
        fns["diffusers"] = diffusers_step(args, config, folder)
        timings = interleaved(fns, args.runs)
    ref = timings.pop("diffusers")
    header = ("variant", "s/step", "cpu s/step", "speed-up vs eager (cpu)", "speed-up vs diffusers (cpu)",
              "max|dv| vs eager", "rel L2")
    rows = [("diffusers (eager)", f"{ref.wall:.3f}", f"{ref.cpu:.3f}", "-", "1.00x", "-", "-")]
    for name, t in timings.items():
        base = timings[name.replace("compiled", "eager")]
        err = error_stats(base.out, t.out)
        rows.append((name, f"{t.wall:.3f}", f"{t.cpu:.3f}", ratio(base, t), ratio(ref, t),
                     f"{err['max_abs']:.1e}", f"{err['rel_l2']:.1e}"))
    print(f"{args.dtype} on {device}, {args.grid} latent ({tokens(args.grid)} tokens), backend {args.backend}, "
          f"mode {args.mode}; first (compiling) step: serial {first['serial']:.1f} s, cfg-batch {first['batched']:.1f} s")
    table(header, rows)
    dump(args, header, rows, first_step_s=first)


if __name__ == "__main__":
    main()
