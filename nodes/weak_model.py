"""W2SD Weak Model Builder: a weak/strong model pair from one base and a LoRA (nodes/pair_types/lora/:
the LoRA-delta pair, no weight copies), or from two checkpoints (validated and passed through).
The node's report says what was detected and what it costs."""

from __future__ import annotations

import logging

import folder_paths
from comfy_api.latest import io

from .comfy import validate
from .comfy.model_types import prediction_name
from .common import CATEGORY, pair_marker, schema_extras
from .pair_types import two_models
from .pair_types.lora.build import LoraPair, build_lora_pair
from .pair_types.lora.files import keep_while_used, load_lora_file
from .sampling.roles import STRONG, WEAK

log = logging.getLogger("w2sd")

NONE = "None"


# ---------------------------------------------------------------- the report


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


def _warnings(pair: LoraPair) -> list[str]:
    a = pair.analysis
    if not a.fallback:
        return pair.warnings
    kinds = ", ".join(f"{k} x{v}" for k, v in sorted(a.fallback_kinds.items()))
    if pair.fallback_cached:
        how = (
            f"Memory: up to one copy of those weights ({_mb(pair.fallback_bytes)}) per role (final, "
            f"strong, weak) plus a backup of the originals; time: two copies of them per model call, "
            f"normal steps included (the role's weights in, the originals back)."
        )
    else:
        how = (
            f"They cover {_mb(pair.fallback_bytes)} of weights, too much to cache once per role, so "
            f"ComfyUI recomputes them at every role switch (slow; memory: a backup of the originals)."
        )
    return pair.warnings + [
        f"{len(a.fallback)} patches are not linear in the strength ({kinds}): they go "
        f"through ComfyUI weight hooks, switched per call. " + how
    ]


def report_lines(pair: LoraPair) -> list[str]:
    """What was detected and how it is applied, for the node's report output."""
    a, s = pair.analysis, pair.strengths
    counts = ", ".join(f"{k} {v}" for k, v in a.counts.items()) or "none"
    matched = a.file_keys - a.text_encoder_keys - len(a.unmatched_keys)
    lines = [
        f"W2SD Weak Model Builder: LoRA delta pair from '{pair.lora_name}'",
        f"matched: {a.patch_count} weights ({matched} file keys); in activation space: {len(a.layers)} "
        f"layers ({counts})" + (f"; via weight hooks: {len(a.fallback)}" if a.fallback else ""),
        f"strengths: final {s[None]:g} (fused into the weights), strong {s[STRONG]:g} "
        f"({s[STRONG] - s[None]:+g} on reflect_strong calls), weak {s[WEAK]:g} "
        f"({s[WEAK] - s[None]:+g} on reflect_weak calls)",
        f"extra memory: {_mb(a.factor_bytes())} of LoRA factors (shared with the fused patches; "
        f"cast once to the sampling device/dtype)",
    ]
    if a.text_encoder_keys:
        lines.append(
            f"ignored: {a.text_encoder_keys} text-encoder keys (this node patches the "
            f"diffusion model only; use a CLIP LoRA loader for those)"
        )
    lines += [f"WARNING: {w}" for w in _warnings(pair)]
    if pair.stacked_on:
        lines.append(f"stacked on an earlier pair, which stays active: {pair.stacked_on.get('summary')}")
    return lines


# ---------------------------------------------------------------- checkpoint mode


def validate_checkpoint_pair(strong, weak) -> list[str]:
    """Can ``weak`` stand in for ``strong`` in reflection? The samplers' own check
    (nodes/pair_types/two_models.py: latent format, flow or not, sigma range for non-flow models; a
    clone of the same checkpoint with other patches is refused there with the way out). Raises ValueError naming the mismatch; returns notes."""
    two_models.validate_pair(strong, weak)
    relation = two_models.relation(strong, weak)
    notes = []
    if relation == two_models.SAME:
        notes.append("the weak model is the model itself: only a prompt or CFG pair can differ")
    strong_ms, weak_ms = strong.get_model_object("model_sampling"), weak.get_model_object("model_sampling")
    if prediction_name(strong_ms) != prediction_name(weak_ms):
        notes.append(
            f"prediction types differ ({prediction_name(strong_ms)} / "
            f"{prediction_name(weak_ms)}): fine, reflection works on denoised outputs"
        )
    return notes


# ---------------------------------------------------------------- the node


def _strength_input(name: str, default: float, tooltip: str):
    return io.Float.Input(name, default=default, min=-100.0, max=100.0, step=0.01, tooltip=tooltip)


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
                "checkpoint as the weak model."
            ),
            inputs=[
                io.Model.Input(
                    "model",
                    tooltip="The base diffusion model, WITHOUT this LoRA applied.",
                    **pair_marker(off_when={"lora_name": [NONE, ""]}),
                ),
                io.Combo.Input(
                    "lora_name",
                    options=[NONE] + folder_paths.get_filename_list("loras"),
                    tooltip="The LoRA whose strength separates strong from weak (None in checkpoint mode).",
                ),
                _strength_input(
                    "final_strength", 0.8, "LoRA strength of the normal sampling steps (the image you get)."
                ),
                _strength_input(
                    "strong_strength", 1.5, "LoRA strength of the strong model (the denoising half of a reflection)."
                ),
                _strength_input(
                    "weak_strength", -1.5, "LoRA strength of the weak model (the inversion half of a reflection)."
                ),
                io.Model.Input(
                    "weak_model",
                    optional=True,
                    tooltip="Checkpoint mode: a second model of the same family to use as the weak model.",
                ),
            ],
            outputs=[
                io.Model.Output(
                    display_name="model",
                    tooltip="Connect to the W2SD sampler's model: LoRA at final_strength, role strengths travel with it.",
                ),
                io.Model.Output(
                    display_name="weak_model",
                    tooltip="The validated weak model (checkpoint mode) or the same model (LoRA mode).",
                ),
                io.String.Output(display_name="report", tooltip="What was detected and how it is applied."),
            ],
        )

    @classmethod
    def execute(cls, model, lora_name, final_strength, strong_strength, weak_strength, weak_model=None):
        validate.inputs(cls, locals())
        has_lora = lora_name not in (None, "", NONE)
        if has_lora and weak_model is not None:
            raise ValueError(
                "W2SD Weak Model Builder: give either a LoRA (lora_name) or a weak_model, "
                "not both: set lora_name to None for a checkpoint pair, or disconnect "
                "weak_model for a LoRA pair."
            )
        if not has_lora and weak_model is None:
            raise ValueError("W2SD Weak Model Builder: choose a LoRA (lora_name) or connect a weak_model")
        if weak_model is not None:
            notes = validate_checkpoint_pair(model, weak_model)
            lines = [
                "W2SD Weak Model Builder: checkpoint pair (validated: same latent format, "
                "same flow/non-flow family, same sigma range for non-flow models)"
            ] + [f"note: {n}" for n in notes]
            log.info("\n".join(lines))
            return io.NodeOutput(model, weak_model, "\n".join(lines))
        key, lora_sd = load_lora_file(lora_name)
        pair = build_lora_pair(
            model, lora_sd, lora_name, float(final_strength), float(strong_strength), float(weak_strength)
        )
        keep_while_used(key, lora_sd, pair.model)
        lines = report_lines(pair)
        for w in _warnings(pair):
            log.warning("W2SD Weak Model Builder: %s", w)
        log.info("\n".join(lines))
        return io.NodeOutput(pair.model, pair.model, "\n".join(lines))
