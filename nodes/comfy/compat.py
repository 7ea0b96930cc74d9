"""Feature detection: the ComfyUI internals the nodes call or override, checked by signature.

ComfyUI changes its internals between releases. Every internal the pack calls with a fixed
argument list is listed in ``CALLS`` with the arguments the pack uses; every override registers
itself in ``OVERRIDES`` where it is defined (``@overrides``), so this module imports nothing of the
pack. ``require()`` binds those against the running ComfyUI's signatures before a run, so a
changed internal stops the run with one line naming the ComfyUI version and the internal, instead
of a TypeError deep inside sampling. The pack still registers its nodes whatever this finds.

The places where supported releases differ on purpose (KSampler's latent preparation, the output
dtype, io.Schema fields, latent_shapes, multi-GPU clones, flow noise scale, dynamic VRAM) are here
too, each chosen by what the running ComfyUI offers.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Callable

import torch

import comfy.model_management
import comfy.model_patcher
import comfy.model_sampling
import comfy.sample
import comfy.samplers

#: The ComfyUI releases CI runs the whole suite against (pyproject's requires-comfyui follows).
TESTED_COMFYUI = ("0.3.64", "0.8.0", "0.30.0")


def comfyui_version() -> str:
    try:
        return str(importlib.import_module("comfyui_version").__version__)
    except Exception:  # a checkout without the version module
        return "unknown version"


def _attr(path: str):
    """``"comfy.samplers.CFGGuider.sample"`` -> that object (ImportError/AttributeError if gone)."""
    module, _, rest = path.partition(":")
    obj = importlib.import_module(module)
    for name in rest.split("."):
        obj = getattr(obj, name)
    return obj


@dataclass(frozen=True)
class Call:
    """An internal the pack calls: ``path`` is ``module:attribute.path``; ``positional`` counts the
    positional arguments it passes (``self`` excluded for methods), ``keywords`` the names."""

    path: str
    positional: int
    keywords: tuple[str, ...] = ()
    method: bool = False

    def problem(self) -> str | None:
        try:
            fn = _attr(self.path)
        except (ImportError, AttributeError):
            return f"{self.name} is missing"
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            return None  # a builtin without a signature: nothing to check
        placeholders = [None] * (self.positional + (1 if self.method else 0))
        try:
            sig.bind(*placeholders, **dict.fromkeys(self.keywords))
        except TypeError:
            return f"{self.name}{sig} no longer takes the arguments W2SD passes"
        return None

    @property
    def name(self) -> str:
        return self.path.replace(":", ".")


#: What the nodes call, with the arguments they pass.
CALLS = (
    Call("comfy.samplers:CFGGuider.__init__", 1, method=True),
    Call("comfy.samplers:CFGGuider.set_conds", 2, method=True),
    Call("comfy.samplers:CFGGuider.set_cfg", 1, method=True),
    Call("comfy.samplers:CFGGuider.inner_set_conds", 1, method=True),
    Call("comfy.samplers:CFGGuider.sample", 8, method=True),
    Call("comfy.samplers:CFGGuider.inner_sample", 9, method=True),
    Call("comfy.samplers:process_conds", 7),
    Call("comfy.samplers:sampling_function", 6, ("model_options", "seed")),
    Call("comfy.samplers:KSAMPLER.__init__", 1, ("extra_options", "inpaint_options"), method=True),
    Call(
        "comfy.samplers:KSampler.__init__",
        1,
        ("steps", "device", "sampler", "scheduler", "denoise", "model_options"),
        method=True,
    ),
    Call("comfy.samplers:sampler_object", 1),
    Call("comfy.samplers:ksampler", 1),
    Call("comfy.sample:prepare_noise", 3),
    Call("comfy.sample:fix_empty_latent_channels", 2),
    Call("comfy.sampler_helpers:prepare_mask", 3),
    Call("latent_preview:prepare_callback", 3),
    Call("comfy.model_patcher:ModelPatcher.clone", 0, method=True),
    Call("comfy.model_patcher:ModelPatcher.set_additional_models", 2, method=True),
    Call("comfy.model_patcher:ModelPatcher.get_additional_models_with_key", 1, method=True),
    Call("comfy.model_patcher:ModelPatcher.set_injections", 2, method=True),
    Call("comfy.model_patcher:ModelPatcher.pre_run", 0, method=True),
    Call("comfy.model_patcher:ModelPatcher.cleanup", 0, method=True),
    Call("comfy.model_patcher:ModelPatcher.get_attachment", 1, method=True),
    Call("comfy.model_patcher:create_model_options_clone", 1),
    Call("comfy.patcher_extension:merge_nested_dicts", 2, ("copy_dict1",)),
    Call("comfy.model_management:throw_exception_if_processing_interrupted", 0),
    Call("comfy.k_diffusion.sampling:sample_euler", 3, ("extra_args", "callback", "disable")),
    Call("comfy.k_diffusion.sampling:default_noise_sampler", 1, ("seed",)),
    Call("comfy.k_diffusion.sampling:BrownianTreeNoiseSampler.__init__", 3, ("seed", "cpu"), method=True),
)


@dataclass(frozen=True)
class Override:
    """A ComfyUI method the pack overrides: every argument ComfyUI may pass to the base method
    must be accepted by the override ``ours``."""

    base: str
    ours: Callable

    def problem(self) -> str | None:
        try:
            base = inspect.signature(_attr(self.base))
        except (ImportError, AttributeError):
            return f"{self.base.replace(':', '.')} is missing"
        ours = inspect.signature(self.ours)
        # ComfyUI passes required arguments by position and optional ones (latent_shapes...) by
        # name; the override must take both.
        params = [p for p in base.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        positional = [None for p in params if p.default is p.empty and p.kind is not p.KEYWORD_ONLY]
        keywords = {p.name: None for p in params if p.default is not p.empty or p.kind is p.KEYWORD_ONLY}
        try:
            ours.bind(*positional, **keywords)
        except TypeError:
            return f"{self.base.replace(':', '.')}{base} takes arguments that W2SD's override {ours} does not accept"
        return None


#: What the pack overrides, by base: ComfyUI calls these with its own arguments. Each override
#: registers itself where it is defined (``@compat.overrides``), so this module imports nothing of
#: the pack.
OVERRIDES: dict[str, Override] = {}


def overrides(base: str):
    """Decorator: ``fn`` overrides ComfyUI's ``base`` (``module:attribute.path``); ``require()``
    checks that it still accepts every argument ComfyUI passes."""

    def register(fn):
        OVERRIDES[base] = Override(base, fn)
        return fn

    return register


def problems() -> list[str]:
    return [p for check in (*CALLS, *OVERRIDES.values()) if (p := check.problem()) is not None]


def require() -> None:
    """Raise one line naming the ComfyUI version and each changed internal, if any."""
    found = problems()
    if found:
        raise RuntimeError(
            f"W2SD does not support this ComfyUI ({comfyui_version()}; tested: "
            f"{', '.join(TESTED_COMFYUI)}): "
            + "; ".join(found)
            + ". Update W2SD (ComfyUI Manager: Update), or report the ComfyUI version to W2SD."
        )


# ---------------------------------------------------------------- where releases differ
def _accepts(fn, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def process_conds_kwargs(kwargs: dict) -> dict:
    """The keyword arguments of ``inner_sample`` (``latent_shapes``...) that this ComfyUI's
    ``process_conds`` also takes: the weak conds are processed like the strong ones."""
    return {k: v for k, v in kwargs.items() if _accepts(comfy.samplers.process_conds, k)}


#: Latent keys that newer ComfyUIs' KSampler hands to fix_empty_latent_channels (the VAE's
#: downscale ratios of an empty latent) and removes from its output.
_RATIO_KEYS = ("downscale_ratio_spacial", "downscale_ratio_temporal")


def _takes_ratios() -> bool:
    try:
        return len(inspect.signature(comfy.sample.fix_empty_latent_channels).parameters) >= 4
    except (TypeError, ValueError):
        return False


def ksampler_latent(model, latent: dict) -> torch.Tensor:
    """The input latent exactly as this ComfyUI's KSampler prepares it."""
    if _takes_ratios():
        return comfy.sample.fix_empty_latent_channels(model, latent["samples"], *(latent.get(k) for k in _RATIO_KEYS))
    return comfy.sample.fix_empty_latent_channels(model, latent["samples"])


def ksampler_output(latent: dict, samples: torch.Tensor) -> dict:
    """The output LATENT exactly as this ComfyUI's KSampler builds it from its input."""
    out = latent.copy()
    if _takes_ratios():
        for key in _RATIO_KEYS:
            out.pop(key, None)
    out["samples"] = samples
    return out


def as_intermediate(samples: torch.Tensor) -> torch.Tensor:
    """A sampler node's output where this ComfyUI's ``comfy.sample.sample`` puts it: the
    intermediate device and, from 0.30, ``intermediate_dtype()`` (fp16 under
    ``--fp16-intermediates``)."""
    mm = comfy.model_management
    dtype = getattr(mm, "intermediate_dtype", None)
    if dtype is None:
        return samples.to(mm.intermediate_device())
    return samples.to(device=mm.intermediate_device(), dtype=dtype())


def schema_extras(**fields) -> dict:
    """The io.Schema fields among ``fields`` that this ComfyUI's io.Schema has (0.30 added
    search_aliases; 0.3.64 and 0.8.0 would fail the node on an unknown keyword)."""
    from comfy_api.latest import io

    return {name: value for name, value in fields.items() if _accepts(io.Schema, name)}


def advanced() -> dict:
    """``advanced=True`` where this ComfyUI's inputs take it (0.30: the frontend folds the input
    away until the user opens the node's advanced inputs); {} on older releases."""
    from comfy_api.latest import io

    return {"advanced": True} if _accepts(io.Input.__init__, "advanced") else {}


def pass_latent_shapes(model, inner_sample_kwargs: dict) -> None:
    """Newer ComfyUIs (late 2025) tell the sampling model the shapes of packed latents through
    ``inner_sample``'s ``latent_shapes``; a second checkpoint sampled beside it needs them too."""
    if "latent_shapes" in inner_sample_kwargs:
        model.latent_shapes = inner_sample_kwargs["latent_shapes"]


def multigpu(model_options: dict) -> bool:
    """Whether ComfyUI 0.30+ batches this run's conds over several GPUs (``multigpu_clones``,
    set by CFGGuider.outer_sample): each extra GPU runs a deep clone of the model."""
    return "multigpu_clones" in model_options


def noise_scale(model_sampling) -> float:
    """The factor a flow model's noise_scaling puts on the noise (0.30's CONST reads
    ``noise_scale``; 1 where this release's flow sampling has none)."""
    reads = hasattr(comfy.model_sampling.ModelSamplingDiscreteFlow, "set_noise_scale")
    return float(getattr(model_sampling, "noise_scale", 1.0)) if reads else 1.0


def empty_noise(latent_image: torch.Tensor) -> torch.Tensor:
    """Zero noise as this ComfyUI's samplers expect it (KSampler (Advanced) with add_noise off)."""
    prepare = getattr(comfy.sample, "prepare_empty_noise", None)
    if prepare is not None:
        return prepare(latent_image)
    return torch.zeros(latent_image.size(), dtype=latent_image.dtype, layout=latent_image.layout, device="cpu")


def is_dynamic(patcher) -> bool:
    """Whether ``patcher`` is a dynamic-VRAM ModelPatcher (ComfyUI 2026), which streams weights
    and does not implement weight hooks."""
    check = getattr(patcher, "is_dynamic", None)
    return bool(check()) if callable(check) else False


def non_dynamic(patcher):
    """The patcher ComfyUI itself uses where weight hooks are needed: its non-dynamic delegate."""
    if is_dynamic(patcher):
        return patcher.get_non_dynamic_delegate()
    return patcher
