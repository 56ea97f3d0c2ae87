"""One generation pass: our cached-text Cosmos3 transformer vs diffusers' full joint forward.

Both run the same random weights (the shared Nano-shaped preset of ``bench/_harness.py``). Ours encodes
the prompt once (timed separately: it is paid once per prompt, not per step), then drops the text tower
and runs only the generation tower against the cached K/V; diffusers re-runs both towers over
``[text ; vision]`` every pass. Reports pass times, speed-ups and the weight bytes resident during the pass.
The full CFG step (cond + uncond) is ``bench/t2i_denoise.py``.

    python bench/transformer_step.py                      # fp32 + bf16, T2I (900 tokens) and T2V (1560 tokens)
    python bench/transformer_step.py --layers 8 --dtypes fp32 --runs 3

Timings are informative only (never asserted); each is the best of ``--runs`` after a warm-up, with ours
and diffusers interleaved. Needs diffusers (the test extra).
"""

from __future__ import annotations

import time

from _harness import (
    DTYPES,
    Bench,
    DiffusersStep,
    free,
    interleaved,
    latents,
    load_diffusers,
    machine,
    max_abs,
    mib,
    param_bytes,
    ratio,
    tokens,
)

from cosmos3 import load_transformer
from cosmos3.model.transformer import module_nbytes


def passes(ours, cache, reference, prompt, x) -> dict:
    """One generation pass each: ours against the cached prompt K/V, diffusers' joint forward (no CFG)."""
    diffusers_pass = DiffusersStep(reference, prompt, None, x, 999.0)
    return {"ours": lambda: ours.velocity(x, 999, cache, fps=24.0).float(), "diffusers": lambda: diffusers_pass(x)}


def main() -> None:
    bench = Bench(__doc__, runs=2)
    bench.parser.add_argument("--dtypes", default="fp32,bf16", help="comma list of fp32,bf16,fp16")
    bench.parser.add_argument("--t2v", default="4x30x52", help="T2V latent TxHxW (4x30x52 -> 1560 tokens)")
    args = bench.parse()
    cases = {"T2I": args.grid, "T2V": args.t2v}
    print(machine())
    rows = []
    with bench.checkpoint() as folder:
        prompt = bench.prompt_ids()
        for dtype_name in args.dtypes.split(","):
            dtype = DTYPES[dtype_name.strip()]
            reference = load_diffusers(folder, dtype, args.device)
            ours = load_transformer(folder, dtype=dtype, device=args.device)
            ours.encode_text(prompt)  # warm-up
            start = time.perf_counter()
            cache = ours.encode_text(prompt)
            encode_s = time.perf_counter() - start
            ours.drop_text_tower()  # the pass below runs with the generation tower only
            free()
            ours_bytes = module_nbytes(ours) + cache.nbytes
            for case, spec in cases.items():
                x = latents(spec, dtype, args.device)
                timed = interleaved(passes(ours, cache, reference, prompt, x), args.runs)
                mine, theirs = timed["ours"], timed["diffusers"]
                rows.append((case, dtype_name, str(args.text_tokens), str(tokens(spec)), f"{mine.wall:.3f}",
                             f"{theirs.wall:.3f}", ratio(theirs.wall, mine.wall), ratio(theirs, mine),
                             f"{encode_s:.3f}", mib(ours_bytes), mib(param_bytes(reference)),
                             max_abs(mine.out, theirs.out)))
            del reference, ours, cache
            free()
    header = ("case", "dtype", "text", "vision", "ours pass s", "diffusers s", "speed-up", "cpu-time speed-up",
              "encode_text s", "ours resident MiB", "diffusers MiB", "max|diff|")
    bench.report(None, header, rows)


if __name__ == "__main__":
    main()
