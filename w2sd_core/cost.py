"""What a run costs, in model passes (one UNet/DiT forward over one batch of latents).

A guided evaluation at CFG != 1 is two passes (cond and uncond); ComfyUI skips the uncond pass at
CFG 1, so such an evaluation is one. The web extension (web/w2sd_cost.js) mirrors this arithmetic;
tests/web checks the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass


def passes_per_evaluation(cfg: float) -> int:
    return 1 if float(cfg) == 1.0 else 2


@dataclass(frozen=True)
class RunCost:
    steps: int  # T: normal sampler steps (one evaluation each; multi-stage samplers
    # such as heun or dpmpp_2s use more, which is the same for both runs)
    reflections: int  # reflected steps x repeats
    evaluations: int  # T + 2 * reflections + guided (T: the sampler's own evaluations)
    passes: int  # model passes of this run
    plain_passes: int  # model passes of the same sampler without W2SD
    guided: int = 0  # sampler evaluations that were guided (each also evaluates the weak side)

    @property
    def ratio(self) -> float:
        return self.passes / self.plain_passes if self.plain_passes else 1.0

    def summary(self) -> str:
        plain = self.evaluations - 2 * self.reflections - self.guided
        guided = f", {self.guided} guided evaluation(s)" if self.guided else ""
        return (
            f"W2SD: {self.reflections} reflection(s){guided}, {self.evaluations} model evaluations "
            f"(plain {plain}); {self.passes} model passes = {self.ratio:.2f}x a plain run"
        )


def run_cost(
    steps: int,
    reflections: int,
    cfg: float,
    strong_cfg: float,
    weak_cfg: float,
    sampler_evaluations: int | None = None,
    guided: int = 0,
) -> RunCost:
    """``sampler_evaluations``: the sampler's own evaluations where they were counted (heun and
    other multi-stage samplers take more than one per step); None = one per step. ``guided``: how
    many of them were guided: each evaluates the strong and the weak side instead of the plain one.
    (Batching the two sides into one model call saves calls, not passes.)"""
    own = steps if sampler_evaluations is None else sampler_evaluations
    plain = own * passes_per_evaluation(cfg)
    pair = passes_per_evaluation(strong_cfg) + passes_per_evaluation(weak_cfg)
    passes = plain + reflections * pair + guided * (pair - passes_per_evaluation(cfg))
    return RunCost(
        steps=steps,
        reflections=reflections,
        evaluations=own + 2 * reflections + guided,
        passes=passes,
        plain_passes=plain,
        guided=guided,
    )
