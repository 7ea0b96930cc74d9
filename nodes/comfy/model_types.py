"""Model types as this ComfyUI names them: the model-sampling classes a release has (releases add
and keep them) and which sampler space each samples in (pairs must share one), and the routed-expert
gates of the mixture-of-experts families it ships."""

from __future__ import annotations

import importlib

import comfy.model_sampling

#: (module, class, family) of the routed-expert gates this pack knows; absent ones are skipped, so
#: a release without a family still loads.
KNOWN_GATES = (
    ("comfy.ldm.hidream.model", "MoEGate", "HiDream"),
    ("comfy.ldm.hunyuan3dv2_1.hunyuandit", "MoEGate", "Hunyuan3D 2.1"),
)


def _classes(*names):
    """The model-sampling classes of this ComfyUI among ``names`` (releases add and keep them)."""
    return tuple(getattr(comfy.model_sampling, n) for n in names if hasattr(comfy.model_sampling, n))


#: Most specific first: isinstance picks the first match.
_PREDICTIONS = tuple(
    (cls, label)
    for names, label in (
        (("IMG_TO_IMG_FLOW",), "flow img2img"),
        (("IMG_TO_IMG_VELOCITY",), "flow img2img (velocity)"),
        (("CONST",), "flow (CONST)"),
        (("COSMOS_RFLOW",), "Cosmos rectified flow"),
        (("V_PREDICTION_DDPM",), "v-prediction (DDPM)"),
        (("IMG_TO_IMG",), "img2img"),
        (("X0",), "x0"),
        (("EDM",), "EDM"),
        (("V_PREDICTION",), "v-prediction"),
        (("EPS",), "eps"),
    )
    for cls in _classes(*names)
)

#: Sampler space x = x0 + sigma * noise (ComfyUI's noise_scaling for these): denoisers of the
#: eps family, CogVideoX's DDPM v-prediction and Cosmos' rectified flow compare at equal sigma.
_VARIANCE_EXPLODING = _classes("EPS", "V_PREDICTION_DDPM", "COSMOS_RFLOW")
#: Variance-preserving models trained on a DDPM schedule: what inversion 'official' is derived for.
_EPS_FAMILY = _classes("EPS", "V_PREDICTION_DDPM")


def prediction_name(model_sampling) -> str:
    for cls, name in _PREDICTIONS:
        if isinstance(model_sampling, cls):
            return name
    return type(model_sampling).__name__


def is_flow(model_sampling) -> bool:
    return isinstance(model_sampling, comfy.model_sampling.CONST)


def is_eps_family(model_sampling) -> bool:
    """eps, v, EDM, x0, img2img: what the authors' DDIM code (inversion 'official') is derived for."""
    return isinstance(model_sampling, _EPS_FAMILY)


def family(model_sampling) -> str:
    """Which sampler space a model samples in: pairs must share it. A flow model whose class
    scales noise its own way (0.30's img2img flow starts from the image, not from noise) only
    pairs with its own kind."""
    if is_flow(model_sampling):
        own = type(model_sampling).noise_scaling is not comfy.model_sampling.CONST.noise_scaling
        return prediction_name(model_sampling) if own else "flow"
    if isinstance(model_sampling, _VARIANCE_EXPLODING):
        return "x0 + sigma * noise"
    return prediction_name(model_sampling)  # unknown to W2SD: only its own kind pairs with it


def gate_classes() -> dict:
    """{gate class: family name} for the gates this ComfyUI has."""
    out = {}
    for module_name, class_name, family in KNOWN_GATES:
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError):
            continue
        out[cls] = family
    return out
