"""One denoising step: our cached-text Cosmos3 transformer vs diffusers' full joint forward.

Both run the same random weights (a scaled-down Nano-shaped config, written once as a diffusers folder).
Ours encodes the prompt once (timed separately: it is paid once per prompt, not per step), then drops the
text tower and runs only the generation tower against the cached K/V; diffusers re-runs both towers over
``[text ; vision]`` every step. Reports step times, the speed-up and the weight bytes resident during the
step (ours: generation tower + K/V cache; diffusers: the whole model).

    python bench/transformer_step.py                      # fp32 + bf16, defaults below
    python bench/transformer_step.py --layers 8 --dtypes fp32 --runs 3

Timings are informative only (never asserted); each is the best of ``--runs`` after a warm-up, with ours
and diffusers interleaved. Needs diffusers (the test extra).
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # shared fixture builders + the diffusers packing oracle

from tiny_transformer import reference_velocity, write_random_checkpoint  # noqa: E402

from cosmos3 import load_transformer  # noqa: E402
from cosmos3.transformer import module_nbytes  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=1024, help="hidden size (Nano: 4096)")
    parser.add_argument("--layers", type=int, default=4, help="decoder layers (Nano: 36)")
    parser.add_argument("--heads", type=int, default=8, help="query heads, head_dim 128 (Nano: 32)")
    parser.add_argument("--kv-heads", type=int, default=2, help="key/value heads (Nano: 8)")
    parser.add_argument("--intermediate", type=int, default=3072, help="MLP width (Nano: 12288)")
    parser.add_argument("--vocab", type=int, default=32000, help="vocabulary (Nano: 151936)")
    parser.add_argument("--text-tokens", type=int, default=300)
    parser.add_argument("--t2i", default="1x60x60", help="T2I latent TxHxW (60x60 -> 900 tokens)")
    parser.add_argument("--t2v", default="4x30x52", help="T2V latent TxHxW (4x30x52 -> 1560 tokens)")
    parser.add_argument("--dtypes", default="fp32,bf16", help="comma list of fp32,bf16")
    parser.add_argument("--runs", type=int, default=2, help="timed runs (best is reported) after one warm-up each")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    return parser.parse_args()


def grid(spec: str) -> tuple[int, int, int]:
    t, h, w = (int(x) for x in spec.lower().split("x"))
    return t, h, w


def timed_pair(first, second, runs: int) -> tuple[tuple[float, float], tuple[float, float], torch.Tensor, torch.Tensor]:
    """Best-of-``runs`` (wall, CPU) seconds of two callables, interleaved so both see the same machine load.

    CPU time (all threads of this process) is reported too: on a shared machine it is far less sensitive to
    other processes than wall time.
    """
    out_a, out_b = first(), second()  # warm-up (allocator, kernel selection)
    best = {"a": [float("inf")] * 2, "b": [float("inf")] * 2}
    for _ in range(runs):
        for name, fn in (("a", first), ("b", second)):
            wall, cpu = time.perf_counter(), time.process_time()
            out = fn()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            best[name] = [min(best[name][0], wall), min(best[name][1], cpu)]
            if name == "a":
                out_a = out
            else:
                out_b = out
    return tuple(best["a"]), tuple(best["b"]), out_a, out_b


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from diffusers import Cosmos3OmniTransformer

    config = dict(
        hidden_size=args.hidden, num_hidden_layers=args.layers, num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads, head_dim=128, intermediate_size=args.intermediate,
        vocab_size=args.vocab, rope_axes_dim=[24, 20, 20],
    )
    cases = {"T2I": grid(args.t2i), "T2V": grid(args.t2v)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        weight_bytes = write_random_checkpoint(config, folder / "diffusion_pytorch_model.safetensors")
        (folder / "config.json").write_text(__import__("json").dumps({"_class_name": "Cosmos3OmniTransformer", **config}))
        print(f"config: {config}  ({weight_bytes / 2**20:.0f} MiB fp32 on disk), threads={torch.get_num_threads()}")
        for dtype_name in args.dtypes.split(","):
            dtype = DTYPES[dtype_name.strip()]
            reference = Cosmos3OmniTransformer.from_pretrained(str(folder), torch_dtype=dtype).eval()
            ours = load_transformer(folder, dtype=dtype)
            ids = torch.randint(0, args.vocab, (args.text_tokens,), generator=torch.Generator().manual_seed(0))
            ours.encode_text(ids)  # warm-up
            start = time.perf_counter()
            cache = ours.encode_text(ids)
            encode_s = time.perf_counter() - start
            ours.drop_text_tower()  # the step below runs with the generation tower only
            gc.collect()
            ours_bytes = module_nbytes(ours) + cache.nbytes
            ref_bytes = sum(p.numel() * p.element_size() for p in reference.parameters())
            for case, (frames, height, width) in cases.items():
                latents = torch.randn(1, 48, frames, height, width, generator=torch.Generator().manual_seed(1)).to(dtype)
                tokens = frames * -(-height // 2) * -(-width // 2)
                ours_s, ref_s, ours_out, ref_out = timed_pair(
                    lambda: ours.velocity(latents, 999, cache, fps=24.0),
                    lambda: reference_velocity(reference, ids, latents, 999, 24.0),
                    args.runs,
                )
                diff = (ours_out.float() - ref_out.float()).abs().max().item()
                rows.append((case, dtype_name, args.text_tokens, tokens, ours_s, ref_s, encode_s,
                             ours_bytes, ref_bytes, diff))
            del reference, ours, cache
            gc.collect()

    header = ("case", "dtype", "text", "vision", "ours step s", "diffusers s", "speed-up", "cpu-time speed-up",
              "encode_text s", "ours resident MiB", "diffusers MiB", "max|diff|")
    table = [header]
    for case, dt, text, vision, ours_s, ref_s, enc_s, ob, rb, diff in rows:
        table.append((case, dt, str(text), str(vision), f"{ours_s[0]:.3f}", f"{ref_s[0]:.3f}",
                      f"{ref_s[0] / ours_s[0]:.2f}x", f"{ref_s[1] / ours_s[1]:.2f}x", f"{enc_s:.3f}",
                      f"{ob / 2**20:.0f}", f"{rb / 2**20:.0f}", f"{diff:.1e}"))
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for index, row in enumerate(table):
        print(" | ".join(cell.rjust(w) for cell, w in zip(row, widths)))
        if index == 0:
            print("-+-".join("-" * w for w in widths))


if __name__ == "__main__":
    main()
