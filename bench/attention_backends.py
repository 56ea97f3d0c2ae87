"""Attention backends behind one interface: step time and deviation from SDPA for each installed backend.

Backends whose package is missing are listed with the error a user would see. ``--comfyui DIR`` imports
ComfyUI's attention from a checkout (CPU mode) so the ``comfy`` backend can run outside ComfyUI; its
``--comfy-flag`` picks ComfyUI's kernel (e.g. ``--use-pytorch-cross-attention``; default: ComfyUI's choice).

    python bench/attention_backends.py
    python bench/attention_backends.py --comfyui /work/comfyui --comfy-flag=--use-pytorch-cross-attention
"""

from __future__ import annotations

import sys
from functools import cache, partial

from _harness import Bench, ours_step, ratio, tokens

from cosmos3.model.attention import AttentionBackendUnavailable, attention_backends, check_backend
from cosmos3.model.fp8 import error_stats

BASELINE = "diffusers (its default SDPA)"


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


@cache
def evicted(bench: Bench):
    """The one model every backend runs: (model, cond, uncond, latents)."""
    return (*bench.ours(), bench.latents())


def build(bench: Bench, backend: str):
    model, cond, uncond, x = evicted(bench)

    def step():
        model.attention_backend = backend
        try:
            return ours_step(model, x, 999.0, cond, uncond)
        finally:
            model.attention_backend = "sdpa"

    return step


def main() -> None:
    bench = Bench(__doc__)
    bench.parser.add_argument("--comfyui", default=None,
                              help="ComfyUI checkout to import comfy.ldm.modules.attention from")
    bench.parser.add_argument("--comfy-flag", default=None,
                              help="one ComfyUI command-line flag choosing its attention kernel")
    args = bench.parse()
    comfy_kernel = import_comfyui(args.comfyui, args.comfy_flag) if args.comfyui else None
    usable, missing = [], []
    for name in attention_backends():
        try:
            check_backend(name)
            usable.append(name)
        except AttentionBackendUnavailable as exc:
            missing.append((name, str(exc)))
    with bench.checkpoint():
        result = bench.run(partial(build, bench), usable, baseline=BASELINE, memory=False)
    ref, base = result.pop(BASELINE), result["sdpa"]
    header = ("backend", "s/step", "cpu s/step", "cpu time vs sdpa", "speed-up vs diffusers (cpu)", "max|dv| vs sdpa",
              "rel L2 vs sdpa")
    rows = [(BASELINE, *ref.seconds(), "-", "1.00x", "-", "-")]
    for name, v in result.items():
        err = error_stats(base.out, v.out)
        label = f"{name} ({comfy_kernel})" if name == "comfy" and comfy_kernel else name
        rows.append((label, *v.seconds(), ratio(v.timing, base.timing), ratio(ref.timing, v.timing),
                     f"{err['max_abs']:.1e}", f"{err['rel_l2']:.1e}"))
    bench.report(f"{args.dtype} on {args.device}, {args.grid} latent ({tokens(args.grid)} tokens), prompts "
                 f"{args.text_tokens}/{args.neg_tokens}", header, rows, missing=dict(missing))
    for name, message in missing:
        print(f"not available: {name}: {message}")


if __name__ == "__main__":
    main()
