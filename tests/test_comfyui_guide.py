"""Guide mode inside real ComfyUI with tiny models: the guided evaluation is D_s + w (D_s - D_w)
computed from each side's own call, for every pair type; a prompt pair takes one batched model
call; w = 0 is plain sampling bit for bit; the reported cost is the counted one; every sampler
and model family runs guided. Also the Reflective KSampler (Advanced): KSampler (Advanced) bit for
bit at reflect_steps 0, on split schedules."""

import pytest
import torch

import comfy_support as cs
from sampling_support import instrument, karras_sigmas, ksampler_reference, w2sd_sampler

pytestmark = pytest.mark.comfyui

SEED = 11


def _run(guider, sampler, sigmas, latent=None, seed=SEED):
    import comfy.sample

    latent = latent or cs.latent(1, 8)
    latent_image = comfy.sample.fix_empty_latent_channels(guider.model_patcher, latent["samples"])
    noise = comfy.sample.prepare_noise(latent_image, seed)
    return guider.sample(noise, latent_image, sampler, sigmas.clone(), disable_pbar=True, seed=seed)


def _probe(record, tagged):
    """A sampler that only evaluates: the plain call at the first sigma, then each role in
    ``tagged`` by its tag; it records the outputs and returns its input."""
    import comfy.samplers

    roles = cs.pack_module("nodes.sampling.roles")

    def sample_probe(model, x, sigmas, extra_args=None, callback=None, disable=None):
        s = x.new_ones([x.shape[0]]) * sigmas[0]
        record["call"] = model(x, s, **extra_args)
        for role in tagged:
            options = roles.with_role(extra_args.get("model_options", {}), role)
            record[role] = model(x, s, **{**extra_args, "model_options": options})
        return x

    return comfy.samplers.KSAMPLER(sample_probe)


def _guided_vs_sides(guider, w=1.5):
    """The guided evaluation of a run, and D_s + w (D_s - D_w) from the sides' own calls."""
    roles = cs.pack_module("nodes.sampling.roles")
    sigmas = karras_sigmas(guider.model_patcher, 4)
    sides, guided = {}, {}
    _run(guider, w2sd_sampler(_probe(sides, (roles.STRONG, roles.WEAK)), reflect_steps=0), sigmas)
    _run(
        guider,
        w2sd_sampler(_probe(guided, ()), reflect_steps=-1, reflect_end_percent=1.0, mode="guide", guidance=w),
        sigmas,
    )
    d_s, d_w = sides[roles.STRONG], sides[roles.WEAK]
    assert float((d_s - d_w).abs().max()) > 1e-3  # the sides differ: the check can fail
    return guided["call"], d_s + w * (d_s - d_w)


def _w2sd_guider(model, **optional):
    return cs.node_class("W2SDGuider").execute(model, cs.cond(0), cs.cond(1), 4.0, **optional).args[0]


def test_a_prompt_pair_is_guided_in_one_batched_call(comfy):
    model, calls = instrument(cs.tiny_model("eps"))
    guider = _w2sd_guider(model, weak_positive=cs.cond(5), weak_cfg=2.0)
    calls.clear()
    got, want = _guided_vs_sides(guider)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-4)
    guided_calls = [c for c in calls if c.role == "guide"]
    assert len(guided_calls) == 1 and guided_calls[0].batch == 4  # s_pos, s_neg, w_pos, w_neg


def test_a_checkpoint_pair_is_guided_from_two_calls(comfy):
    weak = cs.tiny_model("eps", seed=3)
    got, want = _guided_vs_sides(_w2sd_guider(cs.tiny_model("eps"), weak_model=weak))
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-4)


def test_a_model_carrying_a_lora_pair_is_guided_per_role(comfy, tmp_path):
    import comfy.sd

    base = cs.tiny_model("eps", seed=1)
    pair = (
        cs.pack_module("nodes.pair_types.lora.build")
        .build_lora_pair(base, cs.kohya_lora(base, seed=2, tucker=False), "test", 0.5, 1.5, -1.0)
        .model
    )
    counted, calls = instrument(pair)
    calls.clear()
    got, want = _guided_vs_sides(_w2sd_guider(counted))
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-4)
    # one model call for both sides: the LoRA delta takes each chunk's strength
    guided_calls = [c for c in calls if c.role == "guide"]
    assert len(guided_calls) == 1 and guided_calls[0].batch == 4
    # and the sides are the LoRA at its strong and weak strengths
    strong = comfy.sd.load_lora_for_models(base, None, cs.kohya_lora(base, seed=2, tucker=False), 1.5, 0)[0]
    sides = {}
    _run(_w2sd_guider(strong), w2sd_sampler(_probe(sides, ()), reflect_steps=0), karras_sigmas(base, 4))
    d_s = {}
    roles = cs.pack_module("nodes.sampling.roles")
    _run(_w2sd_guider(pair), w2sd_sampler(_probe(d_s, (roles.STRONG,)), reflect_steps=0), karras_sigmas(base, 4))
    assert torch.allclose(d_s[roles.STRONG], sides["call"], atol=1e-5, rtol=1e-4)


def test_a_cfg_pair_in_guide_mode_is_plain_cfg_at_another_scale(comfy):
    """D_s + w (D_s - D_w) with one model and one prompt is CFG at cfg_s + w (cfg_s - cfg_w): a
    guided evaluation is one plain evaluation at that CFG, at the plain run's cost."""
    import comfy.samplers

    model, calls = instrument(cs.tiny_model("eps"))
    sigmas = karras_sigmas(model, 4)

    def cfg_guider(cfg):
        guider = comfy.samplers.CFGGuider(model)
        guider.set_conds(cs.cond(0), cs.cond(1))
        guider.set_cfg(cfg)
        return guider

    guided, reference = {}, {}
    sampler = w2sd_sampler(
        _probe(guided, ()),
        strong_cfg=4.0,
        weak_cfg=2.0,
        mode="guide",
        guidance=0.5,
        reflect_steps=-1,
        reflect_end_percent=1.0,
    )
    calls.clear()
    _run(cfg_guider(4.0), sampler, sigmas)
    assert len(calls) == 1
    _run(cfg_guider(5.0), w2sd_sampler(_probe(reference, ()), reflect_steps=0), sigmas)  # 4 + 0.5 (4 - 2)
    assert torch.equal(guided["call"], reference["call"])
    assert sampler.report.cost.passes == sampler.report.cost.plain_passes


def test_guidance_zero_and_nothing_to_guide_are_ksampler_bit_for_bit(comfy):
    model = cs.tiny_model("eps")
    latent = cs.latent(1, 8)
    expected = ksampler_reference(model, 5, 4, 5.0, "dpmpp_2m", "karras", cs.cond(0), cs.cond(1), latent)
    node = cs.node_class("W2SDReflectiveKSampler")
    for optional in (
        {"weak_positive": cs.cond(4), "guidance": 0.0},  # w = 0
        {"guidance": 2.0},
    ):  # nothing differs
        out = node.execute(
            model,
            5,
            4,
            5.0,
            "dpmpp_2m",
            "karras",
            cs.cond(0),
            cs.cond(1),
            latent,
            1.0,
            mode="guide",
            reflect_steps=-1,
            **optional,
        ).args[0]
        assert torch.equal(out["samples"], expected["samples"]), optional


def test_reported_cost_is_what_ran_in_each_mode(comfy):
    """passes = UNet passes counted (batch / latent batch); guided evaluations of a prompt pair are
    batched, so the calls are fewer than the evaluations."""
    model, calls = instrument(cs.tiny_model("eps"))
    for mode in ("reflect", "guide", "reflect+guide"):
        sampler = w2sd_sampler("euler", reflect_steps=-1, reflect_end_percent=1.0, mode=mode)
        calls.clear()
        _run(_w2sd_guider(model, weak_positive=cs.cond(6)), sampler, karras_sigmas(model, 5))
        cost = sampler.report.cost
        assert cost.passes == sum(c.batch for c in calls), mode
        assert cost.guided == (4 if "guide" in mode else 0) and cost.reflections == (0 if mode == "guide" else 4)
        assert cost.evaluations == 5 + 2 * cost.reflections + cost.guided, mode


def test_every_sampler_runs_in_guide_mode(comfy):
    import comfy.samplers

    model, _ = instrument(cs.tiny_model("eps"), analytic=True)
    guider = _w2sd_guider(model, weak_positive=cs.cond(7), strong_cfg=5.0, weak_cfg=1.0)
    for name in comfy.samplers.KSampler.SAMPLERS:
        sampler = w2sd_sampler(name, reflect_steps=-1, reflect_end_percent=1.0, mode="reflect+guide")
        out = _run(guider, sampler, karras_sigmas(model, 6))
        assert torch.isfinite(out).all(), name
        assert sampler.report.cost.guided > 0, name


def test_every_model_family_runs_in_guide_mode(comfy):
    import comfy.model_base as mb
    from test_comfyui_ksampler import _model_of_type

    node = cs.node_class("W2SDReflectiveKSampler")
    for model_type in mb.ModelType:
        result = node.execute(
            _model_of_type(model_type),
            1,
            5,
            4.0,
            "euler",
            "normal",
            cs.cond(0),
            cs.cond(1),
            cs.latent(1, 8),
            1.0,
            weak_positive=cs.cond(3),
            reflect_steps=-1,
            mode="guide",
        )
        assert torch.isfinite(result.args[0]["samples"]).all(), model_type
        assert "guided evaluation" in result.ui.as_dict()["text"][0], model_type


# ---------------------------------------------------------------- the Advanced node
def _advanced(model, latent, **inputs):
    node = cs.node_class("W2SDReflectiveKSamplerAdvanced")
    return node.execute(
        model,
        inputs.pop("add_noise", "enable"),
        5,
        6,
        5.0,
        inputs.pop("sampler", "euler"),
        "normal",
        cs.cond(0),
        cs.cond(1),
        latent,
        inputs.pop("start", 0),
        inputs.pop("end", 10000),
        inputs.pop("leftover", "disable"),
        **inputs,
    ).args[0]


@pytest.mark.parametrize("sampler", ["euler_ancestral", "dpmpp_2m"])
def test_advanced_at_reflect_steps_zero_is_ksampler_advanced_bit_for_bit(comfy, sampler):
    """A two-part split schedule (Wan 2.2's expert chain): first part with leftover noise, second
    part without added noise."""
    import nodes

    model = cs.tiny_model("eps")
    latent = cs.latent(1, 8)
    stock = nodes.KSamplerAdvanced()
    first = stock.sample(model, "enable", 5, 6, 5.0, sampler, "normal", cs.cond(0), cs.cond(1), latent, 0, 3, "enable")[
        0
    ]
    second = stock.sample(
        model, "disable", 5, 6, 5.0, sampler, "normal", cs.cond(0), cs.cond(1), first, 3, 10000, "disable"
    )[0]
    ours_first = _advanced(model, latent, sampler=sampler, end=3, leftover="enable", reflect_steps=0)
    ours_second = _advanced(model, ours_first, sampler=sampler, add_noise="disable", start=3, reflect_steps=0)
    assert torch.equal(ours_first["samples"], first["samples"])
    assert torch.equal(ours_second["samples"], second["samples"])
    # starting past the end returns the input, as KSampler (Advanced) does
    past = _advanced(model, first, start=6, reflect_steps=0)
    assert torch.equal(
        past["samples"],
        stock.sample(model, "enable", 5, 6, 5.0, sampler, "normal", cs.cond(0), cs.cond(1), first, 6, 10000, "disable")[
            0
        ]["samples"],
    )


def test_advanced_reflects_only_the_part_it_runs(comfy):
    model, calls = instrument(cs.tiny_model("eps"))
    first = _advanced(model, cs.latent(1, 8), end=3, leftover="enable", reflect_steps=0)
    calls.clear()
    _advanced(
        model,
        first,
        add_noise="disable",
        start=3,
        reflect_steps=-1,
        reflect_end_percent=1.0,
        strong_cfg=5.0,
        weak_cfg=1.0,
        mode="reflect",
    )
    # steps 3-5 of the 6 run here; step 5 goes into sigma 0 and is never reflected
    assert [c.role for c in calls].count("reflect_strong") == 2


def test_the_pair_term_enters_after_each_sides_cfg_functions(comfy):
    """Post-CFG patches (here a clamp, nonlinear on purpose) apply to each side's CFG result, then
    the sides combine: D_s + w (D_s - D_w) of the patched sides, also on the batched path."""
    model = cs.tiny_model("eps").clone()
    model.set_model_sampler_post_cfg_function(lambda args: args["denoised"].clamp(-0.3, 0.3))
    got, want = _guided_vs_sides(_w2sd_guider(model, weak_positive=cs.cond(5), weak_cfg=2.0))
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-4)
    assert float(got.abs().max()) > 0.3  # the combination is not clamped again


def test_a_model_carrying_a_pair_is_refused_under_multi_gpu_batching(comfy):
    """0.30's CFGGuider batches conds over deep clones of the model on other GPUs when
    ``multigpu_clones`` is in its model options; a LoRA pair's per-role deltas live in this
    model's injections, so the pack refuses rather than run the strong side where the weak is due."""
    base = cs.tiny_model("eps", seed=1)
    pair = (
        cs.pack_module("nodes.pair_types.lora.build")
        .build_lora_pair(base, cs.kohya_lora(base, seed=2, tucker=False), "test", 0.5, 1.5, -1.0)
        .model
    )
    guider = _w2sd_guider(pair)
    guider.model_options["multigpu_clones"] = {}
    sampler = w2sd_sampler(_probe({}, ()), reflect_steps=-1, reflect_end_percent=1.0, mode="guide", guidance=1.0)
    with pytest.raises(ValueError, match="multi-GPU"):
        _run(guider, sampler, karras_sigmas(base, 4))
    del guider.model_options["multigpu_clones"]
    _run(guider, sampler, karras_sigmas(base, 4))  # the same guider runs without it
