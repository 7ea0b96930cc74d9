"""What W2SD Reflective KSampler (Advanced) runs: ComfyUI's ``common_ksampler`` step by step
(-> comfy.sample.sample -> KSampler.sample -> CFGGuider.sample; nodes/comfy/compat.py follows its
release), with the W2SD guider and the named sampler wrapped for reflection. Same empty-latent
fix, seeded noise with batch_index, noise mask, schedule for denoise < 1 and for start/end steps,
previews and output dict, so with nothing planned the result is KSampler's bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview

from ...w2sd_core import DEFAULT_END_PERCENT, DEFAULT_GUIDANCE, DEFAULT_INVERSION, DEFAULT_MODE, DEFAULT_PLAN
from ..comfy import compat, validate
from ..pair_types import two_models
from .guider import make_guider
from .reflective_sampler import check_inversion, make_plan, wrap_sampler


@dataclass(frozen=True)
class W2SDInputs:
    """The W2SD inputs both nodes share (their defaults are the nodes' defaults)."""

    weak_model: object = None
    weak_positive: object = None
    weak_negative: object = None
    strong_cfg: float = -1.0
    weak_cfg: float = -1.0
    reflect_steps: int = DEFAULT_PLAN.steps
    reflect_end_percent: float = DEFAULT_END_PERCENT
    repeats: int = DEFAULT_PLAN.repeats
    inversion: str = DEFAULT_INVERSION
    mode: str = DEFAULT_MODE
    guidance: float = DEFAULT_GUIDANCE


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


def _noise(samples_in, seed, latent: dict, disable_noise: bool):
    if disable_noise:
        return compat.empty_noise(samples_in)
    return comfy.sample.prepare_noise(samples_in, seed, latent.get("batch_index", None))


def _sampler(ksampler: comfy.samplers.KSampler, w2sd: W2SDInputs):
    return wrap_sampler(
        comfy.samplers.sampler_object(ksampler.sampler),
        reflect_steps=w2sd.reflect_steps,
        end_percent=w2sd.reflect_end_percent,
        repeats=w2sd.repeats,
        inversion=w2sd.inversion,
        mode=w2sd.mode,
        guidance=w2sd.guidance,
    )


def _guider(model, sigmas, positive, negative, cfg, w2sd: W2SDInputs):
    model_sampling = model.get_model_object("model_sampling")
    weak_model = w2sd.weak_model
    two_models.checked_relation(model, weak_model)  # a wrong pair is refused even when nothing is planned
    if make_plan(w2sd.reflect_steps, w2sd.repeats, w2sd.reflect_end_percent, model_sampling).reflected_steps(sigmas):
        check_inversion(w2sd.inversion, model_sampling)  # before any model is loaded
    else:
        weak_model = None  # nothing planned (e.g. an A/B run at 0): no second checkpoint to load
    return make_guider(
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
    noise = _noise(samples_in, seed, latent, disable_noise)
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
    sampler = _sampler(ksampler, w2sd)
    guider = _guider(model, sigmas, positive, negative, cfg, w2sd)
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
