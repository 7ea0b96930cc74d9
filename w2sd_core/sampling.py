"""Sampling loops with reflection: a generic driver around any inner sampler, and the reference
Euler loop built on it."""

from __future__ import annotations

from typing import Callable, Optional

import torch

from .defaults import DEFAULT_INVERSION, DEFAULT_PLAN, DEFAULTS
from .guidance import guided, guides, reflects
from .plan import NO_REFLECTION, ReflectionPlan
from .reflection import Denoiser, euler_step, inversion_step, reflect, sigma_batch


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
    mode: str = "reflect",
    guidance: float = 1.0,
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
        plan=DEFAULTS.plan(percent_to_sigma),
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
