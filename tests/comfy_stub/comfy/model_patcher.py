"""Stand-in for ``comfy.model_patcher.ModelPatcher`` (the parts a model pack uses; our code).

Like ComfyUI's: the constructor sets ``model.device`` to the offload device when the model has no
``device`` attribute (or it is ``None``) and adds the bookkeeping attributes to the model; ``load`` moves
the whole model to a device and *assigns* ``model.device`` (so a read-only ``device`` property fails here
as it does in ComfyUI); ``detach`` moves it back to the offload device. Weight patches (``add_patches``,
LoRA adapters from ``comfy.lora.load_lora``) are merged into the weights on ``load`` (fp32 arithmetic, the
originals kept in a ``backup`` shared by clones) and restored on ``unpatch_model``; a clone whose patches
differ from what the shared weights hold restores them first. Object patches (``add_object_patch``, e.g.
``model_sampling`` from ``ModelSamplingSD3``) are set on the model while it is loaded, and
``get_model_object`` sees them.
"""

from __future__ import annotations

import copy
import uuid

import torch

import comfy.lora
import comfy.model_management


class ModelPatcher:
    def __init__(self, model, load_device, offload_device, size=0, weight_inplace_update=False):
        self.size = size
        self.model = model
        if not hasattr(self.model, "device") or self.model.device is None:
            self.model.device = offload_device
        self.patches = {}
        self.backup = {}
        self.object_patches = {}
        self.object_patches_backup = {}
        self.model_options = {"transformer_options": {}}
        self.model_size()
        self.load_device = load_device
        self.offload_device = offload_device
        self.weight_inplace_update = weight_inplace_update
        self.patches_uuid = uuid.uuid4()
        self.parent = None
        self.attachments = {}
        self.additional_models = {}
        for name, value in (("model_loaded_weight_memory", 0), ("lowvram_patch_counter", 0),
                            ("model_lowvram", False), ("current_weight_patches_uuid", None)):
            if not hasattr(self.model, name):
                setattr(self.model, name, value)

    def model_size(self) -> int:
        if self.size > 0:
            return self.size
        self.size = comfy.model_management.module_size(self.model)
        return self.size

    def loaded_size(self) -> int:
        return self.model.model_loaded_weight_memory

    def lowvram_patch_counter(self) -> int:
        return self.model.lowvram_patch_counter

    def clone(self) -> ModelPatcher:
        n = self.__class__(self.model, self.load_device, self.offload_device, self.size,
                           weight_inplace_update=self.weight_inplace_update)
        n.patches = {k: v[:] for k, v in self.patches.items()}
        n.patches_uuid = self.patches_uuid
        n.object_patches = self.object_patches.copy()
        n.model_options = copy.deepcopy(self.model_options)
        n.backup = self.backup
        n.object_patches_backup = self.object_patches_backup
        n.parent = self
        n.attachments = self.attachments.copy()
        n.additional_models = {k: v[:] for k, v in self.additional_models.items()}
        return n

    def is_clone(self, other) -> bool:
        return hasattr(other, "model") and self.model is other.model

    def model_dtype(self):
        if hasattr(self.model, "get_dtype"):
            return self.model.get_dtype()
        return None

    def model_patches_models(self):
        return []

    def model_patches_to(self, device) -> None:
        pass

    def current_loaded_device(self):
        return self.model.device

    # -- patches
    def model_state_dict(self, filter_prefix=None):
        return self.model.state_dict()

    def add_patches(self, patches, strength_patch=1.0, strength_model=1.0):
        model_sd = self.model_state_dict()
        added = []
        for key, patch in patches.items():
            if key in model_sd:
                added.append(key)
                self.patches.setdefault(key, []).append((strength_patch, patch, strength_model, None, None))
        self.patches_uuid = uuid.uuid4()
        return added

    def get_key_patches(self):
        return {k: [self.model.state_dict()[k]] + v for k, v in self.patches.items()}

    def add_object_patch(self, name, obj):
        self.object_patches[name] = obj

    def _patch_weights(self) -> None:
        if self.model.current_weight_patches_uuid == self.patches_uuid:
            return
        self._restore_weights()
        params = dict(self.model.named_parameters())
        params.update(dict(self.model.named_buffers()))
        with torch.no_grad():
            for key, patch_list in self.patches.items():
                weight = params[key]
                if key not in self.backup:
                    self.backup[key] = weight.detach().clone()
                merged = comfy.lora.calculate_weight(patch_list, weight.detach().to(torch.float32, copy=True), key)
                weight.copy_(merged.to(weight.dtype))
        self.model.current_weight_patches_uuid = self.patches_uuid

    def _restore_weights(self) -> None:
        params = dict(self.model.named_parameters())
        params.update(dict(self.model.named_buffers()))
        with torch.no_grad():
            for key, original in self.backup.items():
                params[key].copy_(original.to(params[key].device))
        self.backup.clear()
        self.model.current_weight_patches_uuid = None

    def load(self, device_to=None, lowvram_model_memory=0, force_patch_weights=False, full_load=False) -> None:
        if device_to is not None:
            self.model.to(device_to)
        for name, obj in self.object_patches.items():
            if name not in self.object_patches_backup:
                self.object_patches_backup[name] = getattr(self.model, name)
            setattr(self.model, name, obj)
        self._patch_weights()
        self.model.current_patcher = self
        self.model.device = device_to
        self.model.model_lowvram = False
        self.model.model_loaded_weight_memory = self.model_size()

    def patch_model(self, device_to=None, lowvram_model_memory=0, load_weights=True, force_patch_weights=False):
        if load_weights:
            self.load(device_to, lowvram_model_memory, force_patch_weights, full_load=lowvram_model_memory == 0)
        return self.model

    def unpatch_model(self, device_to=None, unpatch_weights=True) -> None:
        for name, obj in self.object_patches_backup.items():
            setattr(self.model, name, obj)
        self.object_patches_backup.clear()
        if unpatch_weights:
            self._restore_weights()
            if device_to is not None:
                self.model.to(device_to)
                self.model.device = device_to
            self.model.model_loaded_weight_memory = 0

    def detach(self, unpatch_all: bool = True):
        if unpatch_all:
            self.unpatch_model(self.offload_device, unpatch_weights=True)
        return self.model

    def get_model_object(self, name: str):
        if name in self.object_patches:
            return self.object_patches[name]
        if name in self.object_patches_backup:  # another clone's object patch is applied right now
            return self.object_patches_backup[name]
        obj = self.model
        for part in name.split("."):
            obj = getattr(obj, part)
        return obj

    def cleanup(self) -> None:
        pass

    def __repr__(self) -> str:  # helpful in assertion messages
        return f"<stub ModelPatcher {type(self.model).__name__} load={self.load_device} offload={self.offload_device}>"

