"""W2SD Sampler inside real ComfyUI, driven the way SamplerCustomAdvanced drives a sampler
(``guider.sample(noise, latent, sampler, sigmas, ...)``), with tiny models.

Several tests use the exact denoiser of Gaussian data (sampling_support.instrument(analytic=True)),
installed through ComfyUI's own unet-function wrapper: it is fast, does not depend on the prompt,
so a CFG pair gives strong == weak, and reflection is then nearly the identity. A reflected run
must then land near the plain run of the same sampler with the same noise. Broken slicing (a span
that does not advance, a sampler returning a lagged state, ancestral/SDE noise repeated at every
step) moves it 2-10x further than the tolerance.
"""

import functools
import logging

import pytest
import torch

import comfy_support as cs
from sampling_support import cfg_recorder, instrument, karras_sigmas, rel, w2sd_sampler

pytestmark = pytest.mark.comfyui

SEED = 7


def _custom_advanced(guider, sampler, sigmas, latent, seed=SEED, callback=None):
    """SamplerCustomAdvanced with RandomNoise: comfy_extras.nodes_custom_sampler, step by step."""
    import comfy.sample

    latent_image = comfy.sample.fix_empty_latent_channels(guider.model_patcher, latent["samples"])
    noise = comfy.sample.prepare_noise(latent_image, seed, latent.get("batch_index", None))
    return guider.sample(
        noise,
        latent_image,
        sampler,
        sigmas.clone(),
        denoise_mask=latent.get("noise_mask"),
        callback=callback,
        disable_pbar=True,
        seed=seed,
    )


def _cfg_guider(model, cfg=5.0, kind="eps"):
    import comfy.samplers

    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(cs.cond(0, kind), cs.cond(1, kind))
    guider.set_cfg(cfg)
    return guider


@pytest.mark.parametrize("name", ["euler_ancestral", "dpmpp_2m_sde", "uni_pc"])
def test_lambda_zero_is_the_wrapped_sampler_bit_for_bit(comfy, name):
    import comfy.samplers

    model = cs.tiny_model("eps")
    latent = cs.latent(1, 8)
    sigmas = karras_sigmas(model, 4, "normal")
    plain = _custom_advanced(_cfg_guider(model), comfy.samplers.sampler_object(name), sigmas, latent)
    for inputs in ({"reflect_steps": 0}, {"reflect_steps": 0, "strong_cfg": 5.5, "weak_cfg": 1.0}):
        wrapped = _custom_advanced(
            _cfg_guider(model), w2sd_sampler(comfy.samplers.sampler_object(name), **inputs), sigmas, latent
        )
        assert torch.equal(plain, wrapped), inputs


def test_nothing_differs_samples_plainly_and_warns(comfy, caplog):
    import comfy.samplers

    model, calls = instrument(cs.tiny_model("eps"))
    latent = cs.latent(1, 8)
    sigmas = karras_sigmas(model, 4)
    plain = _custom_advanced(_cfg_guider(model), comfy.samplers.sampler_object("euler"), sigmas, latent)
    calls.clear()
    sampler = w2sd_sampler(comfy.samplers.sampler_object("euler"))  # default plan, no CFG pair
    with caplog.at_level(logging.WARNING):
        out = _custom_advanced(_cfg_guider(model), sampler, sigmas, latent)
    assert torch.equal(plain, out)
    assert len(calls) == 4 and all(c.role is None for c in calls)  # no wasted evaluation
    assert "nothing differs" in caplog.text
    assert sampler.report.skipped and sampler.report.reflections == 0


def test_cfg_pair_with_a_plain_cfg_guider(comfy):
    """Z-Sampling's pair on a stock CFGGuider: strong passes at 5.5 (cond + uncond), weak passes at
    1.0 (cond only: ComfyUI skips the uncond at cfg 1), normal steps at the guider's 5.0."""
    import comfy.samplers

    recorded, scales = cfg_recorder(cs.tiny_model("eps"))
    model, calls = instrument(recorded, analytic=True)
    guider = _cfg_guider(model, cfg=5.0)
    sampler = w2sd_sampler(comfy.samplers.sampler_object("euler"), reflect_steps=3, strong_cfg=5.5, weak_cfg=1.0)
    out = _custom_advanced(guider, sampler, karras_sigmas(model, 6), cs.latent(1, 8))
    assert torch.isfinite(out).all()
    assert [s for r, s in scales if r is None] == [5.0] * 6
    assert [s for r, s in scales if r == "reflect_strong"] == [5.5] * 3
    assert [s for r, s in scales if r == "reflect_weak"] == [1.0] * 3
    assert {c.batch for c in calls if c.role == "reflect_weak"} == {1}
    assert {c.batch for c in calls if c.role == "reflect_strong"} == {2}
    assert guider.cfg == 5.0  # put back after each call
    assert sampler.report.cost.passes == sum(c.batch for c in calls)


def test_w2sd_guider_settings_win_over_the_samplers(comfy):
    import comfy.samplers

    recorded, scales = cfg_recorder(cs.tiny_model("eps"))
    model, _ = instrument(recorded, analytic=True)
    guider = cs.node_class("W2SDGuider").execute(model, cs.cond(0), cs.cond(1), 5.0, strong_cfg=3.0).args[0]
    sampler = w2sd_sampler(comfy.samplers.sampler_object("euler"), reflect_steps=2, strong_cfg=7.0, weak_cfg=2.0)
    _custom_advanced(guider, sampler, karras_sigmas(model, 4), cs.latent(1, 8))
    assert [s for r, s in scales if r == "reflect_strong"] == [3.0, 3.0]  # the guider's own value
    assert [s for r, s in scales if r == "reflect_weak"] == [2.0, 2.0]  # guider left it at -1
    assert [s for r, s in scales if r is None] == [5.0] * 4


def test_every_sampler_works_with_reflection(comfy):
    """Full-length reflection (λ = -1, no end window) with strong == weak lands near the plain run of
    the same sampler and seed: each span advances to its end, multistep and stochastic samplers
    are sliced correctly, and the ancestral/SDE noise is the plain run's, not repeated per step."""
    import comfy.samplers

    model, _ = instrument(cs.tiny_model("eps"), analytic=True)
    sigmas = karras_sigmas(model, 16)
    latent = cs.latent(1, 8)
    for name in comfy.samplers.KSampler.SAMPLERS:
        plain = _custom_advanced(_cfg_guider(model), comfy.samplers.sampler_object(name), sigmas, latent)
        sampler = w2sd_sampler(
            comfy.samplers.sampler_object(name), strong_cfg=5.5, weak_cfg=1.0, reflect_end_percent=1.0
        )
        out = _custom_advanced(_cfg_guider(model), sampler, sigmas, latent)
        assert sampler.report.reflections == 15, name
        assert torch.isfinite(out).all(), name
        if name.startswith("sa_solver"):
            # Its reflected steps run as Euler steps (see sampler.py), so it is another realisation
            # of its stochastic process: compare the spread only.
            assert 0.5 < float(out.std() / plain.std()) < 2.0, name
        else:
            assert rel(out, plain) < 0.6, (name, rel(out, plain))


def _recording(fn, drawn, own_noise_sampler):
    """``fn`` recording every noise draw. Without a noise sampler given it builds the one ``fn``
    builds for itself (k-diffusion's code), so a plain run records the plain noise."""

    @functools.wraps(fn)
    def run(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None, **options):
        source = noise_sampler or own_noise_sampler(x, sigmas, extra_args.get("seed"))

        def record(sigma, sigma_next):
            noise = source(sigma, sigma_next)
            drawn.append(noise.clone())
            return noise

        return fn(
            model, x, sigmas, extra_args=extra_args, callback=callback, disable=disable, noise_sampler=record, **options
        )

    return run


@pytest.mark.parametrize("name", ["euler_ancestral", "dpmpp_2m_sde"])
def test_stochastic_noise_is_not_repeated_across_slices(comfy, name):
    import comfy.k_diffusion.sampling as k
    import comfy.samplers

    fn = getattr(k, f"sample_{name}")
    if name == "dpmpp_2m_sde":

        def own(x, sigmas, seed):
            return k.BrownianTreeNoiseSampler(x, sigmas[sigmas > 0].min(), sigmas.max(), seed=seed, cpu=True)
    else:

        def own(x, sigmas, seed):
            return k.default_noise_sampler(x, seed=seed)

    model, _ = instrument(cs.tiny_model("eps"), analytic=True)
    sigmas, latent = karras_sigmas(model, 6), cs.latent(1, 8)
    plain_draws, reflected_draws = [], []
    _custom_advanced(_cfg_guider(model), comfy.samplers.KSAMPLER(_recording(fn, plain_draws, own)), sigmas, latent)
    sampler = w2sd_sampler(
        comfy.samplers.KSAMPLER(_recording(fn, reflected_draws, own)),
        strong_cfg=5.5,
        weak_cfg=1.0,
        reflect_end_percent=1.0,
    )
    _custom_advanced(_cfg_guider(model), sampler, sigmas, latent)
    assert sampler.report.reflections == 5
    assert len(reflected_draws) == len(plain_draws) >= 4
    for i in range(len(reflected_draws)):
        for j in range(i):
            assert not torch.allclose(reflected_draws[i], reflected_draws[j]), (i, j)
    for a, b in zip(reflected_draws, plain_draws):  # the plain run's noise, step for step
        assert torch.allclose(a, b, atol=1e-6)


def test_multistep_history_is_kept_after_the_last_reflection(comfy):
    import comfy.k_diffusion.sampling as k
    import comfy.samplers

    spans = []

    @functools.wraps(k.sample_dpmpp_2m)
    def counting(model, x, sigmas, **kwargs):
        spans.append(len(sigmas) - 1)
        return k.sample_dpmpp_2m(model, x, sigmas, **kwargs)

    model, _ = instrument(cs.tiny_model("eps"), analytic=True)
    for reflect_steps, expected in ((3, [1, 1, 6]), (1, [8])):
        spans.clear()
        sampler = w2sd_sampler(
            comfy.samplers.KSAMPLER(counting), reflect_steps=reflect_steps, strong_cfg=5.5, weak_cfg=1.0
        )
        _custom_advanced(_cfg_guider(model), sampler, karras_sigmas(model, 8), cs.latent(1, 8))
        assert spans == expected


@pytest.mark.parametrize("name", ["euler", "dpmpp_2m", "uni_pc"])
def test_callback_gets_the_global_step_and_total(comfy, name):
    import comfy.samplers

    model, _ = instrument(cs.tiny_model("eps"), analytic=True)
    seen = []
    sampler = w2sd_sampler(comfy.samplers.sampler_object(name), reflect_steps=3, strong_cfg=5.5, weak_cfg=1.0)
    _custom_advanced(
        _cfg_guider(model),
        sampler,
        karras_sigmas(model, 6),
        cs.latent(1, 8),
        callback=lambda step, x0, x, total: seen.append((step, total)),
    )
    assert seen == [(i, 6) for i in range(6)]


def test_interruption_stops_before_the_next_extra_evaluation(comfy):
    import comfy.model_management as mm
    import comfy.samplers

    model, calls = instrument(cs.tiny_model("eps"), analytic=True)
    state = {}

    def callback(step, x0, x, total):
        if step == 0:
            mm.interrupt_current_processing(True)
            state["calls"] = len(calls)

    sampler = w2sd_sampler(comfy.samplers.sampler_object("euler"), strong_cfg=5.5, weak_cfg=1.0)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            _custom_advanced(_cfg_guider(model), sampler, karras_sigmas(model, 6), cs.latent(1, 8), callback=callback)
    finally:
        mm.interrupt_current_processing(False)
    assert len(calls) == state["calls"]  # the reflection of step 1 never evaluated the model


def test_official_inversion_is_refused_on_flow_models(comfy):
    import comfy.samplers

    model, _ = instrument(cs.tiny_model("flow"), analytic=True)
    sampler = w2sd_sampler(comfy.samplers.sampler_object("euler"), inversion="official", strong_cfg=5.5, weak_cfg=1.0)
    with pytest.raises(ValueError, match="flow"):
        _custom_advanced(_cfg_guider(model), sampler, karras_sigmas(model, 4, "simple"), cs.latent(1, 8))


def test_wrapping_errors_are_clear(comfy):
    import comfy.samplers

    wrapped = w2sd_sampler(comfy.samplers.sampler_object("euler"))
    with pytest.raises(ValueError, match="already a W2SD Sampler"):
        w2sd_sampler(wrapped)

    class OwnLoop(comfy.samplers.Sampler):
        def sample(self, *args, **kwargs):
            raise AssertionError("not called")

    with pytest.raises(ValueError, match="KSAMPLER"):
        w2sd_sampler(OwnLoop())
    model, _ = instrument(cs.tiny_model("eps"), analytic=True)
    import comfy_extras.nodes_custom_sampler as custom

    basic = custom.Guider_Basic(model)
    basic.set_conds(cs.cond(0))
    with pytest.raises(ValueError, match="strong_cfg / weak_cfg"):
        _custom_advanced(
            basic,
            w2sd_sampler(comfy.samplers.sampler_object("euler"), strong_cfg=5.5, weak_cfg=1.0),
            karras_sigmas(model, 4),
            cs.latent(1, 8),
        )


def test_dpm_adaptive_is_not_restarted_on_every_reflected_step(comfy, monkeypatch):
    """dpm_adaptive has no steps of its own: it runs its own step-size control from the first to the
    last sigma it is given. Restarted on each reflected step it redrew its (eta > 0) noise from the
    seed every time, reported its own step counter as the progress (the bar ran backwards) and took
    several times the evaluations. Its reflected steps must run as single steps instead."""
    import comfy.k_diffusion.sampling as k
    import comfy.samplers

    drawn = []
    original = k.default_noise_sampler

    def recording(x, seed=None):
        source = original(x, seed=seed)

        def draw(sigma, sigma_next):
            noise = source(sigma, sigma_next)
            drawn.append(noise.clone())
            return noise

        return draw

    monkeypatch.setattr(k, "default_noise_sampler", recording)
    model, calls = instrument(cs.tiny_model("eps"), analytic=True)
    steps = []
    inner = comfy.samplers.ksampler("dpm_adaptive", {"eta": 0.5, "s_noise": 1.0})  # SamplerDPMAdaptative
    sampler = w2sd_sampler(inner, strong_cfg=5.5, weak_cfg=1.0, reflect_end_percent=1.0)
    out = _custom_advanced(
        _cfg_guider(model),
        sampler,
        karras_sigmas(model, 6),
        cs.latent(1, 8),
        callback=lambda step, x0, x, total: steps.append(step),
    )
    assert torch.isfinite(out).all()
    assert sampler.report.reflections == 5
    assert steps == sorted(steps) and steps[:5] == [0, 1, 2, 3, 4], steps
    assert [c.role for c in calls][:15] == ["reflect_strong", "reflect_weak", None] * 5
    assert len(drawn) >= 2
    for i in range(len(drawn)):
        for j in range(i):
            assert not torch.equal(drawn[i], drawn[j]), (i, j)


def test_every_sampler_of_this_comfyui_has_a_slicing_rule(comfy):
    """Each sampler the running ComfyUI lists is either known to run any slice or has its reason
    for Euler slices: a sampler added by a newer ComfyUI shows up here as unknown, so its safe
    path (below) is a decision, not an accident."""
    import comfy.samplers

    slicing = cs.pack_module("nodes.sampling.slicing")
    unknown = [
        name
        for name in comfy.samplers.KSampler.SAMPLERS
        if slicing.name_of(comfy.samplers.sampler_object(name).sampler_function)
        not in slicing.ANY_SLICE | slicing.EULER_INSIDE.keys()
    ]
    assert unknown == []


def test_an_unknown_sampler_runs_only_the_last_slice_itself(comfy, caplog):
    """A sampler W2SD does not know is never cut into slices: its reflected steps run as Euler
    steps and it runs once, from the last reflected step to the end; the log says so once."""
    import comfy.k_diffusion.sampling as k
    import comfy.samplers

    slices = []

    def sample_newer_than_w2sd(model, x, sigmas, extra_args=None, callback=None, disable=None):
        slices.append(len(sigmas) - 1)
        return k.sample_euler(model, x, sigmas, extra_args=extra_args, callback=callback, disable=disable)

    model, calls = instrument(cs.tiny_model("eps"), analytic=True)
    sigmas = karras_sigmas(model, 8)
    with caplog.at_level(logging.WARNING, logger="w2sd"):
        for _ in range(2):
            slices.clear()
            sampler = w2sd_sampler(
                comfy.samplers.KSAMPLER(sample_newer_than_w2sd), strong_cfg=5.5, weak_cfg=1.0, reflect_end_percent=1.0
            )
            out = _custom_advanced(_cfg_guider(model), sampler, sigmas, cs.latent(1, 8))
            assert torch.isfinite(out).all()
            assert sampler.report.reflections == 7
            assert slices == [2], slices  # the last reflected step (6) and the final step
    assert sum("sample_newer_than_w2sd" in r.getMessage() for r in caplog.records) == 1
