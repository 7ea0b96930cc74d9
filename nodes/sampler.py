"""W2SD Sampler node: wraps any sampler for SamplerCustomAdvanced (what runs it:
nodes/sampling/reflective_sampler.py)."""

from __future__ import annotations

from comfy_api.latest import io

from .comfy import compat, validate
from .common import (
    CATEGORY,
    DEFAULT_END_PERCENT,
    DEFAULT_GUIDANCE,
    DEFAULT_INVERSION,
    DEFAULT_MODE,
    DEFAULT_REFLECT_STEPS,
    DEFAULT_REPEATS,
    cfg_pair_inputs,
    mode_inputs,
    plan_inputs,
    schema_extras,
)
from .sampling.reflective_sampler import wrap_sampler


class W2SDSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="W2SDSampler",
            display_name="W2SD Sampler",
            category=CATEGORY,
            **schema_extras(),
            description=(
                "Wraps any sampler with W2SD reflection for SamplerCustomAdvanced: before each "
                "reflected step the latent goes one step down with the strong side and back up "
                "with the weak side. Use it with W2SD Guider (weak model / weak prompt), or "
                "with a plain CFG Guider and strong_cfg / weak_cfg (the Z-Sampling CFG pair)."
            ),
            inputs=[
                io.Sampler.Input("sampler", tooltip="The sampler to wrap (e.g. KSamplerSelect)."),
                *plan_inputs(),
                *cfg_pair_inputs(),
                *mode_inputs(),
            ],
            outputs=[io.Sampler.Output(tooltip="The wrapped sampler, for SamplerCustomAdvanced or SamplerCustom.")],
        )

    @classmethod
    def execute(
        cls,
        sampler,
        reflect_steps=DEFAULT_REFLECT_STEPS,
        reflect_end_percent=DEFAULT_END_PERCENT,
        repeats=DEFAULT_REPEATS,
        inversion=DEFAULT_INVERSION,
        strong_cfg=-1.0,
        weak_cfg=-1.0,
        mode=DEFAULT_MODE,
        guidance=DEFAULT_GUIDANCE,
    ) -> io.NodeOutput:
        compat.require()
        validate.inputs(cls, locals())
        return io.NodeOutput(
            wrap_sampler(
                sampler,
                reflect_steps=reflect_steps,
                end_percent=reflect_end_percent,
                repeats=repeats,
                inversion=inversion,
                strong_cfg=strong_cfg,
                weak_cfg=weak_cfg,
                mode=mode,
                guidance=guidance,
            )
        )
