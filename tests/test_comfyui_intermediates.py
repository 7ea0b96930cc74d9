"""Sampler outputs in the running release's intermediate dtype: from 0.30, ``comfy.sample`` casts a
sampler's output to ``intermediate_dtype()`` (fp16 under ``--fp16-intermediates``). The W2SD
sampler nodes must hand on what the stock nodes hand on, under that flag too. On releases without
the flag the same checks run with float32 intermediates."""

import pytest
import torch

import comfy_support as cs
from sampling_support import ksampler_reference

pytestmark = pytest.mark.comfyui


@pytest.fixture(params=["fp32", "fp16"])
def intermediates(request, comfy, monkeypatch):
    """The intermediate dtype a run should produce, with ``--fp16-intermediates`` set for "fp16"
    where this ComfyUI has the flag (older releases: float32 either way)."""
    import comfy.model_management as mm
    from comfy.cli_args import args

    if request.param == "fp16" and hasattr(args, "fp16_intermediates"):
        monkeypatch.setattr(args, "fp16_intermediates", True)
    return mm.intermediate_dtype() if hasattr(mm, "intermediate_dtype") else torch.float32


@pytest.mark.parametrize("reflect_steps", [0, 2])
def test_reflective_ksampler_output_dtype_is_ksamplers(comfy, intermediates, reflect_steps):
    model = cs.tiny_model("eps")
    latent = cs.latent(1, 8)
    expected = ksampler_reference(model, 5, 4, 5.0, "euler", "normal", cs.cond(0), cs.cond(1), latent)
    assert expected["samples"].dtype == intermediates
    node = cs.node_class("W2SDReflectiveKSampler")
    out = node.execute(
        model,
        5,
        4,
        5.0,
        "euler",
        "normal",
        cs.cond(0),
        cs.cond(1),
        latent,
        1.0,
        weak_positive=cs.cond(2),
        reflect_steps=reflect_steps,
    ).args[0]["samples"]
    assert out.dtype == intermediates
    if reflect_steps == 0:
        assert torch.equal(out, expected["samples"])
    else:
        assert not torch.equal(out, expected["samples"]) and bool(out.isfinite().all())


def test_advanced_past_the_end_returns_the_input_in_the_intermediate_dtype(comfy, intermediates):
    model = cs.tiny_model("eps")
    latent = cs.latent(1, 8)
    node = cs.node_class("W2SDReflectiveKSamplerAdvanced")
    import nodes

    stock = nodes.KSamplerAdvanced().sample(
        model, "enable", 5, 4, 5.0, "euler", "normal", cs.cond(0), cs.cond(1), latent, 10, 20, "disable"
    )[0]["samples"]
    out = node.execute(
        model, "enable", 5, 4, 5.0, "euler", "normal", cs.cond(0), cs.cond(1), latent, 10, 20, "disable"
    ).args[0]["samples"]
    assert out.dtype == stock.dtype == intermediates
    assert torch.equal(out, stock)


def test_inversion_step_output_dtype_is_the_samplers(comfy, intermediates):
    import comfy.samplers

    model = cs.tiny_model("eps")
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "normal", 6).cpu()
    node = cs.node_class("W2SDInversionStep")
    out = node.execute(model, cs.cond(0), cs.cond(1), 1.0, cs.latent(1, 8), sigmas[3:], "next").result[0]
    assert out["samples"].dtype == intermediates
    assert bool(out["samples"].isfinite().all())
