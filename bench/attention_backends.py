"""Attention backends behind one interface: step time and deviation from SDPA for each installed backend.

Backends whose package is missing are listed with the error a user would see. ``--comfyui DIR`` imports
ComfyUI's attention from a checkout (CPU mode) so the ``comfy`` backend can run outside ComfyUI; its
``--comfy-flag`` picks ComfyUI's kernel (e.g. ``--use-pytorch-cross-attention``; default: ComfyUI's choice).

    python bench/attention_backends.py
    python bench/attention_backends.py --comfyui /work/comfyui --comfy-flag=--use-pytorch-cross-attention
"""

from __future__ import annotations

import sys

from _harness import (
    DTYPES,
    checkpoint,
    diffusers_step,
    dump,
    free,
    ids,
    interleaved,
    latents,
    machine,
    ours_step,
    parser,
    ratio,
    setup,
    table,
    tokens,
)

from cosmos3 import load_transformer
from cosmos3.model.attention import AttentionBackendUnavailable, attention_backends, check_backend
from cosmos3.model.fp8 import error_stats


def import_comfyui(folder: str, flag: str | None) -> str:
    """Import ComfyUI's attention module from a checkout in CPU mode; returns the kernel it picked."""
    sys.path.insert(0, folder)
    argv = sys.argv
    sys.argv = ["main.py", "--cpu", *([flag] if flag else [])]
    try:
        import comfy.options

        comfy.options.enable_args_parsing()
        from comfy.ldm.modules import attention
    finally:
        sys.argv = argv
    return attention.optimized_attention.__name__


def main() -> None:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--comfyui", default=None, help="ComfyUI checkout to import comfy.ldm.modules.attention from")
    p.add_argument("--comfy-flag", default=None, help="one ComfyUI command-line flag choosing its attention kernel")
    args = p.parse_args()
    config = setup(args)
    comfy_kernel = import_comfyui(args.comfyui, args.comfy_flag) if args.comfyui else None
    dtype, device = DTYPES[args.dtype], args.device
    print(machine())
    usable, missing = [], []
    for name in attention_backends():
        try:
            check_backend(name)
            usable.append(name)
        except AttentionBackendUnavailable as exc:
            missing.append((name, str(exc)))
    with checkpoint(args, config) as folder:
        model = load_transformer(folder, dtype=dtype, device=device)
        cond = model.encode_text(ids(args.text_tokens, config["vocab_size"], seed=0))
        uncond = model.encode_text(ids(args.neg_tokens, config["vocab_size"], seed=1))
        model.drop_text_tower()
        free()
        x = latents(args.grid, dtype, device)

        def runner(name):
            def step():
                model.attention_backend = name
                try:
                    return ours_step(model, x, 999.0, cond, uncond)
                finally:
                    model.attention_backend = "sdpa"

            return step

        fns = {name: runner(name) for name in usable}
        fns["diffusers (its default SDPA)"] = diffusers_step(args, config, folder)
        timings = interleaved(fns, args.runs)
    base, ref = timings["sdpa"], timings.pop("diffusers (its default SDPA)")
    header = ("backend", "s/step", "cpu s/step", "cpu time vs sdpa", "speed-up vs diffusers (cpu)", "max|dv| vs sdpa",
              "rel L2 vs sdpa")
    rows = [("diffusers (its default SDPA)", f"{ref.wall:.3f}", f"{ref.cpu:.3f}", "-", "1.00x", "-", "-")]
    for name, t in timings.items():
        err = error_stats(base.out, t.out)
        label = f"{name} ({comfy_kernel})" if name == "comfy" and comfy_kernel else name
        rows.append((label, f"{t.wall:.3f}", f"{t.cpu:.3f}", ratio(t, base), ratio(ref, t),
                     f"{err['max_abs']:.1e}", f"{err['rel_l2']:.1e}"))
    print(f"{args.dtype} on {device}, {args.grid} latent ({tokens(args.grid)} tokens), prompts "
          f"{args.text_tokens}/{args.neg_tokens}")
    table(header, rows)
    for name, message in missing:
        print(f"not available: {name}: {message}")
    dump(args, header, rows, missing=dict(missing))


if __name__ == "__main__":
    main()
