"""The samplers users pick (k-diffusion's ``euler``, ``heun``, ``dpmpp_2m``, deterministic), driven by
the pack's own loop (:func:`w2sd_core.sample_with_reflection`, :func:`w2sd_core.reflect`,
:func:`w2sd_core.guidance.guided`), so the yardstick measures the code the nodes run.

A run is described by a :class:`Candidate`: a :class:`w2sd_core.Preset` (plan, mode, w, inversion)
plus an optional ``cap`` for :func:`w2sd_core.guidance.guide_capped`. As in the nodes, reflection cuts
the schedule at reflected steps and each stretch goes to the inner sampler in one call (a multistep
sampler keeps its history inside a stretch); guidance swaps the denoiser on the planned steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from w2sd_core import NO_REFLECTION, Preset, euler_step, reflect, sample_with_reflection, sigma_after, sigma_batch
from w2sd_core.guidance import guided, guides, reflects

SAMPLERS = ("euler", "heun", "dpmpp_2m")


@dataclass(frozen=True)
class Candidate:
    preset: Preset
    cap: Optional[float] = None  # None: fixed w; else guide_capped's cap (w is then the largest scale)


class Counted:
    """A denoiser that counts its calls (one call = one sampler evaluation, as ComfyUI counts steps)."""

    def __init__(self, denoise: Callable):
        self.denoise, self.calls = denoise, 0

    def __call__(self, x, sigma):
        self.calls += 1
        return self.denoise(x, sigma)


def _euler(x, sigmas, start, end, pick):
    for i in range(start, end):
        x = euler_step(x, pick(i)(x, sigma_batch(x, sigmas[i])), sigmas[i], sigmas[i + 1])
    return x


def _heun(x, sigmas, start, end, pick):
    for i in range(start, end):
        d = pick(i)
        s, s_next = sigmas[i], sigmas[i + 1]
        deriv = (x - d(x, sigma_batch(x, s))) / s
        x_next = x + deriv * (s_next - s)
        if s_next > 0:
            deriv_next = (x_next - d(x_next, sigma_batch(x, s_next))) / s_next
            x_next = x + (deriv + deriv_next) / 2 * (s_next - s)
        x = x_next
    return x


def _dpmpp_2m(x, sigmas, start, end, pick):
    """k-diffusion's sample_dpmpp_2m on ``sigmas[start:end + 1]`` (history starts fresh per call)."""
    old = None
    for i in range(start, end):
        s, s_next = sigmas[i], sigmas[i + 1]
        denoised = pick(i)(x, sigma_batch(x, s))
        if s_next == 0:
            x = denoised
        else:
            h = -torch.log(s_next / s)
            if old is not None:
                r = -torch.log(s / sigmas[i - 1]) / h
                update = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old
            else:
                update = denoised
            x = (s_next / s) * x - torch.expm1(-h) * update
        old = denoised
    return x


STEPPERS = {"euler": _euler, "heun": _heun, "dpmpp_2m": _dpmpp_2m}


def sample(
    sampler: str,
    denoise: Callable,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    weak=None,
    strong=None,
    candidate: Optional[Candidate] = None,
    percent_to_sigma=None,
) -> torch.Tensor:
    """One run from the noise-scaled ``x``; ``candidate`` None (or no ``weak``) is plain sampling.
    ``strong`` (default: ``denoise``) is the pair's strong side, as in :func:`w2sd_core.sample_euler`;
    ``percent_to_sigma`` (the model's) places the candidate's window."""
    step = STEPPERS[sampler]
    if candidate is None or weak is None:
        return step(x, sigmas, 0, len(sigmas) - 1, lambda i: denoise)
    strong = denoise if strong is None else strong
    preset = candidate.preset
    plan = preset.plan(percent_to_sigma)
    planned = set(plan.reflected_steps(sigmas)) if guides(preset.mode) and preset.guidance != 0 else set()
    guided_denoise = guided(strong, weak, preset.guidance, cap=candidate.cap)

    def pick(i):
        return guided_denoise if i in planned else denoise

    def reflect_at(x, i):
        return reflect(
            x, sigmas[i], sigmas[i + 1], strong, weak, inversion=preset.inversion, sigma_after=sigma_after(sigmas, i)
        )

    def run_span(x, start, end):
        return step(x, sigmas, start, end, pick)

    return sample_with_reflection(x, sigmas, plan if reflects(preset.mode) else NO_REFLECTION, reflect_at, run_span)


def plain_evaluations(sampler: str, steps: int) -> int:
    """Evaluations of a plain run (heun: two per step except the last, into σ = 0)."""
    return 2 * steps - 1 if sampler == "heun" else steps


def steps_for(sampler: str, evaluations: int) -> int:
    """The most steps a plain run can take within ``evaluations``."""
    return (evaluations + 1) // 2 if sampler == "heun" else evaluations
