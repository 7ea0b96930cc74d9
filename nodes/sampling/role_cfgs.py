"""Each role's CFG and what differs between the sides of a run: the guider's own values, the
sampler's, or the sampling cfg, and the pair the MODEL carries."""

from __future__ import annotations

import math
from dataclasses import dataclass

import comfy.samplers

from ..pair_types.base import attachment_moves_roles, attachment_sides_differ, describe_attachment, pair_attachment


def cfg_pair_capable(guider) -> bool:
    """A plain CFGGuider (or a subclass keeping its predict_noise) with negative conds: setting its
    ``cfg`` is all it takes to evaluate it at another guidance scale."""
    return type(guider).predict_noise is comfy.samplers.CFGGuider.predict_noise and "negative" in getattr(
        guider, "original_conds", {}
    )


class KnowsWeakSide:
    """A guider with a weak side of its own (W2SD Guider): its own CFG per role (-1 = none) and
    what differs between its sides besides CFG. ``evaluates_guidance``: it answers a call tagged
    ``roles.GUIDE`` with the guided prediction itself (batching the two sides where it can)."""

    evaluates_guidance = False

    def own_role_cfgs(self) -> tuple[float, float]:
        raise NotImplementedError

    def w2sd_differences(self) -> list[str]:
        raise NotImplementedError


@dataclass(frozen=True)
class RoleCfg:
    cfg: float  # the CFG the role's calls run at
    override: float | None  # what the sampler sets on the guider for those calls (None: nothing)


@dataclass(frozen=True)
class RoleCfgs:
    cfg: float  # the guider's sampling cfg
    strong: RoleCfg
    weak: RoleCfg
    differences: list
    cfg_only: bool = False  # the sides differ by CFG alone (same model, conds and options)


def _role_cfg(own: float, requested: float, base: float) -> RoleCfg:
    """The guider's own value wins; else the sampler's, set on the guider for the call; else the
    sampling cfg."""
    if own >= 0:
        return RoleCfg(own, None)
    if requested >= 0:
        return RoleCfg(requested, requested)
    return RoleCfg(base, None)


def resolve_role_cfgs(guider, strong_cfg: float, weak_cfg: float) -> RoleCfgs:
    """Who sets each role's CFG, and what differs between the weak and the strong side.

    The CFG pair with a plain CFGGuider: the guider's ``cfg`` is set for the duration of a role
    call and put back (``spans.temporary_cfg``). That keeps ComfyUI's own CFG path, including
    its CFG-1 shortcut (a weak pass at cfg 1 skips the uncond pass) and any sampler_cfg_function
    patches, which wrapping the CFG formula from outside would bypass or duplicate.
    """
    base = float(getattr(guider, "cfg", 1.0))
    if isinstance(guider, KnowsWeakSide):
        own, differences = guider.own_role_cfgs(), list(guider.w2sd_differences())
    else:
        own, differences = (-1.0, -1.0), []
        if (strong_cfg >= 0 or weak_cfg >= 0) and not cfg_pair_capable(guider):
            raise ValueError(
                f"W2SD Sampler: strong_cfg / weak_cfg need a guider with a cfg and a "
                f"negative prompt (CFGGuider or W2SD Guider); {type(guider).__name__} "
                f"has none. Set both to -1, or use W2SD Guider."
            )
    strong = _role_cfg(float(own[0]), float(strong_cfg), base)
    weak = _role_cfg(float(own[1]), float(weak_cfg), base)
    attachment = pair_attachment(getattr(guider, "model_patcher", None))
    # A LoRA pair at equal strong and weak strengths is no difference: nothing is planned and
    # nothing extra is evaluated, so the run is plain sampling with the LoRA at final_strength.
    differs = attachment is not None and attachment_sides_differ(attachment)
    if differs:
        differences.append(describe_attachment(attachment))
    # A CFG-only pair is guided as plain CFG on normal (untagged) calls: only right when role
    # calls run the same weights as normal ones.
    cfg_only = not differences and not (attachment is not None and attachment_moves_roles(attachment))
    if not math.isclose(strong.cfg, weak.cfg):
        differences.insert(len(differences) - differs, f"CFG {strong.cfg:g} (strong) vs {weak.cfg:g} (weak)")
    else:
        cfg_only = False
    return RoleCfgs(base, strong, weak, differences, cfg_only)
