"""A LoRA pair at sampling time: the activation-space deltas switched per call by the role tag
(forward hooks installed as ModelPatcher injections, an APPLY_MODEL wrapper), and the weight-hook
fallback for patches that are not linear in the strength."""

from __future__ import annotations

import logging

import torch

import comfy.hooks
import comfy.patcher_extension

from ....w2sd_core.lora_delta import LayerDelta
from ...sampling.roles import COND_ROLES_KEY, GUIDE, STRONG, WEAK, options_of_apply_model, role_of, role_of_apply_model
from ..base import RoleSwitch
from .analysis import split_key

log = logging.getLogger("w2sd")


class LoraDeltaRuntime(RoleSwitch):
    """The per-model state: role strengths, the active strength (thread-local, ``RoleSwitch``), the
    forward hooks that add each layer's delta at that strength.

    One instance per built model; its hooks are OwnedHooks (nodes/pair_types/hooks.py).
    """

    idle = 0.0
    with_kwargs = True

    def __init__(self, layers: dict[str, LayerDelta], strengths: dict, key: str):
        self.layers = layers
        self.strengths = strengths  # role -> s_role - s_final
        self.key = key
        self._audit_pending = True
        self._fired: set = set()
        super().__init__()
        self.calls = {STRONG: 0, WEAK: 0, GUIDE: 0, None: 0}

    def forward_hooks(self) -> dict:
        return {name: self._hook(name) for name in self.layers}

    def install(self, out, key: str) -> None:
        super().install(out, key)
        out.add_callback_with_key(comfy.patcher_extension.CallbacksMP.ON_DETACH, key, self.on_detach)
        out.add_callback_with_key(comfy.patcher_extension.CallbacksMP.ON_CLEANUP, key, self.release)

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
        # The hook must not hold ``self``: the runtime holds its hooks, and that cycle would keep
        # the LoRA factors (and any casts of them) alive after the model is gone, until Python's
        # cyclic collector happens to run.
        delta, local, fired = self.layers[name], self._local, self._fired

        def hook(module, args, kwargs, output):
            strength = getattr(local, "value", 0.0)
            if not _any(strength):
                return None
            x = args[0] if args else kwargs.get("input", kwargs.get("x"))
            if getattr(local, "audit", False):
                fired.add(name)
            if isinstance(strength, tuple):
                return _add_per_chunk(delta, output, x, strength, name)
            return delta.add_to(output, x, strength)

        return hook

    def value_of_call(self, args, kwargs):
        """The call's strength; a batched guided call gets one per chunk of its batch."""
        options = options_of_apply_model(args, kwargs)
        role = role_of(options)
        if role == GUIDE:
            cond_roles = options.get(COND_ROLES_KEY, ())
            return tuple(self.strengths.get(cond_roles[i], 0.0) for i in options.get("cond_or_uncond", ()))
        return self.strengths.get(role, 0.0)

    def apply_model_wrapper(self, executor, *args, **kwargs):
        role = role_of_apply_model(args, kwargs)
        strength = self.value_of_call(args, kwargs)
        self.calls[role if role in (STRONG, WEAK, GUIDE) else None] += 1
        audit = _any(strength) and self._audit_pending
        self._local.audit = audit
        try:
            with self.active_as(strength):
                out = executor(*args, **kwargs)
        finally:
            self._local.audit = False
        if audit:
            self._audit_pending = False
            self._warn_unfired()
        return out

    def _warn_unfired(self) -> None:
        missing = sorted(set(self.layers) - self._fired)
        if missing:
            # A layer whose weight is used without calling the module (custom forward code) never
            # sees its hook: say so instead of running a silently partial delta.
            log.warning(
                "W2SD LoRA delta: %d of %d LoRA'd layers were not called as modules in a "
                "reflection pass, so the role strengths do not reach them (first: %s)",
                len(missing),
                len(self.layers),
                ", ".join(missing[:5]),
            )


def _any(strength) -> bool:
    return any(strength) if isinstance(strength, tuple) else strength != 0.0


def _add_per_chunk(delta, output, x, strengths: tuple, name: str):
    """A batched guided call: chunk j of the batch (one cond list each) gets strength j."""
    k = len(strengths)
    if output.shape[0] % k or x.shape[0] != output.shape[0]:
        raise RuntimeError(
            f"W2SD LoRA delta: layer {name} does not see the batch first, so one batched "
            f"call cannot give each side its strength; use mode reflect with this model."
        )
    b = output.shape[0] // k
    parts = [
        delta.add_to(output.narrow(0, j * b, b), x.narrow(0, j * b, b), s) if s else output.narrow(0, j * b, b)
        for j, s in enumerate(strengths)
    ]
    if all(p.data_ptr() == output.narrow(0, j * b, b).data_ptr() for j, p in enumerate(parts)):
        return output  # added in place
    return torch.cat(parts)


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
        # One combination per role, for the conds' current group: keyed by id() and kept for the
        # model's life, a new group each run (new conds) would pile up.
        cached = self._combined.get(role)
        if cached is None or cached[0] is not previous:
            cached = (previous, previous.clone_and_combine(self.groups[role]))
            self._combined[role] = cached
        return cached[1]

    def apply_model_wrapper(self, executor, *args, **kwargs):
        role = role_of_apply_model(args, kwargs)
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
            t = sd.get(split_key(key)[0])
            if t is not None:
                total += t.numel() * t.element_size()
        return total
