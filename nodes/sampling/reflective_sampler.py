"""The reflecting sampler: a KSAMPLER that wraps any KSAMPLER-based sampler and reflects the
planned steps, and the report of what a run did.

ComfyUI calls a sampler function as ``fn(model, x, sigmas, extra_args, callback, disable, **opts)``
where ``model`` is the inpaint wrapper (``KSamplerX0Inpaint``) around the GUIDER. ``sample_w2sd``
hands the generic loop of ``w2sd_core.sample_with_reflection`` two callbacks:

* ``reflect_at``: ``w2sd_core.reflect`` with the strong and weak denoisers, both being that same
  ``model`` called with a role tag in its model options, so inpainting masks, ControlNet, hooks and
  the guider's CFG apply to reflection calls as they do to normal steps;
* ``SpanRunner``: the wrapped sampler's own function on a slice of the schedule (spans.py, slicing.py).

Nothing is reflected (λ = 0, or no difference between the weak and strong side) -> the wrapped
function runs once on the whole schedule with the untouched arguments: bit for bit the plain sampler.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

import comfy.samplers

from ...w2sd_core import (
    DEFAULT_END_PERCENT,
    DEFAULT_GUIDANCE,
    DEFAULT_INVERSION,
    DEFAULT_MODE,
    DEFAULT_PLAN,
    INVERSIONS,
    MODES,
    NO_REFLECTION,
    ReflectionPlan,
    RunCost,
    reflect,
    run_cost,
    sample_with_reflection,
    sigma_after,
)
from ...w2sd_core.guidance import guides, reflects
from ..comfy import compat
from ..comfy.model_types import is_eps_family, prediction_name
from . import roles
from .role_cfgs import resolve_role_cfgs
from .slicing import make_noise_sampler
from .spans import Guidance, SpanRunner, cfg_of_guidance, role_denoiser

log = logging.getLogger("w2sd")


def make_plan(reflect_steps: int, repeats: int, end_percent: float, model_sampling) -> ReflectionPlan:
    """A ReflectionPlan from the node inputs; the percent window becomes a sigma window of this model."""
    to_sigma = model_sampling.percent_to_sigma if model_sampling is not None else None
    return ReflectionPlan.until_percent(float(end_percent), to_sigma, steps=int(reflect_steps), repeats=int(repeats))


def check_inversion(inversion: str, model_sampling) -> None:
    """``official`` is the authors' DDIM code in sigma space, derived for eps-type (variance-
    preserving) models; it has no meaning for flow or other model types."""
    if inversion == "official" and not is_eps_family(model_sampling):
        raise ValueError(
            f"W2SD: inversion 'official' reproduces the authors' DDIM code, derived for "
            f"eps-type (variance-preserving) models; this is a "
            f"{prediction_name(model_sampling)} model. Use 'next' or 'current'."
        )


@dataclass(frozen=True)
class Settings:
    """The inputs of a reflecting sampler: the wrapped sampler and the plan."""

    inner: comfy.samplers.KSAMPLER
    reflect_steps: int = DEFAULT_PLAN.steps
    repeats: int = DEFAULT_PLAN.repeats
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

    @compat.overrides("comfy.samplers:KSAMPLER.max_denoise")
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
    plan, cfgs, report = _plan_run(settings, guider, sigmas)
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
        ", ".join(cfgs.differences),
    )

    # A snapshot of extra_args: some samplers (the cfg_pp family) write their own post-CFG hooks
    # into the extra_args they are given, and those must not leak across spans.
    base_args = dict(extra_args)
    strong = role_denoiser(model, guider, roles.STRONG, cfgs.strong.override, base_args)
    weak = role_denoiser(model, guider, roles.WEAK, cfgs.weak.override, base_args)

    def reflect_at(x_, i):
        return reflect(
            x_, sigmas[i], sigmas[i + 1], strong, weak, inversion=settings.inversion, sigma_after=sigma_after(sigmas, i)
        )

    guidance = None
    if report.guided_steps:
        guidance = Guidance(frozenset(report.guided_steps), settings.guidance, guider, cfgs)
    noise_sampler = make_noise_sampler(
        inner.sampler_function, inner.extra_options, x, sigmas, extra_args.get("seed", None)
    )
    with SpanRunner(model, inner, sigmas, base_args, callback, noise_sampler, disable, guidance) as spans:
        out = sample_with_reflection(x, sigmas, plan if report.reflected_steps else NO_REFLECTION, reflect_at, spans)
    report.cost = run_cost(
        report.steps,
        report.reflections,
        cfgs.cfg,
        cfgs.strong.cfg,
        cfgs.weak.cfg,
        sampler_evaluations=spans.evaluations,
        guided=0 if cfgs.cfg_only else spans.guided,
    )
    return out


def _plan_run(settings: Settings, guider, sigmas):
    """The plan, the role CFGs and the report of a run, before anything is evaluated."""
    model_sampling = guider.inner_model.model_sampling
    steps = len(sigmas) - 1
    plan = make_plan(settings.reflect_steps, settings.repeats, settings.end_percent, model_sampling)
    cfgs = resolve_role_cfgs(guider, settings.strong_cfg, settings.weak_cfg)
    report = RunReport(steps=steps, differences=cfgs.differences)
    planned = plan.reflected_steps(sigmas) if steps > 0 else []
    if planned and not cfgs.differences:
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
        if cfgs.cfg_only and planned:
            log.info(
                "W2SD: a CFG-only pair in guide mode is plain CFG at %g on the guided steps (no extra evaluations)",
                cfg_of_guidance(cfgs, settings.guidance),
            )
    if report.reflected_steps:
        check_inversion(settings.inversion, model_sampling)
    guided = 0 if cfgs.cfg_only else len(report.guided_steps)  # one evaluation a step assumed
    report.cost = run_cost(
        steps, len(report.reflected_steps) * plan.repeats, cfgs.cfg, cfgs.strong.cfg, cfgs.weak.cfg, guided=guided
    )
    return plan, cfgs, report


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
