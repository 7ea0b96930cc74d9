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
DEFAULT_MODE = "reflect"
#: ``w``: 1 doubles the pair's difference (``2 D_s - D_w``).
DEFAULT_GUIDANCE = 1.0


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


def guided(strong: Denoiser, weak: Denoiser, w: float) -> Denoiser:
    """The guided denoiser; the weak side is evaluated first (samplers that capture the last
    call's unconditional output, such as the CFG++ family, then keep the strong side's)."""

    def denoise(x, sigma):
        weak_out = weak(x, sigma)
        return guide(strong(x, sigma), weak_out, w)

    return denoise
