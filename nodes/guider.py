"""W2SD Guider node: a CFG guider with a weak side, for SamplerCustomAdvanced (the guider itself:
nodes/sampling/guider.py)."""

from __future__ import annotations

from comfy_api.latest import io

from .comfy import compat, validate
from .common import CATEGORY, cfg_pair_inputs, schema_extras, weak_side_inputs
from .sampling.guider import make_guider


class W2SDGuiderNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="W2SDGuider",
            display_name="W2SD Guider",
            category=CATEGORY,
            **schema_extras(),
            description=(
                "A CFG guider with a weak side for W2SD reflection: a weak model (second "
                "checkpoint), a weak prompt and/or a weak CFG. Normal steps are exactly the CFG "
                "Guider's. Use with W2SD Sampler (a plain sampler reflects with the default "
                "plan) in SamplerCustomAdvanced."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The strong model: it samples and makes the strong reflection pass."),
                io.Conditioning.Input("positive", tooltip="Positive conditioning of the strong side."),
                io.Conditioning.Input("negative", tooltip="Negative conditioning of the strong side."),
                io.Float.Input(
                    "cfg",
                    default=8.0,
                    min=0.0,
                    max=100.0,
                    step=0.1,
                    round=0.01,
                    tooltip="The sampling CFG (normal steps).",
                ),
                *weak_side_inputs(),
                *cfg_pair_inputs(),
            ],
            outputs=[io.Guider.Output(tooltip="The guider, for SamplerCustomAdvanced.")],
        )

    @classmethod
    def execute(
        cls,
        model,
        positive,
        negative,
        cfg,
        weak_model=None,
        weak_positive=None,
        weak_negative=None,
        strong_cfg=-1.0,
        weak_cfg=-1.0,
    ) -> io.NodeOutput:
        compat.require()
        validate.inputs(cls, locals())
        return io.NodeOutput(
            make_guider(model, positive, negative, cfg, weak_model, weak_positive, weak_negative, strong_cfg, weak_cfg)
        )
