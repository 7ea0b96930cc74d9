"""How each patch of a LoRA applies to one model in a strength pair: in activation space (linear
in the strength: LoRA, LoCon, plain diffs), fused once (strength-independent), or through ComfyUI
weight hooks (everything else)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

import comfy.lora
import comfy.lora_convert
import comfy.utils
import comfy.weight_adapter

from ....w2sd_core.lora_delta import BiasTerm, ConvGeometry, DenseTerm, LayerDelta, LinearGeometry, LoraTerm

# LoRA-file key prefixes that belong to text encoders: the builder is model-only (a CLIP LoRA loader
# handles those), so they are counted apart from keys that failed to match the diffusion model.
_TEXT_ENCODER_PREFIXES = ("lora_te", "text_encoder", "text_encoders.", "te_", "te1", "te2", "lora_clip", "clip_")


class _RecordingDict(dict):
    """The LoRA state dict, recording which entries ComfyUI's loader consumed (load_lora reads
    every tensor it uses by item access), so unmatched keys can be counted exactly."""

    def __init__(self, *args):
        super().__init__(*args)
        self.used: set = set()

    def __getitem__(self, key):
        value = super().__getitem__(key)
        self.used.add(key)
        return value

    def get(self, key, default=None):
        if key in self:
            self.used.add(key)
        return super().get(key, default)


@dataclass
class LoraAnalysis:
    """How each patch of a LoRA will be applied to one model."""

    fused: dict = field(default_factory=dict)  # add_patches at final strength
    layers: dict = field(default_factory=dict)  # module name -> LayerDelta (activation space)
    fallback: dict = field(default_factory=dict)  # patches applied via weight hooks, per role
    fallback_kinds: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)  # (key, reason): not applied at all
    counts: dict = field(default_factory=dict)
    file_keys: int = 0
    text_encoder_keys: int = 0
    unmatched_keys: list = field(default_factory=list)
    warnings: list = field(default_factory=list)

    @property
    def patch_count(self) -> int:
        return len(self.fused) + len(self.fallback)

    def factor_bytes(self) -> int:
        return sum(d.nbytes for d in self.layers.values())


def split_key(key):
    """A load_lora patch key: ``"x.weight"`` or ``("x.weight", (dim, offset, size)[, function])``."""
    if isinstance(key, str):
        return key, None, None
    return key[0], key[1], (key[2] if len(key) > 2 else None)


def _geometry(module):
    if isinstance(module, torch.nn.Linear):
        return LinearGeometry(tuple(module.weight.shape))
    if isinstance(module, torch.nn.modules.conv._ConvNd) and not module.transposed:
        return ConvGeometry.from_module(module)
    return None


def _row_function(function):
    """The key function of a patch as an operation on output rows, or None when it is not one we
    know. ComfyUI maps a few diffusers keys with ``swap_scale_shift`` (swaps the two halves of the
    output rows): a permutation, so it moves onto the LoRA's ``up`` factor exactly."""
    if function is None:
        return lambda t: t
    if function is comfy.utils.swap_scale_shift:
        return function
    return None


@dataclass(frozen=True)
class SameAtEveryStrength:
    """A "set" patch: fused once, no delta."""


@dataclass(frozen=True)
class NeedsHooks:
    """A patch that is not linear in the strength (or not on a Linear/Conv weight): applied per
    role through ComfyUI weight hooks. ``kind`` names it in the report."""

    kind: str


def classify(value, param: str, geometry, function, weight_slice):
    """How one patch is applied: a LoraTerm / DenseTerm / BiasTerm (a strength-linear patch on a
    Linear/Conv layer, added in activation space), SameAtEveryStrength, or NeedsHooks."""
    rows = _row_function(function)
    if isinstance(value, comfy.weight_adapter.LoRAAdapter):
        up, down, alpha, mid, dora_scale, reshape = value.weights
        if dora_scale is not None:
            return NeedsHooks("DoRA")
        if reshape is not None:
            return NeedsHooks("LoRA with reshape_weight")
        if rows is None or (function is not None and up.shape[0] % 2):
            return NeedsHooks("LoRA with a key function")
        if param != "weight" or geometry is None:
            return NeedsHooks("LoRA on a non-Linear/Conv weight")
        return LoraTerm(up=rows(up), down=down, alpha=alpha, mid=mid, weight_slice=weight_slice)
    if isinstance(value, comfy.weight_adapter.WeightAdapterBase):
        dora = value.weights[-1] if isinstance(value.weights, (tuple, list)) and value.weights else None
        name = getattr(value, "name", type(value).__name__)
        return NeedsHooks(f"{name}{' + DoRA' if isinstance(dora, torch.Tensor) else ''}")
    if isinstance(value, tuple) and len(value) in (1, 2):
        kind, data = ("diff", value) if len(value) == 1 else value
        if kind == "set":
            return SameAtEveryStrength()
        if kind == "diff":
            if rows is None or (len(data) > 1 and data[1].get("pad_weight")):
                return NeedsHooks("padded/function diff")
            if geometry is None:
                return NeedsHooks("diff on a non-Linear/Conv layer (e.g. a norm)")
            if param == "weight":
                return DenseTerm(diff=rows(data[0]), weight_slice=weight_slice)
            if param == "bias":
                return BiasTerm(diff=rows(data[0]), weight_slice=weight_slice)
            return NeedsHooks("diff on an unknown parameter")
    return NeedsHooks(f"unsupported patch type {type(value).__name__}")


def _term_kind(how, geometry, weight_slice) -> list[str]:
    """The report's counters a delta term adds to."""
    if isinstance(how, LoraTerm):
        kinds = ["LoCon (conv)" if isinstance(geometry, ConvGeometry) else "LoRA"]
        return kinds + (["sliced (fused QKV)"] if weight_slice is not None else [])
    return ["full diff" if isinstance(how, DenseTerm) else "bias diff"]


def _load_patches(model, lora_sd: dict, result: "LoraAnalysis") -> dict:
    """ComfyUI's own key matching; counts the file keys it left (text-encoder keys apart)."""
    lora_sd = comfy.lora_convert.convert_lora(lora_sd)
    recording = _RecordingDict(lora_sd)
    patches = comfy.lora.load_lora(recording, comfy.lora.model_lora_keys_unet(model.model, {}), log_missing=False)
    result.file_keys = len(lora_sd)
    for k in lora_sd:
        if k in recording.used:
            continue
        if k.lower().startswith(_TEXT_ENCODER_PREFIXES):
            result.text_encoder_keys += 1
        else:
            result.unmatched_keys.append(k)
    return patches


def analyse_lora(model, lora_sd: dict) -> LoraAnalysis:
    """Match a LoRA state dict to ``model`` (a ModelPatcher) the way comfy.sd.load_lora_for_models
    does, and decide for every patch how the pair applies it."""
    result = LoraAnalysis()
    state_keys = set(model.model.state_dict().keys())
    per_module: dict[str, list] = {}
    geometries: dict[str, object] = {}
    counts = dict.fromkeys(("LoRA", "LoCon (conv)", "sliced (fused QKV)", "full diff", "bias diff", "set"), 0)
    for key, value in _load_patches(model, lora_sd, result).items():
        param_key, weight_slice, function = split_key(key)
        if param_key not in state_keys:
            result.skipped.append((param_key, "not in the model"))
            continue
        module_name, _, param = param_key.rpartition(".")
        try:
            module = model.model.get_submodule(module_name)
        except AttributeError:
            module = None
        geometry = _geometry(module) if module is not None else None
        how = classify(value, param, geometry, function, weight_slice)
        if isinstance(how, SameAtEveryStrength):
            result.fused[key] = value  # same at every strength: fused once, no delta
            counts["set"] += 1
            continue
        if isinstance(how, NeedsHooks):
            result.fallback[key] = value
            result.fallback_kinds[how.kind] = result.fallback_kinds.get(how.kind, 0) + 1
            continue
        try:
            LayerDelta([how], geometry)  # validates shapes: a clear report, no traceback later
        except ValueError as e:
            result.skipped.append((param_key, str(e)))
            continue
        result.fused[key] = value
        per_module.setdefault(module_name, []).append(how)
        geometries[module_name] = geometry
        for kind in _term_kind(how, geometry, weight_slice):
            counts[kind] += 1
    result.layers = {name: LayerDelta(terms, geometries[name]) for name, terms in per_module.items()}
    result.counts = {k: v for k, v in counts.items() if v}
    return result


def same_patch(a, b) -> bool:
    if a is b:
        return True
    wa = getattr(a, "weights", a)
    wb = getattr(b, "weights", b)
    if type(a) is not type(b) or not isinstance(wa, (tuple, list)) or len(wa) != len(wb):
        return False
    for x, y in zip(wa, wb):
        if isinstance(x, torch.Tensor) != isinstance(y, torch.Tensor):
            return False
        if isinstance(x, torch.Tensor):
            if x.shape != y.shape or x.dtype != y.dtype or not torch.equal(x, y):
                return False
        elif isinstance(x, tuple) or isinstance(y, tuple):
            if not same_patch(x, y):
                return False
        elif x != y:
            return False
    return True


def check_base_model(model, analysis: LoraAnalysis, lora_name: str) -> list[str]:
    """The base must not already carry this LoRA: the builder fuses it itself. Other patches on the
    same weights (another LoRA) are fine for the activation-space part, and only noted."""
    patched, identical = 0, 0
    for key, value in list(analysis.fused.items()) + list(analysis.fallback.items()):
        param_key, weight_slice, _ = split_key(key)
        existing = model.patches.get(param_key)
        if not existing:
            continue
        patched += 1
        if any(same_patch(p[1], value) and p[3] == weight_slice for p in existing):
            identical += 1
    if identical:
        raise ValueError(
            f"W2SD Weak Model Builder: the model already carries the LoRA '{lora_name}' on {identical} of "
            f"{analysis.patch_count} of its weights (a LoRA loader upstream?). Connect the model from before "
            f"that loader: this node fuses the LoRA at final_strength itself."
        )
    if patched:
        return [
            f"{patched} of the LoRA's weights already carry other patches (another LoRA?); they stack "
            f"as with two LoRA loaders"
        ]
    return []


#: The largest change a patch may make to one weight: what float16 can hold. A real LoRA changes a
#: weight by far less than 1; more than this (e.g. alpha 1e30) only overflows into NaN.
MAX_WEIGHT_CHANGE = 65504.0


def _largest(t) -> float:
    return float(t.detach().abs().max()) if isinstance(t, torch.Tensor) and t.numel() else 0.0


def _lora_change(weights) -> tuple[float, str]:
    """An upper bound of |ΔW| at strength 1 for a LoRAAdapter's weights, exact when it is large,
    and what to name in a message."""
    up, down, alpha, mid = weights[:4]
    rank = down.shape[0]
    scale = abs(float(alpha) / rank) if alpha is not None else 1.0
    bound = scale * rank * _largest(up) * _largest(down)
    if mid is not None:
        bound *= rank * _largest(mid)
    elif bound > MAX_WEIGHT_CHANGE and math.isfinite(scale):
        # The bound is loose by up to the rank: compute the product where it matters.
        bound = scale * _largest(up.flatten(1).float() @ down.flatten(1).float())
    return bound, f"alpha {float(alpha) if alpha is not None else rank:g}, rank {rank}"


def check_magnitudes(analysis: LoraAnalysis, lora_name: str, strengths) -> None:
    """Refuse a LoRA whose patches change a weight by more than MAX_WEIGHT_CHANGE at one of the
    pair's strengths: finite in the file, but NaN after the first layer (a corrupt alpha)."""
    strength = max(abs(float(s)) for s in strengths)
    if strength == 0:
        return
    for key, value in list(analysis.fused.items()) + list(analysis.fallback.items()):
        if isinstance(value, comfy.weight_adapter.LoRAAdapter):
            change, detail = _lora_change(value.weights)
        elif isinstance(value, tuple) and len(value) in (1, 2) and (len(value) == 1 or value[0] == "diff"):
            data = value if len(value) == 1 else value[1]
            change, detail = _largest(data[0]), "a weight difference"
        else:
            continue
        change *= strength
        if not change <= MAX_WEIGHT_CHANGE:  # also NaN
            raise ValueError(
                f"W2SD Weak Model Builder: the LoRA '{lora_name}' would change the weight "
                f"'{split_key(key)[0]}' by up to {change:.3g} at strength {strength:g} ({detail}), far "
                f"more than any model weight holds (the image would be NaN); the file is damaged: "
                f"download it again, or choose another lora_name."
            )
