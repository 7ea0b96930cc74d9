"""The defaults never make a run worse than plain sampling, on the learned yardstick too.

The yardstick's models are trained on first use (CI's smaller ``test`` size, about half a minute on
one thread) and cached (research.learned.cache_dir()).
"""

import math
import pathlib

import pytest
import torch

import w2sd_core.sampling
from w2sd_core import (
    DEFAULTS,
    PAPER,
    TOY,
    Preset,
    ReflectionPlan,
    relative_step,
    sample_default,
    sample_euler,
    sample_euler_plain,
)
from research import toy_problem
from research.learned import EDMSchedule, TrainConfig, train

ROOT = pathlib.Path(__file__).resolve().parents[1]
EDM = EDMSchedule()
CELLS = [(s, t) for t in (20, 50) for s in ("normal", "karras")]


def test_relative_step_limit_reflects_only_small_steps():
    sigmas = [10.0, 8.0, 4.0, 3.5, 1.0, 0.0]  # relative steps 0.25, 1.0, 0.143, 2.5, (into 0)
    assert relative_step(10.0, 8.0) == pytest.approx(0.25)
    assert ReflectionPlan(steps=-1, max_step=0.3).reflected_steps(sigmas) == [0, 2]
    assert ReflectionPlan(steps=-1, max_step=1.0).reflected_steps(sigmas) == [0, 1, 2]
    assert ReflectionPlan(steps=-1).reflected_steps(sigmas) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="max_step"):
        ReflectionPlan(max_step=-0.1)
    # the same limit on any scheduler: EDM normal has one relative step, shrinking with the count
    r20, r50 = (relative_step(float(s[0]), float(s[1])) for s in (EDM.normal(20), EDM.normal(50)))
    assert r20 == pytest.approx(math.exp(math.log(80 / 0.002) / 19) - 1, rel=1e-4) and r50 < 0.25 < r20


@pytest.mark.parametrize("preset", [DEFAULTS, TOY], ids=["defaults", "toy"])
def test_sample_default_is_the_explicit_composition(monkeypatch, preset):
    monkeypatch.setattr(w2sd_core.sampling, "DEFAULTS", preset)
    p = toy_problem()
    sigmas = EDM.karras(20)
    x = torch.randn(256, 2, generator=torch.Generator().manual_seed(3)) * sigmas[0]
    got = sample_default(p.strong, x, sigmas, weak=p.weak, percent_to_sigma=EDM.percent_to_sigma)
    plan = ReflectionPlan.until_percent(
        preset.end_percent, EDM.percent_to_sigma, steps=preset.steps, repeats=preset.repeats, max_step=preset.max_step
    )
    explicit = sample_euler(
        p.strong,
        x,
        sigmas,
        weak=p.weak,
        plan=plan,
        inversion=preset.inversion,
        mode=preset.mode,
        guidance=preset.guidance,
    )
    assert torch.equal(got, explicit)
    plain = sample_euler_plain(p.strong, x, sigmas)
    assert torch.equal(got, plain) == (not plan.reflected_steps(sigmas))


@pytest.mark.parametrize("mode,extra", [("reflect", 2), ("guide", 1), ("reflect+guide", 3)])
def test_preset_evaluations_count_what_sample_euler_calls(mode, extra):
    # the yardstick's and the sweep's equal-evaluation baselines rest on this count
    sigmas = EDM.karras(20)
    preset = Preset(end_percent=0.3, mode=mode, guidance=0.5)
    planned = len(preset.plan(EDM.percent_to_sigma).reflected_steps(sigmas))
    calls = []

    def counted(x, sigma):
        calls.append(1)
        return x * 0.9

    x = torch.ones(4, 2) * sigmas[0]
    sample_euler(counted, x, sigmas, weak=counted, plan=preset.plan(EDM.percent_to_sigma), mode=mode, guidance=0.5)
    assert 0 < planned < 19 and len(calls) == preset.evaluations(sigmas, EDM.percent_to_sigma) == 20 + extra * planned
    assert Preset(mode="guide", guidance=0.0).evaluations(sigmas, EDM.percent_to_sigma) == 20


def test_the_core_defaults_need_no_node_input_the_nodes_lack():
    # the nodes have no step-limit input, so the core's default must not need one
    assert DEFAULTS.max_step is None and w2sd_core.DEFAULT_PLAN.steps == DEFAULTS.steps
    assert PAPER.steps == -1 and PAPER.end_percent == 1.0


def test_training_is_deterministic_and_keyed_by_its_config():
    cfg = TrainConfig(data="mixture", width=16, depth=2, iters=30, batch=64, checkpoints=(10,))
    a, b = train(cfg), train(cfg)
    assert set(a["weights"]) == {10, 30}
    for it in (10, 30):
        for k in a["weights"][it]:
            assert torch.equal(a["weights"][it][k], b["weights"][it][k]), k
    assert not torch.equal(a["weights"][10]["net.0.weight"], a["weights"][30]["net.0.weight"])
    assert cfg.key() != TrainConfig(data="mixture", width=16, depth=2, iters=31, batch=64).key()


# -- the learned yardstick (trained once per machine, cached) ------------------------------------------


@pytest.fixture(scope="module")
def yardsticks():
    from research.learned import make_yardstick

    pytest.importorskip("sklearn")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield {name: make_yardstick(name, "test") for name in ("mixture", "digits")}
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", ["mixture", "digits"])
def test_the_defaults_identity_control_is_plain_sampling_on_the_learned_yardstick(yardsticks, name):
    """Weak = strong must change nothing. Whether the default helps is measured on the image-like
    yardstick (tests/test_research_yardstick.py); on this one's 2-D ring, guidance trades coverage
    for precision and MMD rewards coverage (docs/defaults.md)."""
    from research import yardstick as ys

    y = yardsticks[name]
    noise = ys.noise_for(y)
    for scheduler, steps in CELLS:
        base = ys.plain(y, y.strong, scheduler, steps, noise)
        ident, _ = ys.run(y, y.strong, scheduler, steps, noise=noise)
        assert y.metric(ident) == pytest.approx(base, rel=1e-6), (name, scheduler, steps)


def test_the_yardstick_can_tell_inversion_error_from_nothing(yardsticks):
    """The identity control above could fail: with the paper's plan it moves samples off (at CI's
    small training size the metric barely notices; the full-size tables show 15-19x)."""
    from research import yardstick as ys

    y = yardsticks["mixture"]
    noise = ys.noise_for(y)
    base = ys.plain(y, y.strong, "karras", 50, noise)
    ident, evals = ys.run(y, y.strong, "karras", 50, PAPER, noise=noise)
    assert evals == 50 + 2 * 49
    sigmas = EDM.karras(50)
    drift = float((ident - sample_euler_plain(y.strong, noise * sigmas[0], sigmas)).norm(dim=1).pow(2).mean().sqrt())
    assert drift > 0.05, drift  # RMS distance from plain samples; data radius 1.5
    # and the weak models are weaker: plain sampling with either is worse than with the strong one
    for weak in (y.weak_early, y.weak_small):
        assert ys.plain(y, weak, "karras", 50, noise) > base


@pytest.mark.comfyui
def test_edm_schedule_is_comfyuis_arithmetic(comfy):
    import comfy.model_sampling
    import comfy.samplers
    from comfy.k_diffusion import sampling as k_sampling

    class EDM(comfy.model_sampling.ModelSamplingContinuousEDM, comfy.model_sampling.EDM):
        pass

    ms = EDM()
    ms.set_parameters(0.002, 80.0, 0.5)
    for steps in (20, 50):
        torch.testing.assert_close(
            EDMSchedule().normal(steps), comfy.samplers.normal_scheduler(ms, steps), atol=1e-5, rtol=1e-4
        )
        torch.testing.assert_close(
            EDMSchedule().karras(steps),
            k_sampling.get_sigmas_karras(steps, float(ms.sigma_min), float(ms.sigma_max)).float(),
            atol=1e-5,
            rtol=1e-4,
        )
    for p in (0.0, 0.1, 0.5, 0.8, 1.0):
        assert math.isclose(
            EDMSchedule().percent_to_sigma(p), float(ms.percent_to_sigma(p)), rel_tol=1e-4, abs_tol=1e-6
        )
