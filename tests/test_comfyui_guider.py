"""W2SD Guider inside real ComfyUI: weak conds, weak model (second checkpoint or other model
options), ControlNet kept to the strong conds, pair validation, user models left untouched.

Model calls are observed through ComfyUI's own unet-function wrapper (sampling_support.instrument),
which sees each call's role tag, batch, conds and ControlNet output.
"""

import pytest
import torch

import comfy_support as cs
from sampling_support import assert_unchanged, instrument, karras_sigmas, snapshot, w2sd_sampler

pytestmark = pytest.mark.comfyui

SEED = 3


def _sample(guider, sampler, steps=4, latent=None, seed=SEED):
    import comfy.sample

    latent = latent or cs.latent(1, 8)
    latent_image = comfy.sample.fix_empty_latent_channels(guider.model_patcher, latent["samples"])
    noise = comfy.sample.prepare_noise(latent_image, seed)
    return guider.sample(
        noise,
        latent_image,
        sampler,
        karras_sigmas(guider.model_patcher, steps),
        denoise_mask=latent.get("noise_mask"),
        disable_pbar=True,
        seed=seed,
    )


def _guider(model, cfg=5.0, **optional):
    return cs.node_class("W2SDGuider").execute(model, cs.cond(0), cs.cond(1), cfg, **optional).args[0]


def _chunks(call):
    """cond_or_uncond index -> the cross-attention tensor of that chunk of a batched call."""
    parts = call.crossattn.chunk(len(call.cond_or_uncond))
    return dict(zip(call.cond_or_uncond, parts))


def test_normal_steps_are_the_cfg_guiders_bit_for_bit(comfy):
    import comfy.samplers

    model = cs.tiny_model("eps")
    plain = comfy.samplers.CFGGuider(model)
    plain.set_conds(cs.cond(0), cs.cond(1))
    plain.set_cfg(5.0)
    expected = _sample(plain, comfy.samplers.sampler_object("dpmpp_2m"))
    # weak conds and a weak model are prepared but never called at λ = 0
    weak = cs.tiny_model("eps", seed=1)
    guider = _guider(model, weak_model=weak, weak_positive=cs.cond(5), weak_cfg=1.0)
    assert torch.equal(expected, _sample(guider, w2sd_sampler("dpmpp_2m", reflect_steps=0)))
    # nothing differs: a plain sampler is wrapped with the default plan, which then reflects nothing
    assert torch.equal(expected, _sample(_guider(model), comfy.samplers.sampler_object("dpmpp_2m")))


def test_weak_conditioning_reaches_only_weak_calls(comfy):
    model, calls = instrument(cs.tiny_model("eps"), analytic=True)
    pos, neg, weak_pos = cs.cond(0), cs.cond(1), cs.cond(5)
    guider = cs.node_class("W2SDGuider").execute(model, pos, neg, 5.0, weak_positive=weak_pos).args[0]
    sampler = w2sd_sampler(reflect_steps=2)
    _sample(guider, sampler)
    assert sampler.report.reflections == 2
    assert "weak conditioning" in sampler.report.differences[0]
    weak_calls = [c for c in calls if c.role == "reflect_weak"]
    other = [c for c in calls if c.role != "reflect_weak"]
    assert len(weak_calls) == 2 and len(other) == 4 + 2
    for call in weak_calls:
        chunks = _chunks(call)
        assert torch.equal(chunks[0], weak_pos[0][0]) and torch.equal(chunks[1], neg[0][0])
    for call in other:
        chunks = _chunks(call)
        assert torch.equal(chunks[0], pos[0][0]) and torch.equal(chunks[1], neg[0][0])


def _tiny_controlnet(model):
    """A real comfy.controlnet.ControlNet around a tiny ControlNet of the tiny UNet's shape, as the
    legacy Apply ControlNet node attaches it (control_apply_to_uncond)."""
    import comfy.cldm.cldm
    import comfy.controlnet
    import comfy.model_management as mm
    import comfy.ops

    config = dict(model.model.model_config.unet_config)
    config.pop("out_channels")
    config.update(hint_channels=3, operations=comfy.ops.disable_weight_init, dtype=torch.float32, device="cpu")
    control_model = comfy.cldm.cldm.ControlNet(**config)
    cs._fill(control_model, 11)
    control = comfy.controlnet.ControlNet(control_model, load_device=mm.get_torch_device(), manual_cast_dtype=None)
    hint = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    return control.copy().set_cond_hint(hint, 1.0, (0.0, 1.0))


def test_controlnet_stays_with_the_strong_conditioning(comfy):
    base = cs.tiny_model("eps")
    model, calls = instrument(base, analytic=True)
    control = _tiny_controlnet(base)
    positive = [[t, {**extras, "control": control, "control_apply_to_uncond": True}] for t, extras in cs.cond(0)]
    guider = cs.node_class("W2SDGuider").execute(model, positive, cs.cond(1), 5.0, weak_positive=cs.cond(5)).args[0]
    _sample(guider, w2sd_sampler(reflect_steps=2))
    assert [c.has_control for c in calls if c.role is None] == [True] * 4  # cond and uncond batched
    assert [c.has_control for c in calls if c.role == "reflect_strong"] == [True] * 2
    assert [c.has_control for c in calls if c.role == "reflect_weak"] == [False] * 2


def test_a_second_checkpoint_gets_controlnets_prepared_for_itself(comfy):
    """The same ControlNet on both sides (no weak conditioning given) with two checkpoints: the weak
    calls must use a ControlNet prepared (pre_run) for the weak model, stacked ControlNets included,
    not the strong side's objects prepared for the strong model."""
    strong = cs.tiny_model("eps", seed=0)
    seen = []

    def check_controls(args):
        def chain(control):
            return [control] + (chain(control.previous_controlnet) if control.previous_controlnet else [])

        weak_chain = chain(guider.weak.conds["positive"][0]["control"])
        strong_chain = chain(guider.conds["positive"][0]["control"])
        seen.append(
            (
                len(weak_chain) == len(strong_chain) == 2,
                all(w is not s for w, s in zip(weak_chain, strong_chain)),
                all(w.model_sampling_current is weak.model.model_sampling for w in weak_chain),
                all(s.model_sampling_current is strong.model.model_sampling for s in strong_chain),
            )
        )

    weak, weak_calls = instrument(cs.tiny_model("eps", seed=1), on_call=check_controls)
    control = _tiny_controlnet(strong)
    control.set_previous_controlnet(_tiny_controlnet(strong))
    positive = [[t, {**extras, "control": control}] for t, extras in cs.cond(0)]
    guider = cs.node_class("W2SDGuider").execute(strong, positive, cs.cond(1), 5.0, weak_model=weak).args[0]
    out = _sample(guider, w2sd_sampler(reflect_steps=2))
    assert torch.isfinite(out).all()
    # the positive carries the ControlNets, the negative none: two calls per weak evaluation
    assert [c.has_control for c in weak_calls] == [True, False] * 2
    assert seen == [(True, True, True, True)] * 4


def test_two_checkpoints_load_together_and_weak_calls_run_on_the_weak_model(comfy, monkeypatch):
    import comfy.model_management as mm

    strong, strong_calls = instrument(cs.tiny_model("eps", seed=0))
    loaded_during_weak_calls = []

    def check_loaded(args):
        loaded = [entry.model.model for entry in mm.current_loaded_models if entry.model is not None]
        loaded_during_weak_calls.append((strong.model in loaded, weak.model in loaded))

    weak, weak_calls = instrument(cs.tiny_model("eps", seed=1), on_call=check_loaded)
    loads = []
    original = mm.load_models_gpu
    monkeypatch.setattr(
        mm, "load_models_gpu", lambda models, *a, **k: (loads.append(len(models)), original(models, *a, **k))[1]
    )
    guider = _guider(strong, weak_model=weak)
    sampler = w2sd_sampler(reflect_steps=3)
    out = _sample(guider, sampler, steps=5)
    assert torch.isfinite(out).all()
    assert sampler.report.differences == ["weak model (second checkpoint)"]
    assert len(loads) == 1  # one load for the whole run
    assert [c.role for c in weak_calls] == ["reflect_weak"] * 3
    assert {c.model_id for c in weak_calls} == {id(weak.model)}
    assert {c.model_id for c in strong_calls} == {id(strong.model)}
    assert [c.role for c in strong_calls].count("reflect_strong") == 3
    assert "reflect_weak" not in [c.role for c in strong_calls]
    assert loaded_during_weak_calls == [(True, True)] * 3


def test_weak_model_with_other_options_shares_the_weights(comfy):
    """A weak MODEL that is the strong one with other model options (e.g. an attention patch)
    runs on the same loaded weights with its own options."""
    strong, strong_calls = instrument(cs.tiny_model("eps"), analytic=True)
    weak, weak_calls = instrument(strong, analytic=True)  # a clone: same weights, own wrapper
    sampler = w2sd_sampler(reflect_steps=2)
    _sample(_guider(strong, weak_model=weak), sampler)
    assert sampler.report.differences == ["weak model (same weights, other model patches)"]
    assert [c.role for c in weak_calls] == ["reflect_weak"] * 2
    assert "reflect_weak" not in [c.role for c in strong_calls]
    assert {c.model_id for c in weak_calls} == {id(strong.model)}


def test_incompatible_pairs_name_what_differs(comfy):
    eps = cs.tiny_model("eps")
    with pytest.raises(ValueError, match=r"latent format: strong is SD15, weak is SDXL"):
        _guider(eps, weak_model=cs.tiny_model("sdxl"))
    with pytest.raises(ValueError, match=r"model type: strong is eps, weak is flow"):
        _guider(eps, weak_model=cs.tiny_model("flow"))
    patched = eps.clone()
    key = next(iter(eps.model.state_dict()))
    patched.add_patches({key: (torch.zeros_like(eps.model.state_dict()[key]),)}, 0.5)
    with pytest.raises(ValueError, match="W2SD Weak Model Builder"):
        _guider(eps, weak_model=patched)
    # the same weights with another model_sampling (ModelSamplingSD3 on one side only) cannot be
    # loaded both ways at once either, and the message says what differs, not "LoRA"
    flow = cs.tiny_model("flow")
    with pytest.raises(ValueError, match=r"other object patches \(model_sampling;"):
        _guider(flow, weak_model=_with_sampling(flow, shift=3.0))
    # EPS beside V-prediction shares the schedule: accepted
    _guider(eps, weak_model=cs.tiny_model("v"))
    # eps models on different sigma ranges (here a zero-terminal-SNR schedule) are refused
    with pytest.raises(ValueError, match="sigma range"):
        _guider(eps, weak_model=_with_sampling(cs.tiny_model("eps", seed=1), zsnr=True))


def _with_sampling(model, **parameters):
    """``model`` with its own model_sampling, as ModelSamplingDiscrete / ModelSamplingSD3 patch it."""
    patched = model.clone()
    current = model.get_model_object("model_sampling")
    sampling = type(current)(model.model.model_config, **({"zsnr": parameters["zsnr"]} if "zsnr" in parameters else {}))
    if "shift" in parameters:
        sampling.set_parameters(shift=parameters["shift"])
    patched.add_object_patch("model_sampling", sampling)
    return patched


def test_flow_models_with_other_shifts_pair(comfy):
    """A flow model's sigma is its noise level (x = (1 - sigma) x0 + sigma eps) whatever its shift:
    the shift only moves the schedule, and each model maps sigma to its own timestep. So Flux dev
    beside Flux schnell, or a model with ModelSamplingSD3 / ModelSamplingFlux beside one without,
    is a valid pair (their sigma_min differs)."""
    strong = cs.tiny_model("flow")
    weak = _with_sampling(cs.tiny_model("flow", seed=1), shift=3.0)
    assert float(weak.get_model_object("model_sampling").sigma_min) > 2 * float(
        strong.get_model_object("model_sampling").sigma_min
    )
    sampler = w2sd_sampler(reflect_steps=2, reflect_end_percent=1.0)
    guider = (
        cs.node_class("W2SDGuider")
        .execute(strong, cs.cond(0, "flow"), cs.cond(1, "flow"), 5.0, weak_model=weak)
        .args[0]
    )
    out = _sample(guider, sampler)
    assert torch.isfinite(out).all()
    assert sampler.report.reflections == 2


def test_user_models_are_left_untouched_and_runs_repeat(comfy):
    strong, weak = cs.tiny_model("eps", seed=0), cs.tiny_model("eps", seed=1)
    before = snapshot(strong), snapshot(weak)
    outs = []
    for _ in range(2):
        guider = _guider(strong, weak_model=weak, weak_positive=cs.cond(5), strong_cfg=5.5, weak_cfg=1.0)
        outs.append(_sample(guider, w2sd_sampler("euler_ancestral", reflect_steps=2)))
    assert torch.equal(outs[0], outs[1])
    assert_unchanged(before[0], strong)
    assert_unchanged(before[1], weak)


def test_a_plain_sampler_runs_the_default_plan(comfy):
    """A W2SD Guider with a plain sampler (no plan inputs) runs w2sd_core.DEFAULTS: every step but
    the last gets what DEFAULTS.mode says (here a prompt pair, so guidance takes one batched call)."""
    import comfy.samplers
    from w2sd_core import DEFAULTS, default_plan
    from w2sd_core.guidance import guides, reflects

    model, calls = instrument(cs.tiny_model("eps"), analytic=True)
    _sample(_guider(model, weak_positive=cs.cond(5)), comfy.samplers.sampler_object("euler"), steps=4)
    default = default_plan(model.get_model_object("model_sampling").percent_to_sigma)
    planned = len(default.reflected_steps(karras_sigmas(model, 4)))
    roles = [c.role for c in calls]
    assert planned == 3  # every step but the last, into sigma 0
    assert roles.count("guide") == (planned if guides(DEFAULTS.mode) else 0)
    assert roles.count("reflect_strong") == (planned * default.repeats if reflects(DEFAULTS.mode) else 0)
    assert roles.count(None) == 4 - (planned if guides(DEFAULTS.mode) else 0)


def test_conds_with_hooks_on_a_dynamic_model_keep_the_weak_checkpoint(comfy):
    """0.30's CFGGuider.inner_set_conds swaps a dynamic-VRAM patcher for its non-dynamic delegate
    when conds carry hooks. The W2SD Guider goes through it, so the swap happens here too, and the
    delegate (a clone) must still carry the weak checkpoint the guider attached. On releases without
    the swap the patcher stays as it is; the run is checked the same way."""
    import inspect

    import comfy.hooks
    import comfy.samplers

    strong = cs.dynamic_like(cs.tiny_model("eps"))
    weak = cs.tiny_model("eps", seed=3)
    hooked = [[c[0][0], {**c[0][1], "hooks": comfy.hooks.HookGroup()}] for c in (cs.cond(0), cs.cond(1))]
    guider = cs.node_class("W2SDGuider").execute(strong, [hooked[0]], [hooked[1]], 5.0, weak_model=weak).args[0]
    swaps = "get_non_dynamic_delegate" in inspect.getsource(comfy.samplers.CFGGuider.inner_set_conds)
    assert guider.model_patcher.is_dynamic() is not swaps
    attached = guider.model_patcher.get_additional_models_with_key("w2sd_weak_model")
    assert len(attached) == 1 and attached[0].model is weak.model  # the weak checkpoint or a clone of it
    out = _sample(guider, w2sd_sampler("euler", mode="guide", guidance=0.5))
    assert torch.isfinite(out).all()
