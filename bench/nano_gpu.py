"""Nano-size run on a GPU: s/step and peak VRAM for each memory/speed feature, with random weights.

Builds the real Nano shape (15B parameters, ~27 GB bf16) straight on the GPU with random N(0, 0.02)
weights (no checkpoint), encodes a 300-token prompt and negative, and times CFG steps for:

* ``keep``: both towers resident (what a plain load holds), ``evicted``: text tower dropped after encoding;
* ``evicted cfg-batch``: cond + uncond in one batched pass;
* ``evicted fp8``: layer projections in scaled e4m3 (upcast per layer); ``+ fp8 matmul`` on CC >= 8.9;
* ``block swap N``: the last N generation layers streamed from pinned host RAM with one-layer prefetch;
* every installed attention backend, and (``--compile``) torch.compile of the generation layers.

Peak VRAM is ``torch.cuda.max_memory_allocated`` over the timed steps (weights + K/V + activations).
On a CPU the same script runs with ``--preset scaled --device cpu`` as a smoke test.

    python bench/nano_gpu.py                                # T2I 1024x1024 (1024 tokens)
    python bench/nano_gpu.py --grid 24x30x52 --runs 2       # 480p 93 frames (9360 tokens)
    python bench/nano_gpu.py --grid 48x45x80 --runs 1 --only evicted,"evicted fp8"   # 720p 189 frames
"""

from __future__ import annotations

import time
from functools import partial

import torch
from _harness import Bench, free, interleaved, machine, mib, ours_step, peak_memory, random_model, sync, table, tokens

from cosmos3.model.attention import available_attention_backends
from cosmos3.model.fp8 import error_stats, quantize_model_fp8, set_fp8_matmul
from cosmos3.model.transformer import BatchedTextKV, module_nbytes
from cosmos3.runtime.compile import compile_generation_layers, uncompile_generation_layers
from cosmos3.runtime.offload import disable_block_swap, enable_block_swap


def main() -> None:
    bench = Bench(__doc__, preset="nano", grid="1x64x64", runs=3)
    bench.parser.add_argument("--swap", default="18,34", help="comma list of blocks_to_swap values to time")
    bench.parser.add_argument("--compile", action="store_true", help="also time torch.compile (inductor) of the layers")
    bench.parser.add_argument("--only", default=None, help="comma list of variant names to run")
    args = bench.parse()
    config, dtype, device = bench.config, bench.dtype, bench.device
    only = set(args.only.split(",")) if args.only else None
    print(machine())
    print(f"config {config}, {args.dtype}, grid {args.grid} ({tokens(args.grid)} tokens), prompts "
          f"{args.text_tokens}/{args.neg_tokens}")
    rows = []

    def record(name, step, resident, reference=None):
        if only is not None and name not in only:
            return None
        step()  # warm-up (kernel selection, compilation, first block-swap pass)
        with peak_memory(device) as mem:
            timing = interleaved({name: step}, args.runs, warmup=0)[name]
        err = error_stats(reference, timing.out)["rel_l2"] if reference is not None else 0.0
        resident = resident() if callable(resident) else resident
        rows.append((name, f"{timing.wall:.3f}", mib(resident), mib(mem["vram"]), mib(mem["rss"]), f"{err:.1e}"))
        print(f"  {rows[-1]}", flush=True)
        return timing.out

    start = time.perf_counter()
    model = random_model(config, dtype, device)
    sync()
    print(f"random model built in {time.perf_counter() - start:.1f} s: {module_nbytes(model) / 2**30:.2f} GiB")
    cond, uncond = bench.encode(model)
    kv = cond.nbytes + uncond.nbytes
    x = bench.latents()

    def plain():
        return ours_step(model, x, 999.0, cond, uncond)

    reference = record("keep", plain, module_nbytes(model) + kv)
    model.drop_text_tower()
    free()
    evicted = record("evicted", plain, module_nbytes(model) + kv)
    reference = reference if reference is not None else evicted
    both = BatchedTextKV.from_caches([cond, uncond], device=device)
    record("evicted cfg-batch", partial(ours_step, model, x, 999.0, cond, uncond, batched=both),
           module_nbytes(model) + both.nbytes, reference)
    del both
    for name in available_attention_backends():
        if name in ("sdpa", "math"):
            continue

        def with_backend(backend=name):
            model.attention_backend = backend
            try:
                return plain()
            finally:
                model.attention_backend = "sdpa"

        try:
            record(f"evicted attention={name}", with_backend, module_nbytes(model) + kv, reference)
        except Exception as exc:  # a kernel that cannot run this shape/GPU: report and go on
            print(f"  attention {name}: {type(exc).__name__}: {exc}")
    if args.compile:
        compile_generation_layers(model)
        record("evicted compiled", plain, module_nbytes(model) + kv, reference)
        uncompile_generation_layers(model)
    layers = config["num_hidden_layers"]
    for value in (int(v) for v in args.swap.split(",") if v):
        if not 0 < value <= layers:
            continue
        schedule = enable_block_swap(model, value, device, pin_memory=torch.cuda.is_available(), prefetch=1)
        free()
        record(f"block swap {value}/{layers}", plain,
               lambda schedule=schedule: schedule.device_bytes(model.gen_tower) + kv, reference)
        disable_block_swap(model)
        free()
    quantize_model_fp8(model)
    free()
    record("evicted fp8", plain, module_nbytes(model) + kv, reference)
    if torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 9):
        set_fp8_matmul(model, True)
        record("evicted fp8 + fp8 matmul", plain, module_nbytes(model) + kv, reference)
        set_fp8_matmul(model, False)
    print()
    table(("variant", "s/step", "resident weights+K/V MiB", "peak VRAM MiB", "peak RSS MiB", "rel L2 vs keep"), rows)


if __name__ == "__main__":
    main()
