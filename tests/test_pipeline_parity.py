"""End-to-end parity with diffusers' ``Cosmos3OmniPipeline`` on a tiny random checkpoint (fp32).

Same seed -> same frames (max abs <= 1e-3) for T2V, I2V and T2I in the diffusers prompt style, with the
checkpoint's shipped (Karras) scheduler and with the framework's native grid.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_checkpoint import (
    build_reference_pipeline,
    native_scheduler,
    reference_frames,
    save_reference_pipeline,
    with_scheduler,
)

from cosmos3.pipeline import Cosmos3Pipeline

TOL = 1e-3
PROMPT = "A red ball rolls slowly across a wooden table."
NEGATIVE = "blurry, distorted"


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory):
    reference = build_reference_pipeline(seed=3)
    folder = save_reference_pipeline(reference, tmp_path_factory.mktemp("ckpt") / "Cosmos3-Tiny")
    ours = Cosmos3Pipeline.from_pretrained(folder, dtype=torch.float32)
    return reference, ours


def _image() -> Image.Image:
    rng = np.random.default_rng(5)
    base = rng.integers(0, 256, size=(40, 56, 3), dtype=np.uint8)
    return Image.fromarray(base)


def _check(ours: torch.Tensor, ref: torch.Tensor) -> None:
    assert ours.shape == ref.shape
    assert ref.std() > 0.05  # not a trivially flat output
    diff = (ours - ref).abs().max().item()
    assert diff <= TOL, diff


def test_t2v_checkpoint_scheduler(pipelines):
    reference, ours = pipelines
    kw = dict(num_frames=9, height=64, width=96, guidance_scale=3.0)
    ref = reference_frames(reference, seed=11, prompt=PROMPT, negative_prompt=NEGATIVE, num_inference_steps=3, **kw)
    got = ours.generate(
        PROMPT, NEGATIVE, steps=3, seed=11, schedule="checkpoint", prompt_style="diffusers", **kw
    )
    _check(got, ref)


def test_i2v_checkpoint_scheduler(pipelines):
    reference, ours = pipelines
    kw = dict(num_frames=5, height=48, width=64, guidance_scale=4.0)
    ref = reference_frames(
        reference, seed=2, prompt=PROMPT, negative_prompt=None, image=_image(), num_inference_steps=3, **kw
    )
    got = ours.generate(
        PROMPT, None, image=_image(), steps=3, seed=2, schedule="checkpoint", prompt_style="diffusers", **kw
    )
    _check(got, ref)


def test_t2i_checkpoint_scheduler(pipelines):
    reference, ours = pipelines
    kw = dict(num_frames=1, height=80, width=64, guidance_scale=2.5)
    ref = reference_frames(reference, seed=5, prompt=PROMPT, negative_prompt="", num_inference_steps=4, **kw)
    got = ours.generate(PROMPT, "", steps=4, seed=5, schedule="checkpoint", prompt_style="diffusers", **kw)
    assert got.shape == (1, 80, 64, 3)
    _check(got, ref)


@pytest.mark.parametrize("mode", ["t2v", "i2v"])
def test_native_grid(pipelines, mode):
    reference, ours = pipelines
    native = with_scheduler(reference, native_scheduler(5.0), use_native_flow_schedule=True)
    image = _image() if mode == "i2v" else None
    kw = dict(num_frames=5, height=48, width=48, guidance_scale=5.0)
    ref = reference_frames(
        native, seed=9, prompt=PROMPT, negative_prompt=NEGATIVE, image=image, num_inference_steps=3, **kw
    )
    got = ours.generate(
        PROMPT, NEGATIVE, image=image, steps=3, seed=9, schedule="native", shift=5.0, prompt_style="diffusers", **kw
    )
    _check(got, ref)
