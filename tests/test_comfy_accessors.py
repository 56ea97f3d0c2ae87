"""nodes/_comfy.py: the accessors behave with the ComfyUI stub and degrade sensibly without ComfyUI."""

from __future__ import annotations

import sys

import pytest
import torch
from comfy_fixtures import comfy_api_only
from support import REPO_ROOT, load_pack_as_comfyui


@pytest.fixture
def acc(comfy_pack):
    return sys.modules[comfy_pack.__name__ + ".nodes._comfy"]


def _touch(path, text="{}"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_model_files_and_folders(acc, comfy_stub):
    models = comfy_stub.models_dir
    _touch(models / "diffusion_models" / "cosmos3_nano.safetensors")
    _touch(models / "diffusion_models" / "legacy.ckpt")
    _touch(models / "unet" / "b.sft")
    _touch(models / "cosmos3" / "Cosmos3-Nano" / "model_index.json")
    _touch(models / "cosmos3" / "nvidia" / "Cosmos3-Edge" / "transformer" / "config.json")
    _touch(models / "cosmos3" / "a" / "b" / "c" / "model_index.json")  # deeper than two levels
    _touch(models / "cosmos3" / ".hidden" / "model_index.json")
    _touch(models / "diffusers" / "Cosmos3-Nano" / "model_index.json")  # same name: models/cosmos3 wins
    _touch(models / "diffusers" / "Other" / "model_index.json")
    assert acc.list_model_files("diffusion_models") == ["b.sft", "cosmos3_nano.safetensors"]
    assert acc.list_model_files("no_such_key") == []
    assert acc.model_file_path("diffusion_models", "b.sft") == models / "unet" / "b.sft"
    with pytest.raises(
        FileNotFoundError, match=r"'nope.safetensors' not found in the 'diffusion_models' model folders: .*unet"
    ):
        acc.model_file_path("diffusion_models", "nope.safetensors")
    with pytest.raises(ValueError, match="only safetensors"):
        acc.model_file_path("diffusion_models", "legacy.ckpt")
    folders = acc.checkpoint_folders()
    assert list(folders) == ["Cosmos3-Nano", "Other", "nvidia/Cosmos3-Edge"]
    assert folders["Cosmos3-Nano"] == models / "cosmos3" / "Cosmos3-Nano"
    assert comfy_stub.folder_paths.folder_names_and_paths["cosmos3"][1] == {".safetensors", ".sft"}


def test_extra_paths_key_gets_extensions(acc, comfy_stub, tmp_path):
    # extra_model_paths.yaml creates the key first (empty extension set = every file); we add ours
    comfy_stub.folder_paths.add_model_folder_path("cosmos3", str(tmp_path / "elsewhere"))
    acc.register_pack_folders()
    paths, exts = comfy_stub.folder_paths.folder_names_and_paths["cosmos3"]
    assert paths == [str(tmp_path / "elsewhere"), str(comfy_stub.models_dir / "cosmos3")]
    assert exts == {".safetensors", ".sft"}


def test_patchers_devices_previews(acc, comfy_stub):
    comfy_stub.configure(torch_device="cpu:0")
    module = torch.nn.Linear(3, 3)
    patcher = acc.model_patcher(module, acc.vae_device(), acc.vae_offload_device())
    assert isinstance(patcher, comfy_stub.model_patcher.ModelPatcher)
    acc.load_models([patcher], memory_required=10)
    assert comfy_stub.loaded == [patcher] and module.device == torch.device("cpu:0")
    acc.offload_models([patcher])
    assert comfy_stub.loaded == [] and module.device == torch.device("cpu") and comfy_stub.mm.empty_cache_calls
    assert acc.ops() is comfy_stub.ops.manual_cast
    assert acc.get_free_memory(torch.device("cpu")) == comfy_stub.mm.get_free_memory(torch.device("cpu"))
    assert acc.latent_previewer() is None  # previews off, as on a server started without --preview-method
    comfy_stub.set_preview_method("auto")
    previewer = acc.latent_previewer()
    kind, image, size = acc.preview_image(previewer, torch.zeros(1, 48, 2, 3, 4))
    assert kind == "JPEG" and image.size == (4, 3) and size == 512
    assert acc.wan22_latent_format().latent_channels == 48
    assert not acc.processing_interrupted()
    comfy_stub.interrupt()
    assert acc.processing_interrupted()


def test_without_comfyui(monkeypatch):
    for name in [n for n in sys.modules if n in ("folder_paths", "latent_preview") or n.split(".")[0] == "comfy"]:
        monkeypatch.delitem(sys.modules, name)
    with comfy_api_only():  # the V3 node API only: no folder_paths, comfy.*, latent_preview
        pack = load_pack_as_comfyui(REPO_ROOT, "c3mot_pack_without_comfyui")
    acc = sys.modules[pack.__name__ + ".nodes._comfy"]
    assert not acc.available()
    assert acc.checkpoint_folders() == {} and acc.list_model_files("vae") == []
    assert acc.ops() is torch.nn and acc.latent_previewer() is None and acc.preview_image(None, torch.zeros(1)) is None
    module = torch.nn.Linear(2, 2)
    patcher = acc.model_patcher(module, "cpu", "cpu")
    assert isinstance(patcher, acc.LocalPatcher) and patcher.model_size() == 4 * 6
    acc.load_models([patcher])
    acc.offload_models([patcher])
    assert acc.intermediate_device() == torch.device("cpu") and acc.vae_offload_device() == torch.device("cpu")
    acc.throw_if_interrupted()
    acc.soft_empty_cache()
    acc.progress_bar(3).update_absolute(1, 3)
    assert acc.warn_user("a warning") is False and acc.executing_node_id() is None  # logged only
    assert acc.install_example_inputs([REPO_ROOT / "workflows" / "input" / "cosmos3_example.png"]) == []


def test_warn_user_reaches_the_frontend(acc, comfy_stub, caplog):
    """One warning: logged line by line, shown on the executing node (progress text, the binary message the
    frontend decodes) and sent as the toast event for the executing prompt's client; outside a node only the
    toast; a failing transport never raises."""
    server = comfy_stub.server.PromptServer.instance
    server.client_id = "client-1"
    with caplog.at_level("WARNING", logger="cosmos3_mot"), comfy_stub.executing("5"):
        assert acc.warn_user(["first line", "second line"]) is True
    assert [r.getMessage() for r in caplog.records][-2:] == ["[Cosmos3 MoT] first line", "[Cosmos3 MoT] second line"]
    text, toast = comfy_stub.ui_messages
    assert text["event"] == "progress_text" and text["node"] == "5" and text["sid"] == "client-1"
    kind, packed = text["binary"]
    assert kind == 3 and packed[4:5] == b"5" and packed.endswith(b"first line\nsecond line")
    assert toast == {"event": acc.WARNING_EVENT, "sid": "client-1",
                     "data": {"title": "Cosmos3 MoT", "text": "first line\nsecond line", "node": "5"}}
    comfy_stub.ui_messages.clear()
    assert acc.warn_user("outside a node") is True
    assert [m["event"] for m in comfy_stub.ui_messages] == [acc.WARNING_EVENT]
    assert acc.warn_user([]) is False and acc.warn_user("  ") is False

    def broken(*args, **kwargs):
        raise ConnectionError("socket closed")

    server.send_sync = broken
    assert acc.warn_user("still fine") is False
