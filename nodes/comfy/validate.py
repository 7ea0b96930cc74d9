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

import re

import difflib
import math

import torch

import comfy.model_base
import comfy.samplers
from comfy_api.latest import io

from ..pair_types.base import pair_attachment, pairs_in
from . import compat


def node_label(schema) -> str:
    """The node as messages name it: its display name, or, where that is only the pack's name (the
    Reflective KSampler is titled "W2SD" so the node search lists it first), "W2SD (Reflective
    KSampler)" from its node id."""
    name = schema.display_name or schema.node_id
    if name != "W2SD" or not schema.node_id.startswith("W2SD"):
        return name
    return f"W2SD ({re.sub(r'(?<=[a-z])(?=[A-Z])', ' ', schema.node_id[4:])})"


def inputs(node_cls, values: dict) -> None:
    """Raise ValueError for the first bad input among ``values`` (the node's arguments)."""
    schema = node_cls.define_schema()
    node = node_label(schema)
    numbers(node, schema, values)
    names(node, values)
    choices(node, schema, values)
    pair_with_checkpoint(node, values.get("model"), values.get("weak_model"))
    for key in ("model", "weak_model"):
        pair_misused(node, key, values.get(key))
    conditioning(node, values)
    pooled_output(node, values)


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
    if _among(value, known):
        return
    if value is None:
        raise ValueError(f"{node}: {key} is null; pick a {kind} from the node's list.")
    close = difflib.get_close_matches(str(value), [str(k) for k in known], n=1)
    hint = f" (closest: '{close[0]}')" if close else ""
    raise ValueError(
        f"{node}: {key} '{value}' is not a {kind} of this ComfyUI "
        f"({compat.comfyui_version()}){hint}; pick one from the node's list."
    )


def names(node: str, values: dict) -> None:
    """Unknown names would run as KSampler's first entry (euler / simple) without a word. A W2SD
    Sampler gets a SAMPLER object instead: its node (e.g. KSamplerSelect) built it by name."""
    for key, known, kind in (
        ("sampler_name", comfy.samplers.KSampler.SAMPLERS, "sampler"),
        ("scheduler", comfy.samplers.KSampler.SCHEDULERS, "scheduler"),
    ):
        if key in values:  # a node with the input: null is refused too (KSampler would run euler / simple)
            _check_name(node, key, values[key], known, kind)


def _among(value, options) -> bool:
    try:
        return value is not None and value in options
    except Exception:  # a value that does not compare to strings
        return False


#: Combo values that mean "none chosen" where the node itself handles them.
_UNCHOSEN_OK = {"lora_name": (None, "")}


def choices(node: str, schema, values: dict) -> None:
    """A COMBO value that is not one of its options. ComfyUI 0.3.64 does not check them for V3
    nodes, and comparisons such as ``add_noise == "disable"`` would take any other string (or null)
    as the other choice without a word."""
    for item in schema.inputs:
        if not isinstance(item, io.Combo.Input) or item.id not in values or item.id in ("sampler_name", "scheduler"):
            continue
        options = [o for o in (getattr(item, "options", None) or [])]
        value = values[item.id]
        if not options or _among(value, options) or value in _UNCHOSEN_OK.get(item.id, ()):
            continue
        close = difflib.get_close_matches(str(value), [str(o) for o in options], n=1)
        hint = f" (closest: '{close[0]}')" if close and value is not None else ""
        given = "null" if value is None else f"{value!r}"
        if item.id == "lora_name":
            raise ValueError(
                f"{node}: lora_name {given} is not a file in ComfyUI's loras folder{hint}; pick one "
                f"from the node's list (put new files in models/loras and refresh the page)."
            )
        listed = ", ".join(f"'{o}'" for o in options)
        raise ValueError(
            f"{node}: {item.id} must be one of {listed}, got {given}{hint}; pick one from the node's list."
        )


# ---------------------------------------------------------------- pairs inside a MODEL
def pair_with_checkpoint(node: str, model, weak_model) -> None:
    """A MODEL carrying a pair beside a second checkpoint as weak_model: its type may refuse it
    (a LoRA pair's role strengths would not reach the weak passes)."""
    if model is None or weak_model is None or getattr(weak_model, "model", None) is model.model:
        return
    for side, patcher in (("model", model), ("weak_model", weak_model)):
        pair = pair_attachment(patcher)
        if pair is not None:
            pair.type.check_beside_checkpoint(pair, node, side)


def pair_misused(node: str, key: str, model) -> None:
    """Each pair a MODEL input carries checks how the model uses it (e.g. its LoRA loaded twice)."""
    for pair in pairs_in(model):
        pair.type.check_model(pair, node, key, model)


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


def cond_targets(values: dict) -> list:
    """(conditioning input, the model it is encoded for, that model's input name) of a node."""
    model, weak = values.get("model"), values.get("weak_model")
    if model is None:
        return []
    weak_name = "weak_model" if weak is not None else "model"
    return [
        ("positive", model, "model"),
        ("negative", model, "model"),
        ("weak_positive", weak or model, weak_name),
        ("weak_negative", weak or model, weak_name),
    ]


def conditioning(node: str, values: dict) -> None:
    """Conditioning of another width (a text encoder of another family) fails only inside the
    first model call, as a matmul shape error naming none of the inputs."""
    for key, target, target_name in cond_targets(values):
        expected = context_width(target)
        wrong = sorted(w for w in _widths(values.get(key)) if w != expected)
        if expected is not None and wrong:
            raise ValueError(
                f"{node}: {key} is {wrong[0]} wide but {target_name} takes {expected}-wide "
                f"conditioning (a text encoder of another model family?); encode {key} with the "
                f"CLIP that belongs to {target_name}'s checkpoint."
            )


# ---------------------------------------------------------------- pooled output
_NEEDS_POOLED: dict = {}


def needs_pooled_output(patcher) -> bool:
    """Whether the model's ``encode_adm`` reads ``pooled_output`` unconditionally (SDXL, SD3, older
    releases' Flux, HunyuanVideo, HiDream...): conditioning without it ends in a bare KeyError.
    Asked of the running ComfyUI once per model class: called without it, does it say so?"""
    base = getattr(patcher, "model", None)
    encode_adm = getattr(type(base), "encode_adm", None)
    if encode_adm is None:
        return False
    if type(base) not in _NEEDS_POOLED:
        try:
            encode_adm(base, device=torch.device("cpu"))
            needs = False
        except KeyError as e:
            needs = e.args == ("pooled_output",)
        except Exception:  # it needs more than a device to tell: don't guess
            needs = False
        _NEEDS_POOLED[type(base)] = needs
    return _NEEDS_POOLED[type(base)]


def pooled_output(node: str, values: dict) -> None:
    """SD3 / SDXL-type conditioning without its pooled output (e.g. from a conditioning node that
    only makes token embeddings) fails inside ComfyUI with a bare KeyError: 'pooled_output'."""
    for key, target, target_name in cond_targets(values):
        conds = values.get(key)
        if not isinstance(conds, (list, tuple)) or not needs_pooled_output(target):
            continue
        for item in conds:
            extras = item[1] if isinstance(item, (list, tuple)) and len(item) > 1 else None
            if isinstance(extras, dict) and "pooled_output" not in extras and "unclip_conditioning" not in extras:
                raise ValueError(
                    f"{node}: {key} has no pooled_output, which {target_name} "
                    f"({type(target.model).__name__}) needs; encode {key} with the CLIP that belongs "
                    f"to {target_name}'s checkpoint (CLIPTextEncode gives both parts)."
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
            f"{node_label(schema)}: {key} has shape {list(given['samples'].shape)}, "
            f"but this model samples {want} latents ({type(fmt).__name__}); encode the image with "
            f"this model's VAE, or start from an empty latent."
        )
