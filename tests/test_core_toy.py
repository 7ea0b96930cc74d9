"""The toy distributions are exact, and W2SD's claim holds on them (statistically, fixed seeds).

The statistical tests use margins checked over many seeds (README, "Choosing the defaults").
"""

import math

import pytest
import torch

from w2sd_core import TOY, sample_euler, sample_euler_plain
from research import (
    DiscreteVPSchedule,
    GaussianMixture,
    gaussian_denoiser,
    mmd2,
    mode_kl,
    mode_weights,
    ring_mixture,
    toy_problem,
)

VP = DiscreteVPSchedule()


def test_denoiser_is_tweedie_and_score_is_the_gradient_of_log_density():
    mix = GaussianMixture([0.2, 0.5, 0.3], [[0.0, 1.0], [2.0, -1.0], [-1.5, 0.5]], [[0.3, 0.5], [0.4, 0.4], [0.2, 0.6]])
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2
    for sigma in (0.0, 0.1, 1.0, 7.0):
        xr = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(mix.log_prob(xr, sigma).sum(), xr)
        torch.testing.assert_close(mix.score(x, sigma), grad)
        if sigma > 0:  # Tweedie: E[x0 | x] = x + sigma^2 * score
            torch.testing.assert_close(mix.denoise(x, sigma), x + sigma**2 * grad)
    # per-item sigmas
    sig = torch.linspace(0.1, 3.0, 50, dtype=torch.float64)
    one = torch.cat([mix.denoise(x[i : i + 1], float(sig[i])) for i in range(50)])
    torch.testing.assert_close(mix.denoise(x, sig), one)


def test_denoiser_matches_a_monte_carlo_posterior_mean():
    mix = ring_mixture(4, radius=1.0, std=0.3, log_weight=[0.0, 1.0, 0.0, -1.0])
    g = torch.Generator().manual_seed(1)
    x0 = mix.sample(400_000, g, dtype=torch.float64)
    sigma = 0.8
    xt = x0 + sigma * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    # E[x0 | x in a small box] against D evaluated in that box
    centre = torch.tensor([0.4, 0.3], dtype=torch.float64)
    box = ((xt - centre).abs() < 0.08).all(dim=1)
    assert box.sum() > 1000
    torch.testing.assert_close(x0[box].mean(0), mix.denoise(xt[box], sigma).mean(0), atol=0.02, rtol=0)


def test_density_normalises_and_samples_follow_the_weights():
    mix = toy_problem().strong
    grid = torch.linspace(-3, 3, 301, dtype=torch.float64)
    xx, yy = torch.meshgrid(grid, grid, indexing="ij")
    pts = torch.stack([xx.flatten(), yy.flatten()], 1)
    mass = mix.log_prob(pts).exp().sum() * (grid[1] - grid[0]) ** 2
    assert abs(float(mass) - 1.0) < 1e-3
    s = mix.sample(20_000, torch.Generator().manual_seed(2))
    assert s.dtype == torch.float32 and s.shape == (20_000, 2)
    torch.testing.assert_close(mode_weights(s, mix), mix.weights, atol=0.01, rtol=0)
    assert mode_kl(s, mix) < 2e-3


def test_mixture_validates_its_parameters():
    with pytest.raises(ValueError, match="weights"):
        GaussianMixture([1.0], [[0.0, 0.0], [1.0, 1.0]], 1.0)
    with pytest.raises(ValueError, match="stds"):
        GaussianMixture([1.0, 1.0], [[0.0, 0.0], [1.0, 1.0]], [1.0, -1.0])
    with pytest.raises(ValueError, match="means"):
        GaussianMixture([1.0], [0.0, 0.0], 1.0)
    with pytest.raises(ValueError, match="sigma"):
        ring_mixture()(torch.zeros(3, 2), torch.ones(2))
    with pytest.raises(ValueError, match="shape"):
        ring_mixture()(torch.zeros(3, 3), 1.0)


def test_denoisers_keep_dtype_and_shape():
    mix = ring_mixture()
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        x = torch.randn(7, 2).to(dtype)
        assert mix(x, torch.ones(7, dtype=dtype)).dtype == dtype
        assert mix(x[:1], 0.5).shape == (1, 2)
    gd = gaussian_denoiser(0.5)
    v = torch.randn(2, 4, 3, 8, 8, dtype=torch.bfloat16)
    out = gd(v, torch.tensor([1.0, 2.0]))
    assert out.dtype == torch.bfloat16 and out.shape == v.shape
    torch.testing.assert_close(out[1].float(), (v[1] * (0.25 / 4.25)).float(), atol=1e-2, rtol=1e-2)


def test_toy_problem_is_ordered_ideal_strong_weak():
    p = toy_problem()
    kl = lambda a, b: float((a.weights * (a.weights / b.weights).log()).sum())  # noqa: E731
    assert 0 < kl(p.ideal, p.strong) < kl(p.ideal, p.weak)
    # the negative control's weak model misses in another direction: its weight gap to the strong
    # model is not aligned with the strong model's gap to the ideal
    gap_true = (p.ideal.weights / p.strong.weights).log()
    gap_pair = (p.strong.weights / p.weak.weights).log()
    gap_neg = (p.strong.weights / p.negative_weak.weights).log()
    cos = torch.nn.functional.cosine_similarity
    assert cos(gap_true - gap_true.mean(), gap_pair - gap_pair.mean(), dim=0) > 0.9
    assert cos(gap_true - gap_true.mean(), gap_neg - gap_neg.mean(), dim=0) < 0


def test_metrics():
    p = toy_problem()
    g = torch.Generator().manual_seed(3)
    a, b = p.ideal.sample(1500, g), p.ideal.sample(1500, g)
    assert abs(mmd2(a, b)) < 1e-3
    assert mmd2(a, p.weak.sample(1500, g)) > 10e-3
    xx, yy, xy = mmd2(a, b, parts=True)
    assert math.isclose(xx + yy - 2 * xy, mmd2(a, b))


def test_vp_schedule_matches_sd1_numbers():
    assert math.isclose(VP.sigma_max, 14.6146, rel_tol=1e-4)
    assert math.isclose(VP.sigma_min, 0.0292, rel_tol=1e-2)
    s = VP.normal(20)
    assert len(s) == 21 and float(s[-1]) == 0.0 and bool((s[:-1] > s[1:]).all())
    assert math.isclose(float(s[0]), VP.sigma_max, rel_tol=1e-6)
    k = VP.karras(10)
    assert len(k) == 11 and bool((k[:-1] > k[1:]).all())
    assert VP.percent_to_sigma(0.0) > 1e6 and VP.percent_to_sigma(1.0) == 0.0
    pcts = [VP.percent_to_sigma(p / 10) for p in range(1, 10)]
    assert all(a > b for a, b in zip(pcts, pcts[1:]))
    # with the normal scheduler, step i sits at percent i / (steps - 1)
    assert math.isclose(VP.percent_to_sigma(5 / 19), float(s[5]), rel_tol=1e-4)


# -- the method's claim on the toy (statistical, fixed seeds) ---------------------------------


@pytest.mark.parametrize("steps", [20, 50])
def test_w2sd_with_the_toy_preset_beats_strong_only_even_at_equal_evaluations(steps):
    p = toy_problem()
    n = 2000
    ref = p.ideal.sample(3000, torch.Generator().manual_seed(100))
    noise = torch.randn(n, 2, generator=torch.Generator().manual_seed(7))
    sigmas = VP.normal(steps)
    plan = TOY.plan(VP.percent_to_sigma)
    evals = steps + plan.extra_evaluations(sigmas)
    equal = VP.normal(evals)

    def run(weak):
        return sample_euler(p.strong, noise * sigmas[0], sigmas, weak=weak, plan=plan, inversion=TOY.inversion)

    strong = mmd2(sample_euler_plain(p.strong, noise * sigmas[0], sigmas), ref)
    strong_equal_samples = sample_euler_plain(p.strong, noise * equal[0], equal)
    strong_equal = mmd2(strong_equal_samples, ref)
    w2sd_samples = run(p.weak)
    w2sd = mmd2(w2sd_samples, ref)
    negative = mmd2(run(p.negative_weak), ref)
    identity = mmd2(run(p.strong), ref)
    # Margins from 16 seeds (noise and reference): W2SD / strong-only at equal evaluations was
    # 0.52..0.63, negative / strong 1.59..1.92, identity / strong 0.97..1.05, mode-KL ratio <= 0.58.
    assert w2sd < 0.75 * strong_equal and w2sd < 0.75 * strong, (w2sd, strong, strong_equal)
    assert negative > 1.3 * strong, (negative, strong)
    assert abs(identity / strong - 1) < 0.1, (identity, strong)
    assert mode_kl(w2sd_samples, p.ideal) < 0.75 * mode_kl(strong_equal_samples, p.ideal)


# -- the demo and the sweep ------------------------------------------------------------------------


def test_core_import_needs_no_matplotlib():
    import subprocess
    import sys

    code = (
        "import sys, w2sd_core, research, research.demo, research.experiments; "
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(__import__("pathlib").Path(__file__).parents[1]))


def test_demo_writes_figure_and_tables_and_w2sd_wins(tmp_path):
    pytest.importorskip("matplotlib")
    from research.demo import markdown_table, run_demo

    result = run_demo(tmp_path, seed=3, points=2000)
    assert (tmp_path / "w2sd_demo.png").stat().st_size > 10_000
    assert (tmp_path / "metrics.json").exists() and (tmp_path / "metrics.md").read_text().startswith("W2SD toy demo")
    rows = {r["run"]: r for r in result["rows"]}
    assert set(rows) >= {"ideal", "weak", "strong", "strong_equal", "w2sd", "identity", "negative"}
    assert rows["w2sd"]["evaluations"] == rows["strong_equal"]["evaluations"] > rows["strong"]["evaluations"]
    assert rows["w2sd"]["mmd2_x1e3"] < 0.75 * rows["strong_equal"]["mmd2_x1e3"]
    assert rows["negative"]["mmd2_x1e3"] > rows["strong"]["mmd2_x1e3"]
    assert rows["weak"]["mmd2_x1e3"] > rows["strong"]["mmd2_x1e3"] > rows["ideal"]["mmd2_x1e3"]
    assert "| W2SD (toy preset), 20 steps |" in markdown_table(result)


def test_experiments_sweep_runs_and_reports(tmp_path, capsys):
    from research.experiments import main

    out = tmp_path / "sweep.md"
    result = main(["--steps", "8", "--seeds", "1", "--points", "200", "--out", str(out)])
    rows = result["rows"]
    assert {r["inversion"] for r in rows} == {"next", "current", "official"}
    assert {r["repeats"] for r in rows} == {1, 2} and {r["lam"] for r in rows} >= {0, 4, 7, -1}
    off = [r for r in rows if r["lam"] == 0][0]
    assert off["identity_drift"] == 0.0 and off["w2sd"] == off["strong_same"]
    for r in rows:
        assert r["evals"] == 8 + 2 * r["reflections"]
    assert out.read_text().startswith("Baselines") and out.with_suffix(".json").exists()
    assert "| T | λ |" in capsys.readouterr().out


@pytest.mark.comfyui
def test_vp_schedule_is_comfyuis_arithmetic(comfy):
    """The toy's schedule, schedulers and percent_to_sigma are ComfyUI's (so the measured
    reflect_end_percent means on the toy what it means on an SD1.x model in ComfyUI)."""
    import comfy.model_sampling
    import comfy.samplers
    from comfy.k_diffusion import sampling as k_sampling

    ms = comfy.model_sampling.ModelSamplingDiscrete()
    for steps in (20, 50):
        torch.testing.assert_close(VP.normal(steps), comfy.samplers.normal_scheduler(ms, steps), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(
            VP.karras(steps),
            k_sampling.get_sigmas_karras(steps, float(ms.sigma_min), float(ms.sigma_max)).float(),
            atol=1e-5,
            rtol=1e-5,
        )
    for p in (0.0, 0.1, 0.5, 0.8, 0.9, 1.0):
        assert math.isclose(VP.percent_to_sigma(p), float(ms.percent_to_sigma(p)), rel_tol=1e-5, abs_tol=1e-6)
