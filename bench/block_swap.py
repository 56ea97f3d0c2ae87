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

import torch
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
)

from cosmos3 import load_transformer
from cosmos3.runtime.offload import DeviceMover, enable_block_swap
from cosmos3.model.transformer import module_nbytes


def variants(layers: int) -> dict[str, tuple[int, int]]:
    """name: (blocks_to_swap, prefetch)."""
    half = layers // 2
    return {"no swap": (0, 1), f"swap {half}/{layers}": (half, 1), f"swap {layers}/{layers}": (layers, 1),
            f"swap {layers}/{layers}, no prefetch": (layers, 0)}


def build(variant: str, args, config, folder):
    swap, prefetch = variants(config["num_hidden_layers"])[variant]
    dtype, device = DTYPES[args.dtype], args.device
    model = load_transformer(folder, dtype=dtype, device="cpu" if device != "cpu" else device,
                             text_tower_device="cpu")
    cond = model.encode_text(ids(args.text_tokens, config["vocab_size"], seed=0))
    uncond = model.encode_text(ids(args.neg_tokens, config["vocab_size"], seed=1))
    model.drop_text_tower()
    free()
    mover = DeviceMover(device, copy=True) if torch.device(device).type == "cpu" else None
    schedule = enable_block_swap(model, swap, device, pin_memory=args.pin, prefetch=prefetch, mover=mover)
    cond, uncond = cond.to(device), uncond.to(device)
    x = latents(args.grid, dtype, device)

    def step():
        return ours_step(model, x, 999.0, cond, uncond)

    step.schedule = schedule
    step.model = model
    step.kv = cond.nbytes + uncond.nbytes
    return step


def main() -> None:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--pin", action="store_true", help="pinned host memory for swapped layers (CUDA only)")
    args = p.parse_args()
    config = setup(args)
    names = list(variants(config["num_hidden_layers"]))
    with checkpoint(args, config) as folder:
        if args.measure == "diffusers":
            measured(args.device, lambda: diffusers_step(args, config, folder))
            return
        if args.measure:
            def measure_setup():
                step = build(args.measure, args, config, folder)
                step()
                step.resident = step.schedule.device_bytes(step.model.gen_tower) + step.kv
                return step

            measured(args.device, measure_setup)
            return
        print(machine())
        steps = {v: build(v, args, config, folder) for v in names}
        steps["diffusers"] = diffusers_step(args, config, folder)
        timings = interleaved(steps, args.runs)
        memory = isolated(args, folder, ["diffusers", *names])
    base, ref = timings["no swap"], timings["diffusers"]
    header = ("variant", "device weights+K/V MiB", "vs no swap", "vs diffusers", "swapped layers in flight",
              "peak RSS sampling MiB", "peak VRAM MiB", "s/step", "cpu time vs no swap", "speed-up vs diffusers (cpu)",
              "max|dv|")
    dmem = memory.get("diffusers", {})
    rows = [("diffusers", mib(steps["diffusers"].resident), "-", "1.00x", "-", mib(dmem.get("rss")), mib(dmem.get("vram")),
             f"{ref.wall:.3f}", "-", "1.00x", "-")]
    for name in names:
        step, timing, mem = steps[name], timings[name], memory.get(name, {})
        resident = step.schedule.device_bytes(step.model.gen_tower) + step.kv
        reference = steps["no swap"].schedule.device_bytes(steps["no swap"].model.gen_tower) + step.kv
        rows.append((name, mib(resident), f"{resident / reference:.2f}x", f"{resident / steps['diffusers'].resident:.2f}x",
                     step.schedule.peak_loaded, mib(mem.get("rss")), mib(mem.get("vram")), f"{timing.wall:.3f}",
                     ratio(timing, base), ratio(ref, timing),
                     f"{(timing.out - base.out).abs().max().item():.1e}"))
    layer = module_nbytes(steps["no swap"].model.gen_tower.layers[0])
    print(f"{args.dtype} on {args.device}, {args.grid} latent, one generation layer = {layer / 2**20:.0f} MiB, "
          f"pinned={args.pin}")
    table(header, rows)
    dump(args, header, rows)


if __name__ == "__main__":
    main()
