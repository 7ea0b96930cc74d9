"""The pack's defaults in one place: what a W2SD node does when the user changes nothing
(``DEFAULTS``) and the presets one setting away (``PAPER``, ``TOY``). The nodes read these, the web
extension mirrors them (web/w2sd_cost.js, checked against this file), and ``sample_default`` runs
exactly ``DEFAULTS``; docs/defaults.md gives the measurements behind them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .guidance import guides, reflects
from .plan import ReflectionPlan


@dataclass(frozen=True)
class Preset:
    """Everything a W2SD run needs besides the models: the plan's inputs, the inversion, and
    what the planned steps get (``mode``: reflect / guide / reflect+guide, ``guidance``: w). The
    field defaults are W2SD as the paper has it: reflection on every step but the last."""

    steps: int = -1  # λ: -1 = every step but the last
    repeats: int = 1
    end_percent: float = 1.0  # work while above this point of the denoising
    max_step: Optional[float] = None  # largest relative step (σ_i - σ_i+1) / σ_i+1 planned
    inversion: str = "next"
    mode: str = "reflect"
    guidance: float = 1.0

    def plan(self, percent_to_sigma) -> ReflectionPlan:
        return ReflectionPlan.until_percent(
            self.end_percent, percent_to_sigma, steps=self.steps, repeats=self.repeats, max_step=self.max_step
        )

    def evaluations(self, sigmas, percent_to_sigma) -> int:
        """Model evaluations of an Euler run: T, plus 2 per reflection, plus 1 per guided step."""
        planned = len(self.plan(percent_to_sigma).reflected_steps(sigmas))
        extra = 2 * self.repeats * planned if reflects(self.mode) else 0
        extra += planned if guides(self.mode) and self.guidance != 0 else 0
        return len(sigmas) - 1 + extra


#: What a node does with a weak side and nothing else changed: weak-to-strong guidance
#: ``D_s + 0.25 (D_s - D_w)`` on every step but the last (one extra evaluation per step, batched
#: into the strong one where the pair allows). On the image-like yardstick (research/
#: yardstick_images.py) it improved the feature FD of every unconditional model pair (0.73-0.86x
#: plain) and stayed near plain under CFG (0.97-1.08x), where no setting improved; w 0.5 gains more
#: without CFG but costs up to 1.29x with it. Reflection never won there: it is one setting away.
DEFAULTS = Preset(mode="guide", guidance=0.25)
#: The paper's setting (λ = T - 1, no window; ``official`` = what the authors' code computes, for
#: eps / v models; ``current`` is the paper's Eq. 5 and also runs on flow models).
PAPER = Preset(inversion="official")
#: What reflected best on the exact-denoiser toy (the demo): every step above 80 % of the denoising.
TOY = Preset(end_percent=0.8)

DEFAULT_PLAN = ReflectionPlan(steps=DEFAULTS.steps, repeats=DEFAULTS.repeats, max_step=DEFAULTS.max_step)
DEFAULT_INVERSION = DEFAULTS.inversion
DEFAULT_END_PERCENT = DEFAULTS.end_percent
DEFAULT_MAX_STEP = DEFAULTS.max_step
DEFAULT_MODE = DEFAULTS.mode
DEFAULT_GUIDANCE = DEFAULTS.guidance


def default_plan(percent_to_sigma) -> ReflectionPlan:
    """The default plan (DEFAULTS) for a model's ``percent_to_sigma``."""
    return DEFAULTS.plan(percent_to_sigma)
