"""W2SD Reflective KSampler and its Advanced variant: KSampler's (Advanced's) inputs and semantics,
plus the weak side and the plan (what they run: nodes/sampling/ksampler.py). With reflect_steps = 0,
or when nothing differs between the weak and the strong side, the result is KSampler's bit for bit.
"""

from __future__ import annotations

import comfy.samplers
from comfy_api.latest import io, ui

from .comfy import compat, validate
from .common import (
    CATEGORY,
    DEFAULT_GUIDANCE,
    cfg_pair_inputs,
    mode_inputs,
    plan_inputs,
    schema_extras,
    weak_side_inputs,
)
from .sampling.ksampler import W2SDInputs, reflective_ksampler


def w2sd_inputs() -> list:
    """The inputs after KSampler's own, in the order saved workflows list them."""
    return [*weak_side_inputs(), *cfg_pair_inputs(), *plan_inputs(), *mode_inputs()]


def report_text(report) -> str:
    """What the user sees under the node: reflections and the true cost of the run."""
    return report.text() if report is not None else "W2SD: nothing sampled"


def report_numbers(report) -> dict:
    """The run's true cost as plain numbers (web/w2sd.js formats them)."""
    cost = report.cost if report is not None else None
    if cost is None:
        return {
            "steps": 0,
            "reflections": 0,
            "guided": 0,
            "evaluations": 0,
            "passes": 0,
            "plain_passes": 0,
            "skipped": (report.skipped if report is not None else None) or "nothing sampled",
        }
    return {
        "steps": cost.steps,
        "reflections": cost.reflections,
        "guided": cost.guided,
        "evaluations": cost.evaluations,
        "passes": cost.passes,
        "plain_passes": cost.plain_passes,
        "skipped": report.skipped,
    }


class ReportUI(ui.PreviewText):
    """The run report: "text" for any reader of the history, "w2sd" the numbers the node shows."""

    def __init__(self, report):
        super().__init__(report_text(report))
        self.numbers = report_numbers(report)

    def as_dict(self) -> dict:
        return {**super().as_dict(), "w2sd": [self.numbers]}


def _output(out, report) -> io.NodeOutput:
    return io.NodeOutput(out, ui=ReportUI(report))


def _seed_input(name: str):
    return io.Int.Input(
        name,
        default=0,
        min=0,
        max=0xFFFFFFFFFFFFFFFF,
        control_after_generate=True,
        tooltip="The random seed used for creating the noise.",
    )


def _sampling_inputs(steps_tip: str) -> list:
    """KSampler's steps, cfg, sampler and scheduler."""
    return [
        io.Int.Input("steps", default=20, min=1, max=10000, tooltip=steps_tip),
        io.Float.Input(
            "cfg",
            default=8.0,
            min=0.0,
            max=100.0,
            step=0.1,
            round=0.01,
            tooltip="The Classifier-Free Guidance scale of the normal steps.",
        ),
        io.Combo.Input(
            "sampler_name",
            options=comfy.samplers.KSampler.SAMPLERS,
            tooltip="The sampling algorithm; any of them works with reflection.",
        ),
        io.Combo.Input(
            "scheduler",
            options=comfy.samplers.KSampler.SCHEDULERS,
            tooltip="The scheduler controls how noise is gradually removed.",
        ),
    ]


def _strong_inputs() -> list:
    """KSampler's conditioning and latent: the strong side's."""
    return [
        io.Conditioning.Input("positive", tooltip="The conditioning describing what to include (strong side)."),
        io.Conditioning.Input("negative", tooltip="The conditioning describing what to exclude (strong side)."),
        io.Latent.Input("latent_image", tooltip="The latent image to denoise."),
    ]


_MODEL_TIP = "The model used for denoising the input latent (the strong side)."


class W2SDReflectiveKSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="W2SDReflectiveKSampler",
            # "W2SD" exactly: the frontend's node search ranks an exact name match first, and this
            # is the node a newcomer wants when typing the pack's name.
            display_name="W2SD",
            category=CATEGORY,
            **schema_extras(),
            description=(
                "W2SD Reflective KSampler: KSampler plus a weak side (a weak model, a weak "
                "prompt or a weak CFG). With nothing connected it is KSampler exactly. With a weak "
                "side it steers every step but the last away from the weak side (guide mode, "
                f"w {DEFAULT_GUIDANCE:g}: one extra model evaluation per step, batched where the pair allows); "
                "mode reflect runs the paper's reflection instead (two extra evaluations per "
                "step). The node shows the cost before the run and reports it after."
            ),
            inputs=[
                io.Model.Input("model", tooltip=_MODEL_TIP),
                _seed_input("seed"),
                *_sampling_inputs("The number of steps used in the denoising process."),
                *_strong_inputs(),
                io.Float.Input(
                    "denoise",
                    default=1.0,
                    min=0.0,
                    max=1.0,
                    step=0.01,
                    tooltip="The amount of denoising applied; lower values keep the structure of the input latent.",
                ),
                *w2sd_inputs(),
            ],
            outputs=[io.Latent.Output(tooltip="The denoised latent.")],
        )

    @classmethod
    def execute(
        cls, model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise=1.0, **w2sd
    ) -> io.NodeOutput:
        validate.inputs(cls, {**locals(), **w2sd})
        compat.require()
        return _output(
            *reflective_ksampler(
                cls,
                model,
                seed,
                steps,
                cfg,
                sampler_name,
                scheduler,
                positive,
                negative,
                latent_image,
                W2SDInputs(**w2sd),
                denoise=denoise,
            )
        )


class W2SDReflectiveKSamplerAdvanced(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="W2SDReflectiveKSamplerAdvanced",
            display_name="W2SD Reflective KSampler (Advanced)",
            category=CATEGORY,
            **schema_extras(),
            description=(
                "KSampler (Advanced) with W2SD: add_noise, start/end steps and leftover noise "
                "as there, so a split schedule (e.g. Wan 2.2's high-noise and low-noise experts) "
                "can reflect or guide in either part. The plan counts the steps this node runs. "
                "reflect_steps 0 = exactly KSampler (Advanced)."
            ),
            inputs=[
                io.Model.Input("model", tooltip=_MODEL_TIP),
                io.Combo.Input(
                    "add_noise",
                    options=["enable", "disable"],
                    tooltip="Add the seeded noise (disable to continue a latent that still "
                    "carries its noise, e.g. from a first sampler's leftover noise).",
                ),
                _seed_input("noise_seed"),
                *_sampling_inputs("The number of steps of the whole schedule."),
                *_strong_inputs(),
                io.Int.Input(
                    "start_at_step",
                    default=0,
                    min=0,
                    max=10000,
                    tooltip="The step of the schedule this node starts at.",
                ),
                io.Int.Input(
                    "end_at_step",
                    default=10000,
                    min=0,
                    max=10000,
                    tooltip="The step it stops at (past the end = the end).",
                ),
                io.Combo.Input(
                    "return_with_leftover_noise",
                    options=["disable", "enable"],
                    tooltip="enable: stop at end_at_step's noise level, for a next sampler; "
                    "disable: denoise fully at the last step.",
                ),
                *w2sd_inputs(),
            ],
            outputs=[io.Latent.Output(tooltip="The latent, denoised over start..end.")],
        )

    @classmethod
    def execute(
        cls,
        model,
        add_noise,
        noise_seed,
        steps,
        cfg,
        sampler_name,
        scheduler,
        positive,
        negative,
        latent_image,
        start_at_step,
        end_at_step,
        return_with_leftover_noise,
        **w2sd,
    ) -> io.NodeOutput:
        validate.inputs(cls, {**locals(), **w2sd})
        compat.require()
        return _output(
            *reflective_ksampler(
                cls,
                model,
                noise_seed,
                steps,
                cfg,
                sampler_name,
                scheduler,
                positive,
                negative,
                latent_image,
                W2SDInputs(**w2sd),
                disable_noise=add_noise == "disable",
                start_step=start_at_step,
                last_step=end_at_step,
                force_full_denoise=return_with_leftover_noise != "enable",
            )
        )
