"""Sequence parallel (Ulysses / ring) and CFG parallel: communication bytes, measured step time, expected scaling.

Three parts:

1. **Measured on this machine** (default; CPU processes on gloo, or ``--gpu`` with NCCL on the GPUs there):
   every layout in ``--layouts`` runs the same sampling steps (CFG on) in ``ulysses*ring*cfg`` spawned
   processes, round-robin with the baseline (rank 0 alone, without any parallelism, while the others wait).
   Per layout: the communication payload one rank sent per step (counted by
   :class:`~cosmos3.runtime.parallel.ParallelRuntime`) next to the analytic model below, the best step times and
   the median per-round speed-up. On a CPU with fewer cores than processes the ranks share cores.
2. **Model** (always printed): per-step bytes per rank and step time for Nano and Super at 720p (189 frames,
   44,160 generation tokens, 512 text tokens, bf16, CFG on) on 2/4/8 GPUs, from

   * compute per generation pass: ``2 * N * P_layer * L`` (projections and MLP) + ``4 * N * (N + Lt) * nh * hd * L``
     (attention), split evenly over the ``ulysses * ring`` ranks of a pass and the ``cfg`` branches;
   * bytes per rank per pass and layer: Ulysses all-to-all ``(U-1)/U * (N/S) * (2*nh + 2*nkv_u) * hd * 2`` (q, k,
     v, out; ``nkv_u = max(nkv, U)`` when K/V heads are replicated); ring ``(R-1) * (N/S) * U * 2*nkv_u/U * hd * 2``
     (k, v blocks); plus one gather of the hidden states per pass and one CFG exchange of the velocity per step;
   * time = compute / FLOP rate + bytes / link bandwidth (no overlap assumed: an upper bound for ring, which
     can hide its transfers behind the block compute).

   Assumptions (``--flops``, ``--link-gbps``): 400 TFLOP/s sustained bf16 per GPU (about 40 % of an H100/H200
   SXM dense peak) and 200 GB/s effective per-GPU all-to-all bandwidth on NVLink (H100/H200 SXM: 450 GB/s per
   direction nominal). These are assumptions, not measurements: no multi-GPU machine was available.
3. ``--gpu``: part 1 on the GPUs of this machine with NCCL (``--preset nano`` for the real width); needs as many
   GPUs as the largest layout.

Usage: ``python bench/parallel.py`` (CPU, scaled-down model) · ``python bench/parallel.py --gpu --preset nano
--grid 24x46x80 --layouts ulysses=2 cfg=2 ulysses=2,cfg=2 ulysses=4,cfg=2``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cosmos3.runtime.parallel import ParallelConfig, init_parallel  # noqa: E402
from cosmos3.runtime.parallel.local import free_port, run_local  # noqa: E402

NANO = dict(hidden=4096, layers=36, heads=32, kv_heads=8, head_dim=128, mlp=12288, q_dim=4096)
SUPER = dict(hidden=5120, layers=64, heads=64, kv_heads=8, head_dim=128, mlp=25600, q_dim=8192)
TOKENS_720P = 48 * 23 * 40  # 189 frames -> 48 latent frames of 45x80 latents, 2x2 patches (23 x 40)
TEXT_TOKENS = 512
MODEL_LAYOUTS = {
    1: ["1 GPU"],
    2: ["cfg=2", "ulysses=2", "ring=2"],
    4: ["ulysses=2,cfg=2", "ulysses=4", "ring=2,cfg=2"],
    8: ["ulysses=4,cfg=2", "ulysses=8", "ulysses=4,ring=2", "ring=4,cfg=2"],
}
# A small model for CPU measurements (heads 8/2 so ulysses 2 and 4 split and 8 replicates).
CPU_MODEL = dict(
    hidden_size=256, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=2, head_dim=32,
    intermediate_size=768, vocab_size=256, rope_axes_dim=[8, 4, 4],
)


# ---------------------------------------------------------------------------------------------- analytic model


def layer_params(m: dict) -> int:
    h, q, kv = m["hidden"], m["q_dim"], m["kv_heads"] * m["head_dim"]
    return h * q * 2 + h * kv * 2 + 3 * h * m["mlp"]


def pass_flops(m: dict, tokens: int, text: int) -> float:
    """FLOPs of one generation-tower pass over ``tokens`` (against ``text`` cached text keys)."""
    linear = 2.0 * tokens * layer_params(m) * m["layers"]
    attention = 4.0 * tokens * (tokens + text) * m["heads"] * m["head_dim"] * m["layers"]
    return linear + attention


def step_bytes(m: dict, layout: ParallelConfig, tokens: int, element: int = 2, guided: bool = True) -> float:
    """Payload bytes one rank sends per sampling step (the formulas of the module docstring)."""
    u, r, c = layout.ulysses, layout.ring, layout.cfg
    s = u * r
    shard = -(-tokens // s)
    hd, nh, nkv = m["head_dim"], m["heads"], m["kv_heads"]
    nkv_u = max(nkv, u) if u > 1 else nkv
    per_layer = 0.0
    if u > 1:
        per_layer += (u - 1) / u * shard * (2 * nh + 2 * nkv_u) * hd * element
    if r > 1:
        per_layer += (r - 1) * shard * u * 2 * (nkv_u // u) * hd * element
    passes = (1 if c == 2 else 2) if guided else 1
    gather = shard * m["hidden"] * element * (s - 1) if s > 1 else 0
    exchange = tokens * m.get("latent_patch_dim", 192) * 4 if c == 2 and guided else 0  # fp32 velocity
    return passes * (per_layer * m["layers"] + gather) + exchange


def step_seconds(m: dict, layout: ParallelConfig | None, tokens: int, flops: float, link: float) -> float:
    compute = 2 * pass_flops(m, tokens, TEXT_TOKENS)  # cond + uncond
    if layout is None:
        return compute / flops
    return compute / layout.world_size / flops + step_bytes(m, layout, tokens) / link


def model_table(flops: float, link: float) -> list[list[str]]:
    rows = []
    for name, m in (("Nano", NANO), ("Super", SUPER)):
        base = step_seconds(m, None, TOKENS_720P, flops, link)
        for gpus, layouts in MODEL_LAYOUTS.items():
            for text in layouts:
                layout = None if gpus == 1 else ParallelConfig.parse(text)
                secs = step_seconds(m, layout, TOKENS_720P, flops, link)
                sent = 0.0 if layout is None else step_bytes(m, layout, TOKENS_720P)
                rows.append([name, str(gpus), text, f"{sent / 2**30:.2f}", f"{secs:.2f}", f"{base / secs:.2f}x"])
    return rows


# ---------------------------------------------------------------------------------------------- measurement


def _worker(rank: int, world: int, init: str, layouts: list, spec: dict, out: str) -> None:
    import torch.distributed as dist

    from cosmos3.geometry import Geometry
    from cosmos3.model.config import TransformerConfig
    from cosmos3.model.transformer import Cosmos3Transformer
    from cosmos3.sampling.loop import sample
    from cosmos3.sampling.schedulers import build_sampler
    from cosmos3.text.encoding import EncodedPrompt

    torch.set_num_threads(spec["threads"])
    gpu = spec["gpu"]
    device = torch.device("cuda", rank) if gpu else torch.device("cpu")
    dtype = torch.bfloat16 if gpu else torch.float32
    if world > 1:
        if gpu:
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if gpu else "gloo", init_method=init, rank=rank, world_size=world)
    torch.manual_seed(0)
    model = Cosmos3Transformer(TransformerConfig.from_dict(spec["config"]), dtype=dtype, device=device).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    gen = torch.Generator().manual_seed(1)
    vocab = spec["config"]["vocab_size"]
    cond = model.encode_text(torch.randint(0, vocab, (spec["text"],), generator=gen))
    uncond = model.encode_text(torch.randint(0, vocab, (spec["text"],), generator=gen))
    t, h, w = spec["grid"]
    geometry = Geometry(4 * (t - 1) + 1, 16 * h, 16 * w)
    prompt = EncodedPrompt(cond, uncond, geometry=geometry, style="framework", cond_text="a", uncond_text="b")
    def timed(runtime) -> float:
        sampler = build_sampler("euler", spec["steps"], 3.0)
        if gpu:
            torch.cuda.synchronize()
        start = time.perf_counter()
        sample(model, prompt, sampler, guidance_scale=4.0, seed=0, parallel=runtime, device=device)
        if gpu:
            torch.cuda.synchronize()
        return (time.perf_counter() - start) / spec["steps"]

    results = {}
    for text in layouts:
        runtime = init_parallel(ParallelConfig.parse(text), device=device, timeout_s=600)
        base, times, ratios = [], [], []
        for run in range(spec["runs"] + 1):  # round-robin: one process alone (the others wait), then all ranks
            if rank == 0:
                base.append(timed(None))
            runtime.barrier()
            runtime.bytes_sent = 0
            times.append(timed(runtime))
            if run and rank == 0:  # the first round warms up
                ratios.append(base[-1] / times[-1])
        sent = runtime.bytes_sent / spec["steps"]
        results[text] = {"step_s": min(times[1:]), "base_s": min(base[1:]) if base else 0.0, "bytes": sent,
                         "ratio": sorted(ratios)[len(ratios) // 2] if ratios else 0.0}
        runtime.close()
    if rank == 0:
        Path(out).write_text(json.dumps(results))


def measure(args: argparse.Namespace) -> list[list[str]]:
    config = dict(CPU_MODEL)
    if args.preset == "nano":
        config = dict(hidden_size=4096, num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8,
                      head_dim=128, intermediate_size=12288, vocab_size=4096, rope_axes_dim=[24, 20, 20])
    t, h, w = (int(x) for x in args.grid.lower().split("x"))
    spec = dict(config=config, grid=(t, h, w), text=args.text_tokens, steps=args.steps, runs=args.runs,
                threads=args.threads, gpu=args.gpu)
    by_world: dict[int, list[str]] = {}
    for text in args.layouts:
        by_world.setdefault(ParallelConfig.parse(text).world_size, []).append(text)
    found: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for world, layouts in sorted(by_world.items()):
            out = Path(tmp) / f"world{world}.json"
            codes = run_local(_worker, world, (f"tcp://127.0.0.1:{free_port()}", layouts, spec, str(out)),
                              timeout_s=args.timeout)
            if codes != [0] * world or not out.exists():
                raise SystemExit(f"layouts {layouts} on {world} processes failed (exit codes {codes})")
            found.update(json.loads(out.read_text()))
    rows_tokens = t * -(-h // 2) * -(-w // 2)
    m = dict(hidden=config["hidden_size"], layers=config["num_hidden_layers"], heads=config["num_attention_heads"],
             kv_heads=config["num_key_value_heads"], head_dim=config["head_dim"], mlp=config["intermediate_size"],
             q_dim=config["num_attention_heads"] * config["head_dim"])
    element = 2 if args.gpu else 4
    rows = []
    for text, r in found.items():
        model_bytes = step_bytes(m, ParallelConfig.parse(text), rows_tokens, element)
        rows.append([text, f"{r['bytes'] / 2**20:.2f}", f"{model_bytes / 2**20:.2f}", f"{r['base_s']:.3f}",
                     f"{r['step_s']:.3f}", f"{r['ratio']:.2f}x"])
    return rows


def _table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for row in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--gpu", action="store_true", help="measure on this machine's GPUs with NCCL (bf16)")
    p.add_argument("--preset", choices=("cpu", "nano"), default="cpu", help="measured model size")
    p.add_argument("--grid", default="3x16x16", help="latent TxHxW of the measured clip (3x16x16 = 192 tokens)")
    p.add_argument("--text-tokens", type=int, default=32)
    p.add_argument("--steps", type=int, default=2, help="sampling steps per timed run")
    p.add_argument("--runs", type=int, default=2, help="timed runs per layout (best reported) after a warm-up")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--layouts", nargs="+", default=["ulysses=2", "ring=2", "cfg=2", "ulysses=2,cfg=2", "ulysses=4"])
    p.add_argument("--timeout", type=float, default=1800.0)
    p.add_argument("--flops", type=float, default=400e12, help="assumed sustained FLOP/s per GPU (model)")
    p.add_argument("--link-gbps", type=float, default=200.0, help="assumed per-GPU all-to-all GB/s (model)")
    p.add_argument("--model-only", action="store_true", help="print only the analytic model")
    args = p.parse_args()
    if not args.model_only:
        where = "GPUs, NCCL, bf16" if args.gpu else f"CPU processes, gloo, fp32, {args.threads} thread(s) each"
        print(f"Measured ({where}; grid {args.grid}, {args.text_tokens} text tokens, CFG on):")
        _table(["layout", "MiB sent/rank/step", "model MiB", "1 process s/step", "s/step", "speed-up (median)"],
               measure(args))
        print()
    print(f"Model: 720p, 189 frames ({TOKENS_720P} tokens), {TEXT_TOKENS} text tokens, bf16, CFG on; assumed "
          f"{args.flops / 1e12:.0f} TFLOP/s per GPU and {args.link_gbps:.0f} GB/s per GPU (not measured):")
    _table(["model", "GPUs", "layout", "GiB sent/rank/step", "s/step", "speed-up"],
           model_table(args.flops, args.link_gbps * 1e9))


if __name__ == "__main__":
    main()
