"""The evaluations of a reflecting run: each side's calls (tagged with its role, at its CFG), the
guided evaluation, and the wrapped sampler run on slices of the schedule (``SpanRunner``)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from tqdm.auto import tqdm

import comfy.k_diffusion.sampling as k_sampling
import comfy.model_management

from ...w2sd_core.guidance import guide
from . import roles
from .role_cfgs import RoleCfgs
from .slicing import needs_euler


def cfg_of_guidance(cfgs: RoleCfgs, w: float) -> float:
    """Guidance is linear in CFG: with the same model and conds, D_s + w (D_s - D_w) is plain CFG
    at this scale."""
    return cfgs.strong.cfg + w * (cfgs.strong.cfg - cfgs.weak.cfg)


@dataclass(frozen=True)
class Guidance:
    """The evaluation of a guided step: ``D_s + w (D_s - D_w)``, after each side's own CFG."""

    steps: frozenset
    w: float
    guider: object
    cfgs: RoleCfgs

    def __call__(self, model, x, sigma, kwargs):
        if self.cfgs.cfg_only:
            with temporary_cfg(self.guider, cfg_of_guidance(self.cfgs, self.w)):
                return model(x, sigma, **kwargs)
        options = kwargs.get("model_options", {})
        if getattr(self.guider, "evaluates_guidance", False):
            tagged = roles.with_role(options, roles.GUIDE, **{roles.GUIDANCE_KEY: self.w})
            return model(x, sigma, **{**kwargs, "model_options": tagged})
        # The weak side first: samplers capturing the last call's uncond (CFG++) keep the strong one's.
        weak = role_call(model, self.guider, roles.WEAK, self.cfgs.weak.override, x, sigma, kwargs)
        return guide(
            role_call(model, self.guider, roles.STRONG, self.cfgs.strong.override, x, sigma, kwargs), weak, self.w
        )


@contextlib.contextmanager
def temporary_cfg(guider, cfg: float | None):
    """The guider at another CFG for one call (None: as it is). Keeps ComfyUI's own CFG path,
    its CFG-1 shortcut and any sampler_cfg_function patches."""
    if cfg is None:
        yield
        return
    saved, guider.cfg = guider.cfg, cfg
    try:
        yield
    finally:
        guider.cfg = saved


def role_call(model, guider, role: str, cfg: float | None, x, sigma, kwargs: dict):
    """``model(x, sigma, **kwargs)`` as one side of the pair: tagged with the role, at the role's
    CFG where the sampler sets it."""
    # ComfyUI checks for "stop" only in its progress hook, i.e. once per normal step.
    comfy.model_management.throw_exception_if_processing_interrupted()
    options = roles.with_role(kwargs.get("model_options", {}), role)
    with temporary_cfg(guider, cfg):
        return model(x, sigma, **{**kwargs, "model_options": options})


def role_denoiser(model, guider, role: str, cfg: float | None, extra_args: dict):
    """``D(x, sigma)`` for one reflection pass."""
    return lambda x, sigma: role_call(model, guider, role, cfg, x, sigma, extra_args)


class SpanRunner:
    """Runs slices of the schedule with the wrapped sampler (``run_span`` of the core loop), with
    one noise source for all slices, the global step index in callbacks, one progress bar, the
    guided evaluation on the guided steps, and the sampler's own evaluations counted (heun,
    dpmpp_sde... take several per step)."""

    def __init__(self, model, inner, sigmas, extra_args, callback, noise_sampler, disable, guidance=None):
        self.model, self.inner, self.sigmas = model, inner, sigmas
        self.extra_args, self.callback, self.noise_sampler = extra_args, callback, noise_sampler
        self.guidance = guidance
        self.evaluations = self.guided = 0
        self.step = 0  # the step the sampler is in (its callback ends each step)
        self.progress = tqdm(total=len(sigmas) - 1, disable=disable)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.progress.close()

    def _evaluate(self, x, sigma, **kwargs):
        self.evaluations += 1
        if self.guidance is not None and self.step in self.guidance.steps:
            self.guided += 1
            return self.guidance(self.model, x, sigma, kwargs)
        return self.model(x, sigma, **kwargs)

    def _step_done(self, start: int, d: dict):
        self.step = start + d["i"] + 1
        if self.callback is not None:
            # previews and the progress bar expect the step index of the whole schedule
            self.callback({**d, "i": d["i"] + start})

    def __call__(self, x, start: int, end: int):
        # A "stop" during a reflection must not wait for the span's first model call.
        comfy.model_management.throw_exception_if_processing_interrupted()
        span = self.sigmas[start : end + 1]
        self.step = start
        callback = lambda d: self._step_done(start, d)
        model = _Counted(self.model, self._evaluate)
        if needs_euler(self.inner.sampler_function, start, end, len(self.sigmas) - 1):
            out = k_sampling.sample_euler(
                model, x, span, extra_args=dict(self.extra_args), callback=callback, disable=True
            )
        else:
            options = dict(self.inner.extra_options)
            if self.noise_sampler is not None:
                options["noise_sampler"] = self.noise_sampler
            out = self.inner.sampler_function(
                model, x, span, extra_args=dict(self.extra_args), callback=callback, disable=True, **options
            )
        self.progress.update(end - start)
        return out


class _Counted:
    """The sampler's model with calls routed through ``call``; every attribute is the model's own
    (samplers read ``model.inner_model``...)."""

    def __init__(self, model, call):
        self._model, self._call = model, call

    def __call__(self, *args, **kwargs):
        return self._call(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._model, name)
