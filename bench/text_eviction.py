"""Text-tower eviction: weights resident while sampling, diffusers vs ours (kept / evicted / evicted + fp8).

diffusers keeps the whole joint model (both towers, lm_head) for every step. Ours needs the text tower only
to encode a prompt: after encoding, sampling holds the generation tower and the K/V caches. On this CPU-only
machine eviction is measured in "drop" mode (the tower is freed; a new prompt reloads it from the
checkpoint, timed below); on a GPU "offload" mode parks it in host RAM instead. Also prints the same
weight-byte accounting for the real Nano size (meta tensors, nothing allocated).

    python bench/text_eviction.py
    python bench/text_eviction.py --dtype fp32 --grid 4x30x52
"""

from __future__ import annotations

import time

import torch
from _harness import (
    DTYPES,
    NANO,
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
)

from cosmos3 import Cosmos3Transformer, TransformerConfig, load_transformer
from cosmos3.model.fp8 import swap_in_fp8_linears
from cosmos3.model.transformer import module_nbytes
from cosmos3.model.loading import load_text_tower

VARIANTS = ("diffusers", "ours keep", "ours evicted", "ours evicted fp8")


def build(variant: str, args, config, folder):
    dtype, device = DTYPES[args.dtype], args.device
    cond_ids = ids(args.text_tokens, config["vocab_size"], seed=0)
    uncond_ids = ids(args.neg_tokens, config["vocab_size"], seed=1)
    x = latents(args.grid, dtype, device)
    if variant == "diffusers":
        model = load_diffusers(folder, dtype, device)
        run = DiffusersStep(model, cond_ids, uncond_ids, x, 999.0)

        def step():
            return run(x)

        step.resident = param_bytes(model)
        return step
    storage = "fp8_e4m3fn" if variant.endswith("fp8") else None
    model = load_transformer(folder, dtype=dtype, device=device, weight_storage=storage)
    cond, uncond = model.encode_text(cond_ids), model.encode_text(uncond_ids)
    if variant != "ours keep":
        model.drop_text_tower()
        free()

    def step():
        return ours_step(model, x, 999.0, cond, uncond)

    step.resident = module_nbytes(model) + cond.nbytes + uncond.nbytes
    return step


def nano_accounting(text_tokens: int, neg_tokens: int) -> list[tuple[str, int]]:
    """Weight bytes resident while sampling at the real Nano size (bf16, with sound + action heads)."""
    from accelerate import init_empty_weights
    from diffusers import Cosmos3OmniTransformer

    config = dict(NANO, sound_gen=True, sound_dim=64, action_gen=True, action_dim=64, num_embodiment_domains=32)
    with init_empty_weights():
        reference = Cosmos3OmniTransformer(**config)
    keep_fp32 = ("time_embedder",)
    diffusers_bytes = sum(p.numel() * (4 if n.startswith(keep_fp32) else 2) for n, p in reference.named_parameters())
    ours = Cosmos3Transformer(TransformerConfig.from_dict(config), device="meta", dtype=torch.bfloat16)
    kv = 2 * config["num_hidden_layers"] * config["num_key_value_heads"] * config["head_dim"] * 2 * (text_tokens + neg_tokens)
    keep = param_bytes(ours) + kv
    evicted = param_bytes(ours.gen_tower) + kv
    swap_in_fp8_linears(ours)
    evicted_fp8 = param_bytes(ours.gen_tower) + kv
    return [("diffusers", diffusers_bytes), ("ours keep", keep), ("ours evicted", evicted), ("ours evicted fp8", evicted_fp8)]


def main() -> None:
    p = parser(__doc__.split("\n\n")[0])
    args = p.parse_args()
    config = setup(args)
    with checkpoint(args, config) as folder:
        if args.measure:
            measured(args.device, lambda: build(args.measure, args, config, folder))
            return
        print(machine())
        steps = {v: build(v, args, config, folder) for v in VARIANTS}
        timings = interleaved(steps, args.runs)
        reload_s = []
        for _ in range(max(1, args.runs)):
            start = time.perf_counter()
            load_text_tower(folder, dtype=DTYPES[args.dtype], device=args.device)
            reload_s.append(time.perf_counter() - start)
        memory = isolated(args, folder, VARIANTS)
    base = timings["diffusers"]
    resident = {v: steps[v].resident for v in VARIANTS}
    header = ("variant", "resident weights+K/V MiB", "vs diffusers", "peak RSS sampling MiB", "vs diffusers",
              "peak VRAM MiB", "s/step", "cpu speed-up")
    rows = []
    base_rss = memory.get("diffusers", {}).get("rss")
    for name in VARIANTS:
        mem = memory.get(name, {})
        rows.append((name, mib(resident[name]), f"{resident[name] / resident['diffusers']:.2f}x", mib(mem.get("rss")),
                     ratio(mem["rss"], base_rss) if mem.get("rss") and base_rss else "-", mib(mem.get("vram")),
                     f"{timings[name].wall:.3f}", ratio(base, timings[name])))
    print(f"{args.dtype} on {args.device}, {args.grid} latent, prompts {args.text_tokens}/{args.neg_tokens} tokens")
    table(header, rows)
    print(f"new prompt after eviction ('drop'): text tower reload from the checkpoint {min(reload_s):.3f} s")
    nano = nano_accounting(args.text_tokens, args.neg_tokens)
    print(f"\nreal Nano size (bf16 weights, sound+action heads, K/V of {args.text_tokens}+{args.neg_tokens} tokens):")
    table(("variant", "resident GiB", "vs diffusers"),
          [(n, f"{b / 2**30:.2f}", f"{b / nano[0][1]:.2f}x") for n, b in nano])
    dump(args, header, rows, reload_s=min(reload_s), nano={n: b for n, b in nano})


if __name__ == "__main__":
    main()
