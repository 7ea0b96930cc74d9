"""W2SD Reflective KSampler: KSampler's inputs and semantics, plus the weak side and the plan.

It does what the running ComfyUI's KSampler does (common_ksampler -> comfy.sample.sample ->
KSampler.sample -> CFGGuider.sample; nodes/compat.py follows its release): same empty-latent fix, same seeded noise with batch_index, same noise
mask, same schedule for denoise < 1, same previews, same output dict. The only changes are the
guider (W2SD Guider) and the sampler (the named sampler wrapped by W2SD Sampler), so with
reflect_steps = 0, or when nothing differs between the weak and the strong side, the result is
KSampler's bit for bit.
"""
from __future__ import annotations

import logging

import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview
from comfy_api.latest import io, ui

from . import compat
from .guider import make_guider
from .sampler import (CATEGORY, DEFAULT_END_PERCENT, DEFAULT_REFLECT_STEPS, DEFAULT_REPEATS,
                      DEFAULT_INVERSION, cfg_pair_inputs, check_inversion, make_plan, plan_inputs,
                      wrap_sampler)

log = logging.getLogger("w2sd")


class W2SDReflectiveKSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="W2SDReflectiveKSampler",
            display_name="W2SD Reflective KSampler",
            category=CATEGORY,
            description=("KSampler with W2SD (Weak-to-Strong Diffusion with Reflection): before each "
                         "reflected step the latent goes one step down with the strong side and back up "
                         "with the weak side (a weak model, a weak prompt or a weak CFG), then the normal "
                         "step runs. reflect_steps 0 = exactly KSampler. Each reflection costs two model "
                         "evaluations; the node reports the total."),
            inputs=[
                io.Model.Input("model", tooltip="The model used for denoising the input latent (the strong side)."),
                io.Int.Input("seed", default=0, min=0, max=0xffffffffffffffff, control_after_generate=True,
                             tooltip="The random seed used for creating the noise."),
                io.Int.Input("steps", default=20, min=1, max=10000,
                             tooltip="The number of steps used in the denoising process."),
                io.Float.Input("cfg", default=8.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="The Classifier-Free Guidance scale of the normal steps."),
                io.Combo.Input("sampler_name", options=comfy.samplers.KSampler.SAMPLERS,
                               tooltip="The sampling algorithm; any of them works with reflection."),
                io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS,
                               tooltip="The scheduler controls how noise is gradually removed."),
                io.Conditioning.Input("positive", tooltip="The conditioning describing what to include (strong side)."),
                io.Conditioning.Input("negative", tooltip="The conditioning describing what to exclude (strong side)."),
                io.Latent.Input("latent_image", tooltip="The latent image to denoise."),
                io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="The amount of denoising applied; lower values keep the structure of the input latent."),
                io.Model.Input("weak_model", optional=True,
                               tooltip="Weak model for the weak pass (e.g. the base checkpoint of a fine-tune), "
                                       "same latent space and model type. Empty = model."),
                io.Conditioning.Input("weak_positive", optional=True,
                                      tooltip="Positive conditioning of the weak pass (e.g. a plainer prompt). Empty = positive."),
                io.Conditioning.Input("weak_negative", optional=True,
                                      tooltip="Negative conditioning of the weak pass. Empty = negative."),
                *cfg_pair_inputs(),
                *plan_inputs(),
            ],
            outputs=[io.Latent.Output(tooltip="The denoised latent.")],
        )

    @classmethod
    def execute(cls, model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image,
                denoise=1.0, weak_model=None, weak_positive=None, weak_negative=None, strong_cfg=-1.0,
                weak_cfg=-1.0, reflect_steps=DEFAULT_REFLECT_STEPS, reflect_end_percent=DEFAULT_END_PERCENT,
                repeats=DEFAULT_REPEATS, inversion=DEFAULT_INVERSION) -> io.NodeOutput:
        compat.require()
        # From here on: ComfyUI's common_ksampler / comfy.sample.sample, step by step.
        latent = latent_image
        samples_in = compat.ksampler_latent(model, latent)
        noise = comfy.sample.prepare_noise(samples_in, seed, latent.get("batch_index", None))
        noise_mask = latent.get("noise_mask", None)
        x0_output = {}
        callback = latent_preview.prepare_callback(model, steps, x0_output)
        disable_pbar = not comfy.utils.PROGRESS_BAR_ENABLED
        # KSampler's own schedule (denoise < 1 -> steps/denoise steps, the last `steps` of them)
        ksampler = comfy.samplers.KSampler(model, steps=steps, device=model.load_device,
                                           sampler=sampler_name, scheduler=scheduler, denoise=denoise,
                                           model_options=model.model_options)
        sampler = wrap_sampler(comfy.samplers.sampler_object(ksampler.sampler), reflect_steps=reflect_steps,
                               end_percent=reflect_end_percent, repeats=repeats, inversion=inversion)
        model_sampling = model.get_model_object("model_sampling")
        plan = make_plan(reflect_steps, repeats, reflect_end_percent, model_sampling)
        if plan.reflected_steps(ksampler.sigmas):
            check_inversion(inversion, model_sampling)   # before any model is loaded
        else:
            # Nothing gets reflected (e.g. reflect_steps 0 for an A/B run): a second checkpoint
            # would be loaded for nothing.
            weak_model = None
        guider = make_guider(model, positive, negative, cfg, weak_model, weak_positive, weak_negative,
                             strong_cfg, weak_cfg)
        samples = guider.sample(noise, samples_in, sampler, ksampler.sigmas, denoise_mask=noise_mask,
                                callback=callback, disable_pbar=disable_pbar, seed=seed)
        samples = samples.to(comfy.model_management.intermediate_device())

        return io.NodeOutput(compat.ksampler_output(latent, samples), ui=ReportUI(sampler.w2sd.report))


class ReportUI(ui.PreviewText):
    """The run report: "text" for any reader of the history, "w2sd" the numbers the node shows."""

    def __init__(self, report: dict):
        super().__init__(report_text(report))
        self.numbers = report_numbers(report)

    def as_dict(self) -> dict:
        return {**super().as_dict(), "w2sd": [self.numbers]}


def report_numbers(report: dict) -> dict:
    """The run's true cost as plain numbers (web/w2sd.js formats them)."""
    cost = report.get("cost") if report else None
    if cost is None:
        return {"steps": 0, "reflections": 0, "evaluations": 0, "passes": 0, "plain_passes": 0,
                "skipped": (report or {}).get("skipped") or "nothing sampled"}
    return {"steps": cost.steps, "reflections": cost.reflections, "evaluations": cost.evaluations,
            "passes": cost.passes, "plain_passes": cost.plain_passes, "skipped": report.get("skipped")}


def report_text(report: dict) -> str:
    """What the user sees under the node: reflections and the true cost of the run."""
    if not report:
        return "W2SD: nothing sampled"
    if report.get("skipped"):
        return f"W2SD: reflection skipped: {report['skipped']}"
    return report.get("summary", "")
