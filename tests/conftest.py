"""Shared test setup: no network, deterministic torch, and helpers to load the pack as ComfyUI does."""

from __future__ import annotations

import os
import socket

import pytest

# Fixture modules: their fixtures (comfy_stub, comfy_pack, retinaface_weights, tiny_qwen3_dir) reach every test
# module without an import (an imported fixture looks unused to linters, and a parameter then shadows it).
pytest_plugins = ["comfy_fixtures", "guardrail_support", "tiny_upsampler"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_OFFLINE", "1")

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_loopback(address) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX
        return True
    host = address[0] if isinstance(address, tuple) else address
    return host in ("127.0.0.1", "::1", "localhost", "0.0.0.0")


def _guarded_connect(self, address):
    if not _is_loopback(address):
        raise RuntimeError(f"tests must not touch the network (attempted connection to {address!r})")
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    if not _is_loopback(address):
        raise RuntimeError(f"tests must not touch the network (attempted connection to {address!r})")
    return _real_connect_ex(self, address)


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _deterministic_torch():
    import torch

    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield


class _PackRootIsAFolder:
    """The repository root is the ComfyUI pack: its ``__init__.py`` is ComfyUI's entry point and imports
    ComfyUI's V3 node API, which CI does not have. pytest would import it as a test package before running
    ``tests/``; collect the root as a plain folder instead (the tests load the pack the way ComfyUI does,
    over the stand-in in ``tests/comfy_stub``). Registered as a plugin so the hook also sees the root."""

    def __init__(self, root):
        self.root = root

    def pytest_collect_directory(self, path, parent):
        if path.resolve() == self.root:
            return pytest.Dir.from_parent(parent, path=path)
        return None


def pytest_configure(config):
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    config.pluginmanager.register(_PackRootIsAFolder(root), "c3mot-pack-root-is-a-folder")
