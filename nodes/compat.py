"""Feature detection: the ComfyUI internals the sampling nodes rely on (checked at run time so an
incompatible ComfyUI gives one clear message instead of an AttributeError deep in sampling)."""
from __future__ import annotations

import inspect

import comfy.model_management
import comfy.model_patcher
import comfy.samplers


def missing_features() -> list[str]:
    missing = []
    if not hasattr(comfy.samplers, "KSAMPLER") or "inpaint_options" not in inspect.signature(
            comfy.samplers.KSAMPLER.__init__).parameters:
        missing.append("comfy.samplers.KSAMPLER(sampler_function, extra_options, inpaint_options)")
    guider = getattr(comfy.samplers, "CFGGuider", None)
    if guider is None or not all(hasattr(guider, name) for name in ("inner_sample", "predict_noise", "inner_set_conds")):
        missing.append("comfy.samplers.CFGGuider with inner_sample/predict_noise/inner_set_conds")
    for name in ("process_conds", "sampling_function"):
        if not hasattr(comfy.samplers, name):
            missing.append(f"comfy.samplers.{name}")
    patcher = comfy.model_patcher.ModelPatcher
    for name in ("set_additional_models", "get_additional_models_with_key", "get_attachment", "pre_run", "cleanup"):
        if not hasattr(patcher, name):
            missing.append(f"ModelPatcher.{name}")
    if not hasattr(comfy.model_management, "throw_exception_if_processing_interrupted"):
        missing.append("comfy.model_management.throw_exception_if_processing_interrupted")
    return missing


def require() -> None:
    missing = missing_features()
    if missing:
        raise RuntimeError("W2SD needs a newer ComfyUI (0.3.64 or later); this one lacks: "
                           + ", ".join(missing))
