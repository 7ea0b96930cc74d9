"""W2SD Reflective KSampler and its Advanced variant: KSampler's (Advanced's) inputs and semantics,
plus the weak side and the plan.

Both do what the running ComfyUI's KSampler does (common_ksampler -> comfy.sample.sample ->
KSampler.sample -> CFGGuider.sample; nodes/compat.py follows its release): same empty-latent fix,
same seeded noise with batch_index, same noise mask, same schedule for denoise < 1 and for
start/end steps, same previews, same output dict. The only changes are the guider (W2SD Guider)
and the sampler (the named sampler wrapped by W2SD Sampler), so with reflect_steps = 0, or when
nothing differs between the weak and the strong side, the result is KSampler's bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview
from comfy_api.latest import io, ui

from . import compat, pairs, validate
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
    weak_side_inputs,
)
from .guider import make_guider
from .reflecting import check_inversion, make_plan, wrap_sampler


@dataclass(frozen=True)
class W2SDInputs:
    """The W2SD inputs both nodes share (their defaults are the nodes' defaults)."""

    weak_model: object = None
    weak_positive: object = None
    weak_negative: object = None
    strong_cfg: float = -1.0
    weak_cfg: float = -1.0
    reflect_steps: int = DEFAULT_REFLECT_STEPS
    reflect_end_percent: float = DEFAULT_END_PERCENT
    repeats: int = DEFAULT_REPEATS
    inversion: str = DEFAULT_INVERSION
    mode: str = DEFAULT_MODE
    guidance: float = DEFAULT_GUIDANCE


def w2sd_inputs() -> list:
    """The inputs after KSampler's own, in the order saved workflows list them."""
    return [*weak_side_inputs(), *cfg_pair_inputs(), *plan_inputs(), *mode_inputs()]


def schedule(ksampler: comfy.samplers.KSampler, start_step, last_step, force_full_denoise):
    """KSampler.sample's cut of its schedule for start/end steps (KSampler (Advanced))."""
    sigmas = ksampler.sigmas
    if last_step is not None and last_step < len(sigmas) - 1:
        sigmas = sigmas[: last_step + 1]
        if force_full_denoise:
            sigmas[-1] = 0
    if start_step is not None:
        sigmas = sigmas[start_step:] if start_step < len(sigmas) - 1 else sigmas[:0]
    return sigmas


def reflective_ksampler(
    node_cls,
    model,
    seed,
    steps,
    cfg,
    sampler_name,
    scheduler,
    positive,
    negative,
    latent,
    w2sd: W2SDInputs,
    denoise=1.0,
    disable_noise=False,
    start_step=None,
    last_step=None,
    force_full_denoise=False,
):
    """ComfyUI's common_ksampler, step by step, with the W2SD guider and sampler."""
    samples_in = compat.ksampler_latent(model, latent)
    validate.latent(node_cls, "latent_image", model, latent, samples_in)
    noise = (
        compat.empty_noise(samples_in)
        if disable_noise
        else comfy.sample.prepare_noise(samples_in, seed, latent.get("batch_index", None))
    )
    x0_output = {}
    callback = latent_preview.prepare_callback(model, steps, x0_output)
    ksampler = comfy.samplers.KSampler(
        model,
        steps=steps,
        device=model.load_device,
        sampler=sampler_name,
        scheduler=scheduler,
        denoise=denoise,
        model_options=model.model_options,
    )
    sigmas = schedule(ksampler, start_step, last_step, force_full_denoise)
    if len(sigmas) == 0:  # starts past the end: KSampler returns its input latent
        return compat.ksampler_output(latent, compat.as_intermediate(samples_in)), None
    sampler = wrap_sampler(
        comfy.samplers.sampler_object(ksampler.sampler),
        reflect_steps=w2sd.reflect_steps,
        end_percent=w2sd.reflect_end_percent,
        repeats=w2sd.repeats,
        inversion=w2sd.inversion,
        mode=w2sd.mode,
        guidance=w2sd.guidance,
    )
    model_sampling = model.get_model_object("model_sampling")
    weak_model = w2sd.weak_model
    pairs.checked_relation(model, weak_model)  # a wrong pair is refused even when nothing is planned
    if make_plan(w2sd.reflect_steps, w2sd.repeats, w2sd.reflect_end_percent, model_sampling).reflected_steps(sigmas):
        check_inversion(w2sd.inversion, model_sampling)  # before any model is loaded
    else:
        weak_model = None  # nothing planned (e.g. an A/B run at 0): no second checkpoint to load
    guider = make_guider(
        model,
        positive,
        negative,
        cfg,
        weak_model,
        w2sd.weak_positive,
        w2sd.weak_negative,
        w2sd.strong_cfg,
        w2sd.weak_cfg,
    )
    samples = guider.sample(
        noise,
        samples_in,
        sampler,
        sigmas,
        denoise_mask=latent.get("noise_mask", None),
        callback=callback,
        disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED,
        seed=seed,
    )
    samples = compat.as_intermediate(samples)
    return compat.ksampler_output(latent, samples), sampler.report


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
            display_name="W2SD Reflective KSampler",
            category=CATEGORY,
            **schema_extras(),
            description=(
                "KSampler with W2SD (Weak-to-Strong Diffusion with Reflection): before each "
                "reflected step the latent goes one step down with the strong side and back up "
                "with the weak side (a weak model, a weak prompt or a weak CFG), then the normal "
                "step runs. reflect_steps 0 = exactly KSampler. Each reflection costs two model "
                "evaluations; the node reports the total."
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
