"""Sampling loops with reflection: a generic driver around any inner sampler, and the reference
Euler loop built on it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .guidance import DEFAULT_GUIDANCE, DEFAULT_MODE, guided, guides, reflects
from .plan import NO_REFLECTION, ReflectionPlan
from .reflection import Denoiser, euler_step, inversion_step, reflect, sigma_batch


@dataclass(frozen=True)
class Preset:
    """Everything a W2SD run needs besides the models: the plan's inputs, the inversion, and
    what the planned steps get (``mode``: reflect / guide / reflect+guide, ``guidance``: w)."""

    steps: int = -1  # λ: -1 = every step but the last
    repeats: int = 1
    end_percent: float = 1.0  # reflect while above this point of the denoising
    max_step: Optional[float] = None  # largest relative step (σ_i - σ_i+1) / σ_i+1 reflected
    inversion: str = "next"
    mode: str = DEFAULT_MODE
    guidance: float = DEFAULT_GUIDANCE

    def plan(self, percent_to_sigma) -> ReflectionPlan:
        return ReflectionPlan.until_percent(
            self.end_percent, percent_to_sigma, steps=self.steps, repeats=self.repeats, max_step=self.max_step
        )

    def evaluations(self, sigmas, percent_to_sigma) -> int:
        """Model evaluations of an Euler run: T, plus 2 per reflection, plus 1 per guided step."""
        planned = len(self.plan(percent_to_sigma).reflected_steps(sigmas))
        extra = 2 * self.repeats * planned if reflects(self.mode) else 0
        extra += planned if guides(self.mode) and self.guidance != 0 else 0
        return len(sigmas) - 1 + extra


#: The pack's defaults, read by the nodes; docs/defaults.md gives the measurements behind them
#: (``python -m w2sd_core.toy.yardstick``). On learned denoisers no reflection window, step-size
#: limit or inversion label tried kept every 20- and 50-step run at least as good as plain
#: sampling: the one-step inversion's error (weak = strong moves samples off by 3-7x in MMD at
#: sigma 0.3-3) outweighs the weak-to-strong gain. So by default nothing is reflected (bit for bit
#: the plain sampler, no extra evaluations); the window and label below apply once λ is set.
#: Guide mode was measured the same way (``--modes``; docs/guide.md): no window or w kept every
#: cell at least as good as plain either, so the default mode stays ``reflect`` with nothing planned.
DEFAULTS = Preset(steps=0, end_percent=0.8, max_step=None, inversion="next")
#: The paper's setting (λ = T - 1, no window; ``official`` = what the authors' code computes, for
#: eps / v models; ``current`` is the paper's Eq. 5 and also runs on flow models).
PAPER = Preset(steps=-1, end_percent=1.0, max_step=None, inversion="official")
#: What reflected best on the exact-denoiser toy (the demo): every step above 80 % of the denoising.
TOY = Preset(steps=-1, end_percent=0.8, max_step=None, inversion="next")

DEFAULT_PLAN = ReflectionPlan(steps=DEFAULTS.steps, repeats=DEFAULTS.repeats, max_step=DEFAULTS.max_step)
DEFAULT_INVERSION = DEFAULTS.inversion
DEFAULT_END_PERCENT = DEFAULTS.end_percent
DEFAULT_MAX_STEP = DEFAULTS.max_step


def default_plan(percent_to_sigma) -> ReflectionPlan:
    """The default plan (DEFAULTS) for a model's ``percent_to_sigma``."""
    return DEFAULTS.plan(percent_to_sigma)


#: ``run_span(x, start, end)`` advances ``x`` from ``sigmas[start]`` to ``sigmas[end]`` with the
#: inner sampler; ``reflect_at(x, i)`` returns ``x`` reflected at step ``i``.
RunSpan = Callable[[torch.Tensor, int, int], torch.Tensor]
ReflectAt = Callable[[torch.Tensor, int], torch.Tensor]


def sample_with_reflection(
    x: torch.Tensor, sigmas, plan: ReflectionPlan, reflect_at: ReflectAt, run_span: RunSpan
) -> torch.Tensor:
    """Interleave reflections with an inner sampler.

    The schedule is cut only at reflected steps; every stretch between them (in particular
    everything after the last reflection) goes to the inner sampler in one call, so multistep
    samplers keep their history there. A plan that reflects nothing is one call over the whole
    schedule: the inner sampler bit for bit.
    """
    n = len(sigmas) - 1
    reflected = plan.reflected_steps(sigmas)
    cuts = sorted({0, n, *reflected})
    for start, end in zip(cuts, cuts[1:]):
        if start in reflected:
            for _ in range(plan.repeats):
                x = reflect_at(x, start)
        x = run_span(x, start, end)
    return x


def sigma_after(sigmas, i: int) -> float:
    """The level after step ``i``'s target (0 past the end): ``official`` inversion needs it."""
    return float(sigmas[i + 2]) if i + 2 < len(sigmas) else 0.0


def sample_euler(
    denoise: Denoiser,
    x: torch.Tensor,
    sigmas,
    *,
    weak: Denoiser,
    strong: Optional[Denoiser] = None,
    plan: Optional[ReflectionPlan] = None,
    inversion: Optional[str] = None,
    mode: str = DEFAULT_MODE,
    guidance: float = DEFAULT_GUIDANCE,
) -> torch.Tensor:
    """Reference W2SD loop: Euler steps with ``denoise``; the planned steps are reflected, guided
    (``D_s + w (D_s - D_w)`` instead of ``denoise``) or both, per ``mode``.

    ``x`` is already noise-scaled (``sigmas[0] * noise``); returns the latent at ``sigmas[-1]``.
    """
    strong = denoise if strong is None else strong
    plan = DEFAULT_PLAN if plan is None else plan
    inversion = DEFAULT_INVERSION if inversion is None else inversion
    guided_steps = set(plan.reflected_steps(sigmas)) if guides(mode) and guidance != 0 else set()
    guided_denoise = guided(strong, weak, guidance)

    def reflect_at(x, i):
        return reflect(
            x, sigmas[i], sigmas[i + 1], strong, weak, inversion=inversion, sigma_after=sigma_after(sigmas, i)
        )

    def run_span(x, start, end):
        for i in range(start, end):
            d = guided_denoise if i in guided_steps else denoise
            x = euler_step(x, d(x, sigma_batch(x, sigmas[i])), sigmas[i], sigmas[i + 1])
        return x

    return sample_with_reflection(x, sigmas, plan if reflects(mode) else NO_REFLECTION, reflect_at, run_span)


def sample_default(
    denoise: Denoiser, x: torch.Tensor, sigmas, *, weak: Denoiser, strong: Optional[Denoiser] = None, percent_to_sigma
) -> torch.Tensor:
    """What the nodes run with their defaults (DEFAULTS: plan, window, step limit, inversion,
    mode), with Euler as the inner sampler; ``percent_to_sigma`` is the model's."""
    return sample_euler(
        denoise,
        x,
        sigmas,
        weak=weak,
        strong=strong,
        plan=default_plan(percent_to_sigma),
        inversion=DEFAULTS.inversion,
        mode=DEFAULTS.mode,
        guidance=DEFAULTS.guidance,
    )


def sample_euler_plain(denoise: Denoiser, x: torch.Tensor, sigmas) -> torch.Tensor:
    """Plain deterministic Euler over ``sigmas``."""
    for i in range(len(sigmas) - 1):
        x = euler_step(x, denoise(x, sigma_batch(x, sigmas[i])), sigmas[i], sigmas[i + 1])
    return x


def invert(denoise: Denoiser, x: torch.Tensor, sigmas, *, inversion: str = "next") -> torch.Tensor:
    """Deterministic inversion of ``x`` up an ascending ``sigmas`` (e.g. 0 -> sigma_k)."""
    values = [float(s) for s in sigmas]
    if any(b < a for a, b in zip(values, values[1:])):
        raise ValueError("invert needs ascending sigmas (low noise -> high noise)")
    for a, b in zip(values, values[1:]):
        if b > a:
            x = inversion_step(denoise, x, a, b, inversion=inversion)
    return x
