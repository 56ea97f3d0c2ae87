"""Run inside a real ComfyUI (``PYTHONPATH`` = the checkout, cwd = it): ComfyUI's own Wan 2.2 VAE and ours on the
same random full-size Wan 2.2 weights (ComfyUI hard-codes the real widths), both ways on a LATENT.

    python tests/comfy_wan_vae_scenario.py OUT_DIR

Prints ``RESULT`` and a JSON dict of max abs differences (pixels in [0, 1], latents raw).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
sys.path[:0] = [str(TESTS), str(TESTS.parent)]


def main(out_dir: str) -> None:
    import comfy.cli_args
    import torch

    comfy.cli_args.args.cpu = True
    import comfy.sd
    import comfy.utils
    from tiny_vae import write_original_layout_file

    from cosmos3.vae.config import WAN22_VAE_CONFIG
    from cosmos3.vae.loading import load_vae
    from cosmos3.vae.model import WanVAE

    torch.manual_seed(0)
    reference = WanVAE(WAN22_VAE_CONFIG).float().eval()  # default (random) init at the real widths
    with torch.no_grad():
        for name, p in reference.named_parameters():
            if name.endswith(("gamma", "weight")) and p.ndim == 1:
                p.copy_(1 + 0.1 * torch.randn_like(p))  # non-trivial norms
    path = write_original_layout_file(Path(out_dir) / "wan2.2_vae.safetensors", reference.state_dict())
    del reference
    ours = load_vae(path, dtype=torch.float32)
    theirs = comfy.sd.VAE(sd=comfy.utils.load_torch_file(str(path)))
    gen = torch.Generator().manual_seed(1)
    latent = torch.randn(1, 48, 2, 3, 4, generator=gen) * 0.5  # our LATENT layout: raw [B, 48, T, H/16, W/16]
    with torch.no_grad():
        ours_px = (ours.decode(latent).float() + 1) / 2  # [B, 3, F, H, W] in [0, 1]
        ours_img = ours_px[0].permute(1, 2, 3, 0)  # ComfyUI IMAGE [F, H, W, 3]
        theirs_img = theirs.decode(latent).float().reshape(ours_img.shape)  # VAEDecode's samples -> IMAGE
        pixels = torch.rand(5, 48, 64, 3, generator=gen)  # IMAGE frames
        theirs_lat = theirs.encode(pixels).float()  # VAEEncode's LATENT samples
        ours_lat = ours.encode(pixels.permute(3, 0, 1, 2).unsqueeze(0) * 2 - 1).float()
    result = {
        "decode_shape": [list(ours_img.shape), list(theirs_img.shape)],
        "decode_max_abs": float((ours_img - theirs_img).abs().max()),
        "encode_shape": [list(ours_lat.shape), list(theirs_lat.shape)],
        "encode_max_abs": float((ours_lat - theirs_lat).abs().max()),
        "latent_scale": float(ours_lat.abs().max()),
    }
    print("RESULT" + json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
