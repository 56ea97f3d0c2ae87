"""torch.compile of the generation layers: compile time, then step time vs eager (same weights, same inputs).

    python bench/compile.py                                  # inductor, default mode
    python bench/compile.py --backend inductor --mode max-autotune-no-cudagraphs --device cuda
"""

from __future__ import annotations

import time
from functools import cache, partial

from _harness import Bench, ours_step, ratio, sync, tokens

from cosmos3.model.fp8 import error_stats
from cosmos3.model.transformer import BatchedTextKV
from cosmos3.runtime.compile import compile_generation_layers


@cache
def models(bench: Bench) -> tuple[dict, dict[str, float]]:
    """``{"eager"|"compiled": (model, cond, uncond, cond+uncond batch)}`` and the compiling first steps' seconds."""
    models = {}
    for name in ("eager", "compiled"):
        model, cond, uncond = bench.ours(weight_storage=bench.args.weight_storage)
        models[name] = (model, cond, uncond, BatchedTextKV.from_caches([cond, uncond], device=bench.device))
    compiled, cond, uncond, both = models["compiled"]
    compile_generation_layers(compiled, backend=bench.args.backend, mode=bench.args.mode)
    x, first = bench.latents(), {}
    for key, batched in (("serial", None), ("batched", both)):
        start = time.perf_counter()
        ours_step(compiled, x, 999.0, cond, uncond, batched=batched)
        sync()
        first[key] = time.perf_counter() - start
    return models, first


def build(bench: Bench, variant: str):
    name, mode = variant.split(" ")
    model, cond, uncond, both = models(bench)[0][name]
    x = bench.latents()
    return lambda: ours_step(model, x, 999.0, cond, uncond, batched=both if mode == "cfg-batch" else None)


def main() -> None:
    bench = Bench(__doc__)
    bench.parser.add_argument("--backend", default="inductor")
    bench.parser.add_argument("--mode", default=None)
    bench.parser.add_argument("--weight-storage", default=None,
                              help="e.g. fp8_e4m3fn (the fp8 upcast is compiled too)")
    args = bench.parse()
    names = [f"{name} {mode}" for mode in ("serial", "cfg-batch") for name in ("eager", "compiled")]
    with bench.checkpoint():
        result = bench.run(partial(build, bench), names, memory=False)
        first = models(bench)[1]
    ref = result.pop("diffusers")
    header = ("variant", "s/step", "cpu s/step", "speed-up vs eager (cpu)", "speed-up vs diffusers (cpu)",
              "max|dv| vs eager", "rel L2")
    rows = [("diffusers (eager)", *ref.seconds(), "-", "1.00x", "-", "-")]
    for name, v in result.items():
        base = result[name.replace("compiled", "eager")]
        err = error_stats(base.out, v.out)
        rows.append((name, *v.seconds(), ratio(base.timing, v.timing), ratio(ref.timing, v.timing),
                     f"{err['max_abs']:.1e}", f"{err['rel_l2']:.1e}"))
    bench.report(f"{args.dtype} on {args.device}, {args.grid} latent ({tokens(args.grid)} tokens), backend "
                 f"{args.backend}, mode {args.mode}; first (compiling) step: serial {first['serial']:.1f} s, "
                 f"cfg-batch {first['batched']:.1f} s", header, rows, first_step_s=first)


if __name__ == "__main__":
    main()
