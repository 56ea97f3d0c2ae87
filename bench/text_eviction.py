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
from functools import partial

import torch
from _harness import NANO, Bench, mib, ours_step, param_bytes, ratio, table

from cosmos3 import Cosmos3Transformer, TransformerConfig
from cosmos3.model.fp8 import swap_in_fp8_linears
from cosmos3.model.loading import load_text_tower
from cosmos3.model.transformer import module_nbytes

VARIANTS = ("ours keep", "ours evicted", "ours evicted fp8")


def build(bench: Bench, variant: str):
    storage = "fp8_e4m3fn" if variant.endswith("fp8") else None
    model, cond, uncond = bench.ours(evict=variant != "ours keep", weight_storage=storage)
    x = bench.latents()

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
    kv_per_token = 2 * config["num_hidden_layers"] * config["num_key_value_heads"] * config["head_dim"] * 2
    kv = kv_per_token * (text_tokens + neg_tokens)
    keep = param_bytes(ours) + kv
    evicted = param_bytes(ours.gen_tower) + kv
    swap_in_fp8_linears(ours)
    evicted_fp8 = param_bytes(ours.gen_tower) + kv
    return [("diffusers", diffusers_bytes), ("ours keep", keep), ("ours evicted", evicted),
            ("ours evicted fp8", evicted_fp8)]


def main() -> None:
    bench = Bench(__doc__)
    args = bench.parse()
    with bench.checkpoint() as folder:
        result = bench.run(partial(build, bench), VARIANTS)
        reload_s = []
        for _ in range(max(1, args.runs)):
            start = time.perf_counter()
            load_text_tower(folder, dtype=bench.dtype, device=args.device)
            reload_s.append(time.perf_counter() - start)
    base = result["diffusers"]
    header = ("variant", "resident weights+K/V MiB", "vs diffusers", "peak RSS sampling MiB", "vs diffusers",
              "peak VRAM MiB", "s/step", "cpu speed-up")
    rows = []
    base_rss = base.memory.get("rss")
    for name, v in result.items():
        rss = v.memory.get("rss")
        rows.append((name, mib(v.step.resident), f"{v.step.resident / base.step.resident:.2f}x", v.mib("rss"),
                     ratio(rss, base_rss) if rss and base_rss else "-", v.mib("vram"), v.seconds()[0],
                     ratio(base.timing, v.timing)))
    nano = nano_accounting(args.text_tokens, args.neg_tokens)
    bench.report(f"{args.dtype} on {args.device}, {args.grid} latent, prompts {args.text_tokens}/{args.neg_tokens} "
                 "tokens", header, rows, reload_s=min(reload_s), nano=dict(nano))
    print(f"new prompt after eviction ('drop'): text tower reload from the checkpoint {min(reload_s):.3f} s")
    print(f"\nreal Nano size (bf16 weights, sound+action heads, K/V of {args.text_tokens}+{args.neg_tokens} tokens):")
    table(("variant", "resident GiB", "vs diffusers"),
          [(n, f"{b / 2**30:.2f}", f"{b / nano[0][1]:.2f}x") for n, b in nano])


if __name__ == "__main__":
    main()
