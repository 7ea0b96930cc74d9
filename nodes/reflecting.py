"""The reflecting sampler: a KSAMPLER that wraps any KSAMPLER-based sampler and reflects the
planned steps, and the report of what a run did.

ComfyUI calls a sampler function as ``fn(model, x, sigmas, extra_args, callback, disable, **opts)``
where ``model`` is the inpaint wrapper (``KSamplerX0Inpaint``) around the GUIDER. ``sample_w2sd``
hands the generic loop of ``w2sd_core.sample_with_reflection`` two callbacks:

* ``reflect_at``: ``w2sd_core.reflect`` with the strong and weak denoisers, both being that same
  ``model`` called with a role tag in its model options, so inpainting masks, ControlNet, hooks and
  the guider's CFG apply to reflection calls as they do to normal steps;
* ``SpanRunner``: the wrapped sampler's own function on a slice of the schedule (nodes/slicing.py).

Nothing is reflected (λ = 0, or no difference between the weak and strong side) -> the wrapped
function runs once on the whole schedule with the untouched arguments: bit for bit the plain sampler.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

import comfy.k_diffusion.sampling as k_sampling
import comfy.model_management
import comfy.samplers

from ..w2sd_core import (
    DEFAULT_END_PERCENT,
    DEFAULT_INVERSION,
    INVERSIONS,
    NO_REFLECTION,
    ReflectionPlan,
    RunCost,
    reflect,
    run_cost,
    sample_with_reflection,
    sigma_after,
)
from ..w2sd_core.guidance import DEFAULT_GUIDANCE, DEFAULT_MODE, MODES, guide, guides, reflects
from . import pairs, roles
from .common import DEFAULT_REFLECT_STEPS, DEFAULT_REPEATS
from .slicing import make_noise_sampler, needs_euler

log = logging.getLogger("w2sd")


def make_plan(reflect_steps: int, repeats: int, end_percent: float, model_sampling) -> ReflectionPlan:
    """A ReflectionPlan from the node inputs; the percent window becomes a sigma window of this model."""
    to_sigma = model_sampling.percent_to_sigma if model_sampling is not None else None
    return ReflectionPlan.until_percent(float(end_percent), to_sigma, steps=int(reflect_steps), repeats=int(repeats))


def check_inversion(inversion: str, model_sampling) -> None:
    """``official`` is the authors' DDIM code in sigma space, derived for eps-type (variance-
    preserving) models; it has no meaning for flow or other model types."""
    if inversion == "official" and not pairs.is_eps_family(model_sampling):
        raise ValueError(
            f"W2SD: inversion 'official' reproduces the authors' DDIM code, derived for "
            f"eps-type (variance-preserving) models; this is a "
            f"{pairs.prediction_name(model_sampling)} model. Use 'next' or 'current'."
        )


@dataclass(frozen=True)
class Settings:
    """The inputs of a reflecting sampler: the wrapped sampler and the plan."""

    inner: comfy.samplers.KSAMPLER
    reflect_steps: int = DEFAULT_REFLECT_STEPS
    repeats: int = DEFAULT_REPEATS
    end_percent: float = DEFAULT_END_PERCENT
    inversion: str = DEFAULT_INVERSION
    strong_cfg: float = -1.0
    weak_cfg: float = -1.0
    mode: str = DEFAULT_MODE
    guidance: float = DEFAULT_GUIDANCE


@dataclass
class RunReport:
    """What one run did: reflected steps, what differs between the sides, the cost, or why
    reflection was skipped."""

    steps: int
    reflected_steps: list[int] = field(default_factory=list)
    guided_steps: list[int] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    cost: RunCost | None = None
    skipped: str | None = None

    @property
    def reflections(self) -> int:
        return self.cost.reflections if self.cost is not None else 0

    def text(self) -> str:
        if self.skipped:
            return f"W2SD: reflection skipped: {self.skipped}"
        return self.cost.summary() if self.cost is not None else "W2SD: nothing sampled"


class ReflectingKSAMPLER(comfy.samplers.KSAMPLER):
    """KSAMPLER running ``sample_w2sd``; it keeps the wrapped sampler's inpaint options (ddim draws
    its own inpaint noise) and its ``max_denoise`` so the initial noise is scaled exactly as the
    wrapped sampler would scale it. ``report`` describes its last run."""

    def __init__(self, settings: Settings):
        super().__init__(sample_w2sd, extra_options={"w2sd": self}, inpaint_options=settings.inner.inpaint_options)
        self.settings = settings
        self.report: RunReport | None = None

    def max_denoise(self, model_wrap, sigmas):
        return self.settings.inner.max_denoise(model_wrap, sigmas)


def wrap_sampler(sampler, **settings) -> ReflectingKSAMPLER:
    """Wrap a SAMPLER. Only KSAMPLER-based samplers (all of ComfyUI's) can be cut into spans."""
    if isinstance(sampler, ReflectingKSAMPLER):
        raise ValueError(
            "W2SD Sampler: the sampler input is already a W2SD Sampler; connect the "
            "plain sampler (e.g. KSamplerSelect) instead."
        )
    if not isinstance(sampler, comfy.samplers.KSAMPLER) or type(sampler).sample is not comfy.samplers.KSAMPLER.sample:
        raise ValueError(
            f"W2SD Sampler can wrap samplers built on ComfyUI's KSAMPLER (every built-in "
            f"sampler); {type(sampler).__name__} runs its own sampling loop, which cannot "
            f"be cut at reflected steps."
        )
    inversion = settings.get("inversion", DEFAULT_INVERSION)
    if inversion not in INVERSIONS:
        raise ValueError(f"W2SD: inversion must be one of {', '.join(INVERSIONS)}, got {inversion!r}")
    mode = settings.get("mode", DEFAULT_MODE)
    if mode not in MODES:
        raise ValueError(f"W2SD: mode must be one of {', '.join(MODES)}, got {mode!r}")
    settings = Settings(inner=sampler, **settings)
    make_plan(settings.reflect_steps, settings.repeats, 1.0, None)  # validates λ and repeats now
    return ReflectingKSAMPLER(settings)


# ---------------------------------------------------------------- the sampler function
@torch.no_grad()
def sample_w2sd(model, x, sigmas, extra_args=None, callback=None, disable=None, w2sd: ReflectingKSAMPLER = None):
    extra_args = {} if extra_args is None else extra_args
    settings, guider = w2sd.settings, model.inner_model  # KSamplerX0Inpaint -> guider
    plan, pair, report = _plan_run(settings, guider, sigmas)
    w2sd.report = report
    inner = settings.inner
    if not (report.reflected_steps or report.guided_steps):
        # λ = 0 or nothing to do: the wrapped sampler, untouched and in one call.
        return inner.sampler_function(
            model, x, sigmas, extra_args=extra_args, callback=callback, disable=disable, **inner.extra_options
        )
    log.info(
        "%s; %s steps %s (%s)",
        report.text(),
        settings.mode,
        _ranges(report.reflected_steps or report.guided_steps),
        ", ".join(pair.differences),
    )

    # A snapshot of extra_args: some samplers (the cfg_pp family) write their own post-CFG hooks
    # into the extra_args they are given, and those must not leak across spans.
    base_args = dict(extra_args)
    strong = role_denoiser(model, guider, roles.STRONG, pair.strong.override, base_args)
    weak = role_denoiser(model, guider, roles.WEAK, pair.weak.override, base_args)

    def reflect_at(x_, i):
        return reflect(
            x_, sigmas[i], sigmas[i + 1], strong, weak, inversion=settings.inversion, sigma_after=sigma_after(sigmas, i)
        )

    guidance = None
    if report.guided_steps:
        guidance = Guidance(frozenset(report.guided_steps), settings.guidance, guider, pair)
    noise_sampler = make_noise_sampler(
        inner.sampler_function, inner.extra_options, x, sigmas, extra_args.get("seed", None)
    )
    with SpanRunner(model, inner, sigmas, base_args, callback, noise_sampler, disable, guidance) as spans:
        out = sample_with_reflection(x, sigmas, plan if report.reflected_steps else NO_REFLECTION, reflect_at, spans)
    report.cost = run_cost(
        report.steps,
        report.reflections,
        pair.cfg,
        pair.strong.cfg,
        pair.weak.cfg,
        sampler_evaluations=spans.evaluations,
        guided=0 if pair.cfg_only else spans.guided,
    )
    return out


def _plan_run(settings: Settings, guider, sigmas):
    """The plan, the pair and the report of a run, before anything is evaluated."""
    model_sampling = guider.inner_model.model_sampling
    steps = len(sigmas) - 1
    plan = make_plan(settings.reflect_steps, settings.repeats, settings.end_percent, model_sampling)
    pair = pairs.resolve_pair(guider, settings.strong_cfg, settings.weak_cfg)
    report = RunReport(steps=steps, differences=pair.differences)
    planned = plan.reflected_steps(sigmas) if steps > 0 else []
    if planned and not pair.differences:
        report.skipped = (
            "nothing differs between the weak and the strong side (no weak model, "
            "no weak conditioning, equal strong/weak CFG)"
        )
        log.warning(
            "W2SD: %s: sampling without W2SD, no extra model evaluations. Give a "
            "weak_model, weak conditioning or different strong_cfg / weak_cfg.",
            report.skipped,
        )
        planned = []
    if reflects(settings.mode):
        report.reflected_steps = planned
    if guides(settings.mode) and settings.guidance != 0:
        report.guided_steps = planned
        if pair.cfg_only and planned:
            log.info(
                "W2SD: a CFG-only pair in guide mode is plain CFG at %g on the guided steps (no extra evaluations)",
                cfg_of_guidance(pair, settings.guidance),
            )
    if report.reflected_steps:
        check_inversion(settings.inversion, model_sampling)
    guided = 0 if pair.cfg_only else len(report.guided_steps)  # one evaluation a step assumed
    report.cost = run_cost(
        steps, len(report.reflected_steps) * plan.repeats, pair.cfg, pair.strong.cfg, pair.weak.cfg, guided=guided
    )
    return plan, pair, report


def cfg_of_guidance(pair: pairs.Pair, w: float) -> float:
    """Guidance is linear in CFG: with the same model and conds, D_s + w (D_s - D_w) is plain CFG
    at this scale."""
    return pair.strong.cfg + w * (pair.strong.cfg - pair.weak.cfg)


@dataclass(frozen=True)
class Guidance:
    """The evaluation of a guided step: ``D_s + w (D_s - D_w)``, after each side's own CFG."""

    steps: frozenset
    w: float
    guider: object
    pair: pairs.Pair

    def __call__(self, model, x, sigma, kwargs):
        if self.pair.cfg_only:
            with temporary_cfg(self.guider, cfg_of_guidance(self.pair, self.w)):
                return model(x, sigma, **kwargs)
        options = kwargs.get("model_options", {})
        if getattr(self.guider, "evaluates_guidance", False):
            tagged = roles.with_role(options, roles.GUIDE, **{roles.GUIDANCE_KEY: self.w})
            return model(x, sigma, **{**kwargs, "model_options": tagged})
        # The weak side first: samplers capturing the last call's uncond (CFG++) keep the strong one's.
        weak = role_call(model, self.guider, roles.WEAK, self.pair.weak.override, x, sigma, kwargs)
        return guide(
            role_call(model, self.guider, roles.STRONG, self.pair.strong.override, x, sigma, kwargs), weak, self.w
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


def _ranges(indices) -> str:
    """[0, 1, 2, 5] -> '0-2, 5'."""
    out, start, prev = [], None, None
    for i in list(indices) + [None]:
        if start is not None and (i is None or i != prev + 1):
            out.append(f"{start}-{prev}" if prev > start else f"{start}")
            start = None
        if i is not None:
            start = i if start is None else start
            prev = i
    return ", ".join(out)
