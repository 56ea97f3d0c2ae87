"""Sound: what joint audio generation costs per denoising step, and the audio decoder's peak memory.

One checkpoint with a sound head (the --preset transformer plus audio_proj_in/out, sound_dim 64), one run: a CFG
step (cond + uncond generation-tower passes) on the --grid video latents alone vs with the sound tokens of the
same clip (48 kHz, 1920 samples per latent frame, like the shipped sound tokenizer: 25 sound tokens a second).
Then the shipped-size sound decoder (random weights, --decoder-dtype) decodes that clip's sound latents: weight
bytes, peak memory (RSS on a CPU, VRAM on a GPU) and time.

    python bench/sound.py                                  # 4x30x52 latents = a 13-frame 832x480 clip
    python bench/sound.py --grid 31x30x52 --runs 2         # 121 frames (5 s)
"""

from __future__ import annotations

import time

import torch
from _harness import Bench, free, max_abs, mib, ours_step, param_bytes, peak_memory, ratio, rss_bytes, sync

from cosmos3.audio import SoundDecoder, SoundTokenizerConfig

SOUND_DIM = 64
SHIPPED = SoundTokenizerConfig(vocoder_input_dim=SOUND_DIM)  # 48 kHz stereo, hop 1920, dec_dim 320
VARIANTS = ("video only", "video + sound")


def clip_frames(latent_t: int) -> int:
    return (latent_t - 1) * 4 + 1


def sound_latents(bench: Bench) -> torch.Tensor:
    frames = clip_frames(bench.latents().shape[2])
    length = SHIPPED.latent_frames(frames, 24.0)
    return torch.randn(1, SOUND_DIM, length, generator=torch.Generator().manual_seed(3)).to(bench.device, bench.dtype)


def build_steps(bench: Bench) -> dict:
    model, cond, uncond = bench.ours(evict=True)
    x, sound = bench.latents(), sound_latents(bench)

    def with_sound():
        c_v, c_s = model.velocity(x, 999.0, cond, sound=sound, branch="cond")
        u_v, u_s = model.velocity(x, 999.0, uncond, sound=sound, branch="uncond")
        return u_v.float() + 4.0 * (c_v.float() - u_v.float())

    steps = {"video only": lambda: ours_step(model, x, 999.0, cond, uncond), "video + sound": with_sound}
    for step in steps.values():
        step.resident = param_bytes(model) + cond.nbytes + uncond.nbytes
    return steps


def decoder_figures(bench: Bench, dtype: torch.dtype) -> tuple[str, str, str, str, str, str]:
    """(sound tokens, seconds of audio, weights MiB, peak MiB while decoding, of which above the memory in use
    before decoding (activations), seconds to decode)."""
    latents = sound_latents(bench)
    with torch.device("meta"):
        decoder = SoundDecoder(SHIPPED)
    decoder = decoder.to_empty(device=bench.device).to(dtype)
    with torch.no_grad():
        for param in decoder.parameters():
            param.normal_(0.0, 0.02)
    weights = param_bytes(decoder)
    free()
    cuda = torch.device(bench.device).type == "cuda"
    before = torch.cuda.memory_allocated(bench.device) if cuda else rss_bytes()
    with peak_memory(bench.device) as peak:
        sync()
        start = time.perf_counter()
        audio = decoder.decode(latents)
        sync()
        seconds = time.perf_counter() - start
    used = peak["vram"] if peak["vram"] is not None else peak["rss"]
    length = audio.shape[-1] / SHIPPED.sampling_rate
    return str(latents.shape[-1]), f"{length:.2f}", mib(weights), mib(used), mib(used - before), f"{seconds:.2f}"


def main() -> None:
    bench = Bench(__doc__, grid="4x30x52", runs=3)
    bench.parser.add_argument("--decoder-dtype", choices=("fp32", "bf16"), default="fp32")
    args = bench.parse()
    bench.config.update(sound_gen=True, sound_dim=SOUND_DIM)
    with bench.checkpoint():
        steps = None

        def build(name: str):
            nonlocal steps
            steps = steps or build_steps(bench)
            return steps[name]

        result = bench.run(build, list(VARIANTS), baseline=None, memory=False)
    video, both = result["video only"], result["video + sound"]
    tokens = bench.latents().shape[2:].numel() // 4
    header = ("variant", "s/step", "cpu s/step", "vs video only (cpu)", "max|dv| video vs video only")
    rows = [("video only", f"{video.timing.wall:.3f}", f"{video.timing.cpu:.3f}", "1.00x", "0"),
            ("video + sound", f"{both.timing.wall:.3f}", f"{both.timing.cpu:.3f}", ratio(both.timing, video.timing),
             max_abs(both.timing.out, video.timing.out))]
    sound_tokens = sound_latents(bench).shape[-1]
    bench.report(f"one CFG step, {tokens} video tokens + {sound_tokens} sound tokens ({args.grid} latents):",
                 header, rows)
    decoder_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.decoder_dtype]
    _, seconds, weights, peak, above, decode_s = decoder_figures(bench, decoder_dtype)
    memory = "VRAM" if "cuda" in str(bench.device) else "RSS"
    print(f"\nsound decoder (shipped size, {args.decoder_dtype}, {bench.device}): {seconds} s of stereo 48 kHz audio "
          f"from {sound_tokens} latents; weights {weights} MiB; peak {memory} while decoding {peak} MiB of which "
          f"{above} MiB above what was in use before (activations); {decode_s} s", flush=True)

if __name__ == "__main__":
    main()
