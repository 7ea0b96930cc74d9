"""The LoRA-delta pair: one base model, one LoRA, three strengths (final for normal steps, strong
and weak for the reflection or guidance passes), and no weight copies.

The LoRA is fused at ``final_strength`` by ordinary ``add_patches`` (what LoraLoaderModelOnly does),
so normal steps cost nothing extra. On role-tagged calls, forward hooks on the LoRA'd Linear/Conv
layers add ``(s_role - s_final)·ΔW·x`` in activation space (w2sd_core.lora_delta); they come and go
with the model as ModelPatcher injections and an APPLY_MODEL wrapper switches them per call.
Patches that are not linear in the strength go through ComfyUI weight hooks, one group per role.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import comfy.patcher_extension

from ...comfy import compat
from ...sampling.roles import PAIR_ATTACHMENT, STRONG, WEAK
from ..base import PairAttachment, attach_pair, new_key, pair_attachment
from .analysis import LoraAnalysis, analyse_lora, check_base_model, check_magnitudes
from .checks import LORA
from .runtime import LoraDeltaRuntime, WeightHookFallback

log = logging.getLogger("w2sd")

#: Prefix of the injection / wrapper / callback keys; each built model gets its own suffix, so two
#: builders stacked on one model each keep their own hooks.
KEY_PREFIX = "w2sd_lora_delta"
#: The weight-hook fallback caches one patched copy per role only while the three copies together
#: stay below this fraction of the model's size.
MAX_CACHED_FRACTION = 0.5


@dataclass
class LoraPair:
    """What building a pair made: the model, how the LoRA applies, and what the user should know."""

    model: object
    analysis: LoraAnalysis
    lora_name: str
    strengths: dict  # None (final) / STRONG / WEAK -> strength
    warnings: list = field(default_factory=list)
    fallback_bytes: int = 0  # weights the weight hooks cover
    fallback_cached: bool = False  # one patched copy per role (else recomputed per switch)
    stacked_on: PairAttachment | None = None  # an earlier builder's pair on the same model

    @property
    def attachment(self) -> PairAttachment:
        return self.model.get_attachment(PAIR_ATTACHMENT)


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
            f"--disable-dynamic-vram, or use a plain LoRA/LoCon for the pair."
        ) from e
    log.warning(
        "W2SD Weak Model Builder: %s patches need weight hooks; dynamic VRAM has none, so "
        "the pair uses a static copy of the model (more memory; --disable-dynamic-vram "
        "avoids the copy)",
        kinds,
    )
    return static


def _analyse(model, lora_sd: dict, lora_name: str) -> tuple[LoraAnalysis, list]:
    analysis = analyse_lora(model, lora_sd)
    if analysis.patch_count == 0:
        te = f"; {analysis.text_encoder_keys} of them are text-encoder keys" if analysis.text_encoder_keys else ""
        raise ValueError(
            f"W2SD Weak Model Builder: the LoRA '{lora_name}' matches none of this model's weights "
            f"({analysis.file_keys} keys in the file{te}). Is it a LoRA for another model family?"
        )
    warnings = check_base_model(model, analysis, lora_name)
    if analysis.unmatched_keys:
        warnings.append(
            f"partial match: {len(analysis.unmatched_keys)} of {analysis.file_keys - analysis.text_encoder_keys} "
            f"diffusion-model keys of the file match no weight of this model and are ignored "
            f"(first: {', '.join(analysis.unmatched_keys[:3])})"
        )
    if analysis.skipped:
        warnings.append(
            f"{len(analysis.skipped)} patches skipped (their shapes do not fit this model): "
            + "; ".join(f"{k}: {why}" for k, why in analysis.skipped[:3])
        )
    return analysis, warnings


def _add_fallback(out, model, analysis: LoraAnalysis, strengths: dict, key: str) -> tuple[int, bool]:
    fallback = WeightHookFallback(analysis.fallback, strengths)
    fallback.register(out)
    out.add_wrapper_with_key(
        comfy.patcher_extension.WrappersMP.APPLY_MODEL, key + ":hooks", fallback.apply_model_wrapper
    )
    weights = fallback.weight_bytes(model)
    # Three cached copies of much more would rival the model itself: then ComfyUI recomputes the
    # patched weights at each switch instead (slow, but no extra copies beyond the backup).
    cached = 3 * weights <= MAX_CACHED_FRACTION * model.model_size()
    if cached:
        out.add_wrapper_with_key(
            comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, key + ":hooks", WeightHookFallback.outer_sample_wrapper
        )
    return weights, cached


def build_lora_pair(
    model, lora_sd: dict, lora_name: str, final_strength: float, strong_strength: float, weak_strength: float
) -> LoraPair:
    analysis, warnings = _analyse(model, lora_sd, lora_name)
    check_magnitudes(analysis, lora_name, (final_strength, strong_strength, weak_strength))
    out = (_static_patcher(model, analysis) if analysis.fallback else model).clone()
    key = new_key(KEY_PREFIX)
    strengths = {None: final_strength, STRONG: strong_strength, WEAK: weak_strength}
    if analysis.fused:
        out.add_patches(analysis.fused, final_strength)
    runtime = None
    if analysis.layers:
        role_delta = {STRONG: strong_strength - final_strength, WEAK: weak_strength - final_strength}
        runtime = LoraDeltaRuntime(analysis.layers, role_delta, key)
        runtime.install(out, key)
    pair = LoraPair(out, analysis, lora_name, strengths, warnings, stacked_on=pair_attachment(model))
    if analysis.fallback:
        pair.fallback_bytes, pair.fallback_cached = _add_fallback(out, model, analysis, strengths, key)
    if strong_strength == weak_strength:
        warnings.append(
            "strong_strength equals weak_strength, so the pair's sides do not differ: the W2SD samplers "
            "plan no reflection or guidance for it and sample plainly with the LoRA at final_strength"
        )
    attach_pair(
        out,
        model,
        LORA,
        f"LoRA '{lora_name}' strong {strong_strength:g} / weak {weak_strength:g} (final {final_strength:g})",
        runtime=runtime,
        key=key,
        sides_differ=strong_strength != weak_strength,
        moves_roles=strong_strength != final_strength or weak_strength != final_strength,
        batches_per_chunk=not analysis.fallback,
        details={
            "lora": lora_name,
            "final_strength": final_strength,
            "strong_strength": strong_strength,
            "weak_strength": weak_strength,
            "layers": len(analysis.layers),
            "fallback_patches": len(analysis.fallback),
            # what the builder patches, so a LoRA loader applying the same file again downstream
            # can be recognised (LoraPairType.check_model); the model holds these tensors anyway
            "patches": {**analysis.fused, **analysis.fallback},
        },
    )
    return pair
