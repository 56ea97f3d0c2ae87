"""Worker side of the gloo tests: tiny random transformers and prompts built the same way on every rank."""

from __future__ import annotations

import os
import traceback
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import save_file

from cosmos3.geometry import Geometry
from cosmos3.model.config import TransformerConfig
from cosmos3.model.transformer import Cosmos3Transformer
from cosmos3.runtime.parallel import ParallelConfig, init_parallel
from cosmos3.sampling.conditioning import ImageCondition
from cosmos3.sampling.loop import sample
from cosmos3.sampling.schedulers import build_sampler
from cosmos3.text.encoding import EncodedPrompt

TINY = dict(
    hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
    intermediate_size=96, vocab_size=200, rope_axes_dim=[8, 4, 4],
)
# name -> (geometry, image-conditioned); token counts: t2v 27 and t2i 6 need padding for 2 and 4 ranks.
CASES = {
    "t2v": (Geometry(9, 80, 80), False),
    "i2v": (Geometry(5, 48, 80), True),
    "t2i": (Geometry(1, 80, 48), False),
    "t2v_sound": (Geometry(9, 80, 80), False),  # 27 video tokens + 5 sound tokens in one generation stream
}
SOUND = dict(sound_gen=True, sound_dim=16, sound_latent_fps=25.0)


def tiny_model(seed: int = 0, sound: bool = False) -> Cosmos3Transformer:
    config = TransformerConfig.from_dict({**TINY, **(SOUND if sound else {})}, source="parallel test")
    model = Cosmos3Transformer(config, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=gen)
            if "norm" in name and param.dim() == 1:
                param.copy_(1.0 + 0.1 * noise)
            else:
                param.copy_(noise / max(1, param[0].numel()) ** 0.5 if param.dim() > 1 else 0.02 * noise)
    return model.eval()


def tiny_inputs(model: Cosmos3Transformer, case: str) -> tuple[EncodedPrompt, ImageCondition | None]:
    geometry, image = CASES[case]
    gen = torch.Generator().manual_seed(7)
    cond = model.encode_text(torch.randint(0, 200, (10,), generator=gen))
    uncond = model.encode_text(torch.randint(0, 200, (6,), generator=gen))
    prompt = EncodedPrompt(cond, uncond, geometry=geometry, style="framework", cond_text="a", uncond_text="b")
    condition = None
    if image:
        _, h, w = geometry.latent_shape(48)[1:]
        latent = torch.randn((1, 48, 1, h, w), generator=gen)
        condition = ImageCondition(latent=latent, frames=(0,), geometry=geometry)
    return prompt, condition


def run_sample(model, case: str, parallel=None, cfg_batch: bool = False, steps: int = 3, callback=None) -> torch.Tensor:
    prompt, condition = tiny_inputs(model, case)
    out = sample(
        model, prompt, build_sampler("native", steps, 3.0), guidance_scale=4.0, seed=1, condition=condition,
        parallel=parallel, cfg_batch=cfg_batch, callback=callback, sound_frames=5 if "sound" in case else None,
    )
    return torch.cat([out[0].flatten(), out[1].flatten()]) if isinstance(out, tuple) else out


def compare_worker(rank: int, world: int, init: str, jobs: list, out_dir: str, timeout_s: float) -> None:
    """Run every ``(layout, case, cfg_batch)`` job; write ``out_dir/rank{r}.safetensors`` with each result and the
    single-process reference (or ``rank{r}.error`` with the traceback)."""
    torch.set_num_threads(1)
    out = Path(out_dir)
    try:
        dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
        plain, with_sound = tiny_model(), tiny_model(sound=True)
        results, refs = {}, {}
        for layout, case, cfg_batch in jobs:
            model = with_sound if "sound" in case else plain
            key = f"{layout}|{case}|{int(cfg_batch)}"
            reference = refs.get((case, cfg_batch))
            if reference is None:
                reference = refs[case, cfg_batch] = run_sample(model, case, cfg_batch=cfg_batch)
            results["ref|" + key] = reference.clone()
            with init_parallel(ParallelConfig.parse(layout), device="cpu", timeout_s=timeout_s,
                               num_heads=4, num_kv_heads=2) as runtime:
                results[key] = run_sample(model, case, parallel=runtime, cfg_batch=cfg_batch)
        save_file({k: v.contiguous() for k, v in results.items()}, str(out / f"rank{rank}.safetensors"))
        dist.destroy_process_group()
    except BaseException:
        (out / f"rank{rank}.error").write_text(traceback.format_exc())
        raise


def killed_rank_worker(rank: int, world: int, init: str, out_dir: str, timeout_s: float) -> None:
    """Rank ``world - 1`` dies abruptly after the first step; the others record the error they get."""
    torch.set_num_threads(1)
    out = Path(out_dir)
    runtime = init_parallel(ParallelConfig(ulysses=world), rank=rank, world_size=world, device="cpu",
                            init_method=init, timeout_s=timeout_s)
    model = tiny_model()

    def die(info) -> None:
        if rank == world - 1 and info.index == 0:
            os._exit(3)

    import time
    start = time.monotonic()
    try:
        run_sample(model, "t2v", parallel=runtime, steps=4, callback=die)
        (out / f"rank{rank}.result").write_text("finished without error")
    except Exception as exc:  # noqa: BLE001 - the test reads what happened
        (out / f"rank{rank}.result").write_text(f"{type(exc).__name__}|{time.monotonic() - start:.1f}|{exc}")
    finally:
        runtime.close()


def cli_worker(rank: int, world: int, port: int, argv: list, out_dir: str) -> None:
    """``python -m cosmos3 generate ... --parallel ...`` as one torchrun rank (environment set like torchrun)."""
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    from cosmos3.cli import main

    code = main(list(argv))
    (Path(out_dir) / f"rank{rank}.code").write_text(str(code))
