"""Deterministic inversion of a latent up a schedule segment, as a KSAMPLER (W2SD Inversion Step).

The math is ``w2sd_core.invert``; the inversion runs through a real ``comfy.samplers.CFGGuider``
as a KSAMPLER fed the *ascending* sigmas, so the conds, hooks, ControlNets, inpaint masks and the
latent format are handled by the same code as in sampling (nodes/inversion.py says why that also
makes the output round-trip with ComfyUI's samplers).
"""

from __future__ import annotations

import torch

import comfy.model_management
import comfy.samplers

from ...w2sd_core import invert

INVERSION_MODES = ("next", "current")


def ascending_sigmas(sigmas) -> torch.Tensor:
    """The SIGMAS input as an ascending 1-D float tensor, or a ValueError saying what is wrong."""
    if not isinstance(sigmas, torch.Tensor):
        sigmas = torch.as_tensor(sigmas)
    sigmas = sigmas.detach().flatten().to(torch.float32).cpu()
    if sigmas.numel() < 2:
        raise ValueError(
            f"W2SD Inversion Step needs at least 2 sigmas (a segment from a low to a high "
            f"noise level), got {sigmas.numel()}"
        )
    if not bool(torch.isfinite(sigmas).all()):
        raise ValueError(f"W2SD Inversion Step got non-finite sigmas: {sigmas.tolist()}")
    if bool((sigmas < 0).any()):
        raise ValueError(f"W2SD Inversion Step got negative sigmas: {sigmas.tolist()}")
    if float(sigmas.max()) <= 0:
        raise ValueError(
            "W2SD Inversion Step got sigmas that are all zero: there is no noise level "
            "to invert to (connect e.g. the low_sigmas of SplitSigmas)"
        )
    diffs = sigmas[1:] - sigmas[:-1]
    if bool((diffs <= 0).all()):
        sigmas = sigmas.flip(0)  # ComfyUI's usual descending schedule
    elif not bool((diffs >= 0).all()):
        raise ValueError(
            f"W2SD Inversion Step needs a monotone schedule segment (descending as from a "
            f"scheduler, or ascending), got {sigmas.tolist()}"
        )
    if float(sigmas[0]) == float(sigmas[-1]):
        raise ValueError(f"W2SD Inversion Step got a segment without any step: all sigmas equal {float(sigmas[0])}")
    return sigmas


def inversion_sampler(inversion: str) -> comfy.samplers.KSAMPLER:
    """A KSAMPLER whose sampler function inverts ``x`` up the (ascending) sigmas it is given."""
    if inversion not in INVERSION_MODES:
        listed = ", ".join(f"'{m}'" for m in INVERSION_MODES)
        raise ValueError(
            f"W2SD Inversion Step: inversion must be one of {listed}, got {inversion!r}; pick one from the list."
        )

    @torch.no_grad()
    def sample_inversion(model, x, sigmas, extra_args=None, callback=None, disable=None):
        extra_args = {} if extra_args is None else extra_args
        last = {}

        def denoise(x, sigma):
            # ``model`` is ComfyUI's inpaint wrapper around the guider: masks, CFG, conds all apply.
            last["denoised"] = model(x, sigma, **extra_args)
            return last["denoised"]

        steps = len(sigmas) - 1
        for i in range(steps):
            # Interruption is otherwise only checked in the progress hook.
            comfy.model_management.throw_exception_if_processing_interrupted()
            x = invert(denoise, x, sigmas[i : i + 2], inversion=inversion)
            if callback is not None and "denoised" in last:
                callback(
                    {"x": x, "i": i, "sigma": sigmas[i + 1], "sigma_hat": sigmas[i + 1], "denoised": last["denoised"]}
                )
        return x

    return comfy.samplers.KSAMPLER(sample_inversion)
