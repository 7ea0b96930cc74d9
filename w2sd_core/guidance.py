"""Weak-to-strong guidance from the same pair: on a planned step the sampler sees
``D_s + w (D_s - D_w)`` instead of the plain denoiser (autoguidance's form with a scale offset:
``w = 0`` is the strong side alone).

To first order one ``next`` reflection adds ``sigma * (sigma - sigma_next) * (score_s - score_w)``
and one guided Euler step adds ``w * (sigma_next - sigma) / sigma * (D_w - D_s)``, the same
direction: guidance spends one extra evaluation per step, reflection two, plus its inversion error.
"""

from __future__ import annotations

import torch

from .reflection import Denoiser

#: ``reflect``: W2SD. ``guide``: guidance on the planned steps. ``reflect+guide``: both.
MODES = ("reflect", "guide", "reflect+guide")


def reflects(mode: str) -> bool:
    _check(mode)
    return mode in ("reflect", "reflect+guide")


def guides(mode: str) -> bool:
    _check(mode)
    return mode in ("guide", "reflect+guide")


def _check(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")


def guide(strong_out: torch.Tensor, weak_out: torch.Tensor, w: float) -> torch.Tensor:
    return strong_out + (strong_out - weak_out) * float(w)


def guide_capped(
    strong_out: torch.Tensor, weak_out: torch.Tensor, x: torch.Tensor, w: float, cap: float
) -> torch.Tensor:
    """Guidance whose size adapts to the pair: ``D_s + w_i (D_s - D_w)`` with, per sample,
    ``w_i = min(w, cap * |x - D_s| / |D_s - D_w|)``.

    ``|x - D_s|`` is the size of the step's own direction (``sigma`` times the derivative), so the
    added term is at most ``cap`` times the move the sampler makes anyway. A pair far apart (a much
    smaller weak model, a strong CFG gap) gets a smaller scale than a close one, and the cap binds
    most at low noise, where the step is small. Computable from ``(x, D_s, D_w)`` only; where
    ``D_s == D_w`` the result is ``D_s`` exactly (weak = strong changes nothing).
    """
    if not cap >= 0:
        raise ValueError(f"cap must be >= 0, got {cap}")
    delta = strong_out - weak_out
    size = delta.detach().flatten(1).float().norm(dim=1)
    step = (x - strong_out).detach().flatten(1).float().norm(dim=1)
    limit = cap * step / size.clamp_min(torch.finfo(torch.float32).tiny)
    scale = torch.where(size > 0, limit.clamp(max=float(w)), torch.full_like(size, float(w)))
    return strong_out + delta * scale.to(delta.dtype).view(-1, *([1] * (delta.ndim - 1)))


def guided(strong: Denoiser, weak: Denoiser, w: float, cap: float | None = None) -> Denoiser:
    """The guided denoiser; the weak side is evaluated first (samplers that capture the last
    call's unconditional output, such as the CFG++ family, then keep the strong side's).
    ``cap`` (None: a fixed ``w``) switches to :func:`guide_capped`."""

    def denoise(x, sigma):
        weak_out = weak(x, sigma)
        if cap is None:
            return guide(strong(x, sigma), weak_out, w)
        return guide_capped(strong(x, sigma), weak_out, x, w, cap)

    return denoise
