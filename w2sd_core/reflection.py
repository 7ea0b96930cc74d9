"""The reflection: one Euler (= deterministic DDIM) step down with the strong denoiser, one
inversion step back up with the weak one.

Convention (ComfyUI / k-diffusion): a denoiser is a callable ``D(x, sigma) -> x0`` with ``sigma`` a
tensor of shape ``(batch,)``; the sampler derivative is ``d = (x - D) / sigma``. An Euler step in
sigma is exact DDIM for eps / v / EDM models and exact flow-Euler for flow (CONST) models, so the
same two lines serve every model family.
"""

from __future__ import annotations

import math
from typing import Callable, Union

import torch

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Sigma = Union[float, torch.Tensor]

#: Which noise label the weak model sees on the way back up.
#: ``next``: the level the latent actually sits at (exact DDIM inversion).
#: ``current``: the higher level it is being moved to (the paper's Eq. 5).
#: ``official``: what the authors' diffusers-based code computes (eps-type VP models only).
INVERSIONS = ("next", "current", "official")


def sigma_batch(x: torch.Tensor, sigma: Sigma) -> torch.Tensor:
    """``sigma`` as k-diffusion hands it to a model: one value per batch item."""
    return x.new_ones([x.shape[0]]) * sigma


def euler_step(x: torch.Tensor, denoised: torch.Tensor, sigma: Sigma, sigma_to: Sigma) -> torch.Tensor:
    sigma, sigma_to = float(sigma), float(sigma_to)
    return x + (x - denoised) / sigma * (sigma_to - sigma)


def inversion_step(
    denoise: Denoiser, x: torch.Tensor, sigma_from: Sigma, sigma_to: Sigma, *, inversion: str = "next"
) -> torch.Tensor:
    """Move ``x`` from ``sigma_from`` up to ``sigma_to`` along the model's own ODE direction.

    ``next`` evaluates the model where ``x`` sits (a latent at sigma 0 has no defined direction,
    so that first step falls back to the target label); ``current`` evaluates it at the target.
    """
    if inversion not in ("next", "current"):
        raise ValueError(f"inversion must be 'next' or 'current', got {inversion!r}")
    sigma_from, sigma_to = float(sigma_from), float(sigma_to)
    label = sigma_from if inversion == "next" and sigma_from > 0 else sigma_to
    derivative = (x - denoise(x, sigma_batch(x, label))) / label
    return x + (sigma_to - sigma_from) * derivative


def _alpha_bar(sigma: float) -> float:
    return 1.0 / (1.0 + sigma * sigma)


def reflect(
    x: torch.Tensor,
    sigma: Sigma,
    sigma_next: Sigma,
    strong: Denoiser,
    weak: Denoiser,
    *,
    inversion: str = "next",
    sigma_after: Sigma | None = None,
) -> torch.Tensor:
    """Reflect ``x`` at ``sigma``: strong Euler step down to ``sigma_next``, weak inversion back up.

    To first order the result is ``x + sigma * (sigma - sigma_next) * (score_strong - score_weak)``.
    ``sigma_after`` (the level after ``sigma_next``; 0 at the end of the schedule) is needed only by
    ``inversion="official"``.
    """
    if inversion not in INVERSIONS:
        raise ValueError(f"inversion must be one of {INVERSIONS}, got {inversion!r}")
    sigma, sigma_next = float(sigma), float(sigma_next)
    if not sigma > sigma_next > 0:
        raise ValueError(f"reflection needs sigma > sigma_next > 0, got {sigma} -> {sigma_next}")
    y = euler_step(x, strong(x, sigma_batch(x, sigma)), sigma, sigma_next)
    if inversion != "official":
        return inversion_step(weak, y, sigma_next, sigma, inversion=inversion)

    # The official code runs diffusers' DDIM inverse step with the timestep one too far along the
    # schedule. Written in sigma space (alpha_bar = 1 / (1 + sigma^2)), it rescales y as if it sat at
    # sigma, predicts eps there, and re-noises by (sigma_next - sigma_after) instead of
    # (sigma - sigma_next): nearly an inversion at high noise, too little noise near the end.
    if sigma_after is None:
        raise ValueError("inversion='official' needs sigma_after (the sigma after sigma_next)")
    sigma_after = float(sigma_after)
    k = math.sqrt(_alpha_bar(sigma_next) / _alpha_bar(sigma))
    u = k * y
    eps_weak = (u - weak(u, sigma_batch(u, sigma))) / sigma
    return k * (math.sqrt(_alpha_bar(sigma_next) / _alpha_bar(sigma_after)) * y + (sigma_next - sigma_after) * eps_weak)
