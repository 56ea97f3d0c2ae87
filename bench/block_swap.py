"""Block swap: generation-layer weights resident on the device vs step time, for several swap counts.

On a GPU the swapped layers live in (optionally pinned) host RAM and are copied in with one-layer
prefetch on a side CUDA stream. On a CPU-only machine host and device are the same memory; the bench then
uses ``DeviceMover(copy=True)`` so every swapped layer is really copied before it runs (an upper bound for
the bookkeeping + copy cost, with no transfer/compute overlap), and the device-resident figure is the
schedule's own accounting (resident layers + the most swapped layers in flight at once).

    python bench/block_swap.py                        # swap 0, half, all (prefetch 1) and all without prefetch
    python bench/block_swap.py --device cuda --pin    # on a GPU: real transfers, pinned host memory
"""

from __future__ import annotations

from functools import partial

import torch
from _harness import Bench, max_abs, mib, ours_step, ratio

from cosmos3.model.transformer import module_nbytes
from cosmos3.runtime.offload import DeviceMover, enable_block_swap


def variants(layers: int) -> dict[str, tuple[int, int]]:
    """name: (blocks_to_swap, prefetch)."""
    half = layers // 2
    return {"no swap": (0, 1), f"swap {half}/{layers}": (half, 1), f"swap {layers}/{layers}": (layers, 1),
            f"swap {layers}/{layers}, no prefetch": (layers, 0)}


def build(bench: Bench, variant: str):
    swap, prefetch = variants(bench.config["num_hidden_layers"])[variant]
    device = bench.device
    model, cond, uncond = bench.ours(device="cpu", text_tower_device="cpu")
    mover = DeviceMover(device, copy=True) if torch.device(device).type == "cpu" else None
    schedule = enable_block_swap(model, swap, device, pin_memory=bench.args.pin, prefetch=prefetch, mover=mover)
    cond, uncond = cond.to(device), uncond.to(device)
    x = bench.latents()

    def step():
        return ours_step(model, x, 999.0, cond, uncond)

    step.schedule = schedule
    step.model = model
    # device weights + K/V; the schedule's accounting is complete after a first step
    step.resident = lambda: schedule.device_bytes(model.gen_tower) + cond.nbytes + uncond.nbytes
    return step


def main() -> None:
    bench = Bench(__doc__)
    bench.parser.add_argument("--pin", action="store_true", help="pinned host memory for swapped layers (CUDA only)")
    args = bench.parse()
    with bench.checkpoint():
        result = bench.run(partial(build, bench), list(variants(bench.config["num_hidden_layers"])))
    ref = result.pop("diffusers")
    base = result["no swap"]
    header = ("variant", "device weights+K/V MiB", "vs no swap", "vs diffusers", "swapped layers in flight",
              "peak RSS sampling MiB", "peak VRAM MiB", "s/step", "cpu time vs no swap", "speed-up vs diffusers (cpu)",
              "max|dv|")
    rows = [("diffusers", mib(ref.step.resident), "-", "1.00x", "-", ref.mib("rss"), ref.mib("vram"), ref.seconds()[0],
             "-", "1.00x", "-")]
    for name, v in result.items():
        resident = v.step.resident()
        rows.append((name, mib(resident), f"{resident / base.step.resident():.2f}x",
                     f"{resident / ref.step.resident:.2f}x", v.step.schedule.peak_loaded, v.mib("rss"), v.mib("vram"),
                     v.seconds()[0], ratio(v.timing, base.timing), ratio(ref.timing, v.timing),
                     max_abs(v.out, base.out)))
    layer = module_nbytes(base.step.model.gen_tower.layers[0])
    bench.report(f"{args.dtype} on {args.device}, {args.grid} latent, one generation layer = {layer / 2**20:.0f} MiB, "
                 f"pinned={args.pin}", header, rows)


if __name__ == "__main__":
    main()
