"""W2SD Guider: a CFGGuider that also knows the weak side (weak model, weak prompt, weak CFG).

Normal sampler steps carry no role tag and run exactly as CFGGuider runs them. Reflection calls
carry ``reflect_strong`` / ``reflect_weak`` (nodes/sampling/roles.py); ``predict_noise`` dispatches on it:

* strong: the sampling model and conds at ``strong_cfg``;
* weak: the weak conds at ``weak_cfg``, on the weak model if one is given.

Two checkpoints: the weak ModelPatcher rides on a clone of the strong one as an additional model,
so ComfyUI loads both at the start of sampling (never per step). The weak conds are encoded for the
weak model (its own ``extra_conds``), and weak calls run in its context (``pre_run`` / ``cleanup``)
with its own model options.
"""

from __future__ import annotations

import contextlib
import logging

import torch

import comfy.samplers

from ...w2sd_core.guidance import guide
from ..comfy import compat
from ..pair_types import two_models
from ..pair_types.base import pair_attachment
from . import roles
from .reflective_sampler import ReflectingKSAMPLER, wrap_sampler
from .role_cfgs import KnowsWeakSide
from .sides import Side, WeakSide, drop_hooks, model_options_of, own_controls, batchable, sides_batched

log = logging.getLogger("w2sd")

#: Extra keys of the guider's conds dict. ComfyUI's CFGGuider copies, hook-registers, loads models
#: for and cleans up every key of that dict, so the weak conds get all of that for free.
WEAK_POSITIVE = "w2sd_weak_positive"
WEAK_NEGATIVE = "w2sd_weak_negative"
WEAK_KEYS = (WEAK_POSITIVE, WEAK_NEGATIVE)
#: Key of the weak model among the strong clone's additional models.
WEAK_MODEL_KEY = "w2sd_weak_model"


class W2SDGuider(comfy.samplers.CFGGuider, KnowsWeakSide):
    evaluates_guidance = True

    def __init__(self, model_patcher, weak_model=None):
        relation = two_models.checked_relation(model_patcher, weak_model)
        if relation == two_models.SEPARATE:
            # A clone, so the user's MODEL keeps no trace of the pairing.
            model_patcher = model_patcher.clone()
            model_patcher.set_additional_models(WEAK_MODEL_KEY, [weak_model])
        super().__init__(model_patcher)
        self.weak_relation = relation
        self._options_model = weak_model if relation == two_models.OPTIONS else None
        if relation == two_models.OPTIONS:
            log.info(
                "W2SD Guider: the weak side is the same weights with other per-call patches: %s",
                ", ".join(two_models.option_differences(model_patcher, weak_model)) or "options",
            )
        self.strong_cfg = -1.0
        self.weak_cfg = -1.0
        self.has_weak_conds = False
        #: The weak pass of the run in progress (None outside sampling).
        self.weak: WeakSide | None = None

    # ------------------------------------------------------------ settings
    def set_conds(self, positive, negative, weak_positive=None, weak_negative=None):
        weak_positive = positive if weak_positive is None else weak_positive
        weak_negative = negative if weak_negative is None else weak_negative
        self.has_weak_conds = not (
            two_models.conds_equal(weak_positive, positive) and two_models.conds_equal(weak_negative, negative)
        )
        conds = {"positive": positive, "negative": negative}
        if self.has_weak_conds or self.weak_relation == two_models.SEPARATE:
            # A second checkpoint needs the conds encoded for itself even when they are the same.
            conds[WEAK_POSITIVE] = weak_positive
            conds[WEAK_NEGATIVE] = weak_negative
        self.inner_set_conds(conds)

    def set_cfgs(self, cfg, strong_cfg=-1.0, weak_cfg=-1.0):
        self.set_cfg(cfg)
        self.strong_cfg = float(strong_cfg)
        self.weak_cfg = float(weak_cfg)

    def own_role_cfgs(self) -> tuple[float, float]:
        return self.strong_cfg, self.weak_cfg

    def role_cfg(self, role) -> float:
        """-1 means "the sampling cfg" (which a W2SD Sampler may set for the call, see role_cfgs.py)."""
        value = self.strong_cfg if role == roles.STRONG else self.weak_cfg
        return self.cfg if value < 0 else value

    def w2sd_differences(self) -> list[str]:
        """What differs between the weak and strong side besides CFG (the sampler adds that)."""
        out = []
        if self.weak_relation == two_models.SEPARATE:
            out.append("weak model (second checkpoint)")
        elif self.weak_relation == two_models.OPTIONS:
            out.append("weak model (same weights, other model patches)")
        if self.has_weak_conds:
            out.append("weak conditioning")
        return out

    # ------------------------------------------------------------ sampling
    @compat.overrides("comfy.samplers:CFGGuider.sample")
    def sample(
        self, noise, latent_image, sampler, sigmas, denoise_mask=None, callback=None, disable_pbar=False, seed=None
    ):
        compat.require()
        if not isinstance(sampler, ReflectingKSAMPLER):
            if isinstance(sampler, comfy.samplers.KSAMPLER) and type(sampler).sample is comfy.samplers.KSAMPLER.sample:
                # The guider has no plan inputs: with a plain sampler it reflects with the defaults.
                log.info(
                    "W2SD Guider: plain sampler given, reflecting with the default plan (use W2SD Sampler to choose it)"
                )
                sampler = wrap_sampler(sampler)
            else:
                log.warning(
                    "W2SD Guider: %s cannot be wrapped for reflection; sampling without it", type(sampler).__name__
                )
        return super().sample(noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed)

    @compat.overrides("comfy.samplers:CFGGuider.inner_sample")
    def inner_sample(
        self, noise, latent_image, device, sampler, sigmas, denoise_mask, callback, disable_pbar, seed, **kwargs
    ):
        # kwargs: what the running ComfyUI adds (latent_shapes since late 2025), passed on as is.
        if compat.multigpu(self.model_options) and pair_attachment(self.model_patcher) is not None:
            raise ValueError(
                "W2SD: a LoRA or expert pair switches its sides inside the model, which ComfyUI's "
                "multi-GPU clones do not carry; remove the multi-GPU node or pair two checkpoints."
            )
        with self._weak_conds_apart() as weak_conds:
            self.weak = self._weak_side(weak_conds, noise, latent_image, device, denoise_mask, seed, kwargs)
            try:
                with self.weak.running():
                    return super().inner_sample(
                        noise,
                        latent_image,
                        device,
                        sampler,
                        sigmas,
                        denoise_mask,
                        callback,
                        disable_pbar,
                        seed,
                        **kwargs,
                    )
            finally:
                self.weak = None

    @contextlib.contextmanager
    def _weak_conds_apart(self):
        """The weak conds leave ``self.conds`` while CFGGuider processes the strong ones (it would
        copy the strong ControlNet and area conds into them and encode them for the strong model),
        and come back afterwards, as processed, so ComfyUI's cleanup also releases their ControlNets."""
        weak_conds = {k: self.conds.pop(k) for k in WEAK_KEYS if k in self.conds}
        try:
            yield weak_conds
        finally:
            self.conds.update(weak_conds)

    def _weak_side(self, weak_conds, noise, latent_image, device, denoise_mask, seed, kwargs) -> "WeakSide":
        """The weak pass for this run; processes ``weak_conds`` in place, for the weak model."""
        patcher = None
        if self.weak_relation == two_models.SEPARATE:
            patcher = self.model_patcher.get_additional_models_with_key(WEAK_MODEL_KEY)[0]
        model = patcher.model if patcher is not None else self.inner_model
        if patcher is not None:
            compat.pass_latent_shapes(model, kwargs)
        processed = None
        if weak_conds:
            conds = {"positive": weak_conds[WEAK_POSITIVE], "negative": weak_conds[WEAK_NEGATIVE]}
            if patcher is not None:
                drop_hooks(conds)
                own_controls(conds)
            if latent_image is not None and torch.count_nonzero(latent_image) > 0:
                latent_image = model.process_latent_in(latent_image)
            processed = comfy.samplers.process_conds(
                model, noise, conds, device, latent_image, denoise_mask, seed, **compat.process_conds_kwargs(kwargs)
            )
            weak_conds.update({WEAK_POSITIVE: processed["positive"], WEAK_NEGATIVE: processed["negative"]})
        options_from = patcher if patcher is not None else self._options_model
        options = model_options_of(options_from) if options_from is not None else None
        return WeakSide(model=model, conds=processed, options=options, patcher=patcher)

    @compat.overrides("comfy.samplers:CFGGuider.predict_noise")
    def predict_noise(self, x, timestep, model_options={}, seed=None):
        role = roles.role_of(model_options.get("transformer_options"))
        if role is None:
            return super().predict_noise(x, timestep, model_options, seed)
        if role == roles.GUIDE:
            return self._guided(x, timestep, model_options, seed)
        # No disable_cfg1_optimization here: sampling_function decides from the cfg passed per call,
        # so a role at cfg 1 skips its uncond pass and a role at another cfg computes it.
        return self._side(role, model_options).predict(x, timestep, seed)

    def _side(self, role, model_options) -> tuple:
        """One side's (model, uncond, cond, cfg) and call options, as sampling_function takes them."""
        conds, model = self.conds, self.inner_model
        if role == roles.WEAK:
            conds, model = self.weak.conds or conds, self.weak.model
            model_options = self.weak.call_options(model_options)
        options = roles.with_role(model_options, role)
        return Side(model, conds.get("negative", None), conds.get("positive", None), self.role_cfg(role), options)

    def _guided(self, x, timestep, model_options, seed):
        """``D_s + w (D_s - D_w)``, each side after its own CFG; both sides in one batched model
        call where they share the model and its options (a prompt or CFG pair)."""
        w = model_options["transformer_options"][roles.GUIDANCE_KEY]
        strong, weak = self._side(roles.STRONG, model_options), self._side(roles.WEAK, model_options)
        if self.weak.options is None and batchable(strong, weak, self.model_patcher):
            d_strong, d_weak = sides_batched(strong, weak, x, timestep)
        else:
            d_weak = weak.predict(x, timestep, seed)  # weak first: CFG++ keeps the strong uncond
            d_strong = strong.predict(x, timestep, seed)
        return guide(d_strong, d_weak, w)


def make_guider(
    model,
    positive,
    negative,
    cfg,
    weak_model=None,
    weak_positive=None,
    weak_negative=None,
    strong_cfg=-1.0,
    weak_cfg=-1.0,
) -> W2SDGuider:
    guider = W2SDGuider(model, weak_model)
    guider.set_conds(positive, negative, weak_positive, weak_negative)
    guider.set_cfgs(cfg, strong_cfg, weak_cfg)
    return guider
