"""The model-facing nodes (loader, text encode, image condition, sampler) against the ComfyUI stub, on the
tiny demo checkpoint (cosmos3.demo) installed as models/cosmos3/Cosmos3-Nano."""

from __future__ import annotations

import shutil
import sys

import pytest
import torch

pytest.importorskip("cosmos3.vae.model")
from tiny_models import (  # noqa: E402
    CHECKPOINT_CHOICE,
    demo_checkpoint,
    install_cosmos3_checkpoint,
    install_vae,
)

W, H, F = 64, 48, 9  # tiny video: latent 3 x 3 x 4
PROMPT, NEGATIVE = "a red robot arm rolls a ball over the table", ""


def _module(pack, name):
    return sys.modules[f"{pack.__name__}.nodes.{name}"]


@pytest.fixture
def m(comfy_pack):
    """The node modules of the pack as ComfyUI imports it."""
    class Modules:
        model = _module(comfy_pack, "model_nodes")
        text = _module(comfy_pack, "text_nodes")
        cond = _module(comfy_pack, "conditioning_nodes")
        sampler = _module(comfy_pack, "sampler_nodes")
        vae = _module(comfy_pack, "vae_nodes")
        latent = _module(comfy_pack, "latent_nodes")

    return Modules


@pytest.fixture
def installed(comfy_stub):
    install_cosmos3_checkpoint(comfy_stub.models_dir)
    install_vae(comfy_stub.models_dir)
    return comfy_stub.models_dir


@pytest.fixture
def model(m, installed):
    return m.model.ModelLoader.execute(CHECKPOINT_CHOICE, "auto", "auto")[0]


def encode(m, model, frames=F, width=W, height=H, fps=24.0, negative=NEGATIVE, style="framework"):
    return m.text.TextEncode.execute(model, PROMPT, negative, style, "auto", width, height, frames, fps)[0]


def empty(m, frames=F, width=W, height=H):
    return m.latent.EmptyLatent.execute("custom", width, height, frames)[0]


def run_sampler(m, model, text, latent, **kw):
    args = dict(seed=7, steps=3, cfg=6.0, shift=10.0, schedule="native", attention="sdpa", cfg_interval=False)
    args.update(kw)
    return m.sampler.Sampler.execute(model, text, latent, **args)[0]


def write_single_file(path):
    """A one-file transformer (diffusers key names, no config) at head_dim 128, so its config can be inferred
    from the tensor shapes like a real checkpoint's; vocabulary = the demo tokenizer's."""
    from safetensors.torch import save_file

    from cosmos3.demo import DEMO_TRANSFORMER
    from cosmos3.model.config import TransformerConfig
    from cosmos3.model.loading import checkpoint_key
    from cosmos3.model.transformer import Cosmos3Transformer

    raw = {**DEMO_TRANSFORMER, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 128,
           "rope_axes_dim": [24, 20, 20]}
    model = Cosmos3Transformer(TransformerConfig.from_dict(raw), dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)
    state = {
        checkpoint_key(k): (torch.randn(v.shape, generator=gen) * 0.02).contiguous()
        for k, v in model.state_dict().items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return path


def our_updates(stub):
    return [c for c in stub.progress_calls if c["total"] is not None]


# ------------------------------------------------------------------------------------------------------
# loader


def test_loader_without_checkpoints_names_the_folder(m, comfy_stub):
    choices = m.model.ModelLoader.INPUT_TYPES()["required"]["checkpoint"][1]["options"]
    assert choices == ["cosmos3/Cosmos3-Nano"]
    with pytest.raises(FileNotFoundError, match=r"models/cosmos3/<name>"):
        m.model.ModelLoader.execute("cosmos3/Cosmos3-Nano", "auto", "auto")


def test_loader_lists_folders_single_files_and_tokenizers(m, installed, comfy_stub):
    models = installed
    shutil.copytree(demo_checkpoint(), models / "diffusion_models" / "Nano-As-Diffusers")
    write_single_file(models / "diffusion_models" / "c3_single.safetensors")
    shutil.copy(models / "vae" / "wan2.2_vae.safetensors", models / "diffusion_models" / "not_cosmos3.safetensors")
    (models / "diffusion_models" / "old.ckpt").write_bytes(b"pickle")
    shutil.copytree(demo_checkpoint() / "text_tokenizer", models / "text_encoders" / "cosmos3_tok")
    required = m.model.ModelLoader.INPUT_TYPES()["required"]
    assert required["checkpoint"][1]["options"] == [
        "cosmos3/Cosmos3-Nano", "diffusion_models/Nano-As-Diffusers", "c3_single.safetensors",
    ]
    assert required["tokenizer"][1]["options"] == [
        "auto", "cosmos3/Cosmos3-Nano/text_tokenizer", "diffusion_models/Nano-As-Diffusers/text_tokenizer",
        "text_encoders/cosmos3_tok",
    ]
    assert required["dtype"][1]["options"] == ["auto", "bf16", "fp16", "fp32"]


def test_loader_gives_one_patcher_per_tower(m, model, comfy_stub):
    t = model.transformer
    assert isinstance(model.text_patcher, comfy_stub.model_patcher.ModelPatcher)
    assert model.text_patcher.model is t.text_tower and model.gen_patcher.model is t.gen_tower
    assert not model.text_patcher.is_clone(model.gen_patcher)
    assert model.dtype == torch.float32  # auto on the CPU
    assert t.gen_tower.proj_in.weight.dtype == torch.float32
    assert hasattr(t.gen_tower.layers[0].add_q_proj, "comfy_cast_weights")  # built with comfy.ops
    assert model.latent_stats.source.endswith("vae/config.json")
    assert model.variant.value == "custom" and model.info.kind.value == "base"
    assert not comfy_stub.load_calls  # nothing is moved to the device until a node needs it
    info = m.model.ModelLoader.execute(CHECKPOINT_CHOICE, "bf16", "auto")
    assert info[0].dtype == torch.bfloat16 and "text tower" in info[1] and "bfloat16" in info[1]


def test_single_file_needs_a_tokenizer(m, installed, comfy_stub):
    folder = installed / "diffusion_models"
    write_single_file(folder / "c3.safetensors")
    loader = m.model.ModelLoader
    with pytest.raises(FileNotFoundError, match=r"no tokenizer.*text_tokenizer"):
        loader.execute("c3.safetensors", "auto", "auto")
    model = loader.execute("c3.safetensors", "auto", "cosmos3/Cosmos3-Nano/text_tokenizer")[0]
    assert model.latent_stats.source == "Wan 2.2 defaults" and model.info.name == "c3"
    assert model.config.head_dim == 128 and model.config.num_attention_heads == 2
    run_sampler(m, model, encode(m, model, frames=1), empty(m, frames=1), steps=1)  # it generates
    shutil.copytree(demo_checkpoint() / "text_tokenizer", folder / "text_tokenizer")
    assert loader.execute("c3.safetensors", "fp32", "auto")[0].tokenizer is not None
    with pytest.raises(FileNotFoundError, match="not found"):
        loader.execute("c3.safetensors", "auto", "elsewhere/tok")


def test_settle_on_device_moves_what_comfyui_cannot_cast(m, comfy_stub):
    """After a partial load, modules without ComfyUI weight casting (our norms) and the anchors must sit on the
    load device ("meta" stands in for a GPU here)."""
    from cosmos3.model.norms import RMSNorm

    tower = torch.nn.Module()
    tower.norm = RMSNorm(8, 1e-6, "qwen")
    tower.proj_in = comfy_stub.ops.manual_cast.Linear(8, 8)
    tower.mlp = comfy_stub.ops.manual_cast.Linear(8, 8)

    class Patcher:
        model, load_device = tower, torch.device("meta")

    m.model.settle_on_device(Patcher, ("proj_in",))
    assert tower.norm.weight.is_meta and tower.proj_in.weight.is_meta
    assert tower.mlp.weight.device.type == "cpu"  # ComfyUI casts it per call


# ------------------------------------------------------------------------------------------------------
# text encode


def test_text_encode_loads_only_the_text_tower(m, model, comfy_stub):
    node = m.text.TextEncode
    text, fps = node.execute(model, PROMPT, "", "framework", "auto", W, H, F, 16.0)
    g = text.geometry  # the pack's own copy of cosmos3: compare values, not classes
    assert fps == 16.0 and (g.frames, g.height, g.width, g.fps) == (F, H, W, 16.0)
    assert [c["models"] for c in comfy_stub.load_calls] == [[model.text_patcher]]
    assert text.cond.keys[0].device.type == "cpu" and text.uncond is not None
    assert "subjects" in text.uncond_text  # empty negative -> the default structured video negative
    assert text.system_prompt is None  # framework style, auto
    image = node.execute(model, PROMPT, "", "diffusers", "auto", W, H, 1, 24.0)[0]
    assert (
        image.mode == "image" and "image" in image.cond_text and image.system_prompt is None
    )  # demo: no system prompt
    on = node.execute(model, PROMPT, "blurry", "diffusers", "on", W, H, 1, 24.0)[0]
    assert on.system_prompt and "blurry" in on.uncond_text


def test_text_encode_rejects_bad_sizes(m, model):
    with pytest.raises(ValueError, match="width 50 is not a multiple of 16"):
        encode(m, model, width=50)
    with pytest.raises(ValueError, match="4k\\+1"):
        encode(m, model, frames=6)
    with pytest.raises(ValueError, match="prompt_style"):
        m.text.TextEncode.execute(model, PROMPT, "", "other", "auto", W, H, F, 24.0)


# ------------------------------------------------------------------------------------------------------
# sampler


def test_sampler_progress_previews_and_model_management(m, model, comfy_stub):
    text = encode(m, model)
    comfy_stub.set_preview_method("latent2rgb")
    hook = comfy_stub.install_server_hook()
    out = run_sampler(m, model, text, empty(m))
    samples = out["samples"]
    assert samples.shape == (1, 48, 3, 3, 4) and samples.dtype == torch.float32 and samples.device.type == "cpu"
    assert [(c["value"], c["max"]) for c in hook] == [(1, 3), (2, 3), (3, 3)]
    assert all(c["preview"][0] == "JPEG" for c in hook)
    calls = comfy_stub.latent_preview.preview_calls
    assert len(calls) == 3 and calls[0]["shape"] == (1, 48, 3, 3, 4)
    load = comfy_stub.load_calls[-1]
    assert load["models"] == [model.gen_patcher] and load["memory_required"] > 0
    assert [c["models"] for c in comfy_stub.load_calls] == [[model.text_patcher], [model.gen_patcher]]
    assert model.transformer.attention_backend == "sdpa"


def test_previews_off_by_default(m, model, comfy_stub):
    run_sampler(m, model, encode(m, model), empty(m), steps=2)
    assert [c["preview"] for c in our_updates(comfy_stub)] == [None, None]
    assert not comfy_stub.latent_preview.preview_calls


def test_interrupt_stops_sampling_between_steps(m, model, comfy_stub):
    text = encode(m, model)

    def hook(value, total, preview, prompt_id=None, node_id=None):
        if value == 2:
            comfy_stub.interrupt()  # the user presses Cancel during step 3

    comfy_stub.utils.set_progress_bar_global_hook(hook)
    with pytest.raises(comfy_stub.mm.InterruptProcessingException):
        run_sampler(m, model, text, empty(m), steps=6)
    assert [c["value"] for c in our_updates(comfy_stub)] == [1, 2]


def test_sampler_refuses_a_latent_that_does_not_match_the_text(m, model):
    text = encode(m, model)
    with pytest.raises(ValueError, match=r"frames 9 \(encode\) vs 5 \(sampler\).*link the Text Encode"):
        run_sampler(m, model, text, empty(m, frames=5))
    with pytest.raises(ValueError, match=r"size 64x48 \(encode\) vs 48x48 \(sampler\)"):
        run_sampler(m, model, text, empty(m, width=48))
    with pytest.raises(ValueError, match="batch must be 1"):
        run_sampler(m, model, text, {"samples": torch.zeros(2, 48, 3, 3, 4)})
    with pytest.raises(ValueError, match=r"LATENT samples must be raw Wan 2.2 latents"):
        run_sampler(m, model, text, {"samples": torch.zeros(1, 16, 3, 3, 4)})
    with pytest.raises(TypeError, match="Text Encode"):
        run_sampler(m, model, "a prompt", empty(m))


@pytest.mark.parametrize("backend, package", [("flash_attn", "flash.attn"), ("sage", "sageattention")])
def test_missing_attention_backend_names_the_package(m, model, backend, package):
    text = encode(m, model)
    with pytest.raises(Exception, match=package) as info:
        run_sampler(m, model, text, empty(m), attention=backend)
    assert backend in str(info.value)
    assert model.transformer.attention_backend == "sdpa"


def test_auto_settings_follow_the_mode(m, model, comfy_stub):
    text = encode(m, model, frames=1, width=32, height=32)
    out = run_sampler(m, model, text, empty(m, frames=1, width=32, height=32), steps=0, cfg=0.0, shift=0.0,
                      schedule="auto")
    assert out["samples"].shape == (1, 48, 1, 2, 2)
    assert our_updates(comfy_stub)[-1]["total"] == 50  # framework text-to-image default
    with pytest.raises(ValueError, match="fixed sigmas: set shift to 0"):
        run_sampler(m, model, text, empty(m, frames=1, width=32, height=32), schedule="distilled")
    with pytest.raises(ValueError, match="shift"):
        run_sampler(m, model, text, empty(m, frames=1, width=32, height=32), schedule="checkpoint", shift=5.0)


def test_sampler_output_decodes_to_the_pipeline_result(m, model, comfy_stub):
    """Raw LATENT round trip: our sampler's output through our VAE Decode equals Cosmos3Pipeline.generate."""
    from cosmos3.pipeline import Cosmos3Pipeline

    text = encode(m, model, frames=5)
    latent = run_sampler(m, model, text, empty(m, frames=5), seed=11, steps=3, cfg=6.0, shift=10.0, schedule="native")
    vae = m.vae.VAELoader.execute(CHECKPOINT_CHOICE + "/vae", "fp32")[0]
    frames = m.vae.VAEDecode.execute(vae, latent, "off", 256, 64)[0]
    pipe = Cosmos3Pipeline.from_pretrained(demo_checkpoint(), dtype=torch.float32)
    normalised = pipe.generate(PROMPT, None, num_frames=5, height=H, width=W, fps=24.0, steps=3, guidance_scale=6.0,
                               seed=11, schedule="native", shift=10.0, return_latents=True)
    assert torch.equal(latent["samples"], pipe.vae.denormalize(normalised))
    expected = pipe.decode(normalised, tiled=False)  # what generate() returns
    assert frames.shape == expected.shape == (5, H, W, 3)
    torch.testing.assert_close(frames, expected, rtol=0, atol=2e-6)


# ------------------------------------------------------------------------------------------------------
# image condition


def test_image_condition_matches_the_library_and_anchors_frame_zero(m, model, installed, comfy_stub):
    from cosmos3.geometry import Geometry
    from cosmos3.sampling.conditioning import encode_image_condition
    from cosmos3.vae.loading import load_vae

    vae = m.vae.VAELoader.execute(CHECKPOINT_CHOICE + "/vae", "fp32")[0]
    picture = torch.rand(2, 40, 56, 3, generator=torch.Generator().manual_seed(1))
    cond = m.cond.ImageCondition.execute(vae, picture, W, H, F)[0]
    reference = encode_image_condition(load_vae(demo_checkpoint() / "vae", dtype=torch.float32), picture[0],
                                       Geometry(F, H, W))
    assert cond.frames == (0,) and torch.equal(cond.latent, reference.latent)
    load = comfy_stub.load_calls[-1]
    assert load["models"] == [vae.patcher] and load["force_full_load"] and load["memory_required"] > 0
    with pytest.raises(ValueError, match="needs a video"):
        m.cond.ImageCondition.execute(vae, picture, W, H, 1)

    text = encode(m, model)
    out = run_sampler(m, model, text, empty(m), image_cond=cond, steps=2)
    normalised = model.latent_stats.normalize(out["samples"], model.dtype)
    torch.testing.assert_close(normalised[:, :, 0], cond.latent[:, :, 0], rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="prepared for 64x48 but sampling is 48x48"):
        run_sampler(m, model, encode(m, model, width=48), empty(m, width=48), image_cond=cond)
    with pytest.raises(ValueError, match="needs a video"):
        run_sampler(m, model, encode(m, model, frames=1), empty(m, frames=1), image_cond=cond)


# ------------------------------------------------------------------------------------------------------
# speed / VRAM options


def test_block_swap_gives_the_same_latents_and_bypasses_full_loading(m, model, comfy_stub):
    text = encode(m, model)
    plain = run_sampler(m, model, text, empty(m), steps=2)["samples"]
    loads = len(comfy_stub.load_calls)
    swapped = run_sampler(m, model, text, empty(m), steps=2, blocks_to_swap=1)["samples"]
    assert torch.equal(plain, swapped)
    assert len(comfy_stub.load_calls) == loads  # the swapped tower is placed by the sampler, not ComfyUI
    assert model.transformer.block_swap is None  # removed again after sampling
    with pytest.raises(ValueError, match="blocks_to_swap must be an integer from 0 to 2"):
        run_sampler(m, model, text, empty(m), steps=2, blocks_to_swap=3)


def test_cfg_batch_matches_the_serial_passes(m, model):
    text = encode(m, model, negative="blurry")
    serial = run_sampler(m, model, text, empty(m), steps=2)["samples"]
    batched = run_sampler(m, model, text, empty(m), steps=2, cfg_batch=True)["samples"]
    assert torch.allclose(serial, batched, atol=1e-4, rtol=0)


def test_step_cache_option(m, model):
    text = encode(m, model)
    exact = run_sampler(m, model, text, empty(m), steps=6)["samples"]
    off = run_sampler(m, model, text, empty(m), steps=6, step_cache=0.0)["samples"]
    assert torch.equal(exact, off)  # 0 = off: exact
    cached = run_sampler(m, model, text, empty(m), steps=6, step_cache=1.0, step_cache_warmup=1)["samples"]
    assert cached.shape == exact.shape and torch.isfinite(cached).all()
    assert not torch.equal(cached, exact)  # a loose threshold skips steps
    with pytest.raises(ValueError, match="step_cache must be a threshold"):
        run_sampler(m, model, text, empty(m), steps=2, step_cache=2.0)


def test_compile_option_compiles_and_uncompiles(m, model, monkeypatch):
    from cosmos3.runtime import compile as compile_mod

    calls = []
    pack_compile = sys.modules[m.sampler.__name__.rsplit(".nodes.", 1)[0] + ".cosmos3.runtime.compile"]
    monkeypatch.setattr(pack_compile, "compile_generation_layers", lambda t, **kw: calls.append("on") or 2)
    monkeypatch.setattr(pack_compile, "is_compiled", lambda t: bool(calls) and calls[-1] == "on")
    monkeypatch.setattr(pack_compile, "uncompile_generation_layers", lambda t: calls.append("off"))
    text = encode(m, model)
    run_sampler(m, model, text, empty(m), steps=1, compile=True)
    run_sampler(m, model, text, empty(m), steps=1, compile=False)
    assert calls == ["on", "off"]
    assert compile_mod is not pack_compile  # the pack imports its own copy of the library


def test_loader_fp8_weight_storage(m, installed):
    model = m.model.ModelLoader.execute(CHECKPOINT_CHOICE, "fp32", "auto", "fp8_e4m3fn")[0]
    stored = {p.dtype for p in model.transformer.gen_tower.layers.parameters()}
    assert torch.float8_e4m3fn in stored
    text = encode(m, model)
    out = run_sampler(m, model, text, empty(m), steps=2)["samples"]
    assert torch.isfinite(out).all()
    with pytest.raises(ValueError, match="weight_storage must be one of"):
        m.model.load_model(model.source, "fp32", "auto", "int3")


@pytest.mark.parametrize("prompt", ["", "  \n"])
def test_text_encode_refuses_an_empty_prompt_unless_allowed(m, model, prompt):
    node = m.text.TextEncode
    with pytest.raises(ValueError, match="the prompt is empty: type it in Text Encode's prompt box or connect"):
        node.execute(model, prompt, "", "framework", "auto", W, H, F, 24.0)
    with pytest.raises(ValueError, match="bypassed Guardrail Prompt Check"):
        node.execute(model, prompt, "", "framework", "auto", W, H, F, 24.0, False)
    encoded = node.execute(model, prompt, "", "framework", "auto", W, H, F, 24.0, True)[0]
    assert encoded.cond.text_len > 0
    allow = node.define_schema().inputs[-1]
    assert (allow.id, allow.default, allow.optional) == ("allow_empty", False, True)
