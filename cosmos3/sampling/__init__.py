"""Sampling: sigma grids and samplers, settings resolution, I2V/V2V conditions and the denoising loop."""
