"""Nodes for core-sampler workflows: put the I2V/V2V condition into Cosmos3 CONDITIONING.

Core samplers know nothing about clean conditioning frames; the Cosmos3 core model (:mod:`nodes.core_model`)
reads them from the CONDITIONING entries. Apply the same condition to *both* positive and negative (this node
does), so classifier-free guidance keeps the clean frames exactly.
"""

from __future__ import annotations

from . import core_model
from ._comfy import io
from .common import C3MOT_IMAGE_COND, CATEGORY_ROOT, node_schema

CATEGORY = CATEGORY_ROOT + "/conditioning"


class ApplyImageCondition(io.ComfyNode):
    """Adds an image (or video) condition from the Cosmos3 MoT Image Condition node to the positive and negative
    CONDITIONING of the Text Encode node, for core KSampler / SamplerCustomAdvanced with the Model Loader's MODEL:
    the conditioned latent frames stay clean (frame 0 = the image) while the others are denoised. Sizes must
    match the Text Encode's."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(cls, "C3MoTApplyImageCondition", "Apply Image Condition", CATEGORY, inputs=[
            io.Conditioning.Input("positive", tooltip="From the Cosmos3 MoT Text Encode's positive output."),
            io.Conditioning.Input("negative", tooltip="From the Cosmos3 MoT Text Encode's negative output."),
            C3MOT_IMAGE_COND.Input("image_cond", tooltip=(
                "From the Cosmos3 MoT Image Condition node (same width/height/frames as the Text Encode).")),
        ], outputs=[
            io.Conditioning.Output(display_name="positive", tooltip="The positive CONDITIONING with the condition."),
            io.Conditioning.Output(display_name="negative", tooltip="The negative CONDITIONING with the condition."),
        ])

    @classmethod
    def execute(cls, positive, negative, image_cond) -> io.NodeOutput:
        return io.NodeOutput(core_model.with_condition(positive, image_cond),
                             core_model.with_condition(negative, image_cond))


NODES = [ApplyImageCondition]
