"""Sampling loops with reflection: a generic driver around any inner sampler, and the reference
Euler loop built on it."""
from __future__ import annotations

from typing import Callable, Optional

import torch

from .plan import ReflectionPlan
from .reflection import Denoiser, euler_step, inversion_step, reflect, sigma_batch

#: The pack's defaults (README, "Choosing the defaults", gives the measurements behind them;
#: ``python -m w2sd_core.experiments`` reproduces them). Every step but the last is a candidate
#: (the paper's λ = T - 1), one reflection per step, and the weak model's inversion label is the
#: level the latent sits at (exact DDIM inversion); ``current`` carries a large inversion error and
#: repeats > 1 overshoot on the toy.
DEFAULT_PLAN = ReflectionPlan(steps=-1, repeats=1)
DEFAULT_INVERSION = "next"
#: Reflect only the first 80% of the denoising (``reflect_end_percent``; a fraction of the
#: denoising, not of the step count, turned into a sigma by the model's ``percent_to_sigma``). The
#: last, low-noise steps take the largest relative steps, where the one-step inversion is least
#: accurate: on the toy, reflecting them makes the identity control (weak = strong) move samples
#: off the strong model's result at 20 steps, while the window still keeps most of the gain.
#: A sigma window depends on the model's sigma range, so it cannot live in DEFAULT_PLAN itself.
DEFAULT_END_PERCENT = 0.8



def default_plan(percent_to_sigma) -> ReflectionPlan:
    """DEFAULT_PLAN with the DEFAULT_END_PERCENT window, for a model's ``percent_to_sigma``."""
    return ReflectionPlan.until_percent(DEFAULT_END_PERCENT, percent_to_sigma,
                                        steps=DEFAULT_PLAN.steps, repeats=DEFAULT_PLAN.repeats)


#: ``run_span(x, start, end)`` advances ``x`` from ``sigmas[start]`` to ``sigmas[end]`` with the
#: inner sampler; ``reflect_at(x, i)`` returns ``x`` reflected at step ``i``.
RunSpan = Callable[[torch.Tensor, int, int], torch.Tensor]
ReflectAt = Callable[[torch.Tensor, int], torch.Tensor]


def sample_with_reflection(x: torch.Tensor, sigmas, plan: ReflectionPlan,
                           reflect_at: ReflectAt, run_span: RunSpan) -> torch.Tensor:
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


def sample_euler(denoise: Denoiser, x: torch.Tensor, sigmas, *, weak: Denoiser,
                 strong: Optional[Denoiser] = None, plan: Optional[ReflectionPlan] = None,
                 inversion: Optional[str] = None) -> torch.Tensor:
    """Reference W2SD loop: Euler steps with ``denoise``, reflected per ``plan``.

    ``x`` is already noise-scaled (``sigmas[0] * noise``); returns the latent at ``sigmas[-1]``.
    """
    strong = denoise if strong is None else strong
    plan = DEFAULT_PLAN if plan is None else plan
    inversion = DEFAULT_INVERSION if inversion is None else inversion

    def reflect_at(x, i):
        return reflect(x, sigmas[i], sigmas[i + 1], strong, weak, inversion=inversion,
                       sigma_after=sigma_after(sigmas, i))

    def run_span(x, start, end):
        return sample_euler_plain(denoise, x, sigmas[start:end + 1])

    return sample_with_reflection(x, sigmas, plan, reflect_at, run_span)


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
