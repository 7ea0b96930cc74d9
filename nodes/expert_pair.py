"""W2SD Expert Pair (MoE): the weak side of a mixture-of-experts model is the same model routing each
token to worse experts on weak reflection calls (nodes/pair_types/moe.py)."""

from __future__ import annotations

import logging

from comfy_api.latest import io

from .comfy import compat
from .common import CATEGORY, pair_marker, schema_extras
from .pair_types.moe import LOWEST, TOP_K_WEIGHTS, WEIGHTINGS, Routing, build_expert_pair

log = logging.getLogger("w2sd")


class W2SDExpertPairBuilder(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="W2SDExpertPairBuilder",
            display_name="W2SD Expert Pair (MoE)",
            category=CATEGORY,
            **schema_extras("moe", "experts"),
            description=(
                "Builds a weak/strong pair from one mixture-of-experts model (HiDream, Hunyuan3D "
                "2.1): on weak reflection passes every routed layer sends each token to worse "
                "experts than its gate picks; normal steps and strong passes are the model "
                "exactly. Same weights, no copy. Connect the output to a W2SD sampler's model."
            ),
            inputs=[
                io.Model.Input(
                    "model", tooltip="A mixture-of-experts diffusion model (e.g. HiDream-I1).", **pair_marker()
                ),
                io.Int.Input(
                    "weak_start_rank",
                    default=LOWEST,
                    min=-1,
                    max=256,
                    tooltip="Which experts the weak side runs, by the gate's ranking (0 = best). "
                    "-1 = the k lowest-scoring (default). r >= 1 = the k experts from "
                    "rank r on (1 = the runners-up: a milder weak side).",
                ),
                io.Combo.Input(
                    "weak_weights",
                    options=list(WEIGHTINGS),
                    default=TOP_K_WEIGHTS,
                    tooltip="How the weak experts are mixed. top-k weights: with the weights "
                    "the gate gives its top k (same strength, other experts). own "
                    "scores: with their own, smaller scores (the routed part fades).",
                ),
            ],
            outputs=[
                io.Model.Output(
                    display_name="model", tooltip="The model with the weak routing switched on for weak passes only."
                ),
                io.String.Output(display_name="report", tooltip="Routed layers found and the weak routing."),
            ],
        )

    @classmethod
    def execute(cls, model, weak_start_rank=LOWEST, weak_weights=TOP_K_WEIGHTS) -> io.NodeOutput:
        compat.require()
        if weak_weights not in WEIGHTINGS:
            raise ValueError(f"W2SD Expert Pair: weak_weights must be one of {', '.join(WEIGHTINGS)}")
        out, lines, _ = build_expert_pair(model, Routing(int(weak_start_rank), weak_weights))
        log.info("\n".join(lines))
        return io.NodeOutput(out, "\n".join(lines))
