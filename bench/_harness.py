"""Shared bench harness: configs, random checkpoints, diffusers/ours step functions, timing and memory probes.

Scripts use :class:`Bench` (end of this module): it parses the common options, writes the shared checkpoint,
builds the diffusers baseline, times it with the script's variants and measures their memory; a script states
only its variants and its table.

Every bench script uses the same weights for all its variants (one random checkpoint written once), runs the
variants interleaved (round-robin, ``--runs`` rounds after a warm-up) and reports the best wall and CPU time
of each, while speed-up columns are the *median over rounds of the per-round ratio* (CPU time on a CPU: the
two sides of one round saw the same machine load, which makes the ratio much steadier on a shared machine
than a ratio of best times). It reports:

* ``s/step``: one denoising step = the generation-tower pass(es) for cond and uncond + the CFG combine;
* peak resident weight bytes: weight bytes that must sit on the compute device while sampling;
* peak RSS: the process high-water mark while the variant ran (reset through ``/proc/self/clear_refs``);
* peak VRAM (on a GPU): ``torch.cuda.max_memory_allocated`` while the variant ran.

``--preset scaled`` (default) is a scaled-down Nano shape (H 1024, 4 layers, 8/2 heads, MLP 3072) whose
vocabulary (4224) keeps Nano's embedding-to-layer weight ratio, so weight-byte *ratios* match Nano's;
``--preset nano`` is the real Nano size (GPU only: ~27 GB bf16).

CPU runs default to one intra-op thread: on a small shared machine OpenMP's barrier spinning with a
descheduled second thread makes elementwise ops 10-50x slower and the timings meaningless (``--threads``).
Memory figures come from a fresh subprocess per variant (``--measure``), so one variant's allocations never
count towards another's peak RSS.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # fixture builders (random checkpoints)
sys.path.insert(0, str(ROOT))

from cosmos3.model.transformer import BatchedTextKV, Cosmos3Transformer, TextKVCache  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
NANO = dict(
    hidden_size=4096, num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8, head_dim=128,
    intermediate_size=12288, vocab_size=151936, rope_axes_dim=[24, 20, 20],
)
# Nano / 4 in width, 4 layers; vocab chosen so embedding : text-tower layers = Nano's 0.622 : 6.946.
SCALED = dict(
    hidden_size=1024, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2, head_dim=128,
    intermediate_size=3072, vocab_size=4224, rope_axes_dim=[24, 20, 20],
)


# ---------------------------------------------------------------------------------------------- arguments


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--preset", choices=("scaled", "nano"), default="scaled", help="model size (nano: GPU only)")
    p.add_argument("--layers", type=int, default=None, help="override num_hidden_layers")
    p.add_argument("--vocab", type=int, default=None, help="override vocab_size")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--text-tokens", type=int, default=300, help="positive prompt tokens")
    p.add_argument("--neg-tokens", type=int, default=None, help="negative prompt tokens (default: = --text-tokens)")
    p.add_argument("--grid", default="1x60x60", help="latent TxHxW (1x60x60 = T2I, 900 tokens; 4x30x52 = T2V)")
    p.add_argument("--runs", type=int, default=3, help="timed runs per variant (best is reported) after a warm-up")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default on CPU: 1; see the module docstring)")
    p.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    p.add_argument("--no-memory", action="store_true", help="skip the per-variant memory subprocesses")
    p.add_argument("--measure", default=None, help=argparse.SUPPRESS)  # internal: one variant, memory only
    p.add_argument("--checkpoint", type=Path, default=None, help=argparse.SUPPRESS)
    return p


def setup(args: argparse.Namespace) -> dict[str, Any]:
    """Apply ``--threads``; return the transformer config dict for ``--preset`` and overrides."""
    if args.threads is None and torch.device(args.device).type == "cpu":
        args.threads = 1
    if args.threads:
        torch.set_num_threads(args.threads)
    config = dict(NANO if args.preset == "nano" else SCALED)
    if args.layers:
        config["num_hidden_layers"] = args.layers
    if args.vocab:
        config["vocab_size"] = args.vocab
    if args.neg_tokens is None:
        args.neg_tokens = args.text_tokens
    return config


def grid(spec: str) -> tuple[int, int, int]:
    t, h, w = (int(x) for x in spec.lower().split("x"))
    return t, h, w


def machine() -> str:
    """One line describing where the numbers come from."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    line = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
    if torch.cuda.is_available():
        line += f", GPU {torch.cuda.get_device_name()}"
    return line


# ---------------------------------------------------------------------------------------------- weights


@contextmanager
def checkpoint(args: argparse.Namespace, config: dict[str, Any], dtype: torch.dtype = torch.float32):
    """The shared random checkpoint: ``--checkpoint`` (memory subprocesses) or a fresh temporary one."""
    if args.checkpoint is not None:
        yield args.checkpoint
    else:
        with random_checkpoint(config, dtype) as folder:
            yield folder


def isolated(args: argparse.Namespace, folder: Path, variants: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Run ``<this script> --measure V --checkpoint folder`` per variant; collect each one's ``MEASURE`` json."""
    import subprocess

    results: dict[str, dict[str, Any]] = {}
    if args.no_memory:
        return results
    argv = [a for a in sys.argv[1:] if a not in ("--no-memory",)]
    for variant in variants:
        cmd = [sys.executable, sys.argv[0], *argv, "--measure", variant, "--checkpoint", str(folder)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("MEASURE ")]
        if done.returncode != 0 or not lines:
            print(f"memory run for {variant!r} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
            continue
        results[variant] = json.loads(lines[-1][len("MEASURE "):])
    return results


def measured(device: str, setup_fn: Callable[[], Callable[[], Any]]) -> None:
    """Memory subprocess body: ``setup_fn()`` loads/encodes and returns the step; prints ``MEASURE`` json with
    ``rss_setup`` (peak while loading/encoding), ``rss`` (peak while stepping), ``vram`` and ``resident``."""
    step = setup_fn()
    setup_peak = rss_bytes("VmHWM")
    step()  # warm-up: allocator, kernel selection
    free()  # loader temporaries still sitting in malloc's free lists are not the variant's memory
    with peak_memory(device) as m:
        step()
    resident = getattr(step, "resident", None)
    resident = resident() if callable(resident) else resident  # some accountings are only known after a step
    extra = getattr(step, "measure_extra", None)  # a script's own figures (e.g. peak anonymous RSS), a dict
    print("MEASURE " + json.dumps({"rss_setup": setup_peak, "rss": m["rss"], "vram": m["vram"], "resident": resident,
                                   **(extra() if callable(extra) else {})}))


@contextmanager
def random_checkpoint(config: dict[str, Any], dtype: torch.dtype = torch.float32):
    """A diffusers ``transformer/``-style folder with random weights for ``config`` (deleted afterwards)."""
    from tiny_transformer import write_random_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        size = write_random_checkpoint(config, folder / "diffusion_pytorch_model.safetensors", dtype=dtype)
        (folder / "config.json").write_text(json.dumps({"_class_name": "Cosmos3OmniTransformer", **config}))
        print(f"checkpoint: {size / 2**20:.0f} MiB ({str(dtype).removeprefix('torch.')}), config {config}")
        yield folder


def random_model(config: dict[str, Any], dtype: torch.dtype, device: str, seed: int = 0) -> Cosmos3Transformer:
    """Our transformer with random N(0, 0.02) weights built straight on ``device`` (no checkpoint; for the
    Nano-size GPU runs, where writing ~60 GB of fp32 weights would dominate)."""
    from cosmos3 import TransformerConfig

    cfg = TransformerConfig.from_dict(config)
    model = Cosmos3Transformer(cfg, device="meta", dtype=dtype).to_empty(device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() == 1 and "norm" in name:
                param.fill_(1.0)
            else:
                param.normal_(0.0, 0.02, generator=generator)
    return model.eval().requires_grad_(False)


def load_diffusers(folder: Path, dtype: torch.dtype, device: str):
    from diffusers import Cosmos3OmniTransformer

    return Cosmos3OmniTransformer.from_pretrained(str(folder), torch_dtype=dtype).to(device).eval()


def param_bytes(module: torch.nn.Module) -> int:
    """Bytes of all parameters and buffers, meta tensors included (analytic sizes)."""
    return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))


def ids(n: int, vocab: int, seed: int) -> torch.Tensor:
    return torch.randint(0, vocab, (n,), generator=torch.Generator().manual_seed(seed))


def latents(spec: str, dtype: torch.dtype, device: str, seed: int = 1) -> torch.Tensor:
    t, h, w = grid(spec)
    return torch.randn(1, 48, t, h, w, generator=torch.Generator().manual_seed(seed)).to(device=device, dtype=dtype)


def tokens(spec: str) -> int:
    t, h, w = grid(spec)
    return t * -(-h // 2) * -(-w // 2)


# ---------------------------------------------------------------------------------------------- steps


def ours_step(
    model: Cosmos3Transformer, x: torch.Tensor, timestep: float, cond: TextKVCache, uncond: TextKVCache | None,
    guidance: float = 4.0, batched: BatchedTextKV | None = None, step_cache=None,
) -> torch.Tensor:
    """One CFG step as :func:`cosmos3.sampling.loop.sample` runs it (serial, or batched when ``batched`` is given)."""
    if uncond is None:
        return model.velocity(x, timestep, cond, step_cache=step_cache).float()
    if batched is not None:
        pair = model.velocity_batch(x, timestep, batched, step_cache=step_cache, branch="cfg").float()
        return pair[1:2] + guidance * (pair[0:1] - pair[1:2])
    c = model.velocity(x, timestep, cond, step_cache=step_cache, branch="cond").float()
    u = model.velocity(x, timestep, uncond, step_cache=step_cache, branch="uncond").float()
    return u + guidance * (c - u)


class DiffusersStep:
    """diffusers' per-step work: the full joint forward for cond and for uncond (inputs packed once, like
    ``Cosmos3OmniPipeline`` does before its loop; only the latents change per step)."""

    def __init__(self, model, cond_ids: torch.Tensor, uncond_ids: torch.Tensor | None, x: torch.Tensor, timestep: float,
                 fps: float = 24.0, guidance: float = 4.0):
        self.model = model
        self.guidance = guidance
        self.inputs = [self._pack(cond_ids, x, timestep, fps)]
        if uncond_ids is not None:
            self.inputs.append(self._pack(uncond_ids, x, timestep, fps))

    def _pack(self, input_ids: torch.Tensor, x: torch.Tensor, timestep: float, fps: float) -> dict[str, Any]:
        from diffusers.pipelines.cosmos.pipeline_cosmos3_omni import (
            get_3d_mrope_ids_text_tokens,
            get_3d_mrope_ids_vae_tokens,
        )

        cfg = self.model.config
        device = x.device
        und_len = input_ids.numel()
        text_ids, next_offset = get_3d_mrope_ids_text_tokens(
            num_tokens=und_len, temporal_offset=0, use_float_positions=cfg.enable_fps_modulation
        )
        _, _, frames, height, width = x.shape
        p = cfg.latent_patch_size
        rows, cols = math.ceil(height / p), math.ceil(width / p)
        num_vision = frames * rows * cols
        vision_ids, _ = get_3d_mrope_ids_vae_tokens(
            grid_t=frames, grid_h=rows, grid_w=cols,
            temporal_offset=next_offset + cfg.unified_3d_mrope_temporal_modality_margin,
            reset_spatial_indices=cfg.unified_3d_mrope_reset_spatial_ids,
            fps=fps if cfg.enable_fps_modulation else None, base_fps=float(cfg.base_fps), temporal_compression_factor=4,
        )
        return dict(
            input_ids=input_ids.to(device), text_indexes=torch.arange(und_len, device=device),
            position_ids=torch.cat([text_ids, vision_ids], dim=1).to(device), und_len=und_len,
            sequence_length=und_len + num_vision, vision_token_shapes=[(frames, rows, cols)],
            vision_sequence_indexes=torch.arange(und_len, und_len + num_vision, device=device),
            vision_mse_loss_indexes=torch.arange(und_len, und_len + num_vision, device=device),
            vision_timesteps=torch.full((num_vision,), timestep, device=device),
            vision_noisy_frame_indexes=[torch.arange(frames, device=device)], return_dict=False,
        )

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        outs = [self.model(vision_tokens=[x], **inputs)[0][0].float() for inputs in self.inputs]
        if len(outs) == 1:
            return outs[0]
        c, u = outs
        return u + self.guidance * (c - u)


# ---------------------------------------------------------------------------------------------- measuring


@dataclass
class Timing:
    """Best-of-runs wall/CPU seconds, the per-round CPU seconds and the last output."""

    wall: float
    cpu: float
    out: Any = None
    rounds: tuple[float, ...] = ()


def interleaved(fns: dict[str, Callable[[], Any]], runs: int, warmup: int = 1) -> dict[str, Timing]:
    """Best-of-``runs`` wall and process-CPU seconds of each callable, interleaved round-robin."""
    outs = {}
    for _ in range(warmup):
        for name, fn in fns.items():
            outs[name] = fn()
            sync()
    best = {name: [math.inf, math.inf] for name in fns}
    rounds: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            sync()
            wall, cpu = time.perf_counter(), time.process_time()
            outs[name] = fn()
            sync()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            best[name] = [min(best[name][0], wall), min(best[name][1], cpu)]
            rounds[name].append(wall if torch.cuda.is_available() else cpu)  # GPU work is not process CPU time
    return {name: Timing(*best[name], outs[name], tuple(rounds[name])) for name in fns}


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def rss_bytes(field: str = "VmRSS") -> int:
    """``VmRSS`` (current) or ``VmHWM`` (peak since the last :func:`reset_peak_rss`) of this process."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter to the current RSS (Linux >= 4.0); False if not possible."""
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


@contextmanager
def peak_memory(device: str):
    """``with peak_memory(dev) as m: ...`` -> ``m["rss"]`` (peak RSS bytes) and ``m["vram"]`` (peak CUDA bytes or
    None)."""
    result: dict[str, int | None] = {"rss": None, "vram": None}
    reset_peak_rss()
    cuda = torch.device(device).type == "cuda"
    if cuda:
        sync()
        torch.cuda.reset_peak_memory_stats(device)
    try:
        yield result
    finally:
        sync()
        result["rss"] = rss_bytes("VmHWM")
        result["vram"] = torch.cuda.max_memory_allocated(device) if cuda else None


def mib(n: int | float | None) -> str:
    return "-" if n is None else f"{n / 2**20:.0f}"


def ratio(a: float | Timing, b: float | Timing) -> str:
    """``a / b`` as ``"1.23x"``. Given two :class:`Timing` s: the median over rounds of the per-round ratio
    (CPU time on a CPU, wall time on a GPU) — both sides of a round saw the same machine load, so this is far
    steadier on a shared machine than a ratio of best times."""
    if isinstance(a, Timing) and isinstance(b, Timing):
        pairs = sorted(x / y for x, y in zip(a.rounds, b.rounds) if y)
        if not pairs:
            return "-"
        mid = len(pairs) // 2
        value = pairs[mid] if len(pairs) % 2 else (pairs[mid - 1] + pairs[mid]) / 2
        return f"{value:.2f}x"
    return f"{a / b:.2f}x" if b else "-"


def max_abs(a: torch.Tensor, b: torch.Tensor) -> str:
    """``max |a - b|`` as ``"1.2e-03"``."""
    return f"{(a - b).abs().max().item():.1e}"


def psnr(db: float) -> str:
    """A PSNR in dB as ``"42.1"`` (``"inf"`` for identical outputs)."""
    return "inf" if db == math.inf else f"{db:.1f}"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [tuple(str(c) for c in header)] + [tuple(str(c) for c in row) for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for index, row in enumerate(cells):
        print(" | ".join(cell.rjust(w) for cell, w in zip(row, widths)))
        if index == 0:
            print("-+-".join("-" * w for w in widths))


def dump(args: argparse.Namespace, header: Sequence[str], rows: Sequence[Sequence[Any]], **extra: Any) -> None:
    if args.json is not None:
        args.json.write_text(json.dumps({"machine": machine(), "header": list(header),
                                         "rows": [[str(c) for c in r] for r in rows], **extra}, indent=2))


def free(*objects: Any) -> None:
    """Collect garbage, hand freed heap pages back to the OS (glibc ``malloc_trim``) and empty the CUDA cache."""
    del objects
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------- the entry point


@dataclass
class Variant:
    """One timed variant: its step (with what its builder attached, e.g. ``.resident``), its :class:`Timing` and
    its memory figures from the isolated subprocess (``rss``, ``rss_setup``, ``vram``; empty with ``--no-memory``)."""

    step: Callable[[], Any]
    timing: Timing
    memory: dict[str, Any]

    @property
    def out(self) -> Any:
        return self.timing.out

    def seconds(self) -> tuple[str, str]:
        """The ``s/step`` and ``cpu s/step`` cells."""
        return f"{self.timing.wall:.3f}", f"{self.timing.cpu:.3f}"

    def mib(self, key: str) -> str:
        """A memory figure in MiB (``rss``, ``rss_setup`` or ``vram``), ``-`` when not measured."""
        return mib(self.memory.get(key))


class Bench:
    """What every bench script shares: the options, the random checkpoint, the diffusers baseline, the prompt
    pair, and one interleaved run of the baseline and the script's variants with memory from subprocesses.

        bench = Bench(__doc__, runs=2)                    # the docstring's first paragraph is the --help text
        bench.parser.add_argument("--pin", action="store_true")
        args = bench.parse()
        with bench.checkpoint():
            result = bench.run(build, ["no swap", "swap 2/4"])   # {"diffusers": Variant, "no swap": ..., ...}
        bench.report(title, header, rows)

    ``build(name)`` returns the variant's step function (see :meth:`run`).
    """

    def __init__(self, doc: str, **defaults: Any):
        self.parser = parser(doc.split("\n\n")[0])
        self.parser.set_defaults(**defaults)
        self.timestep = 999.0  # the denoising timestep every step runs at
        self.folder: Path | None = None  # the checkpoint, inside ``with bench.checkpoint()``
        self._reference = None  # the diffusers model, loaded once and shared by the baselines

    def parse(self) -> argparse.Namespace:
        """Parse the command line and apply it (:func:`setup`): sets ``args``, ``config``, ``dtype`` and ``device``."""
        self.args = self.parser.parse_args()
        self.config = setup(self.args)
        self.dtype, self.device = DTYPES[self.args.dtype], self.args.device
        return self.args

    @contextmanager
    def checkpoint(self):
        """The shared random checkpoint (``--checkpoint`` in a memory subprocess), as ``folder`` while open."""
        with checkpoint(self.args, self.config) as folder:
            self.folder = folder
            try:
                yield folder
            finally:
                self.folder = self._reference = None

    def prompt_ids(self, negative: bool = False) -> torch.Tensor:
        """The random prompt (``--text-tokens``, seed 0) or negative prompt (``--neg-tokens``, seed 1) ids."""
        if negative:
            return ids(self.args.neg_tokens, self.config["vocab_size"], seed=1)
        return ids(self.args.text_tokens, self.config["vocab_size"], seed=0)

    def latents(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The ``--grid`` latents, in ``dtype`` (default ``--dtype``) on ``--device``."""
        return latents(self.args.grid, dtype or self.dtype, self.device)

    def encode(self, model: Cosmos3Transformer) -> tuple[TextKVCache, TextKVCache]:
        """The prompt pair's text K/V caches: ``(cond, uncond)``."""
        return model.encode_text(self.prompt_ids()), model.encode_text(self.prompt_ids(negative=True))

    def ours(self, evict: bool = True, **load: Any):
        """Our transformer from the checkpoint (``load`` overrides ``load_transformer``'s arguments) with the prompt
        pair encoded and, with ``evict``, the text tower dropped: ``(model, cond, uncond)``."""
        from cosmos3 import load_transformer

        model = load_transformer(self.folder, **{"dtype": self.dtype, "device": self.device, **load})
        cond, uncond = self.encode(model)
        if evict:
            model.drop_text_tower()
            free()
        return model, cond, uncond

    def diffusers(self, neg_tokens: int | None = None) -> Callable[[], torch.Tensor]:
        """The diffusers baseline every bench compares with: one CFG step (cond + uncond joint forwards) on the same
        weights, prompts (``neg_tokens`` overrides ``--neg-tokens``) and latents; ``.resident`` = its weight bytes
        (the whole joint model). The model is loaded once per checkpoint."""
        if self._reference is None:
            self._reference = load_diffusers(self.folder, self.dtype, self.device)
        model, x = self._reference, self.latents()
        negative = self.args.neg_tokens if neg_tokens is None else neg_tokens
        run = DiffusersStep(model, self.prompt_ids(), ids(negative, self.config["vocab_size"], seed=1), x,
                            self.timestep)

        def step() -> torch.Tensor:
            return run(x)

        step.resident = param_bytes(model)
        return step

    def run(
        self, build: Callable[[str], Callable[[], Any]], names: Sequence[str], baseline: str | None = "diffusers",
        memory: bool | Sequence[str] = True,
    ) -> dict[str, Variant]:
        """Time the diffusers baseline (named ``baseline``; None: none) and ``build(name)`` for each of ``names``,
        interleaved (:func:`interleaved`, ``--runs`` rounds), then measure memory in a fresh subprocess per variant
        (``memory``: all of them, none, or these names). In such a subprocess (``--measure NAME``) this builds and
        measures that one variant and exits. Call inside ``with bench.checkpoint()``."""

        def make(name: str) -> Callable[[], Any]:
            return self.diffusers() if name == baseline else build(name)

        names = [baseline, *names] if baseline else list(names)
        if self.args.measure:
            measured(self.device, lambda: make(self.args.measure))
            sys.exit(0)
        print(machine())
        steps = {name: make(name) for name in names}
        timings = interleaved(steps, self.args.runs)
        measure = names if memory is True else list(memory or ())
        usage = isolated(self.args, self.folder, measure)
        return {name: Variant(steps[name], timings[name], usage.get(name, {})) for name in names}

    def report(self, title: str | None, header: Sequence[str], rows: Sequence[Sequence[Any]], **extra: Any) -> None:
        """Print ``title`` and the table; with ``--json``, also write the rows (and ``extra``) there."""
        if title is not None:
            print(title)
        table(header, rows)
        dump(self.args, header, rows, **extra)
