"""Weight formats: bf16 / fp8 / int8 / int4 / GGUF Q8_0 / Q4_K — memory (anonymous and file-backed), speed, error.

Measured part (the scaled Nano-shaped model, ``--preset scaled``): the harness's random fp32 checkpoint is written
once as bf16 (``bf16/``) and converted with ``python -m cosmos3.convert`` (int8, int4 g128, GGUF Q8_0, Q4_K);
fp8 and "int8 on load" quantise the bf16 checkpoint while loading. Every variant computes in bf16 with the text
tower evicted (like ``bench/weight_storage.py``). Per variant: the file size; the generation tower's resident
bytes; **peak anonymous RSS** (``RssAnon`` from ``/proc/self/status``, sampled every millisecond by a thread, in a
fresh process per variant) while loading and while sampling — mapped weights are page cache (``RssFile``) the
kernel can reclaim, anonymous memory is what the run really owns; total peak RSS; s/step and CPU time vs bf16 (one
run by default); velocity error vs bf16 (PSNR, max abs).

Computed part (``--analytic``, printed every run): Nano and Super from their real shapes (cosmos3-model-spec.md
§1.2) on the meta device: weight bytes per format; host RAM of a run = the weights (anonymous when quantised on
load; page cache when a pre-quantised file is mapped); device weight bytes with full block swap = the
generation tower's non-layer parts + ``prefetch + 1`` packed layers + one dequantised projection (activations
come on top and do not depend on the format).

    python bench/weight_formats.py
    python bench/weight_formats.py --analytic          # the Nano/Super table only (no model is run)
"""

from __future__ import annotations

import json
import threading
import time
from functools import partial
from pathlib import Path

import torch
from _harness import NANO, Bench, free, mib, ours_step, psnr, ratio

from cosmos3.model.fp8 import error_stats
from cosmos3.model.transformer import module_nbytes

SUPER = dict(NANO, hidden_size=5120, num_hidden_layers=64, num_attention_heads=64, intermediate_size=25600)
GIB = 2**30
# name: (file/folder under the checkpoint, weight_storage)
VARIANTS = {
    "bf16 (mapped)": ("bf16", None),
    "fp8 e4m3 (on load)": ("bf16", "fp8_e4m3fn"),
    "int8 (on load)": ("bf16", "int8"),
    "int8 file": ("int8.safetensors", None),
    "int4 g128 file": ("int4.safetensors", None),
    "GGUF Q8_0": ("q8_0.gguf", None),
    "GGUF Q4_K": ("q4_k.gguf", None),
}
CONVERSIONS = {"int8.safetensors": ("int8", None), "int4.safetensors": ("int4", None),
               "q8_0.gguf": ("gguf", "Q8_0"), "q4_k.gguf": ("gguf", "Q4_K")}


# ---------------------------------------------------------------------------------------------- measuring


class AnonPeak:
    """Peak ``RssAnon`` of this process, sampled by a daemon thread every ``interval`` seconds."""

    def __init__(self, interval: float = 0.001):
        self.interval, self.peak = interval, self.now()
        threading.Thread(target=self._poll, daemon=True).start()

    @staticmethod
    def now() -> int:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("RssAnon:"))

    def _poll(self) -> None:
        while True:
            self.peak = max(self.peak, self.now())
            time.sleep(self.interval)

    def reset(self) -> int:
        """Peak since the last reset (including now); restarts from the current value."""
        peak, self.peak = max(self.peak, self.now()), self.now()
        return peak


def prepare_files(folder: Path) -> None:
    """``bf16/`` (the checkpoint in bf16) and the converted files, once per checkpoint."""
    from safetensors.torch import load_file, save_file

    from cosmos3.convert import convert

    bf16 = folder / "bf16"
    if not bf16.is_dir():
        bf16.mkdir()
        (bf16 / "config.json").write_text((folder / "config.json").read_text())
        tensors = {k: v.to(torch.bfloat16) for k, v in load_file(str(folder / "diffusion_pytorch_model.safetensors"))
                   .items()}
        save_file(tensors, str(bf16 / "diffusion_pytorch_model.safetensors"))
        del tensors
        free()
    for name, (to, quant) in CONVERSIONS.items():
        if not (folder / name).exists():
            convert(bf16, folder / name, to, quant)


def file_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*.safetensors")) if path.is_dir() else path.stat().st_size


def build(bench: Bench, variant: str):
    from cosmos3 import load_transformer

    source, storage = VARIANTS[variant]
    measuring = bench.args.measure is not None
    peak = AnonPeak() if measuring else None
    path = bench.folder / source
    model = load_transformer(path, dtype=torch.bfloat16, device=bench.device, weight_storage=storage)
    cond, uncond = bench.encode(model)
    model.drop_text_tower()
    free()
    x = bench.latents(torch.bfloat16)
    anon_load = peak.reset() if peak is not None else None

    def step():
        return ours_step(model, x, bench.timestep, cond, uncond)

    step.resident = module_nbytes(model) + cond.nbytes + uncond.nbytes
    step.file = file_bytes(path)
    if peak is not None:
        step.measure_extra = lambda: {"anon_load": anon_load, "anon_step": peak.reset()}
    return step


# ---------------------------------------------------------------------------------------------- Nano / Super


def format_bytes(model: torch.nn.Module, fmt: str) -> dict[str, int]:
    """Weight bytes of ``model`` (meta, bf16) with its decoder-layer projections in ``fmt``: ``total``, ``text``,
    ``gen``, ``layer`` (largest generation layer), ``gen_rest`` (generation tower minus its layers), ``proj``
    (largest projection dequantised to bf16)."""
    from cosmos3.model.fp8 import fp8_module_names
    from cosmos3.model.quant import ggml
    from cosmos3.model.quant.intq import int4_group

    projections = set(fp8_module_names(model))

    def packed(module_name: str, out_f: int, in_f: int) -> int:
        if fmt == "bf16":
            return out_f * in_f * 2
        if fmt in ("fp8", "int8"):
            return out_f * in_f + out_f * 4
        if fmt == "int4":
            return out_f * in_f // 2 + out_f * (in_f // int4_group(in_f)) * 2
        return out_f * ggml.row_bytes(fmt, in_f)

    def size(module: torch.nn.Module, prefix: str) -> int:
        total = 0
        for name, tensor in module.named_parameters(prefix=prefix):
            owner = name.rpartition(".")[0]
            if owner in projections and name.endswith(".weight"):
                total += packed(owner, *tensor.shape)
            else:
                total += tensor.numel() * tensor.element_size()
        return total

    text, gen = size(model.text_tower, "text_tower"), size(model.gen_tower, "gen_tower")
    layers = [size(layer, f"gen_tower.layers.{i}") for i, layer in enumerate(model.gen_tower.layers)]
    largest = max(m.weight.numel() for n, m in model.named_modules() if n in projections)
    return {"total": text + gen, "text": text, "gen": gen, "layer": max(layers), "gen_rest": gen - sum(layers),
            "proj": largest * 2}


def analytic(bench: Bench) -> None:
    from cosmos3 import TransformerConfig
    from cosmos3.model.transformer import Cosmos3Transformer

    header = ("model / format", "weights GiB", "text tower GiB", "gen tower GiB", "host RAM, on-load GiB",
              "host RAM, mapped file (anon) GiB", "largest layer MiB", "device, full swap p0 MiB",
              "device, full swap p1 MiB", "target")
    rows = []
    for name, config, formats, targets in (
        ("Nano", NANO, ("bf16", "fp8", "int8", "int4", "Q8_0", "Q6_K", "Q5_K", "Q4_K"), {"int8": 20}),
        ("Super", SUPER, ("bf16", "fp8", "int8", "int4", "Q8_0", "Q6_K", "Q5_K", "Q4_K"), {"Q4_K": 45}),
    ):
        model = Cosmos3Transformer(TransformerConfig.from_dict(config), device="meta", dtype=torch.bfloat16)
        for fmt in formats:
            b = format_bytes(model, fmt)
            on_load = b["total"] if fmt != "bf16" else None  # quantised in memory: anonymous
            device = [b["gen_rest"] + (p + 1) * b["layer"] + (b["proj"] if fmt != "bf16" else 0) for p in (0, 1)]
            target = targets.get(fmt)
            verdict = "-" if target is None else (f"<= {target} GB: {'yes' if b['total'] <= target * 1e9 else 'NO'} "
                                                  f"({b['total'] / 1e9:.1f} GB)")
            rows.append((f"{name} {fmt}", f"{b['total'] / GIB:.1f}", f"{b['text'] / GIB:.1f}", f"{b['gen'] / GIB:.1f}",
                         "-" if on_load is None else f"{on_load / GIB:.1f}", "~0 (page cache)", mib(b["layer"]),
                         mib(device[0]), mib(device[1]), verdict))
    bench.report("Nano / Super from the real shapes (weights only; activations and the VAE come on top)", header, rows)


def main() -> None:
    bench = Bench(__doc__, runs=1, grid="1x40x40", text_tokens=128)
    bench.parser.add_argument("--analytic", action="store_true", help="only the Nano/Super table (no model run)")
    args = bench.parse()
    if args.analytic:
        analytic(bench)
        return
    with bench.checkpoint() as folder:
        prepare_files(folder)
        result = bench.run(partial(build, bench), VARIANTS, baseline=None)
    base = result["bf16 (mapped)"]
    header = ("format", "file MiB", "gen tower resident MiB", "vs bf16", "peak anon loading MiB",
              "peak anon sampling MiB", "peak RSS sampling MiB", "s/step", "cpu time vs bf16", "PSNR vs bf16 dB",
              "max abs vs bf16")
    rows = []
    for name, v in result.items():
        err = error_stats(base.out, v.out)
        rows.append((name, mib(v.step.file), mib(v.step.resident), f"{v.step.resident / base.step.resident:.2f}x",
                     v.mib("anon_load"), v.mib("anon_step"), v.mib("rss"), v.seconds()[0], ratio(v.timing, base.timing),
                     psnr(err["psnr"]), f"{err['max_abs']:.1e}"))
    bench.report(f"{args.grid} latent, prompts {args.text_tokens}/{args.neg_tokens} tokens, device {args.device}, "
                 "bf16 compute", header, rows, memory={k: v.memory for k, v in result.items()})
    analytic(bench)
    print(json.dumps({"note": "peak anon = RssAnon high-water mark sampled every 1 ms in a fresh process"}))


if __name__ == "__main__":
    main()
