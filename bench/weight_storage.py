"""Weight storage: fp32 / bf16 / fp16 / fp8 e4m3 (scaled, upcast per layer) — speed, memory and error.

Every variant samples with the text tower evicted (generation tower + K/V resident). Error is the CFG
velocity of one step against the fp32 model (relative L2, PSNR). fp8 on a CPU is a memory feature only:
the per-layer fp8 -> bf16 upcast is not vectorised there (on a GPU it is a memory-bound pass that is small
next to the GEMMs, and ``Fp8Linear.fp8_matmul`` can use fp8 tensor cores on compute capability >= 8.9).

    python bench/weight_storage.py
    python bench/weight_storage.py --grid 4x30x52
"""

from __future__ import annotations

from functools import partial

import torch
from _harness import Bench, free, mib, ours_step, psnr, ratio

from cosmos3.model.fp8 import error_stats
from cosmos3.model.transformer import module_nbytes

VARIANTS = {  # name: (compute dtype, weight storage)
    "fp32": (torch.float32, None),
    "bf16": (torch.bfloat16, None),
    "fp16": (torch.float16, None),
    "fp8 e4m3 / bf16": (torch.bfloat16, "fp8_e4m3fn"),
}


def build(bench: Bench, variant: str):
    dtype, storage = VARIANTS[variant]
    model, cond, uncond = bench.ours(evict=False, dtype=dtype, weight_storage=storage)
    full = module_nbytes(model)
    model.drop_text_tower()
    free()
    x = bench.latents(dtype)

    def step():
        return ours_step(model, x, 999.0, cond, uncond)

    step.resident = module_nbytes(model) + cond.nbytes + uncond.nbytes
    step.full = full
    return step


def main() -> None:
    bench = Bench(__doc__)
    args = bench.parse()
    with bench.checkpoint():
        result = bench.run(partial(build, bench), VARIANTS, baseline=f"diffusers {args.dtype}")
    ref, reference, base = result[f"diffusers {args.dtype}"], result["fp32"], result["bf16"]
    header = ("storage / compute", "model MiB", "sampling resident MiB", "vs bf16", "vs diffusers",
              "peak RSS sampling MiB", "peak VRAM MiB", "s/step", "cpu time vs bf16", "speed-up vs diffusers (cpu)",
              "rel L2 vs fp32", "PSNR dB")
    rows = []
    for name, v in result.items():
        err = error_stats(reference.out, v.out)
        resident = v.step.resident
        rows.append((name, mib(getattr(v.step, "full", resident)), mib(resident),
                     f"{resident / base.step.resident:.2f}x", f"{resident / ref.step.resident:.2f}x", v.mib("rss"),
                     v.mib("vram"), v.seconds()[0], ratio(v.timing, base.timing), ratio(ref.timing, v.timing),
                     f"{err['rel_l2']:.2e}", psnr(err["psnr"])))
    bench.report(f"{args.grid} latent, prompts {args.text_tokens}/{args.neg_tokens} tokens, device {args.device}, "
                 f"diffusers in {args.dtype} (--dtype)", header, rows)


if __name__ == "__main__":
    main()
