"""Core-sampler scenarios on the tiny demo checkpoint: the Model Loader's MODEL + Text Encode's CONDITIONING
through ComfyUI's sampling entry points, against an independent Euler loop over our ``velocity``.

Runs under the stand-in (``tests/test_core_interop.py`` calls :func:`run` in-process) and, as a script, under a
real ComfyUI (``python tests/core_interop_scenario.py <workdir>`` with ``PYTHONPATH=<ComfyUI checkout>``; the
opt-in test compares both outputs). ``run`` returns JSON-able numbers: max errors and small digests.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

W, H, F, STEPS, SEED = 64, 48, 9, 3, 11
PROMPT, NEGATIVE = "a red robot arm rolls a ball over the table", ""


def simple_sigmas(steps: int, shift: float) -> list[float]:
    """ComfyUI's ``simple`` schedule on a 1000-step flow grid, computed independently: ``t = (1000 - floor(i *
    1000 / steps)) / 1000`` shifted by ``shift t / (1 + (shift - 1) t)``, then 0."""
    out = []
    for i in range(steps):
        t = (1000 - int(i * (1000 / steps))) / 1000
        out.append(float(torch.tensor(shift * t / (1 + (shift - 1) * t), dtype=torch.float32)))
    return [*out, 0.0]


def euler_reference(transformer, cond, uncond, noise, sigmas, cfg, fps, condition=None):
    """Independent Euler over ``sigmas`` with our velocity (CFG in velocity space; clean frames re-anchored)."""
    x = noise.clone().float()
    frames = ()
    if condition is not None:
        frames = condition.frames
        clean = condition.full_latent(x.shape[2])
        mask = condition.mask(x.shape[2])
        x = mask * clean + (1 - mask) * x
    for i in range(len(sigmas) - 1):
        t = sigmas[i] * 1000.0
        v = transformer.velocity(x, t, cond, fps=fps, condition_frames=frames).float()
        if cfg != 1.0:
            u = transformer.velocity(x, t, uncond, fps=fps, condition_frames=frames).float()
            v = u + cfg * (v - u)
        x = x + (sigmas[i + 1] - sigmas[i]) * v
        if condition is not None:
            x = mask * clean + (1 - mask) * x
    return x


def _digest(t: torch.Tensor) -> list[float]:
    flat = t.flatten().double()
    return [float(flat.sum()), float(flat.abs().sum()), *[float(v) for v in flat[:: max(1, flat.numel() // 5)][:5]]]


def run(pack_name: str, checkpoint: Path, *, real: bool) -> dict:
    """All scenarios; ``pack_name``: the module name the pack was imported under."""
    import comfy.sample

    mods = sys.modules
    model_nodes = mods[f"{pack_name}.nodes.model_nodes"]
    text_nodes = mods[f"{pack_name}.nodes.text_nodes"]
    latent_nodes = mods[f"{pack_name}.nodes.latent_nodes"]
    core_nodes = mods[f"{pack_name}.nodes.core_nodes"]
    core_model = mods[f"{pack_name}.nodes.core_model"]
    conditioning_mod = mods[f"{pack_name}.cosmos3.sampling.conditioning"]

    loaded = model_nodes.load_model(checkpoint, "fp32", "auto")
    model, core = loaded, loaded.gen_patcher
    _, _, positive, negative = text_nodes.TextEncode.execute(model, PROMPT, NEGATIVE, "framework", "auto", W, H, F,
                                                             24.0)[:4]
    latent = latent_nodes.EmptyLatent.execute("custom", W, H, F)[0]
    samples = latent["samples"]
    transformer = model.transformer
    stats = model.latent_stats
    cond = positive[0][1][core_model.COND_KEY].cache
    uncond = negative[0][1][core_model.COND_KEY].cache
    shift = core.get_model_object("model_sampling").shift
    out: dict = {"shift": shift, "sigmas_match": []}

    calls = {"batch": 0}
    original_batch = transformer.velocity_batch

    def counting_batch(*args, **kwargs):
        calls["batch"] += 1
        return original_batch(*args, **kwargs)

    transformer.velocity_batch = counting_batch

    def ksampler(patcher, cfg, pos=positive, neg=negative, sampler="euler", steps=STEPS):
        noise = comfy.sample.prepare_noise(samples, SEED)
        result = comfy.sample.sample(patcher, noise, steps, cfg, sampler, "simple", pos, neg, samples, seed=SEED)
        return noise, result

    for cfg in (1.0, 4.0):
        calls["batch"] = 0
        noise, result = ksampler(core, cfg)
        ref = euler_reference(transformer, cond, uncond, noise, simple_sigmas(STEPS, shift), cfg, 24.0)
        got = stats.normalize(result.float(), torch.float32)
        out[f"euler_cfg{cfg:g}"] = {
            "max_err": float((got - ref).abs().max()),
            "raw_err": float((result.float() - stats.denormalize(ref, torch.float32)).abs().max()),
            "digest": _digest(result),
            "batched_calls": calls["batch"],
        }

    # ModelSamplingSD3 (object patch of model_sampling) overrides the shift
    if real:
        from comfy_extras.nodes_model_advanced import ModelSamplingSD3

        shifted = ModelSamplingSD3().patch(core, 3.0)[0]
    else:
        import comfy.model_sampling as ms

        class ModelSamplingAdvanced(ms.ModelSamplingDiscreteFlow, ms.CONST):
            pass

        shifted = core.clone()
        sampling = ModelSamplingAdvanced(core.model.model_config)
        sampling.set_parameters(shift=3.0, multiplier=1000)
        shifted.add_object_patch("model_sampling", sampling)
    noise, result = ksampler(shifted, 1.0)
    ref = euler_reference(transformer, cond, uncond, noise, simple_sigmas(STEPS, 3.0), 1.0, 24.0)
    out["sd3_shift3"] = {"max_err": float((stats.normalize(result.float(), torch.float32) - ref).abs().max())}

    # I2V: a clean latent frame 0 through the Apply Image Condition node
    geometry = positive[0][1][core_model.COND_KEY].geometry
    gen = torch.Generator().manual_seed(5)
    clean = torch.randn((1, 48, 1, H // 16, W // 16), generator=gen)
    condition = conditioning_mod.ImageCondition(latent=clean, frames=(0,), geometry=geometry)
    pos_i2v, neg_i2v = core_nodes.ApplyImageCondition.execute(positive, negative, condition)[:2]
    noise, result = ksampler(core, 4.0, pos_i2v, neg_i2v)
    ref = euler_reference(transformer, cond, uncond, noise, simple_sigmas(STEPS, shift), 4.0, 24.0, condition)
    got = stats.normalize(result.float(), torch.float32)
    out["i2v"] = {"max_err": float((got - ref).abs().max()),
                  "frame0_err": float((got[:, :, 0:1] - clean).abs().max())}

    if real:
        out.update(_real_only(core, positive, negative, samples, pos_i2v, neg_i2v, clean, stats, transformer, cond,
                              uncond, shift))
    transformer.velocity_batch = original_batch
    return out


def _real_only(core, positive, negative, samples, pos_i2v, neg_i2v, clean, stats, transformer, cond, uncond, shift):
    """Core nodes that the stand-in does not model: KSampler/KSamplerAdvanced nodes, SamplerCustomAdvanced with
    CFGGuider/BasicGuider, uni_pc_bh2."""
    import comfy.sample
    from comfy_extras import nodes_custom_sampler as ncs

    import nodes

    out = {}
    latent = {"samples": samples}
    ks = nodes.KSampler().sample(core, SEED, STEPS, 4.0, "euler", "simple", positive, negative, latent)[0]
    adv = nodes.KSamplerAdvanced().sample(core, "enable", SEED, STEPS, 4.0, "euler", "simple", positive, negative,
                                          latent, 0, 10000, "disable")[0]
    noise = comfy.sample.prepare_noise(samples, SEED)
    ref = stats.denormalize(euler_reference(transformer, cond, uncond, noise, simple_sigmas(STEPS, shift), 4.0, 24.0),
                            torch.float32)
    out["node_ksampler_err"] = float((ks["samples"].float() - ref).abs().max())
    out["node_ksampler_advanced_err"] = float((adv["samples"].float() - ref).abs().max())

    guider = ncs.CFGGuider().get_guider(core, positive, negative, 4.0)[0]
    basic = ncs.BasicGuider().get_guider(core, positive)[0]
    sampler = ncs.KSamplerSelect().get_sampler("euler")[0]
    sigmas = ncs.BasicScheduler().get_sigmas(core, "simple", STEPS, 1.0)[0]
    rnd = ncs.RandomNoise().get_noise(SEED)[0]
    custom = ncs.SamplerCustomAdvanced().sample(rnd, guider, sampler, sigmas, latent)[0]
    out["custom_cfg_guider_err"] = float((custom["samples"].float() - ref).abs().max())
    ref1 = stats.denormalize(euler_reference(transformer, cond, uncond, noise, simple_sigmas(STEPS, shift), 1.0, 24.0),
                             torch.float32)
    custom1 = ncs.SamplerCustomAdvanced().sample(rnd, basic, sampler, sigmas, latent)[0]
    out["custom_basic_guider_err"] = float((custom1["samples"].float() - ref1).abs().max())
    uni = nodes.KSampler().sample(core, SEED, 6, 4.0, "uni_pc_bh2", "simple", positive, negative, latent)[0]
    out["uni_pc_bh2"] = {"finite": bool(torch.isfinite(uni["samples"]).all()), "shape": list(uni["samples"].shape)}
    uni_i2v = nodes.KSampler().sample(core, SEED, 6, 4.0, "uni_pc_bh2", "simple", pos_i2v, neg_i2v, latent)[0]
    z = stats.normalize(uni_i2v["samples"].float(), torch.float32)
    out["uni_pc_bh2_i2v_frame0_err"] = float((z[:, :, 0:1] - clean).abs().max())
    out["latent_nodes"] = _core_latent_nodes(ks)
    out["preview"] = _preview(core)
    return out


def _preview(core) -> list[int]:
    """ComfyUI's Latent2RGB previewer on the MODEL's latent format: the size of the preview image of frame 0."""
    import latent_preview
    from comfy.cli_args import LatentPreviewMethod, args

    previous = args.preview_method
    args.preview_method = LatentPreviewMethod.Latent2RGB
    try:
        previewer = latent_preview.get_previewer("cpu", core.model.latent_format)
        image = previewer.decode_latent_to_preview_image("JPEG", torch.randn(1, 48, 3, H // 16, W // 16))[1]
    finally:
        args.preview_method = previous
    return list(image.size)


def _core_latent_nodes(latent: dict) -> dict:
    """Our raw Wan 2.2 LATENT through core SaveLatent/LoadLatent, LatentBatch and LatentConcat (time)."""
    import tempfile

    import folder_paths
    from comfy_extras import nodes_latent

    import nodes

    def unwrap(result):
        return result.args[0] if hasattr(result, "args") else result[0]

    with tempfile.TemporaryDirectory() as tmp:
        folder_paths.set_output_directory(tmp)
        saved = nodes.SaveLatent().save(latent, filename_prefix="c3mot/roundtrip")
        name = saved["ui"]["latents"][0]
        loaded = nodes.LoadLatent().load(f"{name['subfolder']}/{name['filename']} [output]")[0]
    batch = unwrap(nodes_latent.LatentBatch.execute(latent, latent))
    concat = unwrap(nodes_latent.LatentConcat.execute(latent, latent, "t"))
    return {"roundtrip_bitwise": bool(torch.equal(loaded["samples"], latent["samples"].float())),
            "batch_shape": list(batch["samples"].shape), "concat_shape": list(concat["samples"].shape)}


def _random_lora(model, path: Path) -> dict[str, torch.Tensor]:
    """A random rank-2 LoRA in mixed key styles (diffusers lora_A/B, framework lora_down/up + alpha, a ComfyUI
    MODEL name) over generation- and text-tower weights; saved to ``path``."""
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(3)
    params = dict(model.transformer.named_parameters())

    def pair(weight: str):
        out_f, in_f = params[weight].shape
        return torch.randn(out_f, 2, generator=gen) * 0.3, torch.randn(2, in_f, generator=gen) * 0.3

    state = {}
    for module, weight in (("transformer.layers.0.self_attn.add_q_proj", "gen_tower.layers.0.add_q_proj.weight"),
                           ("layers.1.mlp_moe_gen.down_proj", "gen_tower.layers.1.mlp_moe_gen.down_proj.weight"),
                           ("transformer.layers.0.self_attn.to_k", "text_tower.layers.0.to_k.weight")):
        up, down = pair(weight)
        state[f"{module}.lora_B.weight"], state[f"{module}.lora_A.weight"] = up, down
    for module, weight in (("language_model.model.layers.0.self_attn.v_proj", "text_tower.layers.0.to_v.weight"),
                           ("language_model.model.layers.1.self_attn.o_proj_moe_gen",
                            "gen_tower.layers.1.to_add_out.weight"),
                           ("diffusion_model.proj_out", "gen_tower.proj_out.weight")):
        up, down = pair(weight)
        state[f"{module}.lora_up.weight"], state[f"{module}.lora_down.weight"] = up, down
        state[f"{module}.alpha"] = torch.tensor(1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return state


def run_lora(pack_name: str, checkpoint: Path, workdir: Path) -> dict:
    """C3MoT LoRA Loader and core ``load_lora_for_models`` (LoraLoaderModelOnly) against a hand merge."""
    import copy

    import comfy.model_management
    import comfy.sd

    mods = sys.modules
    model_nodes = mods[f"{pack_name}.nodes.model_nodes"]
    text_nodes = mods[f"{pack_name}.nodes.text_nodes"]
    sampler_nodes = mods[f"{pack_name}.nodes.sampler_nodes"]
    lora_nodes = mods[f"{pack_name}.nodes.lora_nodes"]
    lora_mod = mods[f"{pack_name}.cosmos3.model.lora"]
    encoding = mods[f"{pack_name}.cosmos3.text.encoding"]
    geometry_mod = mods[f"{pack_name}.cosmos3.geometry"]

    model = model_nodes.load_model(checkpoint, "fp32", "auto")
    transformer = model.transformer
    path = workdir / "loras" / "c3_test_lora.safetensors"
    state = _random_lora(model, path)
    out: dict = {}

    def encode(m):
        return text_nodes.TextEncode.execute(m, PROMPT, NEGATIVE, "framework", "auto", W, H, F, 24.0)[0]

    gen = torch.Generator().manual_seed(9)
    x = torch.randn((1, 48, 3, H // 16, W // 16), generator=gen)

    def velocity(patcher, cache):
        comfy.model_management.load_models_gpu([patcher])
        return transformer.velocity(x, 700.25, cache, fps=24.0).float()

    base_text = encode(model)
    base_v = velocity(model.gen_patcher, base_text.cond)

    lora_model, counts = lora_nodes.apply_lora(model, path, 0.7, 0.5, name="c3_test_lora.safetensors")
    out["counts"] = counts
    lora_text = encode(lora_model)
    lora_v = velocity(lora_model.gen_patcher, lora_text.cond)

    def pristine():  # a copy of the unpatched weights (loading the base patchers restores them)
        comfy.model_management.load_models_gpu([model.gen_patcher, model.text_patcher])
        return copy.deepcopy(transformer)

    reference = pristine()
    updates = lora_mod.parse_lora(state, reference)
    lora_mod.merge_lora(reference, updates, 0.7, towers=("gen_tower",))
    lora_mod.merge_lora(reference, updates, 0.5, towers=("text_tower",))
    geometry = geometry_mod.Geometry(F, H, W, 24.0)
    ref_text = encoding.encode_prompt(reference, model.tokenizer, PROMPT, None, geometry=geometry,
                                      prompt_style="framework", with_negative=False)
    ref_v = reference.velocity(x, 700.25, ref_text.cond, fps=24.0).float()
    out["text_kv_err"] = max(float((a - b).abs().max()) for a, b in zip(lora_text.cond.keys, ref_text.cond.keys))
    out["text_kv_changed"] = max(float((a - b).abs().max()) for a, b in zip(lora_text.cond.keys, base_text.cond.keys))
    out["velocity_err"] = float((lora_v - ref_v).abs().max())
    out["velocity_changed"] = float((lora_v - base_v).abs().max())
    out["tags"] = [model.text_weights, lora_model.text_weights, lora_text.text_weights]

    # the base model again: weights restored, K/V and velocity bitwise the first ones
    again = encode(model)
    out["base_kv_restored"] = all(torch.equal(a, b) for a, b in zip(again.cond.keys, base_text.cond.keys))
    out["base_velocity_restored"] = bool(torch.equal(velocity(model.gen_patcher, base_text.cond), base_v))
    try:  # K/V of the LoRA text tower with the base model (or the reverse) are refused
        sampler_nodes.run_sampler(model, lora_text, {"samples": torch.zeros(1, 48, 3, H // 16, W // 16)}, seed=1,
                                  steps=1)
        out["stale_refused"] = False
    except ValueError as exc:
        out["stale_refused"] = "text-tower weights" in str(exc)

    # core LoraLoaderModelOnly's path on the MODEL: the generation updates under the MODEL's own names
    core_sd = {}
    for update in updates:
        if update.tower == "gen_tower":
            stem = "diffusion_model." + update.target[len("gen_tower."):-len(".weight")]
            core_sd[f"{stem}.lora_up.weight"], core_sd[f"{stem}.lora_down.weight"] = update.up, update.down
            if update.alpha is not None:
                core_sd[f"{stem}.alpha"] = torch.tensor(update.alpha)
    core_patched = comfy.sd.load_lora_for_models(model.gen_patcher, None, core_sd, 0.7, 0)[0]
    core_v = velocity(core_patched, base_text.cond)
    ref_gen = pristine()
    lora_mod.merge_lora(ref_gen, updates, 0.7, towers=("gen_tower",))
    out["core_loader_err"] = float((core_v - ref_gen.velocity(x, 700.25, base_text.cond, fps=24.0).float()).abs().max())

    zero, _ = lora_nodes.apply_lora(model, path, 0.0, 0.0)
    out["strength0_bitwise"] = bool(torch.equal(velocity(zero.gen_patcher, encode(zero).cond), base_v))

    bad = dict(state)
    bad["transformer.layers.0.self_attn.no_such.lora_A.weight"] = torch.zeros(2, 4)
    bad["something_else"] = torch.zeros(1)
    try:
        lora_mod.parse_lora(bad, transformer, source="bad.safetensors")
        out["unknown_error"] = ""
    except lora_mod.LoraError as exc:
        out["unknown_error"] = str(exc)
    return out


def main() -> None:  # pragma: no cover - run by the opt-in test under a real ComfyUI
    workdir = Path(sys.argv[1])
    real = sys.argv[2] == "real"
    repo = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(repo / "tests"))
    sys.path.append(str(repo))  # after ComfyUI: its nodes.py, not our nodes/ package
    if real:
        import comfy.cli_args

        comfy.cli_args.args.cpu = True
    from support import load_pack_as_comfyui
    from tiny_models import demo_checkpoint

    load_pack_as_comfyui(repo, "c3mot_pack_core_interop")
    torch.manual_seed(0)
    result = run("c3mot_pack_core_interop", demo_checkpoint(), real=real)
    result["lora"] = run_lora("c3mot_pack_core_interop", demo_checkpoint(), workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    print("RESULT" + json.dumps(result))


if __name__ == "__main__":
    main()
