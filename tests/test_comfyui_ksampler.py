"""W2SD Reflective KSampler inside real ComfyUI with tiny models: KSampler's semantics bit for bit
at λ = 0, reflection on every model family, inpainting, denoise < 1, batch_index, the CFG pair,
cost reported = model calls counted, models left untouched, clear refusals."""

import logging

import pytest
import torch

import comfy_support as cs
from sampling_support import KSAMPLER_INPUTS, assert_unchanged, cfg_recorder, instrument, ksampler_reference, snapshot

pytestmark = pytest.mark.comfyui

SAMPLERS = ["euler", "euler_ancestral", "dpmpp_2m", "dpmpp_2m_sde", "uni_pc", "ddim"]


def _run(
    model,
    latent,
    steps=4,
    cfg=5.0,
    sampler_name="euler",
    scheduler="normal",
    seed=5,
    denoise=1.0,
    positive=None,
    negative=None,
    kind="eps",
    **optional,
):
    node = cs.node_class("W2SDReflectiveKSampler")
    optional.setdefault("reflect_steps", -1)  # these tests exercise reflection; the default guides
    optional.setdefault("mode", "reflect")
    positive = positive if positive is not None else cs.cond(0, kind)
    negative = negative if negative is not None else cs.cond(1, kind)
    return node.execute(
        model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent, denoise, **optional
    )


def _inpaint_latent(batch=2):
    latent = cs.latent(batch, 8, seed=1)
    mask = torch.zeros(batch, 8, 8)
    mask[:, :, 4:] = 1.0  # denoise the right half only
    return {**latent, "noise_mask": mask, "batch_index": [3, 7][:batch]}


@pytest.mark.parametrize("name", SAMPLERS)
def test_reflect_steps_zero_is_ksampler_bit_for_bit(comfy, name):
    model = cs.tiny_model("eps")
    for latent, denoise in ((cs.latent(1, 8), 1.0), (_inpaint_latent(), 0.75)):
        expected = ksampler_reference(model, 5, 4, 5.0, name, "normal", cs.cond(0), cs.cond(1), latent, denoise)
        result = _run(model, latent, sampler_name=name, denoise=denoise, reflect_steps=0, strong_cfg=5.5, weak_cfg=1.0)
        out = result.args[0]
        assert torch.equal(out["samples"], expected["samples"]), (name, denoise)
        assert out.keys() == latent.keys()
        assert all(out[k] is latent[k] for k in latent if k != "samples")  # other keys kept
        assert "0 reflection(s)" in result.ui.as_dict()["text"][0]


def test_nothing_to_reflect_warns_and_is_ksampler(comfy, caplog):
    model, calls = instrument(cs.tiny_model("eps"))
    latent = cs.latent(1, 8)
    expected = ksampler_reference(model, 5, 4, 5.0, "dpmpp_2m", "karras", cs.cond(0), cs.cond(1), latent)
    calls.clear()
    with caplog.at_level(logging.WARNING):
        result = _run(
            model,
            latent,
            sampler_name="dpmpp_2m",
            scheduler="karras",
            weak_model=model,
            weak_positive=cs.cond(0),
            strong_cfg=5.0,
        )
    assert torch.equal(result.args[0]["samples"], expected["samples"])
    assert len(calls) == 4  # no wasted evaluation
    assert "nothing differs" in caplog.text
    assert "skipped" in result.ui.as_dict()["text"][0]


def test_cost_report_matches_the_model_calls_counted(comfy):
    """Z-Sampling's CFG pair (strong 5.5, weak 1.0), λ = 3, two repeats: the reported evaluations
    and passes are the ones that actually ran; scales per role are the ones asked for."""
    recorded, scales = cfg_recorder(cs.tiny_model("eps"))
    model, calls = instrument(recorded)
    result = _run(
        model,
        cs.latent(2, 8),
        steps=6,
        cfg=5.0,
        sampler_name="dpmpp_2m",
        strong_cfg=5.5,
        weak_cfg=1.0,
        reflect_steps=3,
        repeats=2,
    )
    text = result.ui.as_dict()["text"][0]
    passes = sum(c.batch for c in calls) // 2  # one pass = one latent batch of 2
    assert len(calls) == 6 + 2 * 3 * 2
    assert f"6 reflection(s), {len(calls)} model evaluations (plain 6)" in text
    assert f"{passes} model passes" in text and passes == 6 * 2 + 6 * (2 + 1)
    assert [s for r, s in scales if r == "reflect_strong"] == [5.5] * 6
    assert [s for r, s in scales if r == "reflect_weak"] == [1.0] * 6
    assert [s for r, s in scales if r is None] == [5.0] * 6


@pytest.mark.parametrize("sampler_name", ["heun", "dpmpp_sde"])
def test_cost_report_counts_multi_stage_samplers_as_they_run(comfy, sampler_name):
    """heun and dpmpp_sde evaluate the model twice per step: the report counts what ran, not one
    evaluation per step."""
    model, calls = instrument(cs.tiny_model("eps"))
    result = _run(
        model,
        cs.latent(1, 8),
        steps=6,
        cfg=5.0,
        sampler_name=sampler_name,
        strong_cfg=5.5,
        weak_cfg=1.0,
        reflect_steps=3,
        reflect_end_percent=1.0,
    )
    text = result.ui.as_dict()["text"][0]
    own = sum(1 for c in calls if c.role is None)
    assert own > 6  # more than one per step
    assert f"3 reflection(s), {len(calls)} model evaluations (plain {own})" in text
    assert f"{own * 2 + 3 * (2 + 1)} model passes" in text


@pytest.mark.parametrize("kind", ["eps", "v", "flow", "sdxl", "video"])
def test_every_model_family_samples_with_reflection(comfy, kind):
    if kind == "video":
        model, latent, cond_kind = cs.tiny_video_model(), {"samples": torch.zeros(1, 16, 2, 8, 8)}, "eps"
        positive, negative = cs.cond(0, tokens=16), cs.cond(1, tokens=16)
    else:
        model, latent, cond_kind = cs.tiny_model(kind), cs.latent(1, 8), kind
        positive, negative = cs.cond(0, kind), cs.cond(1, kind)
    scheduler = "simple" if kind in ("flow", "video") else "normal"
    args = dict(steps=4, scheduler=scheduler, positive=positive, negative=negative, kind=cond_kind)
    plain = _run(model, latent, reflect_steps=0, **args).args[0]["samples"]
    result = _run(
        model,
        latent,
        weak_positive=cs.cond(5, cond_kind, **({"tokens": 16} if kind == "video" else {})),
        strong_cfg=5.5,
        weak_cfg=1.0,
        **args,
    )
    out = result.args[0]["samples"]
    assert out.shape == plain.shape == latent["samples"].shape
    assert torch.isfinite(out).all()
    assert not torch.equal(out, plain)
    assert "3 reflection(s)" in result.ui.as_dict()["text"][0]


def test_inpainting_leaves_unmasked_regions_as_they_were(comfy):
    model = cs.tiny_model("eps")
    latent = _inpaint_latent()
    result = _run(model, latent, steps=4, sampler_name="euler_ancestral", strong_cfg=5.5, weak_cfg=1.0)
    out = result.args[0]["samples"]
    assert "3 reflection(s)" in result.ui.as_dict()["text"][0]
    # the masked-out half comes back as it went in (up to the latent scale round trip)
    assert torch.allclose(out[..., :4], latent["samples"][..., :4], atol=1e-5)
    assert not torch.allclose(out[..., 4:], latent["samples"][..., 4:], atol=1e-2)


def test_denoise_and_end_percent_shape_the_plan(comfy):
    """denoise < 1 reflects on KSampler's shortened schedule; reflect_end_percent stops reflection
    at the model's sigma for that percent."""
    import comfy.samplers

    base = cs.tiny_model("eps")
    model, calls = instrument(base, analytic=True)
    sigmas = comfy.samplers.KSampler(
        base, steps=6, device="cpu", sampler="euler", scheduler="normal", denoise=0.5
    ).sigmas
    _run(model, cs.latent(1, 8), steps=6, denoise=0.5, strong_cfg=5.5, weak_cfg=1.0, reflect_end_percent=1.0)
    assert [c.sigma for c in calls if c.role is None] == pytest.approx([float(s) for s in sigmas[:-1]])
    assert len([c for c in calls if c.role == "reflect_strong"]) == 5
    calls.clear()
    limit = base.get_model_object("model_sampling").percent_to_sigma(0.5)
    _run(model, cs.latent(1, 8), steps=6, strong_cfg=5.5, weak_cfg=1.0, reflect_end_percent=0.5)
    strong = [c.sigma for c in calls if c.role == "reflect_strong"]
    normal = [c.sigma for c in calls if c.role is None]
    assert strong == [s for s in normal[:-1] if s >= limit] and 0 < len(strong) < 5


def test_two_checkpoints_and_weak_prompt_leave_models_untouched_and_repeat(comfy):
    strong, weak = cs.tiny_model("eps", seed=0), cs.tiny_model("eps", seed=1)
    before = snapshot(strong), snapshot(weak)
    latent = cs.latent(1, 8)
    runs = [
        _run(
            strong, latent, sampler_name="dpmpp_2m_sde", weak_model=weak, weak_positive=cs.cond(5), reflect_steps=2
        ).args[0]["samples"]
        for _ in range(2)
    ]
    assert torch.equal(runs[0], runs[1])
    assert torch.isfinite(runs[0]).all()
    assert_unchanged(before[0], strong)
    assert_unchanged(before[1], weak)


def test_a_second_checkpoint_is_loaded_only_when_something_is_reflected(comfy):
    """reflect_steps 0 (an A/B run in one graph) must not load the weak checkpoint for nothing."""
    import comfy.model_management as mm

    def loaded():
        return [entry.model.model for entry in mm.current_loaded_models if entry.model is not None]

    strong, weak = cs.tiny_model("eps", seed=0), cs.tiny_model("eps", seed=1)
    plain = _run(strong, cs.latent(1, 8), weak_model=weak, reflect_steps=0).args[0]["samples"]
    assert weak.model not in loaded()
    reference = ksampler_reference(strong, 5, 4, 5.0, "euler", "normal", cs.cond(0), cs.cond(1), cs.latent(1, 8))
    assert torch.equal(plain, reference["samples"])
    _run(strong, cs.latent(1, 8), weak_model=weak, reflect_steps=2)
    assert weak.model in loaded()


def test_official_inversion_is_refused_for_flow_models(comfy):
    with pytest.raises(ValueError, match="flow"):
        _run(cs.tiny_model("flow"), cs.latent(1, 8), kind="flow", inversion="official", strong_cfg=5.5, weak_cfg=1.0)
    # and is accepted for eps models
    out = _run(cs.tiny_model("eps"), cs.latent(1, 8), inversion="official", strong_cfg=5.5, weak_cfg=1.0)
    assert torch.isfinite(out.args[0]["samples"]).all()


def test_a_model_carrying_a_pair_is_reflected(comfy):
    """A MODEL with the "w2sd_pair" attachment (e.g. from W2SD Weak Model Builder, LoRA mode) is a
    real pair by itself: reflection runs with no other difference, and its calls carry the roles
    the model's own wrapper reads."""
    model, calls = instrument(cs.tiny_model("eps"), analytic=True)
    model.set_attachments("w2sd_pair", {"kind": "test", "summary": "LoRA at 1.5 (strong) / -1.5 (weak)"})
    result = _run(model, cs.latent(1, 8), weak_model=model)
    roles = [c.role for c in calls]
    assert roles.count("reflect_strong") == roles.count("reflect_weak") == 3
    assert "3 reflection(s)" in result.ui.as_dict()["text"][0]


def test_incompatible_weak_model_is_a_clear_error(comfy):
    with pytest.raises(ValueError, match="latent format: strong is SD15, weak is SDXL"):
        _run(cs.tiny_model("eps"), cs.latent(1, 8), weak_model=cs.tiny_model("sdxl"))


def test_schema_keeps_ksamplers_inputs(comfy):
    """Saved workflows depend on the names, order and defaults of KSampler's inputs."""
    import comfy.samplers

    schema = cs.node_class("W2SDReflectiveKSampler").define_schema()
    inputs = {i.id: i for i in schema.inputs}
    assert tuple(i.id for i in schema.inputs)[:10] == KSAMPLER_INPUTS
    assert (inputs["steps"].default, inputs["cfg"].default, inputs["denoise"].default) == (20, 8.0, 1.0)
    assert inputs["sampler_name"].options == comfy.samplers.KSampler.SAMPLERS
    assert all(i.optional for i in schema.inputs[10:])
    assert all(i.tooltip for i in schema.inputs) and schema.description


def _model_of_type(model_type):
    """The tiny SD1.5-shaped UNet sampled as ``model_type`` (a comfy.model_base.ModelType)."""
    import comfy.model_base as mb
    import comfy.supported_models as sm

    config = sm.SD15(dict(cs.TINY_UNET))
    config.unet_config.update(num_head_channels=16, num_heads=-1)
    return cs.wrap_tiny(mb.BaseModel(config, model_type=model_type, device="cpu"), 0)


def test_every_model_family_of_this_comfyui_reflects(comfy):
    """Every model type the running ComfyUI ships: the default window turns into a sigma of that
    model, reflection runs and stays finite, and 'official' is refused where it has no meaning."""
    import comfy.model_base as mb
    import comfy.model_sampling

    for model_type in mb.ModelType:
        model = _model_of_type(model_type)
        ms = model.get_model_object("model_sampling")
        result = _run(model, cs.latent(1, 8), steps=6, strong_cfg=5.5, weak_cfg=1.0)
        text = result.ui.as_dict()["text"][0]
        assert torch.isfinite(result.args[0]["samples"]).all(), model_type
        assert "0 reflection(s)" not in text, (model_type, text)
        vp = tuple(
            getattr(comfy.model_sampling, n) for n in ("EPS", "V_PREDICTION_DDPM") if hasattr(comfy.model_sampling, n)
        )
        if isinstance(ms, vp):  # DDPM-trained, variance preserving: the authors' DDIM code applies
            _run(model, cs.latent(1, 8), steps=6, strong_cfg=5.5, weak_cfg=1.0, inversion="official")
        else:
            with pytest.raises(ValueError, match="official"):
                _run(model, cs.latent(1, 8), steps=6, strong_cfg=5.5, weak_cfg=1.0, inversion="official")


def test_pairs_of_model_families_that_do_not_share_a_latent_space_are_refused(comfy):
    import comfy.model_base as mb

    eps, flow, cosmos = (_model_of_type(t) for t in (mb.ModelType.EPS, mb.ModelType.FLOW, mb.ModelType.FLOW_COSMOS))
    with pytest.raises(ValueError, match="model type: strong is eps, weak is flow"):
        _run(eps, cs.latent(1, 8), weak_model=flow)
    # Cosmos' rectified flow samples in the eps family's space: only its sigma range differs.
    with pytest.raises(ValueError, match="sigma range"):
        _run(eps, cs.latent(1, 8), weak_model=cosmos)


def test_pairs_follow_the_sampler_space_of_this_releases_model_types(comfy):
    """0.30's model types: CogVideoX's DDPM v-prediction samples in the eps family's space; the
    img2img flow (starts from the image) pairs only with its own kind; flow models pair only at
    one noise scale where this release's flow sampling reads one."""
    import comfy.model_base as mb
    import comfy.model_sampling

    eps, flow = _model_of_type(mb.ModelType.EPS), _model_of_type(mb.ModelType.FLOW)
    checked = 0
    if hasattr(mb.ModelType, "V_PREDICTION_DDPM"):
        _run(eps, cs.latent(1, 8), steps=4, weak_model=_model_of_type(mb.ModelType.V_PREDICTION_DDPM), reflect_steps=1)
        checked += 1
    if hasattr(mb.ModelType, "IMG_TO_IMG_FLOW"):
        img2img = _model_of_type(mb.ModelType.IMG_TO_IMG_FLOW)
        with pytest.raises(ValueError, match="model type: strong is flow .CONST., weak is flow img2img"):
            _run(flow, cs.latent(1, 8), weak_model=img2img)
        _run(
            img2img, cs.latent(1, 8), steps=4, weak_model=_model_of_type(mb.ModelType.IMG_TO_IMG_FLOW), reflect_steps=1
        )
        checked += 1
    scaled = _model_of_type(mb.ModelType.FLOW)
    scaled.get_model_object("model_sampling").noise_scale = 8.0
    if hasattr(comfy.model_sampling.ModelSamplingDiscreteFlow, "set_noise_scale"):
        with pytest.raises(ValueError, match="noise scale: strong 1, weak 8"):
            _run(flow, cs.latent(1, 8), weak_model=scaled)
        checked += 1
    else:  # this release's flow sampling ignores the attribute: the pair samples in one space
        _run(flow, cs.latent(1, 8), steps=4, weak_model=scaled, reflect_steps=1)
    assert checked == 3 or not hasattr(mb.ModelType, "IMG_TO_IMG_FLOW")  # all three exist together (0.30)
