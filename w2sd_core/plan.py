"""Which steps of a schedule get reflected."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch


@dataclass(frozen=True)
class ReflectionPlan:
    """Reflect step ``i`` (``sigma_i -> sigma_{i+1}``) when all of these hold:

    * ``i < steps`` (λ, counted on the schedule the sampler is given; ``-1`` = every step but the
      last, ``0`` = never);
    * ``sigma_min <= sigma_i <= sigma_max`` where given. A sigma window keeps its meaning under
      ``denoise < 1`` and split sigmas, where a step count shifts with the schedule;
    * ``(sigma_i - sigma_{i+1}) / sigma_{i+1} <= max_step`` where given: the step's relative size,
      whose square bounds the one-step inversion error to leading order. It reads the step itself,
      so it means the same for every scheduler, step count and model family;
    * ``sigma_{i+1} > 0``: reflecting into sigma 0 is undefined (no noise level to invert from).

    Each reflected step is reflected ``repeats`` times (Z-Sampling's ``T_max``).
    """

    steps: int = -1
    repeats: int = 1
    sigma_max: Optional[float] = None
    sigma_min: Optional[float] = None
    max_step: Optional[float] = None

    def __post_init__(self):
        if self.steps < -1:
            raise ValueError(f"steps (λ) must be -1 (all but the last), 0 (off) or positive, got {self.steps}")
        if self.repeats < 1:
            raise ValueError(f"repeats must be at least 1, got {self.repeats}")
        if self.sigma_max is not None and self.sigma_min is not None and self.sigma_min > self.sigma_max:
            raise ValueError(f"empty sigma window: sigma_min {self.sigma_min} > sigma_max {self.sigma_max}")
        if self.max_step is not None and not self.max_step >= 0:
            raise ValueError(f"max_step (relative step size) must be >= 0 or None, got {self.max_step}")

    @classmethod
    def until_percent(
        cls,
        end_percent: float,
        percent_to_sigma,
        *,
        steps: int = -1,
        repeats: int = 1,
        max_step: Optional[float] = None,
    ) -> "ReflectionPlan":
        """A plan that reflects only while the schedule is above ``end_percent`` of the denoising
        (0 = start, 1 = end: no limit), turned into a sigma with the model's ``percent_to_sigma``.
        Unlike a step count, that point stays put under ``denoise < 1`` and split sigmas."""
        if end_percent >= 1.0:
            sigma_min = None
        elif end_percent <= 0.0:
            sigma_min = math.inf  # "reflect while above 0 % of the denoising": never
        else:
            sigma_min = float(percent_to_sigma(end_percent))
        return cls(steps=steps, repeats=repeats, sigma_min=sigma_min, max_step=max_step)

    def reflect_mask(self, sigmas: Sequence[float] | torch.Tensor) -> list[bool]:
        """One flag per step of ``sigmas`` (``len(sigmas) - 1`` steps)."""
        values = [float(s) for s in sigmas]
        n = len(values) - 1
        count = n - 1 if self.steps == -1 else self.steps
        mask = []
        for i in range(n):
            hi, lo = values[i], values[i + 1]
            mask.append(
                i < count
                and hi > lo > 0
                and (self.sigma_max is None or hi <= self.sigma_max)
                and (self.sigma_min is None or hi >= self.sigma_min)
                and (self.max_step is None or relative_step(hi, lo) <= self.max_step)
            )
        return mask

    def reflected_steps(self, sigmas) -> list[int]:
        return [i for i, m in enumerate(self.reflect_mask(sigmas)) if m]

    def extra_evaluations(self, sigmas) -> int:
        """Model evaluations reflection adds to a plain run (one strong + one weak per reflection)."""
        return 2 * self.repeats * len(self.reflected_steps(sigmas))


def relative_step(sigma: float, sigma_next: float) -> float:
    """``(sigma - sigma_next) / sigma_next``: the size of a step against the level it lands on."""
    return (sigma - sigma_next) / sigma_next if sigma_next > 0 else math.inf


#: Off: the sampler runs as if W2SD were not there.
NO_REFLECTION = ReflectionPlan(steps=0)
