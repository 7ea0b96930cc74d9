"""Running a ComfyUI sampler on slices of its schedule: which slices each sampler can run, and
one noise source for all slices.

The W2SD sampler cuts the schedule at reflected steps and runs each slice with the wrapped
sampler; everything after the last reflection is one slice that ends where the schedule ends.
Most samplers run any slice. The ones in ``EULER_INSIDE`` (nodes/comfy/sampler_tables.py) cannot
run some slices and take Euler (= DDIM) steps there, at the same cost. A sampler this module does
not know (newer than the pack, or a custom node's) is never assumed to slice cleanly: Euler inside
the reflected part, the sampler itself only for the last slice.
"""

from __future__ import annotations

import inspect
import logging

import torch

import comfy.k_diffusion.sampling as k_sampling

from ..comfy.sampler_tables import ANY_SLICE, BROWNIAN, COMFY_MODULES, EULER_INSIDE, ONE_STEP

log = logging.getLogger("w2sd")

_warned: set[str] = set()


def _unwrap(fn):
    try:
        return inspect.unwrap(fn)
    except ValueError:
        return fn


def name_of(fn) -> str | None:
    """The name of one of ComfyUI's own sampler functions, else None."""
    fn = _unwrap(fn)
    if getattr(fn, "__module__", None) not in COMFY_MODULES:
        return None
    return getattr(fn, "__name__", None)


def needs_euler(fn, start: int, end: int, steps: int) -> bool:
    """Whether the slice sigmas[start..end] of a ``steps``-step schedule runs as Euler steps."""
    name = name_of(fn)
    if name in ANY_SLICE:
        return False
    rule = EULER_INSIDE.get(name, (None, None))[0]
    if rule is None:
        _warn_unknown(fn)
        return end < steps or end - start == 1
    return end - start == 1 if rule == ONE_STEP else end < steps


def _warn_unknown(fn) -> None:
    label = f"{getattr(fn, '__module__', '?')}.{getattr(_unwrap(fn), '__name__', repr(fn))}"
    if label not in _warned:
        _warned.add(label)
        log.warning(
            "W2SD: sampler %s is not known to run single slices of a schedule; its reflected "
            "steps run as Euler steps, the rest of the schedule with the sampler itself",
            label,
        )


def make_noise_sampler(fn, options: dict, x: torch.Tensor, sigmas: torch.Tensor, seed):
    """ONE noise source for the whole schedule, or None when the sampler takes none.

    Ancestral and SDE samplers build their noise source inside each call; called once per slice
    they would draw the same noise at every step. So the driver builds the source the sampler
    itself would build for the full schedule and passes it to every slice: a Brownian tree over
    the full sigma range for the samplers that use one (its noise is keyed by the interval, so every
    step gets exactly the noise of a plain run), else ``default_noise_sampler`` (sequential draws
    from one seeded generator, again the plain run's sequence).
    """
    if "noise_sampler" in options:
        return None  # the user's own source (e.g. from a custom sampler node) stays in charge
    try:
        if "noise_sampler" not in inspect.signature(fn).parameters:
            return None
    except (TypeError, ValueError):
        return None
    cpu = BROWNIAN.get(name_of(fn))
    if cpu is not None:
        return k_sampling.BrownianTreeNoiseSampler(x, sigmas[sigmas > 0].min(), sigmas.max(), seed=seed, cpu=cpu)
    return k_sampling.default_noise_sampler(x, seed=seed)
