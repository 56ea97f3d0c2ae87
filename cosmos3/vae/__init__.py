"""The 48-channel Wan 2.2 VAE: config, network, tiling, loading and latent statistics."""
