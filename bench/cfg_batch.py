"""CFG batching: cond + uncond as one batch of two through the generation tower vs two serial passes.

Equal prompt lengths batch by plain concatenation; unequal ones are left-padded and masked ("mask", one
SDPA call with a key mask — the CPU default) or attended per prompt ("split" — the CUDA default, so the
flash kernel stays usable). Every variant is compared with the serial result.

    python bench/cfg_batch.py                              # T2I 900 tokens, 300/300 and 300/120 prompts
    python bench/cfg_batch.py --grid 4x30x52               # a short T2V clip (1560 tokens)
"""

from __future__ import annotations

from _harness import (
    DTYPES,
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
    tokens,
)

from cosmos3 import load_transformer
from cosmos3.model.transformer import BatchedTextKV, module_nbytes


def build_all(args, config, folder, only: str | None = None):
    dtype, device = DTYPES[args.dtype], args.device
    model = load_transformer(folder, dtype=dtype, device=device)
    vocab = config["vocab_size"]
    cond = model.encode_text(ids(args.text_tokens, vocab, seed=0))
    same = model.encode_text(ids(args.text_tokens, vocab, seed=1))
    short = model.encode_text(ids(args.short_tokens, vocab, seed=2))
    model.drop_text_tower()
    free()
    x = latents(args.grid, dtype, device)
    both_same = BatchedTextKV.from_caches([cond, same], device=device)
    both_short = BatchedTextKV.from_caches([cond, short], device=device)

    def with_split(split: bool, batched: BatchedTextKV, uncond):
        def step():
            model.split_padded_attention = split
            try:
                return ours_step(model, x, 999.0, cond, uncond, batched=batched)
            finally:
                model.split_padded_attention = False

        return step

    steps = {
        f"serial {args.text_tokens}/{args.text_tokens}": lambda: ours_step(model, x, 999.0, cond, same),
        f"batched {args.text_tokens}/{args.text_tokens}": with_split(False, both_same, same),
        f"serial {args.text_tokens}/{args.short_tokens}": lambda: ours_step(model, x, 999.0, cond, short),
        f"batched {args.text_tokens}/{args.short_tokens} mask": with_split(False, both_short, short),
        f"batched {args.text_tokens}/{args.short_tokens} split": with_split(True, both_short, short),
    }
    if only is not None:
        step = steps[only]
        step.resident = module_nbytes(model) + cond.nbytes + same.nbytes
        return step
    return steps


def main() -> None:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--short-tokens", type=int, default=120, help="the shorter negative prompt")
    args = p.parse_args()
    config = setup(args)
    with checkpoint(args, config) as folder:
        if args.measure == "diffusers":
            measured(args.device, lambda: diffusers_step(args, config, folder))
            return
        if args.measure:
            measured(args.device, lambda: build_all(args, config, folder, only=args.measure))
            return
        print(machine())
        steps = build_all(args, config, folder)
        names = list(steps)
        equal = diffusers_step(args, config, folder, neg_tokens=args.text_tokens)  # the same prompts as each row
        steps["diffusers equal"] = equal
        steps["diffusers short"] = diffusers_step(args, config, folder, neg_tokens=args.short_tokens, model=equal.model)
        timings = interleaved(steps, args.runs)
        memory = isolated(args, folder, ["diffusers", *names])
    header = ("variant", "s/step", "cpu s/step", "speed-up vs serial (cpu)", "speed-up vs diffusers (cpu)",
              "peak RSS sampling MiB", "peak VRAM MiB", "max|dv| vs serial")
    dmem = memory.get("diffusers", {})
    rows = []
    for index, name in enumerate(names):
        if index in (0, 2):  # a diffusers row with the same prompt lengths before each group
            ref = timings["diffusers equal" if index == 0 else "diffusers short"]
            lengths = names[index].split()[-1]
            rows.append((f"diffusers {lengths}", f"{ref.wall:.3f}", f"{ref.cpu:.3f}", "-", "1.00x",
                         mib(dmem.get("rss")) if index == 0 else "", mib(dmem.get("vram")) if index == 0 else "", "-"))
        serial = timings[names[0] if index < 2 else names[2]]  # each group vs its serial run
        t, mem = timings[name], memory.get(name, {})
        rows.append((name, f"{t.wall:.3f}", f"{t.cpu:.3f}", ratio(serial, t), ratio(ref, t),
                     mib(mem.get("rss")), mib(mem.get("vram")), f"{(t.out - serial.out).abs().max().item():.1e}"))
    print(f"{args.dtype} on {args.device}, {args.grid} latent ({tokens(args.grid)} tokens)")
    table(header, rows)
    dump(args, header, rows)


if __name__ == "__main__":
    main()
