"""A weak MODEL beside the strong one: can the two be sampled together, and how do they relate
(the same model, the same weights with other per-call patches, or a second checkpoint)?

Reflection moves a latent down with the strong denoiser and back up with the weak one, so both
must read the same latent space on the same noise schedule. Everything here turns a mismatch into
a ValueError that names what differs, before any sampling starts.
"""

from __future__ import annotations

import math

import torch

from ..comfy import compat
from ..comfy.model_types import family, is_flow, prediction_name

#: How a weak MODEL relates to the strong one (see ``relation``).
SAME = "same"  # nothing to do: the weak side is the strong model itself
OPTIONS = "options"  # the strong model's own weights with other model options (attention patches...)
SEPARATE = "separate"  # other weights (a second checkpoint): loaded beside the strong one


def validate_pair(strong, weak) -> None:
    """Raise ValueError naming every difference that makes ``weak`` unusable beside ``strong``.

    Same latent format class (SD1.5 and SDXL latents differ although both have 4 channels), both
    flow or both not, and for non-flow models the same sigma range. EPS beside V-prediction is
    fine: the sampler only sees denoised outputs, and both share the discrete schedule. Flow models
    need no range check: sigma is the noise level itself (x = (1 - sigma) x0 + sigma eps) and each
    model maps it to its own timestep, so a shift (Flux dev beside schnell, ModelSamplingSD3 or
    ModelSamplingFlux on one side) moves only sigma_min, not what a sigma means.
    """
    problems = []
    strong_format = strong.get_model_object("latent_format")
    weak_format = weak.get_model_object("latent_format")
    if type(strong_format) is not type(weak_format):
        problems.append(
            f"latent format: strong is {type(strong_format).__name__}, weak is {type(weak_format).__name__}"
        )
    strong_ms = strong.get_model_object("model_sampling")
    weak_ms = weak.get_model_object("model_sampling")
    if family(strong_ms) != family(weak_ms):
        problems.append(
            f"model type: strong is {prediction_name(strong_ms)}, weak is "
            f"{prediction_name(weak_ms)} (they do not sample in one latent space: "
            f"{family(strong_ms)} vs {family(weak_ms)})"
        )
    elif is_flow(strong_ms):
        scales = compat.noise_scale(strong_ms), compat.noise_scale(weak_ms)
        if scales[0] != scales[1]:
            problems.append(f"noise scale: strong {scales[0]:g}, weak {scales[1]:g}")
    else:
        s_range = (float(strong_ms.sigma_min), float(strong_ms.sigma_max))
        w_range = (float(weak_ms.sigma_min), float(weak_ms.sigma_max))
        if not all(math.isclose(a, b, rel_tol=1e-3, abs_tol=1e-6) for a, b in zip(s_range, w_range)):
            problems.append(
                f"sigma range: strong {s_range[0]:.4g}..{s_range[1]:.4g}, weak {w_range[0]:.4g}..{w_range[1]:.4g}"
            )
    if problems:
        raise ValueError(
            "W2SD: weak_model cannot be paired with model: "
            + "; ".join(problems)
            + ". Both models must share one latent space and one noise schedule "
            "(e.g. two SDXL checkpoints, or two SD1.5 ones)."
        )


def checked_relation(strong, weak) -> str:
    """``relation`` of a weak MODEL input, after every check that applies to it (ValueError)."""
    if weak is None or weak is strong:
        return SAME
    # The same loaded model patched otherwise is refused by relation(), with its own reason.
    found = relation(strong, weak)
    if found == SEPARATE:
        validate_pair(strong, weak)
    return found


def _object_patches_differ(a, b) -> bool:
    return a.object_patches.keys() != b.object_patches.keys() or any(
        a.object_patches[k] is not b.object_patches[k] for k in a.object_patches
    )


def _same_weights(a, b) -> bool:
    """Whether two clones of one BaseModel run with the same weights (no switching needed)."""
    if a.model is not b.model:
        return False
    if a.patches or b.patches:
        if a.patches_uuid != b.patches_uuid:
            return False
    if _object_patches_differ(a, b):
        return False
    if getattr(a, "weight_wrapper_patches", {}) != getattr(b, "weight_wrapper_patches", {}):
        return False
    return a.hook_patches.keys() == b.hook_patches.keys() and a.injections.keys() == b.injections.keys()


#: Object patches replace parts of the loaded model, so one loaded model cannot carry two versions.
_OBJECT_PATCH_SOURCES = {
    "model_sampling": "a ModelSampling node",
    "diffusion_model": "a node that replaces the diffusion model (compile, caching)",
    "manual_cast_dtype": "a compute-dtype node",
}

#: Wrapper types ComfyUI runs once per sampling run from the strong model's options (the guider's
#: outer_sample, prepare_sampling, sampler_sample, predict_noise). Per-call types (calc_cond_batch,
#: apply_model, diffusion_model) run from the options of each call, so those may differ.
PER_RUN_WRAPPERS = ("outer_sample", "prepare_sampling", "sampler_sample", "predict_noise")
#: model_options entries read outside the guider's per-call path: the inpaint wrapper applies the
#: denoise mask function before the guider sees the call.
PER_RUN_OPTIONS = {"denoise_mask_function": "a denoise mask function (e.g. Differential Diffusion)"}


def per_run_differences(strong, weak) -> list[str]:
    """What differs between two option sets of one model that ComfyUI applies per sampling run,
    not per model call: such a difference cannot be given to the weak calls alone."""
    out = [
        f"{what}"
        for key, what in PER_RUN_OPTIONS.items()
        if not equal(strong.model_options.get(key), weak.model_options.get(key))
    ]
    out += [
        f"{kind} wrappers"
        for kind in PER_RUN_WRAPPERS
        if not equal(strong.wrappers.get(kind) or {}, weak.wrappers.get(kind) or {})
    ]
    if not equal({k: v for k, v in strong.callbacks.items() if v}, {k: v for k, v in weak.callbacks.items() if v}):
        out.append("model callbacks (run at load / pre-run / cleanup)")
    return out


def option_differences(strong, weak) -> list[str]:
    """Short names of the per-call model patches that differ between the two sides (the report)."""
    a, b = strong.model_options, weak.model_options
    out = [k for k in sorted((a.keys() | b.keys()) - {"transformer_options"}) if not equal(a.get(k), b.get(k))]
    ta, tb = a.get("transformer_options", {}), b.get("transformer_options", {})
    for group in ("patches", "patches_replace"):
        ga, gb = ta.get(group, {}), tb.get(group, {})
        out += [k for k in sorted(ga.keys() | gb.keys()) if not equal(ga.get(k), gb.get(k))]
    out += [
        k
        for k in sorted((ta.keys() | tb.keys()) - {"patches", "patches_replace", "wrappers", "callbacks"})
        if not equal(ta.get(k), tb.get(k))
    ]
    out += [
        f"{k} wrappers"
        for k in sorted(strong.wrappers.keys() | weak.wrappers.keys())
        if not equal(strong.wrappers.get(k) or {}, weak.wrappers.get(k) or {})
    ]
    return out


def relation(strong, weak) -> str:
    """``SAME``, ``OPTIONS`` or ``SEPARATE`` (see the constants); raises for a weak model that is
    the strong model's own weights patched differently, or whose difference ComfyUI applies per
    run rather than per call."""
    if weak is None or weak is strong:
        return SAME
    if weak.model is not strong.model:
        return SEPARATE
    if not _same_weights(strong, weak):
        _refuse_weight_difference(strong, weak)
    if equal(strong.model_options, weak.model_options) and equal(strong.wrappers, weak.wrappers):
        return SAME
    per_run = per_run_differences(strong, weak)
    if per_run:
        raise ValueError(
            f"W2SD: weak_model is model with other patches, and some of them act once per sampling run, "
            f"not per model call: {'; '.join(per_run)}. One run cannot give them to the weak passes "
            f"alone. Apply those to both models (or neither) and keep the per-call patches (attention, "
            f"block, CFG-function patches, model_function_wrapper) as the difference."
        )
    return OPTIONS


def _refuse_weight_difference(strong, weak):
    # Two clones of one base with different weights share one set of weights in memory: every
    # switch between them restores, re-patches and moves the whole model, three times per
    # reflected step. That is unusably slow, so refuse it with the way out.
    if _object_patches_differ(strong, weak):
        keys = sorted(
            k
            for k in strong.object_patches.keys() | weak.object_patches.keys()
            if strong.object_patches.get(k) is not weak.object_patches.get(k)
        )
        sources = sorted({_OBJECT_PATCH_SOURCES.get(k, f"a node that sets {k}") for k in keys})
        raise ValueError(
            f"W2SD: weak_model is the same checkpoint as model with other object patches "
            f"({', '.join(keys)}; {', '.join(sources)} on one side only). One loaded model "
            f"cannot be both at once: patch both sides the same way, or load a second "
            f"checkpoint as weak_model."
        )
    raise ValueError(
        "W2SD: weak_model is the same checkpoint as model with different weight patches "
        "(e.g. a LoRA at another strength, or a weight-editing node such as the attention "
        "multiply nodes on one side). Sampling the two in turn would reload the weights three "
        "times per reflected step. For a LoRA use 'W2SD Weak Model Builder' (it applies the LoRA "
        "difference per role without switching weights); otherwise patch both sides the same "
        "way, or load a second checkpoint as weak_model."
    )


def equal(a, b) -> bool:
    """Structural equality for conditioning and model options: tensors by value, everything else
    (functions, ControlNets, hooks) by identity or ``==``."""
    if a is b:
        return True
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.shape == b.shape
            and a.dtype == b.dtype
            and torch.equal(a, b.to(a.device))
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b))
    try:
        return bool(a == b)
    except Exception:  # objects whose == is not a plain truth value
        return False


def conds_equal(a, b) -> bool:
    """Whether two CONDITIONING values are the same (same object, or same tensors and options)."""
    return equal(a, b)
