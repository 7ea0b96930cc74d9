"""What several W2SD nodes share: their category and the inputs defined once (the plan, the CFG
pair, the weak side), with the defaults read from ``w2sd_core``."""

from __future__ import annotations

from comfy_api.latest import io

from .comfy import compat

from ..w2sd_core import (  # noqa: F401 (DEFAULT_GUIDANCE, DEFAULT_MODE, MODES re-exported)
    DEFAULT_END_PERCENT,
    DEFAULT_GUIDANCE,
    DEFAULT_INVERSION,
    DEFAULT_MODE,
    DEFAULT_PLAN,
    INVERSIONS,
    MODES,
)

CATEGORY = "sampling/w2sd"

#: From the core, where the measurements behind them live. A sigma window has no model-free
#: meaning, so the core names its window as a percent of the denoising (DEFAULT_END_PERCENT).
DEFAULT_REFLECT_STEPS = DEFAULT_PLAN.steps
DEFAULT_REPEATS = DEFAULT_PLAN.repeats

TIP_REFLECT_STEPS = (
    "λ: how many steps, from the first, W2SD works on. -1 = every step but the last "
    "(default, and the paper's), 0 = off: the wrapped sampler exactly. Nothing changes "
    "until a weak side differs from the strong one (weak model, weak prompt or weak CFG)."
)
TIP_END_PERCENT = (
    "Work only while the schedule is above this point of the denoising (0 = start, "
    "1 = end, the default: no limit). Small windows (0.2-0.3) barely change an image; "
    "0.8 spares the last steps, where reflection's inversion error is largest."
)
TIP_REPEATS = "Reflections per reflected step (Z-Sampling's T_max). Each costs two more model evaluations."
TIP_INVERSION = (
    "Noise label for the weak inversion. next: where the latent sits (exact DDIM "
    "inversion, default). current: the paper's Eq. 5. official: what the authors' "
    "code computes (eps/v models only, not flow models)."
)
TIP_MODE = (
    "What the planned steps get. guide (default): weak-to-strong guidance, the sampler sees "
    "D_s + w (D_s - D_w), one extra evaluation per step (batched with the strong one where "
    "the pair allows); it improved every unconditional test pair. reflect: W2SD's reflection "
    "as in the paper, two extra evaluations per step. reflect+guide: both."
)
TIP_GUIDANCE = (
    f"w of the guide modes: 0 = the strong side alone. {DEFAULT_GUIDANCE:g} (default) helped every test pair "
    "and stayed near plain under CFG; 0.5-1 gains more without CFG, 2 overshoots. A CFG-only "
    "pair in guide mode is plain CFG at cfg_s + w (cfg_s - cfg_w), at no extra cost."
)
TIP_STRONG_CFG = "CFG of the strong side. -1 = the sampling cfg."
TIP_WEAK_CFG = (
    "CFG of the weak side: a weak CFG alone is a pair (no weak model needed). -1 = the sampling "
    "cfg. Z-Sampling: strong 5.5, weak 1.0 (ComfyUI's cfg 1.0 is the conditional prediction alone)."
)


def plan_inputs() -> list:
    """Which steps W2SD works on, and how (all optional)."""
    return [
        io.Int.Input(
            "reflect_steps", default=DEFAULT_REFLECT_STEPS, min=-1, max=10000, optional=True, tooltip=TIP_REFLECT_STEPS
        ),
        io.Float.Input(
            "reflect_end_percent",
            default=DEFAULT_END_PERCENT,
            min=0.0,
            max=1.0,
            step=0.01,
            optional=True,
            tooltip=TIP_END_PERCENT,
            **compat.advanced(),
        ),
        io.Int.Input(
            "repeats", default=DEFAULT_REPEATS, min=1, max=10, optional=True, tooltip=TIP_REPEATS, **compat.advanced()
        ),
        io.Combo.Input(
            "inversion",
            options=list(INVERSIONS),
            default=DEFAULT_INVERSION,
            optional=True,
            tooltip=TIP_INVERSION,
            **compat.advanced(),
        ),
    ]


def mode_inputs() -> list:
    """Reflection, guidance or both on the planned steps. Last on every node: saved workflows list
    widget values by position, and older ones end before these."""
    return [
        io.Combo.Input("mode", options=list(MODES), default=DEFAULT_MODE, optional=True, tooltip=TIP_MODE),
        io.Float.Input(
            "guidance",
            default=DEFAULT_GUIDANCE,
            min=-10.0,
            max=100.0,
            step=0.05,
            round=0.001,
            optional=True,
            tooltip=TIP_GUIDANCE,
        ),
    ]


def cfg_pair_inputs() -> list:
    """The CFG of each reflection pass (the Z-Sampling pair)."""
    return [
        io.Float.Input(
            "strong_cfg",
            default=-1.0,
            min=-1.0,
            max=100.0,
            step=0.1,
            round=0.01,
            optional=True,
            tooltip=TIP_STRONG_CFG,
            **compat.advanced(),
        ),
        io.Float.Input(
            "weak_cfg", default=-1.0, min=-1.0, max=100.0, step=0.1, round=0.01, optional=True, tooltip=TIP_WEAK_CFG
        ),
    ]


def weak_side_inputs() -> list:
    """What the weak pass uses instead of the strong side's model and prompts (all optional)."""
    return [
        io.Model.Input(
            "weak_model",
            optional=True,
            tooltip="Weak model for the weak pass (e.g. the base checkpoint of a fine-tune), "
            "same latent space and model type. Empty = model.",
        ),
        io.Conditioning.Input(
            "weak_positive",
            optional=True,
            tooltip="Positive conditioning of the weak pass (e.g. a plainer prompt). Empty = positive.",
        ),
        io.Conditioning.Input(
            "weak_negative", optional=True, tooltip="Negative conditioning of the weak pass. Empty = negative."
        ),
    ]


#: Words users search for (io.Schema's search_aliases where the running ComfyUI has them).
SEARCH_ALIASES = ["w2sd", "reflection", "weak to strong", "weak-to-strong", "z-sampling", "autoguidance"]


def schema_extras(*extra: str) -> dict:
    """The newer io.Schema fields this pack fills, where the running ComfyUI has them."""
    return compat.schema_extras(search_aliases=[*SEARCH_ALIASES, *extra])


#: Key, in a node's definition, of the marker saying that its MODEL output carries a W2SD pair
#: (web/w2sd.js reads it from the server's node definitions).
PAIR_MARKER = "w2sd_pair"


def pair_marker(off_when: dict | None = None) -> dict:
    """Keyword arguments for the MODEL input of a node that builds a pair: the marker travels in
    that input's definition. ``off_when``: {widget: [values]} for which the node builds none."""
    return {"extra_dict": {PAIR_MARKER: {"off_when": dict(off_when or {})}}}
