"""nodes/compat.py against the running ComfyUI: every internal the nodes call or override binds
with the arguments W2SD passes, and a changed internal stops a run with one line that names the
ComfyUI version and the internal, while the pack still registers."""

import asyncio

import pytest

import comfy_support as cs

pytestmark = pytest.mark.comfyui


def _compat():
    return cs.pack_module("nodes.comfy.compat")


def _reflective_ksampler():
    node = cs.node_class("W2SDReflectiveKSampler")
    return node.execute(
        cs.tiny_model("eps"),
        1,
        3,
        5.0,
        "euler",
        "normal",
        cs.cond(0),
        cs.cond(1),
        cs.latent(1, 8),
        1.0,
        strong_cfg=5.5,
        weak_cfg=1.0,
    )


def test_every_internal_matches_this_comfyui(comfy):
    assert _compat().problems() == []


def test_a_changed_internal_stops_the_first_run_with_one_line(comfy, monkeypatch):
    import comfy.samplers

    def process_conds(model, noise, conds, device, *, latent_image=None, denoise_mask=None, seed=None):
        raise AssertionError("must not be reached")

    monkeypatch.setattr(comfy.samplers, "process_conds", process_conds)
    with pytest.raises(RuntimeError) as raised:
        _reflective_ksampler()
    message = str(raised.value)
    assert "\n" not in message
    assert f"this ComfyUI ({_compat().comfyui_version()}" in message
    assert "comfy.samplers.process_conds" in message
    assert "Update W2SD" in message


def test_an_override_that_no_longer_takes_comfyuis_arguments_is_reported(comfy, monkeypatch):
    import comfy.samplers

    def predict_noise(self, x, timestep, guidance, model_options={}, seed=None):
        return None

    def inner_sample(
        self,
        noise,
        latent_image,
        device,
        sampler,
        sigmas,
        denoise_mask,
        callback,
        disable_pbar,
        seed,
        latent_shapes=None,
        another_new_option=None,
    ):
        return None

    monkeypatch.setattr(comfy.samplers.CFGGuider, "inner_sample", inner_sample)
    assert _compat().problems() == []  # new optional arguments are passed on
    monkeypatch.setattr(comfy.samplers.CFGGuider, "predict_noise", predict_noise)
    assert [p for p in _compat().problems() if "CFGGuider.predict_noise" in p]


def test_a_removed_internal_is_named(comfy, monkeypatch):
    import comfy.model_patcher

    monkeypatch.delattr(comfy.model_patcher.ModelPatcher, "set_additional_models")
    assert _compat().problems() == ["comfy.model_patcher.ModelPatcher.set_additional_models is missing"]


def test_the_pack_registers_whatever_compat_finds(comfy, monkeypatch):
    import comfy.samplers

    monkeypatch.setattr(comfy.samplers, "process_conds", lambda model, *, conds: conds)
    assert _compat().problems()
    extension = asyncio.run(cs.pack_module("nodes.extension").comfy_entrypoint())
    nodes = asyncio.run(extension.get_node_list())
    assert {n.define_schema().node_id for n in nodes} >= {"W2SDReflectiveKSampler", "W2SDGuider", "W2SDSampler"}


def test_reflect_steps_zero_follows_this_comfyuis_ksampler_latent_handling(comfy, monkeypatch):
    """Newer ComfyUIs hand an empty latent's VAE downscale ratios to fix_empty_latent_channels and
    drop them from the output; W2SD follows whichever the running release does."""
    import comfy.sample

    original = comfy.sample.fix_empty_latent_channels
    seen = []

    def with_ratios(model, latent_image, downscale_ratio_spacial=None, downscale_ratio_temporal=None):
        seen.append((downscale_ratio_spacial, downscale_ratio_temporal))
        return original(model, latent_image)

    monkeypatch.setattr(comfy.sample, "fix_empty_latent_channels", with_ratios)
    latent = {**cs.latent(1, 8), "downscale_ratio_spacial": 8, "downscale_ratio_temporal": 4}
    node = cs.node_class("W2SDReflectiveKSampler")
    out = node.execute(
        cs.tiny_model("eps"), 1, 3, 5.0, "euler", "normal", cs.cond(0), cs.cond(1), latent, 1.0, reflect_steps=0
    ).args[0]
    assert seen == [(8, 4)]
    assert set(out) == {"samples"}


def test_search_aliases_only_where_io_schema_takes_them(comfy, monkeypatch):
    """schema_extras() gives search_aliases exactly when this ComfyUI's io.Schema has the field
    (newer ComfyUI), and every W2SD schema then carries them."""
    import dataclasses
    import inspect

    common = cs.pack_module("nodes.common")
    has_field = "search_aliases" in inspect.signature(common.io.Schema).parameters
    assert bool(common.schema_extras()) == has_field
    for node_id in (
        "W2SDReflectiveKSampler",
        "W2SDReflectiveKSamplerAdvanced",
        "W2SDSampler",
        "W2SDGuider",
        "W2SDWeakModelBuilder",
        "W2SDInversionStep",
        "W2SDExpertPairBuilder",
    ):
        schema = cs.node_class(node_id).define_schema()
        assert (getattr(schema, "search_aliases", None) or []) == (
            common.schema_extras()["search_aliases"] if has_field else []
        ) or set(common.SEARCH_ALIASES) <= set(schema.search_aliases), node_id

    @dataclasses.dataclass
    class NewerSchema:  # a newer io.Schema: the same fields plus search_aliases
        node_id: str
        search_aliases: list = dataclasses.field(default_factory=list)

    monkeypatch.setattr(common.io, "Schema", NewerSchema)
    extras = common.schema_extras("moe")
    assert {"weak to strong", "z-sampling", "reflection", "w2sd", "autoguidance", "moe"} <= set(
        extras["search_aliases"]
    )
    assert NewerSchema(node_id="x", **extras).search_aliases == extras["search_aliases"]
