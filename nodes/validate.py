"""Input checks at the node boundary: one line per bad input, naming the node, the input, what is
wrong and the fix, before any model is loaded.

ComfyUI's own prompt validation lets some values through: NaN passes every min/max comparison,
and ComfyUI 0.3.64 does not check the combo values of V3 nodes (``comfy.samplers.KSampler`` then
silently falls back to its first sampler / scheduler). Calls from Python skip validation entirely.
Mismatched conditioning and latents would fail deep inside the model with a shape error.

Each node's ``execute`` calls ``inputs(cls, locals())`` first; the checks pick the inputs they
know by name, so one entry point serves every node.
"""

from __future__ import annotations

import difflib
import math

import torch

import comfy.model_base
import comfy.samplers
from comfy_api.latest import io

from . import compat
from .roles import PAIR_ATTACHMENT


def inputs(node_cls, values: dict) -> None:
    """Raise ValueError for the first bad input among ``values`` (the node's arguments)."""
    schema = node_cls.define_schema()
    node = schema.display_name or schema.node_id
    numbers(node, schema, values)
    names(node, values)
    lora_pair_with_checkpoint(node, values.get("model"), values.get("weak_model"))
    conditioning(node, values)


# ---------------------------------------------------------------- numbers
def numbers(node: str, schema, values: dict) -> None:
    """NaN / inf in a FLOAT input: ComfyUI's min/max check lets NaN through, and it would end in
    all-NaN latents or an index error deep in the plan."""
    for item in schema.inputs:
        if not isinstance(item, io.Float.Input):
            continue
        value = values.get(item.id)
        if value is None or not isinstance(value, (int, float)) or math.isfinite(value):
            continue
        what = "NaN" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        low, high = getattr(item, "min", None), getattr(item, "max", None)
        fix = (
            f"set a number between {low:g} and {high:g}"
            if low is not None and high is not None
            else "set a finite number"
        )
        raise ValueError(f"{node}: {item.id} is {what}; {fix}.")


# ---------------------------------------------------------------- sampler / scheduler names
def _check_name(node: str, key: str, value, known, kind: str) -> None:
    if value is None or value in known:
        return
    close = difflib.get_close_matches(str(value), [str(k) for k in known], n=1)
    hint = f" (closest: '{close[0]}')" if close else ""
    raise ValueError(
        f"{node}: {key} '{value}' is not a {kind} of this ComfyUI "
        f"({compat.comfyui_version()}){hint}; pick one from the node's list."
    )


def names(node: str, values: dict) -> None:
    """Unknown names would run as KSampler's first entry (euler / simple) without a word. A W2SD
    Sampler gets a SAMPLER object instead: its node (e.g. KSamplerSelect) built it by name."""
    _check_name(node, "sampler_name", values.get("sampler_name"), comfy.samplers.KSampler.SAMPLERS, "sampler")
    _check_name(node, "scheduler", values.get("scheduler"), comfy.samplers.KSampler.SCHEDULERS, "scheduler")


# ---------------------------------------------------------------- a LoRA pair beside a checkpoint
def _lora_pair(model):
    get = getattr(model, "get_attachment", None)
    pair = get(PAIR_ATTACHMENT) if get is not None else None
    return pair if isinstance(pair, dict) and pair.get("kind") == "lora_delta" else None


def lora_pair_with_checkpoint(node: str, model, weak_model) -> None:
    """A Weak Model Builder LoRA pair switches strengths per role on its own weights. With a second
    checkpoint as weak_model the weak passes run on that checkpoint, so the pair's weak_strength
    (or, on the weak side, its strong_strength) would have no effect at all."""
    if model is None or weak_model is None or getattr(weak_model, "model", None) is model.model:
        return
    for side, patcher, ignored in (
        ("model", model, "weak_strength"),
        ("weak_model", weak_model, "strong_strength and final_strength"),
    ):
        pair = _lora_pair(patcher)
        if pair is not None:
            raise ValueError(
                f"{node}: {side} carries a Weak Model Builder LoRA pair ({pair.get('summary')}) and "
                f"weak_model is a second checkpoint, so the pair's {ignored} would have no effect; "
                f"use one kind of pair: the builder's model alone (weak_model empty), or two "
                f"checkpoints without the builder (a LoRA loader at one strength is fine)."
            )


# ---------------------------------------------------------------- conditioning width
def _linear_in(module) -> int | None:
    return module.in_features if isinstance(module, torch.nn.Linear) else None


def _unet_width(base):
    width = base.model_config.unet_config.get("context_dim")
    return width if isinstance(width, int) else None


#: Families whose cross_attn reaches the model unchanged, and where its width is read. Exact
#: classes only: a subclass may project the conditioning first (e.g. Stable Zero123).
_WIDTH_READERS = {
    "BaseModel": _unet_width,
    "SDXL": _unet_width,
    "SDXLRefiner": _unet_width,
    "SD21UNCLIP": _unet_width,
    "SD3": lambda base: _linear_in(base.diffusion_model.context_embedder),
    "Flux": lambda base: _linear_in(base.diffusion_model.txt_in),
    "WAN21": lambda base: _linear_in(base.diffusion_model.text_embedding[0]),
}


def context_width(patcher) -> int | None:
    """The conditioning width the model takes, or None where it cannot be told for sure."""
    base = getattr(patcher, "model", None)
    reader = _WIDTH_READERS.get(type(base).__name__)
    if reader is None or type(base) is not getattr(comfy.model_base, type(base).__name__, None):
        return None
    try:
        return reader(base)
    except (AttributeError, KeyError, IndexError, TypeError):
        return None


def _widths(conds) -> set:
    out = set()
    for item in conds if isinstance(conds, (list, tuple)) else ():
        tensor = item[0] if isinstance(item, (list, tuple)) and item else None
        if isinstance(tensor, torch.Tensor) and tensor.ndim == 3:
            out.add(int(tensor.shape[-1]))
    return out


def conditioning(node: str, values: dict) -> None:
    """Conditioning of another width (a text encoder of another family) fails only inside the
    first model call, as a matmul shape error naming none of the inputs."""
    model, weak = values.get("model"), values.get("weak_model")
    if model is None:
        return
    weak_name = "weak_model" if weak is not None else "model"
    for key, target, target_name in (
        ("positive", model, "model"),
        ("negative", model, "model"),
        ("weak_positive", weak or model, weak_name),
        ("weak_negative", weak or model, weak_name),
    ):
        expected = context_width(target)
        wrong = sorted(w for w in _widths(values.get(key)) if w != expected)
        if expected is not None and wrong:
            raise ValueError(
                f"{node}: {key} is {wrong[0]} wide but {target_name} takes {expected}-wide "
                f"conditioning (a text encoder of another model family?); encode {key} with the "
                f"CLIP that belongs to {target_name}'s checkpoint."
            )


# ---------------------------------------------------------------- latent family
def latent(node_cls, key: str, model, given: dict, samples: torch.Tensor) -> None:
    """A latent of another family (SD3's 16 channels into SD1.5, a 5-D video latent into an image
    model) fails deep inside the model with a conv shape error. ``samples``: ``given`` as the node
    prepared it the way KSampler does, which fixes up EMPTY latents (channels, a missing frame axis)."""
    if getattr(samples, "is_nested", False):
        return  # several latents in one (newer ComfyUIs): no single shape
    fmt = model.get_model_object("latent_format")
    channels, dims = getattr(fmt, "latent_channels", None), getattr(fmt, "latent_dimensions", None)
    wrong_dims = dims is not None and samples.ndim != dims + 2
    wrong_channels = channels is not None and samples.ndim > 1 and samples.shape[1] != channels
    if wrong_dims or wrong_channels:
        schema = node_cls.define_schema()
        want = f"{channels}-channel" + (f" {dims}-D" if dims is not None else "")
        raise ValueError(
            f"{schema.display_name or schema.node_id}: {key} has shape {list(given['samples'].shape)}, "
            f"but this model samples {want} latents ({type(fmt).__name__}); encode the image with "
            f"this model's VAE, or start from an empty latent."
        )
