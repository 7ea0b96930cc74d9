"""Which steps a ReflectionPlan reflects, on full, truncated and split schedules."""

import dataclasses

import pytest
import torch

from w2sd_core import NO_REFLECTION, ReflectionPlan
from research import DiscreteVPSchedule

VP = DiscreteVPSchedule()
FULL = VP.normal(20)  # 20 steps, ends at sigma 0


def reflected_levels(plan, sigmas):
    return [round(float(sigmas[i]), 6) for i in plan.reflected_steps(sigmas)]


def test_lambda_counts_and_the_last_step_is_never_reflected():
    n = len(FULL) - 1
    assert ReflectionPlan(steps=-1).reflected_steps(FULL) == list(range(n - 1))
    assert ReflectionPlan(steps=0).reflected_steps(FULL) == []
    assert NO_REFLECTION.reflected_steps(FULL) == []
    assert ReflectionPlan(steps=3).reflected_steps(FULL) == [0, 1, 2]
    # λ >= steps: everything that can be reflected, still not the step into sigma 0
    for lam in (n - 1, n, n + 5, 10_000):
        assert ReflectionPlan(steps=lam).reflected_steps(FULL) == list(range(n - 1))
    mask = ReflectionPlan(steps=10_000, sigma_min=0.0).reflect_mask(FULL)
    assert len(mask) == n and mask[-1] is False and float(FULL[-1]) == 0.0


def test_sigma_window_keeps_its_meaning_on_a_truncated_schedule():
    """denoise < 1: ComfyUI samples the tail of a longer schedule. A sigma window reflects the same
    noise levels there; a step count counts on the schedule the sampler is given."""
    longer = VP.normal(40)
    tail = longer[16:]  # denoise = 0.6
    window = ReflectionPlan(steps=-1, sigma_max=3.0, sigma_min=0.5)
    full_levels = reflected_levels(window, longer)
    tail_levels = reflected_levels(window, tail)
    assert tail_levels == [s for s in full_levels if s <= float(tail[0])]
    assert tail_levels and all(0.5 <= s <= 3.0 for s in tail_levels)
    # λ = 3 on the tail means the tail's first three steps, whatever their levels
    assert ReflectionPlan(steps=3).reflected_steps(tail) == [0, 1, 2]
    # the window is inclusive at both ends
    exact = ReflectionPlan(sigma_max=float(longer[5]), sigma_min=float(longer[9]))
    assert exact.reflected_steps(longer) == [5, 6, 7, 8, 9]


def test_split_sigmas_not_ending_at_zero():
    high, low = FULL[:11], FULL[10:]  # SplitSigmas at step 10
    assert float(high[-1]) > 0 and float(low[-1]) == 0
    # -1 means every step but the last of the schedule it is given
    assert ReflectionPlan(steps=-1).reflected_steps(high) == list(range(9))
    # ... but the last step of a segment that ends above 0 can be reflected when asked for
    assert ReflectionPlan(steps=100).reflected_steps(high) == list(range(10))
    assert ReflectionPlan(steps=100).reflected_steps(low) == list(range(9))
    # a sigma window reflects the same levels whether the schedule is split or not
    window = ReflectionPlan(steps=100, sigma_min=0.5)
    assert reflected_levels(window, high) + reflected_levels(window, low) == reflected_levels(window, FULL)


def test_flat_or_degenerate_schedules_reflect_nothing_they_cannot():
    assert ReflectionPlan(steps=-1).reflected_steps(torch.tensor([1.0])) == []
    assert ReflectionPlan(steps=-1).reflected_steps([2.0, 0.0]) == []
    # a repeated level (no step) is never reflected
    assert ReflectionPlan(steps=10).reflected_steps([3.0, 2.0, 2.0, 1.0, 0.0]) == [0, 2]
    assert ReflectionPlan(sigma_max=0.1).reflected_steps(FULL) == []


def test_repeats_count_extra_evaluations():
    plan = ReflectionPlan(steps=5, repeats=3)
    assert plan.extra_evaluations(FULL) == 2 * 3 * 5
    assert ReflectionPlan(steps=-1).extra_evaluations(FULL) == 2 * 19
    assert NO_REFLECTION.extra_evaluations(FULL) == 0


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"steps": -2}, "steps"),
        ({"repeats": 0}, "repeats"),
        ({"sigma_min": 2.0, "sigma_max": 1.0}, "sigma"),
    ],
)
def test_invalid_plans_raise(kwargs, word):
    with pytest.raises(ValueError, match=word):
        ReflectionPlan(**kwargs)


def test_plans_are_frozen_values():
    plan = ReflectionPlan(steps=4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.steps = 5
    assert plan == ReflectionPlan(steps=4) and hash(plan) == hash(ReflectionPlan(steps=4))


def test_until_percent_turns_the_end_percent_into_a_sigma_window():
    sigmas = torch.tensor([8.0, 4.0, 2.0, 1.0, 0.5, 0.0])
    to_sigma = lambda p: 8.0 * (1.0 - p)  # noqa: E731  (a linear schedule: 50 % -> sigma 4)
    assert ReflectionPlan.until_percent(1.0, to_sigma).reflected_steps(sigmas) == [0, 1, 2, 3]
    assert ReflectionPlan.until_percent(0.5, to_sigma).reflected_steps(sigmas) == [0, 1]
    assert ReflectionPlan.until_percent(0.0, to_sigma).reflected_steps(sigmas) == []
    plan = ReflectionPlan.until_percent(0.5, to_sigma, steps=1, repeats=3)
    assert plan.reflected_steps(sigmas) == [0] and plan.repeats == 3
