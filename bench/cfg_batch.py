"""CFG batching: cond + uncond as one batch of two through the generation tower vs two serial passes.

Equal prompt lengths batch by plain concatenation; unequal ones are left-padded and masked ("mask", one
SDPA call with a key mask — the CPU default) or attended per prompt ("split" — the CUDA default, so the
flash kernel stays usable). Every variant is compared with the serial result.

    python bench/cfg_batch.py                              # T2I 900 tokens, 300/300 and 300/120 prompts
    python bench/cfg_batch.py --grid 4x30x52               # a short T2V clip (1560 tokens)
"""

from __future__ import annotations

from functools import cache

from _harness import Bench, free, ids, max_abs, ours_step, ratio, tokens

from cosmos3.model.transformer import BatchedTextKV, module_nbytes


def groups(text: int, short: int) -> dict[str, list[str]]:
    """The variants by prompt lengths (``cond/uncond`` tokens): serial first, then the batched forms."""
    unequal = f"{text}/{short}"
    return {f"{text}/{text}": [f"serial {text}/{text}", f"batched {text}/{text}"],
            unequal: [f"serial {unequal}", f"batched {unequal} mask", f"batched {unequal} split"]}


@cache
def build_all(bench: Bench) -> dict:
    """Every variant's step, on one model loaded once."""
    args = bench.args
    model, cond, same = bench.ours(evict=False)  # --neg-tokens = --text-tokens here (see main)
    short = model.encode_text(ids(args.short_tokens, bench.config["vocab_size"], seed=2))
    model.drop_text_tower()
    free()
    x = bench.latents()

    both_same = BatchedTextKV.from_caches([cond, same], device=bench.device)
    both_short = BatchedTextKV.from_caches([cond, short], device=bench.device)

    def batched(uncond, both: BatchedTextKV, split: bool = False):
        def step():
            model.split_padded_attention = split
            try:
                return ours_step(model, x, 999.0, cond, uncond, batched=both)
            finally:
                model.split_padded_attention = False

        return step

    def serial(uncond):
        return lambda: ours_step(model, x, 999.0, cond, uncond)

    equal, unequal = groups(args.text_tokens, args.short_tokens).values()
    steps = (serial(same), batched(same, both_same), serial(short), batched(short, both_short),
             batched(short, both_short, split=True))
    for step in steps:
        step.resident = module_nbytes(model) + cond.nbytes + same.nbytes
    return dict(zip(equal + unequal, steps))


def main() -> None:
    bench = Bench(__doc__)
    bench.parser.add_argument("--short-tokens", type=int, default=120, help="the shorter negative prompt")
    args = bench.parse()
    args.neg_tokens = args.text_tokens  # the first group's negative prompt, and the baseline's
    lengths = groups(args.text_tokens, args.short_tokens)
    names = [name for group in lengths.values() for name in group]
    baselines = [f"diffusers {length}" for length in lengths]  # one per group, with its prompt lengths

    def build(name: str):
        return bench.diffusers(neg_tokens=args.short_tokens) if name == baselines[1] else build_all(bench)[name]

    with bench.checkpoint():
        result = bench.run(build, [baselines[1], *names], baseline=baselines[0], memory=[baselines[0], *names])
    header = ("variant", "s/step", "cpu s/step", "speed-up vs serial (cpu)", "speed-up vs diffusers (cpu)",
              "peak RSS sampling MiB", "peak VRAM MiB", "max|dv| vs serial")
    rows = []
    for baseline, group in zip(baselines, lengths.values()):
        ref, serial = result[baseline], result[group[0]]
        memory = (ref.mib("rss"), ref.mib("vram")) if baseline == baselines[0] else ("", "")  # measured once
        rows.append((baseline, *ref.seconds(), "-", "1.00x", *memory, "-"))
        for name in group:
            v = result[name]
            rows.append((name, *v.seconds(), ratio(serial.timing, v.timing), ratio(ref.timing, v.timing),
                         v.mib("rss"), v.mib("vram"), max_abs(v.out, serial.out)))
    bench.report(f"{args.dtype} on {args.device}, {args.grid} latent ({tokens(args.grid)} tokens)", header, rows)


if __name__ == "__main__":
    main()
