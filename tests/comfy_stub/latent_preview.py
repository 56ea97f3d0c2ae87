"""Stand-in for ComfyUI's ``latent_preview`` (Latent2RGB only; TAESD falls back to it as when no TAESD
decoder file is installed).

``get_previewer(device, latent_format)`` honours ``comfy.cli_args.args.preview_method`` like ComfyUI:
``none`` (the server default) -> ``None``; ``auto`` / ``latent2rgb`` / ``taesd`` -> a
:class:`Latent2RGBPreviewer` when the format has RGB factors. The previewer really projects the first
frame of the first batch item (``x0[0, :, 0]`` for 5-D latents) and returns
``("JPEG", PIL.Image, args.preview_size)``; every call is recorded in ``previewer.calls`` and in the
module-level ``preview_calls``.
"""

from __future__ import annotations

import comfy.utils
import torch
from comfy.cli_args import LatentPreviewMethod, args
from PIL import Image

preview_calls: list[dict] = []


def _reset() -> None:
    preview_calls.clear()


def preview_to_image(latent_image: torch.Tensor) -> Image.Image:
    ubyte = ((latent_image + 1.0) / 2.0).clamp(0, 1).mul(0xFF)
    return Image.fromarray(ubyte.to(device="cpu", dtype=torch.uint8).numpy())


class LatentPreviewer:
    def decode_latent_to_preview(self, x0):
        raise NotImplementedError

    def decode_latent_to_preview_image(self, preview_format, x0):
        image = self.decode_latent_to_preview(x0)
        return ("JPEG", image, args.preview_size)


class Latent2RGBPreviewer(LatentPreviewer):
    def __init__(self, latent_rgb_factors, latent_rgb_factors_bias=None):
        self.latent_rgb_factors = torch.tensor(latent_rgb_factors, device="cpu").transpose(0, 1)
        self.latent_rgb_factors_bias = None
        if latent_rgb_factors_bias is not None:
            self.latent_rgb_factors_bias = torch.tensor(latent_rgb_factors_bias, device="cpu")
        self.calls: list[dict] = []

    def decode_latent_to_preview(self, x0):
        call = {"shape": tuple(x0.shape), "dtype": x0.dtype, "device": x0.device}
        self.calls.append(call)
        preview_calls.append(call)
        factors = self.latent_rgb_factors.to(dtype=x0.dtype, device=x0.device)
        bias = (
            None
            if self.latent_rgb_factors_bias is None
            else self.latent_rgb_factors_bias.to(dtype=x0.dtype, device=x0.device)
        )
        frame = x0[0, :, 0] if x0.ndim == 5 else x0[0]
        return preview_to_image(torch.nn.functional.linear(frame.movedim(0, -1), factors, bias=bias))


def get_previewer(device, latent_format):
    method = args.preview_method
    if method == LatentPreviewMethod.NoPreviews:
        return None
    if latent_format.latent_rgb_factors is None:
        return None
    return Latent2RGBPreviewer(latent_format.latent_rgb_factors, latent_format.latent_rgb_factors_bias)


def prepare_callback(model, steps, x0_output_dict=None):
    previewer = get_previewer(model.load_device, model.model.latent_format)
    pbar = comfy.utils.ProgressBar(steps)

    def callback(step, x0, x, total_steps):
        if x0_output_dict is not None:
            x0_output_dict["x0"] = x0
        preview = previewer.decode_latent_to_preview_image("JPEG", x0) if previewer else None
        pbar.update_absolute(step + 1, total_steps, preview)

    return callback
