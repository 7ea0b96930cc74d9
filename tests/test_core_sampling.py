"""The generic driver, the reference Euler loop, inversion, shapes and dtypes."""

import pytest
import torch

from w2sd_core import (
    DEFAULT_INVERSION,
    DEFAULT_PLAN,
    INVERSIONS,
    NO_REFLECTION,
    ReflectionPlan,
    invert,
    reflect,
    sample_euler,
    sample_euler_plain,
    sample_with_reflection,
    sigma_after,
)
from research import DiscreteVPSchedule, gaussian_denoiser, toy_problem

VP = DiscreteVPSchedule()


def record(sigmas, plan):
    calls = []

    def reflect_at(x, i):
        calls.append(("reflect", i))
        return x + 1

    def run_span(x, start, end):
        calls.append(("run", start, end))
        return x * 2

    out = sample_with_reflection(torch.zeros(1), sigmas, plan, reflect_at, run_span)
    return calls, out


def test_nothing_reflected_is_one_call_over_the_whole_schedule():
    sigmas = VP.normal(10)
    for plan in (
        NO_REFLECTION,
        ReflectionPlan(steps=-1, sigma_max=0.01),
        ReflectionPlan(steps=-1, repeats=3, sigma_min=100.0),
    ):
        assert record(sigmas, plan)[0] == [("run", 0, 10)]


def test_cut_points_reflect_then_step_and_run_the_rest_in_one_call():
    sigmas = VP.normal(10)
    calls, out = record(sigmas, ReflectionPlan(steps=3, repeats=2))
    assert calls == [
        ("reflect", 0),
        ("reflect", 0),
        ("run", 0, 1),
        ("reflect", 1),
        ("reflect", 1),
        ("run", 1, 2),
        ("reflect", 2),
        ("reflect", 2),
        ("run", 2, 10),
    ]
    # the values really flow through in that order: ((0+1+1)*2+2)*2+2 then *2
    assert float(out) == 28.0
    # a window that starts later: one plain call up to its first step, then as above
    window = ReflectionPlan(steps=-1, sigma_max=float(sigmas[2]), sigma_min=float(sigmas[4]))
    calls, _ = record(sigmas, window)
    assert calls == [
        ("run", 0, 2),
        ("reflect", 2),
        ("run", 2, 3),
        ("reflect", 3),
        ("run", 3, 4),
        ("reflect", 4),
        ("run", 4, 10),
    ]
    # every step reflected: the last (into sigma 0) still runs plain
    calls, _ = record(sigmas, ReflectionPlan(steps=-1))
    assert calls[-2:] == [("reflect", 8), ("run", 8, 10)]
    assert [c for c in calls if c[0] == "run"] == [("run", i, i + 1) for i in range(8)] + [("run", 8, 10)]


def test_plan_with_nothing_reflected_is_plain_euler_bit_for_bit():
    p = toy_problem()
    sigmas = VP.normal(12)
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0)) * sigmas[0]
    plain = sample_euler_plain(p.strong, x, sigmas)
    for plan in (NO_REFLECTION, ReflectionPlan(steps=-1, sigma_max=0.001)):
        assert torch.equal(sample_euler(p.strong, x, sigmas, weak=p.weak, plan=plan), plain)
    # reflecting does change the result (the test above could not pass by accident)
    assert not torch.equal(sample_euler(p.strong, x, sigmas, weak=p.weak, plan=ReflectionPlan(steps=2)), plain)


def test_sample_euler_uses_the_defaults_and_the_strong_model_for_reflections():
    p = toy_problem()
    sigmas = VP.normal(8)
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(1)) * sigmas[0]
    assert DEFAULT_INVERSION in INVERSIONS and isinstance(DEFAULT_PLAN, ReflectionPlan)
    explicit = sample_euler(p.strong, x, sigmas, weak=p.weak, plan=DEFAULT_PLAN, inversion=DEFAULT_INVERSION)
    assert torch.equal(sample_euler(p.strong, x, sigmas, weak=p.weak), explicit)
    # a separate strong model is used for the reflection's down step, the sampling model for steps
    hand = x
    plan = ReflectionPlan(steps=1)
    hand = reflect(hand, sigmas[0], sigmas[1], p.ideal, p.weak, inversion="next")
    hand = sample_euler_plain(p.strong, hand, sigmas)
    got = sample_euler(p.strong, x, sigmas, weak=p.weak, strong=p.ideal, plan=plan, inversion="next")
    torch.testing.assert_close(got, hand)


def test_official_inversion_in_the_loop_gets_the_level_after_the_target():
    sigmas = torch.tensor([4.0, 2.0, 1.0, 0.5, 0.0])
    seen = []

    def den(x, sigma):
        seen.append(round(float(sigma[0]), 6))
        return x * 0.25

    sample_euler(den, torch.ones(2, 3), sigmas, weak=den, plan=ReflectionPlan(steps=-1), inversion="official")
    # per reflected step: strong at sigma_i, weak at sigma_i (official label), then the Euler step
    assert seen == [4.0, 4.0, 4.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 0.5]
    assert sigma_after(sigmas, 2) == 0.0


# -- shapes and dtypes --------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 4, 8, 8), (2, 4, 3, 8, 8), (5, 16)])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_latent_shapes_and_dtypes_survive(shape, dtype):
    den = gaussian_denoiser(1.0)
    sigmas = VP.normal(6)
    x = (torch.randn(shape, generator=torch.Generator().manual_seed(2)) * sigmas[0]).to(dtype)
    for inversion in INVERSIONS:
        y = reflect(x, sigmas[1], sigmas[2], den, den, inversion=inversion, sigma_after=sigmas[3])
        assert y.shape == x.shape and y.dtype == dtype and torch.isfinite(y).all()
        out = sample_euler(den, x, sigmas, weak=den, plan=ReflectionPlan(steps=-1), inversion=inversion)
        assert out.shape == x.shape and out.dtype == dtype and torch.isfinite(out).all()
    up = invert(den, out, torch.flip(sigmas, [0])[:4])
    assert up.shape == x.shape and up.dtype == dtype and torch.isfinite(up).all()


def test_batch_items_are_independent():
    den = toy_problem().strong
    sigmas = VP.normal(10)
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * sigmas[0]
    weak = toy_problem().weak
    whole = sample_euler(den, x, sigmas, weak=weak, plan=ReflectionPlan(steps=-1))
    one = torch.cat(
        [sample_euler(den, x[i : i + 1], sigmas, weak=weak, plan=ReflectionPlan(steps=-1)) for i in range(6)]
    )
    torch.testing.assert_close(whole, one)


# -- inversion ------------------------------------------------------------------------------------


def test_invert_then_sample_round_trips_better_with_more_steps():
    """Invert samples from a low level up to sigma 2 and run Euler back down: the error is the two
    discretisation errors and shrinks with the step count."""
    den = toy_problem().ideal
    g = torch.Generator().manual_seed(4)
    lo, hi = 0.2, 2.0
    x_lo = den.sample(300, g, dtype=torch.float64) + lo * torch.randn(300, 2, generator=g, dtype=torch.float64)
    errors = []
    for n in (8, 16, 32, 64):
        up = torch.linspace(lo, hi, n + 1, dtype=torch.float64)
        x_hi = invert(den, x_lo, up, inversion="next")
        back = sample_euler_plain(den, x_hi, torch.flip(up, [0]))
        errors.append(float((back - x_lo).norm(dim=1).mean()))
    assert all(b < 0.7 * a for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.03, errors
    # Gaussian data: the exact ODE scales x by sqrt(s^2 + sigma^2); inversion follows it
    s = 0.5
    gd = gaussian_denoiser(s)
    x = torch.randn(100, 3, generator=g, dtype=torch.float64)
    up = invert(gd, x, torch.linspace(0.0, 3.0, 401, dtype=torch.float64))
    torch.testing.assert_close(up, x * ((s * s + 9.0) / (s * s)) ** 0.5, rtol=0.02, atol=0)


def test_invert_rejects_descending_sigmas_and_skips_flat_steps():
    den = gaussian_denoiser()
    x = torch.randn(2, 2)
    with pytest.raises(ValueError, match="ascending"):
        invert(den, x, [1.0, 0.5])
    assert torch.equal(invert(den, x, [0.5, 0.5]), x)


# ---------------------------------------------------------------- guide mode
def _linear(scale):
    return lambda x, sigma: x * scale


def test_guide_mode_with_w_zero_or_weak_equal_strong_is_plain_euler():
    from w2sd_core import ReflectionPlan, sample_euler, sample_euler_plain

    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(0)) * 5
    sigmas = torch.tensor([5.0, 3.0, 1.5, 0.5, 0.0])
    plain = sample_euler_plain(_linear(0.4), x, sigmas)
    every = ReflectionPlan(steps=-1)
    assert torch.equal(
        sample_euler(_linear(0.4), x, sigmas, weak=_linear(0.1), plan=every, mode="guide", guidance=0.0), plain
    )
    assert torch.allclose(
        sample_euler(_linear(0.4), x, sigmas, weak=_linear(0.4), plan=every, mode="guide", guidance=3.0), plain
    )


def test_a_guided_step_sees_strong_plus_w_times_the_difference():
    from w2sd_core import ReflectionPlan, euler_step, sample_euler
    from w2sd_core.guidance import guide

    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(1)) * 4
    sigmas = torch.tensor([4.0, 2.0])
    strong, weak, w = _linear(0.5), _linear(0.2), 1.5
    got = sample_euler(
        _linear(0.9), x, sigmas, strong=strong, weak=weak, plan=ReflectionPlan(steps=1), mode="guide", guidance=w
    )
    # a one-step schedule into sigma 2 > 0: step 0 is planned, so it runs on D_s + w (D_s - D_w)
    want = euler_step(x, guide(strong(x, 4.0), weak(x, 4.0), w), 4.0, 2.0)
    assert torch.allclose(got, want)


def test_reflect_and_guide_modes_combine():
    """reflect+guide = reflection, then the guided step; each mode alone differs from it."""
    from w2sd_core import ReflectionPlan, sample_euler

    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(2)) * 4
    sigmas = torch.tensor([4.0, 2.0, 1.0, 0.0])
    args = dict(weak=_linear(0.2), strong=_linear(0.5), plan=ReflectionPlan(steps=-1), guidance=1.0)
    outs = {m: sample_euler(_linear(0.5), x, sigmas, mode=m, **args) for m in ("reflect", "guide", "reflect+guide")}
    assert not torch.allclose(outs["reflect"], outs["reflect+guide"])
    assert not torch.allclose(outs["guide"], outs["reflect+guide"])
