"""W2SD Weak Model Builder: a weak/strong model pair from one base and a LoRA, or from two checkpoints.

LoRA mode ("LoRA delta", DESIGN.md section 3): the output MODEL is the base with the LoRA fused at
``final_strength`` by ordinary ``add_patches`` (what LoraLoaderModelOnly does), so normal sampler
steps cost nothing extra. For reflection calls, forward hooks on the LoRA'd Linear/Conv layers add
``(s_role − s_final)·ΔW·x`` in activation space (w2sd_core.lora_delta). The hooks are installed with
``ModelPatcher.set_injections`` (they come and go with the model's load/unload) and switched on by an
APPLY_MODEL wrapper that reads the role tag of the call. No weight copies, no weight swapping: the
model is loaded once, extra memory is the LoRA factors.

Patches that are not linear in the strength (DoRA, LoHa, LoKr, OFT, BOFT, GLoRA, norm-layer diffs…)
cannot be added in activation space; they go through ComfyUI weight hooks (comfy.hooks) instead, one
hook group per role (final / strong / weak), and the report states the memory that costs.

Checkpoint mode: a second MODEL is validated against the first (latent format, flow or not, σ range)
and passed through.
"""
from __future__ import annotations

import logging
import os
import threading
import uuid
import weakref
from dataclasses import dataclass, field
from typing import Optional

import torch

import comfy.hooks
import comfy.lora
import comfy.lora_convert
import comfy.patcher_extension
import comfy.utils
import comfy.weight_adapter
import folder_paths
from comfy_api.latest import io

from ..w2sd_core.lora_delta import (BiasTerm, ConvGeometry, DenseTerm, LayerDelta, LinearGeometry,
                                    LoraTerm)
from . import compat, pairs, validate
from .roles import PAIR_ATTACHMENT, STRONG, WEAK, role_of
from .common import schema_extras, CATEGORY

log = logging.getLogger("w2sd")

NONE = "None"
#: Prefix of the injection / wrapper / callback keys; each built model gets its own suffix, so two
#: builders stacked on one model each keep their own hooks.
KEY_PREFIX = "w2sd_lora_delta"
#: The weight-hook fallback caches one patched copy per role only while the three copies together
#: stay below this fraction of the model's size.
MAX_CACHED_FRACTION = 0.5

# LoRA-file key prefixes that belong to text encoders: this node is model-only (a CLIP LoRA loader
# handles those), so they are counted apart from keys that failed to match the diffusion model.
_TEXT_ENCODER_PREFIXES = ("lora_te", "text_encoder", "text_encoders.", "te_", "te1", "te2", "lora_clip",
                          "clip_")


# ---------------------------------------------------------------- LoRA file loading

#: (path, mtime, size) -> {"sd": the file's tensors, "users": built models still alive}. Re-runs
#: with other strengths reuse the tensors while a model built from them lives; when the last one is
#: gone, so is the entry (nothing stays for the life of the process).
_lora_cache: dict = {}


def _load_lora_file(lora_name: str):
    """(cache key, state dict) of a LoRA file; a file that cannot be read is named in one line."""
    path = folder_paths.get_full_path_or_raise("loras", lora_name)
    stat = os.stat(path)
    key = (path, stat.st_mtime_ns, stat.st_size)
    entry = _lora_cache.get(key)
    if entry is not None:
        return key, entry["sd"]
    try:
        sd = comfy.utils.load_torch_file(path, safe_load=True)
    except Exception as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(
            f"W2SD Weak Model Builder: the LoRA file '{lora_name}' ({stat.st_size} bytes) cannot be "
            f"read ({type(e).__name__}: {reason}); it is truncated, empty or not a LoRA file: "
            f"download it again, or choose another lora_name.") from e
    return key, sd


def _keep_while_used(key, sd: dict, model) -> None:
    """Cache ``sd`` for as long as ``model`` (built from it) lives."""
    entry = _lora_cache.setdefault(key, {"sd": sd, "users": 0})
    entry["users"] += 1
    weakref.finalize(model, _release_lora_file, key, entry)


def _release_lora_file(key, entry) -> None:
    entry["users"] -= 1
    if entry["users"] <= 0 and _lora_cache.get(key) is entry:
        del _lora_cache[key]


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


# ---------------------------------------------------------------- analysis

@dataclass
class LoraAnalysis:
    """How each patch of a LoRA will be applied to one model."""
    fused: dict = field(default_factory=dict)        # add_patches at final strength
    layers: dict = field(default_factory=dict)       # module name -> LayerDelta (activation space)
    fallback: dict = field(default_factory=dict)     # patches applied via weight hooks, per role
    fallback_kinds: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)      # (key, reason): not applied at all
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


def _split_key(key):
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


def _classify(value, param: str, geometry, function, weight_slice):
    """A LoraTerm / DenseTerm / BiasTerm for a strength-linear patch on a Linear/Conv layer,
    "set" for a strength-independent one, or a string naming why it needs the fallback."""
    rows = _row_function(function)
    if isinstance(value, comfy.weight_adapter.LoRAAdapter):
        up, down, alpha, mid, dora_scale, reshape = value.weights
        if dora_scale is not None:
            return "DoRA"
        if reshape is not None:
            return "LoRA with reshape_weight"
        if rows is None or (function is not None and up.shape[0] % 2):
            return "LoRA with a key function"
        if param != "weight" or geometry is None:
            return "LoRA on a non-Linear/Conv weight"
        return LoraTerm(up=rows(up), down=down, alpha=alpha, mid=mid, weight_slice=weight_slice)
    if isinstance(value, comfy.weight_adapter.WeightAdapterBase):
        dora = value.weights[-1] if isinstance(value.weights, (tuple, list)) and value.weights else None
        name = getattr(value, "name", type(value).__name__)
        return f"{name}{' + DoRA' if isinstance(dora, torch.Tensor) else ''}"
    if isinstance(value, tuple) and len(value) in (1, 2):
        kind, data = ("diff", value) if len(value) == 1 else value
        if kind == "set":
            return "set"
        if kind == "diff":
            if rows is None or (len(data) > 1 and data[1].get("pad_weight")):
                return "padded/function diff"
            if geometry is None:
                return "diff on a non-Linear/Conv layer (e.g. a norm)"
            if param == "weight":
                return DenseTerm(diff=rows(data[0]), weight_slice=weight_slice)
            if param == "bias":
                return BiasTerm(diff=rows(data[0]), weight_slice=weight_slice)
            return "diff on an unknown parameter"
    return f"unsupported patch type {type(value).__name__}"


def analyse_lora(model, lora_sd: dict) -> LoraAnalysis:
    """Match a LoRA state dict to ``model`` (a ModelPatcher) the way comfy.sd.load_lora_for_models
    does, and decide for every patch how the pair applies it."""
    result = LoraAnalysis()
    lora_sd = comfy.lora_convert.convert_lora(lora_sd)
    recording = _RecordingDict(lora_sd)
    key_map = comfy.lora.model_lora_keys_unet(model.model, {})
    patches = comfy.lora.load_lora(recording, key_map, log_missing=False)
    result.file_keys = len(lora_sd)
    for k in lora_sd:
        if k in recording.used:
            continue
        if k.lower().startswith(_TEXT_ENCODER_PREFIXES):
            result.text_encoder_keys += 1
        else:
            result.unmatched_keys.append(k)

    state_keys = set(model.model.state_dict().keys())
    per_module: dict[str, list] = {}
    geometries: dict[str, object] = {}
    counts = {"LoRA": 0, "LoCon (conv)": 0, "sliced (fused QKV)": 0, "full diff": 0, "bias diff": 0,
              "set": 0}
    for key, value in patches.items():
        param_key, weight_slice, function = _split_key(key)
        if param_key not in state_keys:
            result.skipped.append((param_key, "not in the model"))
            continue
        module_name, _, param = param_key.rpartition(".")
        try:
            module = model.model.get_submodule(module_name)
        except AttributeError:
            module = None
        geometry = _geometry(module) if module is not None else None
        how = _classify(value, param, geometry, function, weight_slice)
        if how == "set":
            result.fused[key] = value        # same at every strength: fused once, no delta
            counts["set"] += 1
            continue
        if isinstance(how, str):
            result.fallback[key] = value
            result.fallback_kinds[how] = result.fallback_kinds.get(how, 0) + 1
            continue
        try:
            LayerDelta([how], geometry)       # validates shapes: a clear report, no traceback later
        except ValueError as e:
            result.skipped.append((param_key, str(e)))
            continue
        result.fused[key] = value
        per_module.setdefault(module_name, []).append(how)
        geometries[module_name] = geometry
        if isinstance(how, LoraTerm):
            counts["LoCon (conv)" if isinstance(geometry, ConvGeometry) else "LoRA"] += 1
            if weight_slice is not None:
                counts["sliced (fused QKV)"] += 1
        elif isinstance(how, DenseTerm):
            counts["full diff"] += 1
        else:
            counts["bias diff"] += 1
    result.layers = {name: LayerDelta(terms, geometries[name]) for name, terms in per_module.items()}
    result.counts = {k: v for k, v in counts.items() if v}
    return result


def _same_patch(a, b) -> bool:
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
            if not _same_patch(x, y):
                return False
        elif x != y:
            return False
    return True


def check_base_model(model, analysis: LoraAnalysis, lora_name: str) -> list[str]:
    """The base must not already carry this LoRA: the builder fuses it itself. Other patches on the
    same weights (another LoRA) are fine for the activation-space part, and only noted."""
    patched, identical = 0, 0
    for key, value in list(analysis.fused.items()) + list(analysis.fallback.items()):
        param_key, weight_slice, _ = _split_key(key)
        existing = model.patches.get(param_key)
        if not existing:
            continue
        patched += 1
        if any(_same_patch(p[1], value) and p[3] == weight_slice for p in existing):
            identical += 1
    if identical:
        raise ValueError(
            f"W2SD Weak Model Builder: the model already carries the LoRA '{lora_name}' on {identical} of "
            f"{analysis.patch_count} of its weights (a LoRA loader upstream?). Connect the model from before "
            f"that loader: this node fuses the LoRA at final_strength itself.")
    if patched:
        return [f"{patched} of the LoRA's weights already carry other patches (another LoRA?); they stack "
                f"as with two LoRA loaders"]
    return []


# ---------------------------------------------------------------- runtime: role state, hooks, wrapper

class LoraDeltaRuntime:
    """The per-model state: role strengths, the active strength (thread-local), the forward hooks.

    One instance per built model. Its injection object is shared by clones of that model
    (ModelPatcher.clone copies the injection list); the hooks are owned by the patcher that injected
    them, so a stale clone ejecting (e.g. when garbage-collected) cannot strip a live model's hooks.
    """

    def __init__(self, layers: dict[str, LayerDelta], strengths: dict, key: str):
        self.layers = layers
        self.strengths = strengths                 # role -> s_role - s_final
        self.key = key
        self._local = threading.local()
        self._handles: list = []
        self._owner: Optional[int] = None
        self._lock = threading.Lock()
        self._audit_pending = True
        self._fired: set = set()
        self.calls = {STRONG: 0, WEAK: 0, None: 0}

    # -- active strength (set by the wrapper, read by the hooks)
    def active(self) -> float:
        return getattr(self._local, "strength", 0.0)

    # -- injection
    def inject(self, patcher) -> None:
        with self._lock:
            if self._handles:
                if self._owner == id(patcher):
                    return
                self._remove()
            model = patcher.model
            for name in self.layers:
                module = model.get_submodule(name)
                self._handles.append(module.register_forward_hook(self._hook(name), with_kwargs=True))
            self._owner = id(patcher)

    def eject(self, patcher) -> None:
        with self._lock:
            if self._owner == id(patcher):
                self._remove()

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._owner = None

    def on_detach(self, patcher, unpatch_all=True) -> None:
        # The model is being unloaded: drop the factors cast for its device. (load_models_gpu also
        # detaches a model it is about to reload, with unpatch_all=False: its weights stay on the
        # device, and so do the casts.)
        if unpatch_all:
            self.release()

    def release(self, *args) -> None:
        # Also at the end of every sampling run (ON_CLEANUP): the casts are device memory that
        # ComfyUI's memory manager neither counts nor frees (a partial unload keeps them), so they
        # must not sit there while the VAE or another model runs. Re-casting costs one copy of the
        # LoRA factors per run.
        for delta in self.layers.values():
            delta.clear_cache()

    def _hook(self, name: str):
        delta = self.layers[name]

        def hook(module, args, kwargs, output):
            strength = getattr(self._local, "strength", 0.0)
            if strength == 0.0:
                return None
            x = args[0] if args else kwargs.get("input", kwargs.get("x"))
            if getattr(self._local, "audit", False):
                self._fired.add(name)
            return delta.add_to(output, x, strength)
        return hook

    # -- the APPLY_MODEL wrapper
    def apply_model_wrapper(self, executor, *args, **kwargs):
        transformer_options = kwargs.get("transformer_options")
        if transformer_options is None:
            transformer_options = args[5] if len(args) > 5 else {}
        role = role_of(transformer_options)
        strength = self.strengths.get(role, 0.0)
        self.calls[role if role in (STRONG, WEAK) else None] += 1
        previous = getattr(self._local, "strength", 0.0)
        audit = strength != 0.0 and self._audit_pending
        self._local.strength = strength
        self._local.audit = audit
        try:
            out = executor(*args, **kwargs)
        finally:
            self._local.strength = previous
            self._local.audit = False
        if audit:
            self._audit_pending = False
            missing = sorted(set(self.layers) - self._fired)
            if missing:
                # A layer whose weight is used without calling the module (custom forward code) never
                # sees its hook: say so instead of running a silently partial delta.
                log.warning("W2SD LoRA delta: %d of %d LoRA'd layers were not called as modules in a "
                            "reflection pass, so the role strengths do not reach them (first: %s)",
                            len(missing), len(self.layers), ", ".join(missing[:5]))
        return out


class WeightHookFallback:
    """Patches that are not linear in the strength, applied per role through ComfyUI weight hooks.

    Each role (normal steps, reflect_strong, reflect_weak) has its own HookGroup carrying the patches
    at that role's strength; the APPLY_MODEL wrapper applies the group for the call's role on top of
    any hooks the conds bring, and restores the previous group afterwards. ComfyUI caches the patched
    weights per group while sampling (hook mode MaxSpeed, set by the OUTER_SAMPLE wrapper): fast, but
    one copy of the affected weights per role, plus a backup of the originals.
    """

    def __init__(self, patches: dict, role_strengths: dict):
        self.patches = patches
        self.hooks = {}
        self.groups = {}
        for role, strength in role_strengths.items():
            hook = comfy.hooks.WeightHook(strength_model=strength)
            hook.weights = patches
            hook.need_weight_init = False
            group = comfy.hooks.HookGroup()
            group.add(hook)
            self.hooks[role] = hook
            self.groups[role] = group
        self._combined: dict = {}

    def register(self, patcher) -> None:
        target = comfy.hooks.create_target_dict(comfy.hooks.EnumWeightTarget.Model)
        for hook in self.hooks.values():
            hook.add_hook_patches(patcher, {}, target, comfy.hooks.HookGroup())

    def _group(self, role, previous):
        if previous is None:
            return self.groups[role]
        key = (id(previous), role)
        cached = self._combined.get(key)
        if cached is None or cached[0] is not previous:
            cached = (previous, previous.clone_and_combine(self.groups[role]))
            self._combined[key] = cached
        return cached[1]

    def apply_model_wrapper(self, executor, *args, **kwargs):
        transformer_options = kwargs.get("transformer_options")
        if transformer_options is None:
            transformer_options = args[5] if len(args) > 5 else {}
        role = role_of(transformer_options)
        role = role if role in (STRONG, WEAK) else None
        patcher = getattr(executor.class_obj, "current_patcher", None)
        if patcher is None:
            raise RuntimeError("W2SD LoRA fallback: the model has no current patcher (not sampling?)")
        previous = patcher.current_hooks
        patcher.apply_hooks(self._group(role, previous))
        try:
            return executor(*args, **kwargs)
        finally:
            patcher.apply_hooks(previous)

    @staticmethod
    def outer_sample_wrapper(executor, *args, **kwargs):
        # ComfyUI picks MinVram (no caching) when conds carry at most one hook group; the roles switch
        # groups every call, so cache the patched weights per group instead.
        guider = executor.class_obj
        guider.model_patcher.hook_mode = comfy.hooks.EnumHookMode.MaxSpeed
        return executor(*args, **kwargs)

    def weight_bytes(self, model) -> int:
        sd = model.model.state_dict()
        total = 0
        for key in self.patches:
            t = sd.get(_split_key(key)[0])
            if t is not None:
                total += t.numel() * t.element_size()
        return total


# ---------------------------------------------------------------- building

def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


def _static_patcher(model, analysis: LoraAnalysis):
    """Weight hooks need a patcher that owns its weights. A dynamic-VRAM patcher (ComfyUI 2026)
    streams them and raises "Hooks not implemented", so use its non-dynamic delegate, as ComfyUI's
    own guider does for hooked conds (it loads a second, static copy of the model)."""
    if not compat.is_dynamic(model):
        return model
    kinds = ", ".join(sorted(analysis.fallback_kinds))
    try:
        static = compat.non_dynamic(model)
    except RuntimeError as e:
        raise ValueError(
            f"W2SD Weak Model Builder: this LoRA has patches that are not linear in the strength "
            f"({kinds}); they need ComfyUI weight hooks, which dynamic VRAM does not implement, and "
            f"this model cannot be reloaded without it ({e}). Start ComfyUI with "
            f"--disable-dynamic-vram, or use a plain LoRA/LoCon for the pair.") from e
    log.warning("W2SD Weak Model Builder: %s patches need weight hooks; dynamic VRAM has none, so "
                "the pair uses a static copy of the model (more memory; --disable-dynamic-vram "
                "avoids the copy)", kinds)
    return static


def build_lora_pair(model, lora_sd: dict, lora_name: str, final_strength: float, strong_strength: float,
                    weak_strength: float):
    """The LoRA-delta pair: returns (model, report lines, pair attachment)."""
    analysis = analyse_lora(model, lora_sd)
    if analysis.patch_count == 0:
        te = f"; {analysis.text_encoder_keys} of them are text-encoder keys" if analysis.text_encoder_keys else ""
        raise ValueError(
            f"W2SD Weak Model Builder: the LoRA '{lora_name}' matches none of this model's weights "
            f"({analysis.file_keys} keys in the file{te}). Is it a LoRA for another model family?")
    warnings = check_base_model(model, analysis, lora_name)
    matched_unet = analysis.file_keys - analysis.text_encoder_keys - len(analysis.unmatched_keys)
    if analysis.unmatched_keys:
        warnings.append(
            f"partial match: {len(analysis.unmatched_keys)} of {analysis.file_keys - analysis.text_encoder_keys} "
            f"diffusion-model keys of the file match no weight of this model and are ignored "
            f"(first: {', '.join(analysis.unmatched_keys[:3])})")
    if analysis.skipped:
        warnings.append(f"{len(analysis.skipped)} patches skipped (their shapes do not fit this model): "
                        + "; ".join(f"{k}: {why}" for k, why in analysis.skipped[:3]))

    out = (_static_patcher(model, analysis) if analysis.fallback else model).clone()
    key = f"{KEY_PREFIX}:{uuid.uuid4().hex[:8]}"
    role_delta = {STRONG: strong_strength - final_strength, WEAK: weak_strength - final_strength}
    if analysis.fused:
        out.add_patches(analysis.fused, final_strength)
    runtime = None
    if analysis.layers:
        runtime = LoraDeltaRuntime(analysis.layers, role_delta, key)
        out.set_injections(key, [comfy.patcher_extension.PatcherInjection(runtime.inject, runtime.eject)])
        out.add_callback_with_key(comfy.patcher_extension.CallbacksMP.ON_DETACH, key, runtime.on_detach)
        out.add_callback_with_key(comfy.patcher_extension.CallbacksMP.ON_CLEANUP, key, runtime.release)
        out.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, key, runtime.apply_model_wrapper)
    fallback = None
    if analysis.fallback:
        fallback = WeightHookFallback(analysis.fallback, {None: final_strength, STRONG: strong_strength,
                                                          WEAK: weak_strength})
        fallback.register(out)
        out.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, key + ":hooks",
                                 fallback.apply_model_wrapper)
        kinds = ", ".join(f"{k} x{v}" for k, v in sorted(analysis.fallback_kinds.items()))
        weights = fallback.weight_bytes(model)
        if 3 * weights <= MAX_CACHED_FRACTION * model.model_size():
            out.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, key + ":hooks",
                                     WeightHookFallback.outer_sample_wrapper)
            how = (f"Memory: up to one copy of those weights ({_mb(weights)}) per role (final, strong, weak) "
                   f"plus a backup of the originals; time: two copies of them per model call, normal "
                   f"steps included (the role's weights in, the originals back).")
        else:
            # Three cached copies of that much would rival the model itself: let ComfyUI recompute the
            # patched weights at each switch instead (slow, but no extra copies beyond the backup).
            how = (f"They cover {_mb(weights)} of weights, too much to cache once per role, so ComfyUI "
                   f"recomputes them at every role switch (slow; memory: a backup of the originals).")
        warnings.append(
            f"{len(analysis.fallback)} patches are not linear in the strength ({kinds}): they go through "
            f"ComfyUI weight hooks, switched per call. " + how)

    counts = ", ".join(f"{k} {v}" for k, v in analysis.counts.items()) or "none"
    lines = [
        f"W2SD Weak Model Builder: LoRA delta pair from '{lora_name}'",
        f"matched: {analysis.patch_count} weights ({matched_unet} file keys); in activation space: "
        f"{len(analysis.layers)} layers ({counts})"
        + (f"; via weight hooks: {len(analysis.fallback)}" if analysis.fallback else ""),
        f"strengths: final {final_strength:g} (fused into the weights), strong {strong_strength:g} "
        f"({role_delta[STRONG]:+g} on reflect_strong calls), weak {weak_strength:g} "
        f"({role_delta[WEAK]:+g} on reflect_weak calls)",
        f"extra memory: {_mb(analysis.factor_bytes())} of LoRA factors (shared with the fused patches; "
        f"cast once to the sampling device/dtype)",
    ]
    if analysis.text_encoder_keys:
        lines.append(f"ignored: {analysis.text_encoder_keys} text-encoder keys (this node patches the "
                     f"diffusion model only; use a CLIP LoRA loader for those)")
    if strong_strength == weak_strength:
        warnings.append("strong_strength equals weak_strength: reflection will do nothing but cost time")
    lines += [f"WARNING: {w}" for w in warnings]
    summary = (f"LoRA '{lora_name}' strong {strong_strength:g} / weak {weak_strength:g} "
               f"(final {final_strength:g})")
    stacked_on = model.get_attachment(PAIR_ATTACHMENT)
    if stacked_on:
        # A builder upstream: its injection and wrapper travel with the clone and keep applying
        # its role strengths, so the summary the samplers print must name both pairs.
        lines.append(f"stacked on an earlier pair, which stays active: {stacked_on.get('summary')}")
        summary = f"{stacked_on.get('summary')} + {summary}"
    attachment = {
        "kind": "lora_delta", "summary": summary, "lora": lora_name,
        "final_strength": final_strength, "strong_strength": strong_strength, "weak_strength": weak_strength,
        "layers": len(analysis.layers), "fallback_patches": len(analysis.fallback), "key": key,
        "runtime": runtime, "stacked_on": stacked_on,
    }
    out.set_attachments(PAIR_ATTACHMENT, attachment)
    for w in warnings:
        log.warning("W2SD Weak Model Builder: %s", w)
    log.info("\n".join(lines))
    return out, lines, attachment


# ---------------------------------------------------------------- checkpoint mode

def validate_checkpoint_pair(strong, weak) -> list[str]:
    """Can ``weak`` stand in for ``strong`` in reflection? The samplers' own check (nodes/pairs.py:
    latent format, flow or not, sigma range for non-flow models; a clone of the same checkpoint with other patches is
    refused there with the way out). Raises ValueError naming the mismatch; returns notes."""
    pairs.validate_pair(strong, weak)
    relation = pairs.relation(strong, weak)
    notes = []
    if relation == pairs.SAME:
        notes.append("the weak model is the model itself: only a prompt or CFG pair can differ")
    strong_ms, weak_ms = strong.get_model_object("model_sampling"), weak.get_model_object("model_sampling")
    if pairs.prediction_name(strong_ms) != pairs.prediction_name(weak_ms):
        notes.append(f"prediction types differ ({pairs.prediction_name(strong_ms)} / "
                     f"{pairs.prediction_name(weak_ms)}): fine, reflection works on denoised outputs")
    return notes


# ---------------------------------------------------------------- the node

class W2SDWeakModelBuilder(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="W2SDWeakModelBuilder",
            display_name="W2SD Weak Model Builder",
            category=CATEGORY,
            **schema_extras("lora"),
            description=(
                "Builds the weak/strong pair for W2SD reflection. LoRA mode: fuses the LoRA into the model at "
                "final_strength and adds the strong/weak strength differences only on reflection passes, in "
                "activation space (no weight copies, no reloads; extra memory = the LoRA factors). "
                "Checkpoint mode: connect weak_model (and leave lora_name at None) to validate a second "
                "checkpoint as the weak model."),
            inputs=[
                io.Model.Input("model", tooltip="The base diffusion model, WITHOUT this LoRA applied."),
                io.Combo.Input("lora_name", options=[NONE] + folder_paths.get_filename_list("loras"),
                               tooltip="The LoRA whose strength separates strong from weak (None in checkpoint mode)."),
                io.Float.Input("final_strength", default=0.8, min=-100.0, max=100.0, step=0.01,
                               tooltip="LoRA strength of the normal sampling steps (the image you get)."),
                io.Float.Input("strong_strength", default=1.5, min=-100.0, max=100.0, step=0.01,
                               tooltip="LoRA strength of the strong model (the denoising half of a reflection)."),
                io.Float.Input("weak_strength", default=-1.5, min=-100.0, max=100.0, step=0.01,
                               tooltip="LoRA strength of the weak model (the inversion half of a reflection)."),
                io.Model.Input("weak_model", optional=True,
                               tooltip="Checkpoint mode: a second model of the same family to use as the weak model."),
            ],
            outputs=[
                io.Model.Output(display_name="model",
                                tooltip="Connect to the W2SD sampler's model: LoRA at final_strength, role strengths travel with it."),
                io.Model.Output(display_name="weak_model",
                                tooltip="The validated weak model (checkpoint mode) or the same model (LoRA mode)."),
                io.String.Output(display_name="report", tooltip="What was detected and how it is applied."),
            ],
        )

    @classmethod
    def execute(cls, model, lora_name, final_strength, strong_strength, weak_strength, weak_model=None):
        validate.inputs(cls, locals())
        has_lora = lora_name not in (None, "", NONE)
        if has_lora and weak_model is not None:
            raise ValueError("W2SD Weak Model Builder: give either a LoRA (lora_name) or a weak_model, "
                             "not both: set lora_name to None for a checkpoint pair, or disconnect "
                             "weak_model for a LoRA pair.")
        if not has_lora and weak_model is None:
            raise ValueError("W2SD Weak Model Builder: choose a LoRA (lora_name) or connect a weak_model")
        if weak_model is not None:
            notes = validate_checkpoint_pair(model, weak_model)
            lines = ["W2SD Weak Model Builder: checkpoint pair (validated: same latent format, "
                     "same flow/non-flow family, same sigma range for non-flow models)"] + [f"note: {n}" for n in notes]
            log.info("\n".join(lines))
            return io.NodeOutput(model, weak_model, "\n".join(lines))
        key, lora_sd = _load_lora_file(lora_name)
        out, lines, _ = build_lora_pair(model, lora_sd, lora_name, float(final_strength),
                                        float(strong_strength), float(weak_strength))
        _keep_while_used(key, lora_sd, out)
        return io.NodeOutput(out, out, "\n".join(lines))
