"""The two sides of a W2SD Guider's pair as ComfyUI's ``sampling_function`` takes them: one side's
model, conds, CFG and options (``Side``), both sides in one batched model call, and the weak side of
one run (``WeakSide``: a second checkpoint's model, processed conds and options)."""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from typing import NamedTuple

import comfy.model_patcher
import comfy.patcher_extension
import comfy.samplers

from ..pair_types.base import pair_attachment, sides_batch_per_chunk
from . import roles

log = logging.getLogger("w2sd")


class Side(NamedTuple):
    """One side of the pair as ``sampling_function`` takes it."""

    model: object
    uncond: list | None
    cond: list | None
    cfg: float
    model_options: dict

    def predict(self, x, timestep, seed):
        return comfy.samplers.sampling_function(
            self.model, x, timestep, self.uncond, self.cond, self.cfg, model_options=self.model_options, seed=seed
        )

    def conds_used(self) -> list:
        """[cond, uncond] as sampling_function evaluates them (no uncond at cfg 1)."""
        cfg1 = math.isclose(self.cfg, 1.0) and not self.model_options.get("disable_cfg1_optimization", False)
        return [self.cond, None if cfg1 else self.uncond]


def batchable(strong: Side, weak: Side, patcher) -> bool:
    """One model call can serve both sides when they run the same model (with the same options:
    the caller checks), nothing replaces ComfyUI's cond batching, and the model's own pair, if
    any, can tell the sides apart per chunk of the batch (a LoRA delta can)."""
    return (
        strong.model is weak.model
        and "sampler_calc_cond_batch_function" not in strong.model_options
        and sides_batch_per_chunk(pair_attachment(patcher))
    )


def sides_batched(strong: Side, weak: Side, x, timestep):
    """Both sides' predictions from one ``calc_cond_batch`` over their four conds, then each side's
    pre-CFG and CFG functions as ``sampling_function`` applies them."""
    conds = strong.conds_used() + weak.conds_used()
    options = roles.with_role(
        strong.model_options, roles.GUIDE, **{roles.COND_ROLES_KEY: [roles.STRONG] * 2 + [roles.WEAK] * 2}
    )
    out = comfy.samplers.calc_cond_batch(strong.model, conds, x, timestep, options)
    return tuple(
        _cfg(side, side_conds, side_out, x, timestep)
        for side, side_conds, side_out in ((strong, conds[:2], out[:2]), (weak, conds[2:], out[2:]))
    )


def _cfg(side: Side, conds, out, x, timestep):
    for fn in side.model_options.get("sampler_pre_cfg_function", []):
        out = fn(
            {
                "conds": conds,
                "conds_out": out,
                "cond_scale": side.cfg,
                "timestep": timestep,
                "input": x,
                "sigma": timestep,
                "model": side.model,
                "model_options": side.model_options,
            }
        )
    return comfy.samplers.cfg_function(
        side.model,
        out[0],
        out[1],
        side.cfg,
        x,
        timestep,
        model_options=side.model_options,
        cond=conds[0],
        uncond=conds[1],
    )


@dataclass
class WeakSide:
    """What the weak reflection pass of one run calls: its model (the strong one unless a second
    checkpoint), its processed conds (None: the strong conds), its own model options (None: the
    call's), and the second checkpoint's patcher, whose context wraps the run."""

    model: object
    conds: dict | None = None
    options: dict | None = None
    patcher: object = None

    @contextlib.contextmanager
    def running(self):
        if self.patcher is None:
            yield
            return
        self.patcher.pre_run()
        try:
            yield
        finally:
            self.patcher.cleanup()

    def call_options(self, model_options: dict) -> dict:
        """The options of one weak call: the weak model's own, tagged with the role, with the
        schedule the sampler is running (some model patches read it)."""
        if self.options is None:
            return model_options
        options = roles.with_role(self.options, roles.WEAK)
        sample_sigmas = model_options.get("transformer_options", {}).get("sample_sigmas")
        if sample_sigmas is not None:
            options["transformer_options"]["sample_sigmas"] = sample_sigmas
        return options


def drop_hooks(conds):
    """Hooks on conds are registered on the strong model; a second checkpoint cannot run them."""
    dropped = False
    for key in conds:
        for c in conds[key]:
            dropped |= c.pop("hooks", None) is not None
    if dropped:
        log.warning("W2SD Guider: hooks on the weak conditioning are ignored for the weak checkpoint")


def own_controls(conds):
    """A second checkpoint gets its own ControlNet objects. ComfyUI prepares a ControlNet for the
    model it runs with (``pre_run``; a Control-LoRA even builds its control model from that model's
    weights), so objects shared with the strong conds would end up prepared for only one of the two
    models. Copies share the loaded control weights."""
    for key in conds:
        for c in conds[key]:
            if c.get("control") is not None:
                c["control"] = _copy_control_chain(c["control"])


def model_options_of(patcher) -> dict:
    """A weak model's own options, prepared like CFGGuider prepares the strong model's."""
    options = comfy.model_patcher.create_model_options_clone(patcher.model_options)
    transformer_options = options.setdefault("transformer_options", {})
    comfy.patcher_extension.merge_nested_dicts(
        transformer_options.setdefault("wrappers", {}), patcher.wrappers, copy_dict1=False
    )
    comfy.patcher_extension.merge_nested_dicts(
        transformer_options.setdefault("callbacks", {}), patcher.callbacks, copy_dict1=False
    )
    return options


def _copy_control_chain(control):
    """``control.copy()`` copies one ControlNet, not the ones stacked under it."""
    copy = control.copy()
    if control.previous_controlnet is not None:
        copy.set_previous_controlnet(_copy_control_chain(control.previous_controlnet))
    return copy
