"""MoE expert pairs: the weak side of a mixture-of-experts model routes each token to worse experts.

A routed feed-forward layer scores its experts per token with a gate and runs the top k. The weak
side of the pair is the same model whose gates pick lower-ranked experts on ``reflect_weak`` calls
(the paper's "good vs bad experts" pair), on the same loaded weights: no copy, no reload.

The switch follows the LoRA-delta pattern (nodes/pair_types/lora/): forward hooks on the gate modules,
installed with ``ModelPatcher.set_injections`` (they come and go with the model's load), and an
APPLY_MODEL wrapper that reads the role tag of the call. Normal steps and ``reflect_strong`` calls
leave the gates' output untouched, so they are bit for bit the unpatched model.

Gates ComfyUI ships (0.3.64 to 0.8.0 and 2026 sources read): HiDream-I1's ``MoEGate`` (image
feed-forward of every double- and single-stream block) and Hunyuan3D 2.1's ``MoEGate``. Both score
with a softmax over a Linear map of the token and return ``(topk_idx, topk_weight, aux_loss)``.
Wan 2.2's "MoE" is two whole models switched by noise level, not a routed layer: pair each of those
like any other model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

import comfy.model_management

from ..comfy.model_types import KNOWN_GATES, gate_classes
from ..sampling.roles import WEAK, role_of_apply_model
from .base import PairType, RoleSwitch, attach_pair, new_key

LOWEST = -1
TOP_K_WEIGHTS = "top-k weights"
OWN_SCORES = "own scores"
WEIGHTINGS = (TOP_K_WEIGHTS, OWN_SCORES)


def find_gates(model) -> dict:
    """{module name: gate} of the routed-expert gates in a BaseModel, in model order."""
    classes = tuple(gate_classes())
    return {name: m for name, m in model.named_modules() if classes and isinstance(m, classes)}


def gate_shape(gate) -> tuple[int, int]:
    """(experts, experts per token) of a gate; raises for a scoring this module cannot redo."""
    scoring = getattr(gate, "scoring_func", "softmax")
    if scoring != "softmax":
        raise ValueError(
            f"W2SD Expert Pair: a gate scores its experts with {scoring!r}; only softmax "
            f"gates can be re-routed. Use a LoRA or CFG pair for this model."
        )
    return int(gate.n_routed_experts), int(gate.top_k)


@dataclass(frozen=True)
class Routing:
    """Which experts the weak side runs: ranks ``start .. start + k - 1`` of the gate's scores
    (``LOWEST``: the k lowest), weighted by what the top k would get (``TOP_K_WEIGHTS``: the routed
    path keeps its strength, only the experts change) or by their own scores (``OWN_SCORES``:
    the worse experts also count for less)."""

    start: int = LOWEST
    weighting: str = TOP_K_WEIGHTS

    def start_for(self, experts: int, k: int) -> int:
        return experts - k if self.start == LOWEST else min(self.start, experts - k)

    def describe(self, experts: int, k: int) -> str:
        start = self.start_for(experts, k)
        which = f"the {k} lowest-scoring" if start == experts - k else f"ranks {start + 1}-{start + k} (1 = best)"
        return f"{which} of {experts} experts, {self.weighting}"

    def route(self, gate, hidden_states):
        """The gate's ``(topk_idx, topk_weight, aux_loss)`` for the weak side: scores as the gate
        computes them, then the chosen ranks instead of the top k."""
        h = hidden_states.reshape(-1, hidden_states.shape[-1])
        weight = comfy.model_management.cast_to(gate.weight, dtype=h.dtype, device=h.device)
        scores = F.linear(h, weight, None).softmax(dim=-1)
        experts, k = int(gate.n_routed_experts), int(gate.top_k)
        start = self.start_for(experts, k)
        ranked, order = torch.sort(scores, dim=-1, descending=True)
        idx = order[:, start : start + k].contiguous()  # the layer views it flat
        w = (ranked[:, :k] if self.weighting == TOP_K_WEIGHTS else ranked[:, start : start + k]).contiguous()
        if k > 1 and getattr(gate, "norm_topk_prob", False):
            w = w / (w.sum(dim=-1, keepdim=True) + 1e-20)  # as the gate normalises its top k
        return idx, w, None


class ExpertRouting(RoleSwitch):
    """Per-model runtime: the gate hooks, active only while a weak call runs (``RoleSwitch`` sets
    that from the role tag of each call)."""

    idle = False

    def __init__(self, gate_names: list[str], routing: Routing):
        self.gate_names = gate_names
        self.routing = routing
        super().__init__()
        self.weak_calls = 0

    def forward_hooks(self) -> dict:
        return dict.fromkeys(self.gate_names, self._hook)

    def _hook(self, gate, args, output):
        if not self.active():
            return None  # normal and strong calls: the gate's own routing
        return self.routing.route(gate, args[0])

    def value_of_call(self, args, kwargs) -> bool:
        weak = role_of_apply_model(args, kwargs) == WEAK
        self.weak_calls += weak
        return weak


class ExpertPairType(PairType):
    kind = "moe_experts"


EXPERTS = ExpertPairType()


# ---------------------------------------------------------------- building the pair


def build_expert_pair(model, routing: Routing):
    """A clone of ``model`` whose weak reflection calls route to other experts. Returns (model,
    report lines, pair attachment). Raises ValueError naming the fix when there is nothing to route."""
    gates = find_gates(model.model)
    if not gates:
        known = ", ".join(family for _, _, family in KNOWN_GATES)
        raise ValueError(
            f"W2SD Expert Pair: this model ({type(model.model).__name__}) has no routed-expert "
            f"gates W2SD knows ({known}). For a dense model use W2SD Weak Model Builder "
            f"(LoRA) or a CFG / prompt pair."
        )
    shapes = {name: gate_shape(g) for name, g in gates.items()}
    if routing.start == 0:
        raise ValueError(
            "W2SD Expert Pair: weak_start_rank 0 is the model's own top-k routing, so the "
            "weak side would equal the strong one. Use -1 (lowest-scoring) or a rank >= 1."
        )
    if all(n <= k for n, k in shapes.values()):
        raise ValueError(
            "W2SD Expert Pair: every gate already runs all of its experts for each token, "
            "so no worse experts are left to route to. Use a LoRA or CFG pair."
        )
    lines = [f"W2SD Expert Pair: {len(gates)} routed layers ({gate_classes()[type(next(iter(gates.values())))]})"]
    for (n, k), count in _counts(shapes.values()).items():
        note = "" if n > k else " (all experts run: unchanged)"
        lines.append(
            f"{count} x: weak side routes each token to {routing.describe(n, k)}{note}; "
            f"strong side and normal steps: top {k}"
        )
    if routing.start != LOWEST and any(routing.start > n - k for n, k in shapes.values()):
        lines.append(
            "note: weak_start_rank is past the last full group of experts; the lowest-scoring group is used there"
        )
    lines.append("extra memory: none (same weights; one more gate projection per routed layer on weak calls)")
    out = model.clone()
    key = new_key("w2sd_experts")  # stacked pairs each keep their own
    runtime = ExpertRouting(list(gates), routing)
    runtime.install(out, key)
    n, k = next(iter(shapes.values()))
    attachment = attach_pair(
        out,
        model,
        EXPERTS,
        f"MoE experts: weak routes to {routing.describe(n, k)}",
        runtime=runtime,
        key=key,
        details={"gates": len(gates)},
    )
    if attachment.stacked_on is not None:
        lines.append(f"stacked on an earlier pair, which stays active: {attachment.stacked_on.summary}")
    return out, lines, attachment


def _counts(items) -> dict:
    out: dict = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out
