"""Stand-in for ``comfy.model_base`` (``ModelType`` and the parts of ``BaseModel`` a model pack relies on).

Like ComfyUI's: ``BaseModel(model_config, model_type, device)`` takes ``latent_format``, ``manual_cast_dtype``,
``memory_usage_factor`` and the sampling settings from ``model_config``, builds ``model_sampling`` for the
model type (flow only here), skips building a network when ``unet_config["disable_unet_model_creation"]``;
``apply_model`` calls ``_apply_model``; ``process_latent_in/out`` go through the latent format.
"""

from __future__ import annotations

from enum import Enum

import torch

import comfy.model_sampling


class ModelType(Enum):
    EPS = 1
    V_PREDICTION = 2
    V_PREDICTION_EDM = 3
    STABLE_CASCADE = 4
    EDM = 5
    FLOW = 6
    V_PREDICTION_CONTINUOUS = 7
    FLUX = 8
    IMG_TO_IMG = 9
    FLOW_COSMOS = 10


def model_sampling(model_config, model_type):
    if model_type != ModelType.FLOW:
        raise NotImplementedError(f"the stub only has the flow model sampling, not {model_type}")

    class ModelSampling(comfy.model_sampling.ModelSamplingDiscreteFlow, comfy.model_sampling.CONST):
        pass

    return ModelSampling(model_config)


class BaseModel(torch.nn.Module):
    def __init__(self, model_config, model_type=ModelType.EPS, device=None, unet_model=None):
        super().__init__()
        self.latent_format = model_config.latent_format
        self.model_config = model_config
        self.manual_cast_dtype = model_config.manual_cast_dtype
        self.device = device
        self.current_patcher = None
        if not model_config.unet_config.get("disable_unet_model_creation", False):
            raise NotImplementedError("the stub builds no networks")
        self.model_type = model_type
        self.model_sampling = model_sampling(model_config, model_type)
        self.concat_keys = ()
        self.memory_usage_factor = model_config.memory_usage_factor

    def apply_model(self, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options={}, **kwargs):  # noqa: B006 (ComfyUI's signature)
        return self._apply_model(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)

    def _apply_model(self, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options={}, **kwargs):  # noqa: B006 (ComfyUI's signature)
        raise NotImplementedError

    def extra_conds(self, **kwargs):
        return {}

    def process_latent_in(self, latent):
        return self.latent_format.process_in(latent)

    def process_latent_out(self, latent):
        return self.latent_format.process_out(latent)

    def memory_required(self, input_shape, cond_shapes={}):  # noqa: B006 (ComfyUI's signature)
        return 0
