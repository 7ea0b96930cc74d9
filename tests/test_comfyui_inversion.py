"""W2SD Inversion Step against real ComfyUI: the inverted latent must round-trip through ComfyUI's own
samplers started at the split step with no added noise, for eps, v-prediction and flow models.

KSamplerAdvanced is reproduced exactly as ``nodes.common_ksampler`` calls it (zero noise for
add_noise=disable, start_step=k, last_step=steps, force_full_denoise) and SamplerCustomAdvanced as it
calls the guider (DisableNoise = zeros, the low sigmas of SplitSigmas); the real node classes run in
tests/test_comfyui_server.py.

Round-trip error of Euler inversion is first order: it shrinks like 1/steps. Measured on the tiny
random-weight models at 16x16 (relative L2 error, k = steps/2, inversion "next"):
eps 9.8e-3 -> 2.9e-3, v 0.20 -> 0.055, flow 9.3e-4 -> 2.4e-4 from 10 to 40 steps, while re-sampling
the latent without inverting it first is 0.35-0.54 off. The checks below ask for that behaviour with
margin; they fail if noise scaling, the latent format scale or the direction of the inversion is off.
"""

import copy

import pytest

import comfy_support
from sampling_support import rel

pytestmark = pytest.mark.comfyui

SIZE = 8  # 8x8 latents keep the 40-step runs cheap; the tiny UNet downsamples once


@pytest.fixture(scope="module")
def inversion(comfy):
    import comfy.utils

    progress = comfy.utils.PROGRESS_BAR_ENABLED
    comfy.utils.PROGRESS_BAR_ENABLED = False  # keeps pytest's output readable
    yield comfy_support.node_class("W2SDInversionStep")
    comfy.utils.PROGRESS_BAR_ENABLED = progress


@pytest.fixture(scope="module")
def models(comfy):
    return {kind: comfy_support.tiny_model(kind) for kind in ("eps", "v", "flow")}


def schedule(model, steps, scheduler="normal"):
    import comfy.samplers

    return comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, steps).cpu()


def ksampler_advanced(model, latent, steps, start, cfg=1.0, positive=None, negative=None, scheduler="normal"):
    """KSamplerAdvanced(add_noise=disable, start_at_step=start, end_at_step=10000,
    return_with_leftover_noise=disable, sampler euler), called as nodes.common_ksampler does."""
    import torch
    import comfy.sample

    positive = comfy_support.cond(0) if positive is None else positive
    negative = comfy_support.cond(1) if negative is None else negative
    latent_image = comfy.sample.fix_empty_latent_channels(model, latent["samples"])
    noise = torch.zeros(latent_image.size(), dtype=latent_image.dtype, layout=latent_image.layout, device="cpu")
    return comfy.sample.sample(
        model,
        noise,
        steps,
        cfg,
        "euler",
        scheduler,
        positive,
        negative,
        latent_image,
        denoise=1.0,
        disable_noise=True,
        start_step=start,
        last_step=10000,
        force_full_denoise=True,
        noise_mask=latent.get("noise_mask"),
        callback=None,
        disable_pbar=True,
        seed=0,
    )


def sampler_custom_advanced(model, latent, sigmas, cfg=1.0):
    """SamplerCustomAdvanced(DisableNoise, CFGGuider, KSamplerSelect euler, sigmas, latent)."""
    import torch
    import comfy.sample
    import comfy.samplers

    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(comfy_support.cond(0), comfy_support.cond(1))
    guider.set_cfg(cfg)
    latent_image = comfy.sample.fix_empty_latent_channels(model, latent["samples"])
    noise = torch.zeros(latent_image.size(), dtype=latent_image.dtype, layout=latent_image.layout, device="cpu")
    return guider.sample(
        noise,
        latent_image,
        comfy.samplers.sampler_object("euler"),
        sigmas,
        denoise_mask=latent.get("noise_mask"),
        disable_pbar=True,
        seed=0,
    )


def invert(node, model, latent, sigmas, cfg=1.0, inversion="next"):
    return node.execute(model, comfy_support.cond(0), comfy_support.cond(1), cfg, latent, sigmas, inversion).result[0]


@pytest.mark.parametrize("kind", ["eps", "v", "flow"])
def test_round_trip_with_ksampler_advanced_shrinks_with_steps(inversion, models, kind):
    model = models[kind]
    latent = comfy_support.latent(1, SIZE, seed=3)
    errors = {}
    for steps in (10, 40):
        k = steps // 2
        sigmas = schedule(model, steps)
        inverted = invert(inversion, model, latent, sigmas[k:])  # SplitSigmas(step=k) low part
        assert inverted["samples"].shape == latent["samples"].shape
        assert bool(inverted["samples"].isfinite().all())
        back = ksampler_advanced(model, inverted, steps, k)
        errors[steps] = rel(back, latent["samples"])
        if steps == 10:
            # Without the inversion, re-sampling from sigma_k lands far from the latent: the check
            # below has something to detect.
            baseline = rel(ksampler_advanced(model, latent, steps, k), latent["samples"])
            assert rel(inverted["samples"], latent["samples"]) > 0.1, "the inversion did not move"
            # SamplerCustomAdvanced + the low sigmas of SplitSigmas is the same round trip.
            custom = sampler_custom_advanced(model, inverted, sigmas[k:])
            assert float((custom - back).abs().max()) < 1e-5
    assert errors[40] < 0.5 * errors[10], errors  # first order: ~4x smaller measured
    assert errors[40] < 0.1, errors
    assert errors[40] < baseline / 5, (errors, baseline)


def test_round_trip_with_cfg_and_current_label(inversion, models):
    model = models["eps"]
    latent = comfy_support.latent(1, SIZE, seed=4)
    steps, k = 10, 5
    sigmas = schedule(model, steps)
    for mode in ("next", "current"):
        inverted = invert(inversion, model, latent, sigmas[k:], cfg=3.0, inversion=mode)
        assert bool(inverted["samples"].isfinite().all())
        back = ksampler_advanced(model, inverted, steps, k, cfg=3.0)
        assert rel(back, latent["samples"]) < 0.05, mode
    # The two labels are different inversions.
    a = invert(inversion, model, latent, sigmas[k:], inversion="next")["samples"]
    b = invert(inversion, model, latent, sigmas[k:], inversion="current")["samples"]
    assert float((a - b).abs().max()) > 1e-4


@pytest.mark.parametrize("kind", ["eps", "flow"])
def test_noise_mask_and_latent_keys(inversion, models, kind):
    """Unmasked regions stay on the input latent (as in ComfyUI's inpainting with zero noise), the
    masked region is inverted, the latent's other keys pass through and the round trip holds."""
    import torch

    model = models[kind]
    latent = comfy_support.latent(2, SIZE, seed=5)
    mask = torch.zeros(1, SIZE, SIZE)
    mask[..., : SIZE // 2] = 1.0
    latent.update(noise_mask=mask, batch_index=[3, 4])
    steps, k = 10, 5
    inverted = invert(inversion, model, latent, schedule(model, steps)[k:])
    assert inverted["noise_mask"] is mask and inverted["batch_index"] == [3, 4]
    kept, moved = inverted["samples"][..., SIZE // 2 :], inverted["samples"][..., : SIZE // 2]
    assert torch.allclose(kept, latent["samples"][..., SIZE // 2 :], atol=1e-5)
    assert rel(moved, latent["samples"][..., : SIZE // 2]) > 0.1
    back = ksampler_advanced(model, inverted, steps, k)
    assert rel(back, latent["samples"]) < 0.05


def test_ascending_sigmas_and_partial_segment(inversion, models):
    """Ascending SIGMAS give the same result; a segment that does not reach 0 inverts a partly
    noised latent (as KSamplerAdvanced with return_with_leftover_noise hands it out) and round-trips
    with the matching sampler segment."""
    import torch
    import comfy.sample

    model = models["flow"]
    latent = comfy_support.latent(1, SIZE, seed=6)
    sigmas = schedule(model, 10)
    down = invert(inversion, model, latent, sigmas[5:])["samples"]
    up = invert(inversion, model, latent, sigmas[5:].flip(0))["samples"]
    assert torch.equal(down, up)

    def segment(samples, noise, start, last):
        return comfy.sample.sample(
            model,
            noise,
            10,
            1.0,
            "euler",
            "normal",
            comfy_support.cond(0),
            comfy_support.cond(1),
            samples,
            disable_noise=False,
            start_step=start,
            last_step=last,
            force_full_denoise=False,
            disable_pbar=True,
            seed=0,
        )

    empty = torch.zeros(1, 4, SIZE, SIZE)
    noise = torch.randn(1, 4, SIZE, SIZE, generator=torch.Generator().manual_seed(8))
    partial = segment(empty, noise, 0, 5)  # leftover noise at sigma_5
    inverted = invert(inversion, model, {"samples": partial}, sigmas[2:6])  # sigma_5 -> sigma_2
    back = segment(inverted["samples"], torch.zeros_like(partial), 2, 5)
    assert rel(inverted["samples"], partial) > 0.05
    assert rel(back, partial) < 0.05


def test_model_untouched(inversion, models):
    import torch

    model = models["v"]
    weights = {k: v.clone() for k, v in model.model.state_dict().items()}
    options = copy.deepcopy(model.model_options)
    invert(inversion, model, comfy_support.latent(1, SIZE, seed=7), schedule(model, 4)[2:], cfg=2.0)
    assert model.model_options == options
    assert not model.patches
    for key, value in model.model.state_dict().items():
        assert torch.equal(value, weights[key]), key


@pytest.mark.parametrize(
    "sigmas, message",
    [
        ([0.0], "at least 2 sigmas"),
        ([], "at least 2 sigmas"),
        ([0.0, 0.0, 0.0], "all zero"),
        ([1.0, 2.0, 0.5], "monotone"),
        ([1.0, 1.0], "all sigmas equal"),
        ([1.0, -0.5], "negative"),
        ([float("nan"), 0.0], "non-finite"),
    ],
)
def test_clear_errors_for_bad_sigmas(inversion, models, sigmas, message):
    import torch

    with pytest.raises(ValueError, match=message):
        invert(inversion, models["eps"], comfy_support.latent(1, SIZE, seed=0), torch.tensor(sigmas))


def test_clear_error_for_bad_inversion_mode(inversion, models):
    with pytest.raises(ValueError, match="inversion must be one of"):
        invert(
            inversion,
            models["eps"],
            comfy_support.latent(1, SIZE, seed=0),
            schedule(models["eps"], 4)[2:],
            inversion="official",
        )


def test_schema(inversion):
    schema = inversion.define_schema()
    assert schema.node_id == "W2SDInversionStep" and schema.category == "sampling/w2sd"
    assert schema.description
    ids = [i.id for i in schema.inputs]
    assert ids == ["model", "positive", "negative", "cfg", "latent", "sigmas", "inversion"]
    cfg = schema.inputs[3]
    assert cfg.default == 1.0
    mode = schema.inputs[6]
    assert mode.optional and mode.default == "next" and list(mode.options) == ["next", "current"]
    for item in [*schema.inputs, *schema.outputs]:
        assert item.tooltip, item


def test_flow_inversion_to_pure_noise_is_a_clear_error(inversion, models):
    """A flow model's top sigma is 1 (pure noise): a sampler started there with no added noise
    multiplies the latent by 1 - sigma = 0, so no LATENT can carry the result (it came out inf)."""
    sigmas = schedule(models["flow"], 4, "simple")
    assert float(sigmas[0]) == 1.0
    with pytest.raises(ValueError, match="flow model.*sigma 1"):
        invert(inversion, models["flow"], comfy_support.latent(1, SIZE, seed=0), sigmas)
    # one step below the top is fine, and so is the full schedule of an eps model
    out = invert(inversion, models["flow"], comfy_support.latent(1, SIZE, seed=0), sigmas[1:])
    assert bool(out["samples"].isfinite().all())
    out = invert(inversion, models["eps"], comfy_support.latent(1, SIZE, seed=0), schedule(models["eps"], 4))
    assert bool(out["samples"].isfinite().all())
