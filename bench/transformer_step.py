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
    DiffusersStep,
    checkpoint,
    free,
    ids,
    interleaved,
    latents,
    load_diffusers,
    machine,
    mib,
    param_bytes,
    parser,
    ratio,
    setup,
    table,
    tokens,
)

from cosmos3 import load_transformer
from cosmos3.model.transformer import module_nbytes


def main() -> None:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--dtypes", default="fp32,bf16", help="comma list of fp32,bf16,fp16")
    p.add_argument("--t2v", default="4x30x52", help="T2V latent TxHxW (4x30x52 -> 1560 tokens)")
    p.set_defaults(runs=2)
    args = p.parse_args()
    config = setup(args)
    cases = {"T2I": args.grid, "T2V": args.t2v}
    print(machine())
    rows = []
    with checkpoint(args, config) as folder:
        prompt = ids(args.text_tokens, config["vocab_size"], seed=0)
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
            ref_bytes = param_bytes(reference)
            for case, spec in cases.items():
                x = latents(spec, dtype, args.device)
                diffusers_pass = DiffusersStep(reference, prompt, None, x, 999.0)
                timed = interleaved({"ours": lambda: ours.velocity(x, 999, cache, fps=24.0).float(),
                                     "diffusers": lambda: diffusers_pass(x)}, args.runs)
                diff = (timed["ours"].out - timed["diffusers"].out).abs().max().item()
                rows.append((case, dtype_name, str(args.text_tokens), str(tokens(spec)), f"{timed['ours'].wall:.3f}",
                             f"{timed['diffusers'].wall:.3f}", ratio(timed["diffusers"].wall, timed["ours"].wall),
                             ratio(timed["diffusers"], timed["ours"]), f"{encode_s:.3f}", mib(ours_bytes),
                             mib(ref_bytes), f"{diff:.1e}"))
            del reference, ours, cache
            free()
    table(("case", "dtype", "text", "vision", "ours pass s", "diffusers s", "speed-up", "cpu-time speed-up",
           "encode_text s", "ours resident MiB", "diffusers MiB", "max|diff|"), rows)


if __name__ == "__main__":
    main()
