"""The reflection operator against exact Gaussian-mixture denoisers and scores.

Local errors are measured by halving the step ``h = sigma - sigma_next``: an error of order h^p
shrinks by 2^p per halving.
"""

import pytest
import torch

from w2sd_core import INVERSIONS, euler_step, inversion_step, reflect, sigma_after
from research import gaussian_denoiser, toy_problem

PROBLEM = toy_problem()
HALVINGS = (0.2, 0.1, 0.05, 0.025)  # h as a fraction of sigma


def noisy_points(sigma, n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = PROBLEM.strong.sample(n, g, dtype=torch.float64)
    return x0 + sigma * torch.randn(n, 2, generator=g, dtype=torch.float64)


def identity_errors(x, sigma, denoise, inversion):
    """Mean |reflect(x) - x| with weak = strong for each h in HALVINGS (uniform spacing, so the
    level after sigma_next is sigma - 2h)."""
    out = []
    for frac in HALVINGS:
        h = frac * sigma
        y = reflect(x, sigma, sigma - h, denoise, denoise, inversion=inversion, sigma_after=sigma - 2 * h)
        out.append(float((y - x).norm(dim=1).mean()))
    return out


@pytest.mark.parametrize("sigma", [0.5, 2.0])
def test_identity_reflection_with_next_is_second_order(sigma):
    x = noisy_points(sigma)
    errors = identity_errors(x, sigma, PROBLEM.strong, "next")
    ratios = [a / b for a, b in zip(errors, errors[1:])]
    # O(h^2): each halving divides the error by about 4
    assert all(3.0 < r < 5.0 for r in ratios[1:]), (errors, ratios)
    assert errors[-1] < 1e-3 * sigma


def test_theorem_1_first_order_term_with_exact_scores():
    """reflect(x) - x = sigma * h * (grad log p_s - grad log p_w) + O(h^2) (the paper's Theorem 1)."""
    sigma = 1.0
    x = noisy_points(sigma, seed=1)
    strong, weak = PROBLEM.strong, PROBLEM.weak
    gap = strong.score(x, sigma) - weak.score(x, sigma)
    rel = []
    for frac in (0.02, 0.01, 0.005, 0.0025):
        h = frac * sigma
        first_order = sigma * h * gap
        moved = reflect(x, sigma, sigma - h, strong, weak, inversion="next")
        rel.append(float((moved - x - first_order).norm() / first_order.norm()))
    # the remainder is O(h^2) against an O(h) term: the relative error halves with h
    ratios = [a / b for a, b in zip(rel, rel[1:])]
    assert all(1.6 < r < 2.6 for r in ratios), (rel, ratios)
    assert rel[-1] < 0.05, rel
    # and the displacement really points along the score gap (not just small)
    moved = reflect(x, sigma, sigma - 0.0025, strong, weak) - x
    cos = torch.nn.functional.cosine_similarity(moved.flatten(), gap.flatten(), dim=0)
    assert cos > 0.99


def test_current_label_has_a_much_larger_identity_error_at_high_noise():
    """Both labels are second order locally, but the paper's label (the higher level, while the latent
    sits at sigma_next) has an error constant of about (h/sigma)^2 |x| in the noise-dominated regime,
    where ``next`` is nearly exact. Summed over a schedule this is what makes ``current`` move samples."""
    sigma = 10.0
    x = noisy_points(sigma, seed=2)
    nxt = identity_errors(x, sigma, PROBLEM.strong, "next")
    cur = identity_errors(x, sigma, PROBLEM.strong, "current")
    assert all(c > 20 * n for c, n in zip(cur, nxt)), (cur, nxt)
    # current: (1 - a)(1 + a) = 1 - a^2 with a ~ h / sigma  =>  |moved| ~ (h/sigma)^2 |x|
    frac = HALVINGS[0]
    expected = frac**2 * float(x.norm(dim=1).mean())
    assert 0.7 * expected < cur[0] < 1.3 * expected


def test_current_label_on_gaussian_data_matches_closed_form():
    """Data N(0, s^2): D = x s^2/(s^2+sigma^2), so a reflection with weak = strong multiplies x by
    (1-a)(1+b) with a = h sigma/(s^2+sigma^2) and b = h l/(s^2+l^2), l the inversion label."""
    s, sigma, h = 0.7, 1.3, 0.2
    den = gaussian_denoiser(s)
    x = torch.randn(8, 3, dtype=torch.float64)
    a = h * sigma / (s * s + sigma * sigma)
    for inversion, label in (("next", sigma - h), ("current", sigma)):
        b = h * label / (s * s + label * label)
        got = reflect(x, sigma, sigma - h, den, den, inversion=inversion)
        torch.testing.assert_close(got, x * (1 - a) * (1 + b))


def test_official_mode_matches_the_ddim_inverse_formula_and_needs_sigma_after():
    s, sigma, sn, sa = 0.8, 2.0, 1.5, 1.1
    den = gaussian_denoiser(s)
    x = torch.randn(4, 5, dtype=torch.float64)
    with pytest.raises(ValueError, match="sigma_after"):
        reflect(x, sigma, sn, den, den, inversion="official")
    ab = lambda v: 1 / (1 + v * v)  # noqa: E731
    y = euler_step(x, den(x, sigma), sigma, sn)
    k = (ab(sn) / ab(sigma)) ** 0.5
    u = k * y
    eps = (u - den(u, sigma)) / sigma
    expected = k * ((ab(sn) / ab(sa)) ** 0.5 * y + (sn - sa) * eps)
    torch.testing.assert_close(reflect(x, sigma, sn, den, den, inversion="official", sigma_after=sa), expected)


def test_official_mode_is_second_order_mid_schedule_and_close_to_next_at_high_noise():
    den = PROBLEM.strong
    # on an even grid (sigma_after = sigma - 2h) it is second order like the others
    errors = identity_errors(noisy_points(2.0), 2.0, den, "official")
    assert all(3.0 < a / b < 6.5 for a, b in zip(errors[1:], errors[2:])), errors
    # at high noise it nearly inverts, far better than the paper's written label
    x = noisy_points(10.0, seed=2)
    off = identity_errors(x, 10.0, den, "official")
    cur = identity_errors(x, 10.0, den, "current")
    assert all(o < 0.1 * c for o, c in zip(off, cur)), (off, cur)


def test_sigma_after_is_the_level_after_the_target():
    sigmas = torch.tensor([3.0, 2.0, 1.0, 0.0])
    assert [sigma_after(sigmas, i) for i in range(3)] == [1.0, 0.0, 0.0]


def test_reflect_rejects_bad_levels_and_modes():
    x = torch.randn(2, 2)
    den = gaussian_denoiser()
    for bad in ((1.0, 1.0), (1.0, 2.0), (1.0, 0.0)):
        with pytest.raises(ValueError, match="sigma"):
            reflect(x, *bad, den, den)
    with pytest.raises(ValueError, match="inversion"):
        reflect(x, 1.0, 0.5, den, den, inversion="previous")
    with pytest.raises(ValueError, match="inversion"):
        inversion_step(den, x, 0.5, 1.0, inversion="official")
    assert INVERSIONS == ("next", "current", "official")


def test_reflection_passes_per_item_sigma_to_the_models():
    seen = []

    def den(x, sigma):
        seen.append((tuple(sigma.shape), sigma.dtype))
        return x * 0.5

    x = torch.randn(3, 4, 2, 2, dtype=torch.float16)
    reflect(x, 1.0, 0.5, den, den)
    assert seen == [((3,), torch.float16)] * 2
