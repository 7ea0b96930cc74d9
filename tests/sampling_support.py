"""Helpers for the sampling-node tests (W2SD Sampler / Guider / Reflective KSampler).

Everything goes through real ComfyUI: models are ``comfy_support.tiny_model`` ModelPatchers, and
instrumentation uses ComfyUI's own hook for it (``ModelPatcher.set_model_unet_function_wrapper``
on a clone), which sees every model call with its inputs, conds and transformer_options.
Import only from tests that take the ``comfy`` fixture.
"""

from __future__ import annotations

import types

ROLE_KEY = "w2sd_role"


#: The stock KSampler node's inputs, in its order.
KSAMPLER_INPUTS = (
    "model",
    "seed",
    "steps",
    "cfg",
    "sampler_name",
    "scheduler",
    "positive",
    "negative",
    "latent_image",
    "denoise",
)


def ksampler_reference(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent, denoise=1.0):
    """The running ComfyUI's own KSampler node: the output LATENT it returns."""
    import nodes

    return nodes.KSampler().sample(
        model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent, denoise=denoise
    )[0]


def gaussian_denoiser(model_sampling, std: float = 1.0):
    """The exact denoiser of data ~ N(0, std^2 I), for eps/v (x = x0 + sigma*eps) and flow
    (x = (1 - sigma)*x0 + sigma*eps) models: E[x0 | x] is linear in x."""
    import comfy.model_sampling

    flow = isinstance(model_sampling, comfy.model_sampling.CONST)
    var = std * std

    def denoise(x, sigma):
        s = sigma.view(-1, *([1] * (x.ndim - 1))).to(x.dtype)
        if flow:
            a = 1.0 - s
            return x * a * var / (a * a * var + s * s)
        return x * var / (var + s * s)

    return denoise


def instrument(model, analytic: bool = False, on_call=None):
    """A clone of ``model`` that records every model call (``calls``: one namespace each with role,
    batch, cond_or_uncond, sigma, has_control, crossattn, model_id = id of the BaseModel run).
    ``analytic=True`` answers with the exact Gaussian denoiser instead of running the UNet (fast,
    and with known behaviour). ``on_call(args)`` runs at every call."""
    calls = []
    patched = model.clone()
    denoise = gaussian_denoiser(model.get_model_object("model_sampling")) if analytic else None

    def wrapper(apply_model, args):
        x, t, c = args["input"], args["timestep"], args["c"]
        calls.append(
            types.SimpleNamespace(
                role=c.get("transformer_options", {}).get(ROLE_KEY),
                batch=x.shape[0],
                cond_or_uncond=list(args["cond_or_uncond"]),
                sigma=float(t[0]),
                has_control="control" in c,
                crossattn=c.get("c_crossattn"),
                model_id=id(apply_model.__self__),
            )
        )
        if on_call is not None:
            on_call(args)
        if denoise is not None:
            return denoise(x, t)
        return apply_model(x, t, **c)

    patched.set_model_unet_function_wrapper(wrapper)
    return patched, calls


def cfg_recorder(model):
    """A clone of ``model`` whose sampler_cfg_function records (role, cond_scale) per evaluation
    and computes ComfyUI's standard CFG, so results are unchanged."""
    seen = []
    patched = model.clone()

    def cfg_function(args):
        role = args["model_options"].get("transformer_options", {}).get(ROLE_KEY)
        seen.append((role, float(args["cond_scale"])))
        return args["uncond"] + (args["cond"] - args["uncond"]) * args["cond_scale"]

    patched.set_model_sampler_cfg_function(cfg_function)
    return patched, seen


def snapshot(patcher) -> dict:
    """What a run must leave unchanged on a user's ModelPatcher."""
    import copy

    return {
        "weights": {k: v.detach().clone() for k, v in patcher.model.state_dict().items()},
        "patches": {k: list(v) for k, v in patcher.patches.items()},
        "object_patches": dict(patcher.object_patches),
        "additional_models": {k: list(v) for k, v in patcher.additional_models.items()},
        "attachments": dict(patcher.attachments),
        "injections": {k: list(v) for k, v in patcher.injections.items()},
        "wrappers": copy.copy({k: {kk: list(vv) for kk, vv in v.items()} for k, v in patcher.wrappers.items()}),
        "callbacks": {k: {kk: list(vv) for kk, vv in v.items()} for k, v in patcher.callbacks.items()},
        "model_options_keys": sorted(patcher.model_options.keys()),
        "transformer_options_keys": sorted(patcher.model_options.get("transformer_options", {}).keys()),
    }


def assert_unchanged(before: dict, patcher) -> None:
    import torch

    after = snapshot(patcher)
    assert before["weights"].keys() == after["weights"].keys()
    for k in before["weights"]:
        assert torch.equal(before["weights"][k], after["weights"][k]), f"weight {k} changed"
    for key in before:
        if key != "weights":
            assert before[key] == after[key], f"{key} changed on the user's MODEL"


def karras_sigmas(model, steps, scheduler="karras"):
    """A schedule of ``model`` from ComfyUI's own scheduler (karras unless named)."""
    import comfy.samplers

    return comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, steps).cpu()


def w2sd_sampler(sampler="euler", **inputs):
    """The W2SD Sampler node's output wrapping ``sampler`` (a SAMPLER, or a sampler's name)."""
    import comfy.samplers
    import comfy_support

    if isinstance(sampler, str):
        sampler = comfy.samplers.sampler_object(sampler)
    # the tests exercise reflection on every step but the last; the default guides instead
    inputs.setdefault("reflect_steps", -1)
    inputs.setdefault("mode", "reflect")
    return comfy_support.node_class("W2SDSampler").execute(sampler, **inputs).args[0]


def rel(a, b) -> float:
    """Relative L2 distance of ``a`` from ``b``."""
    return float((a - b).norm() / b.norm())
