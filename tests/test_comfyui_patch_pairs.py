"""Model-patch pairs against real ComfyUI: the weak side is the strong model with other (or no) model
patches from ComfyUI's own nodes, on the same loaded weights. The reference for each side is that
side's MODEL sampled alone by ComfyUI's CFGGuider."""

import pytest
import torch

import comfy_support as cs

pytestmark = pytest.mark.comfyui

#: Stock nodes whose patches act per model call (transformer_options patches, CFG-function patches).
PER_CALL_PATCHES = {
    "FreeU_V2": {"b1": 1.3, "b2": 1.4, "s1": 0.9, "s2": 0.2},
    "PerturbedAttentionGuidance": {"scale": 3.0},
    "SelfAttentionGuidance": {"scale": 0.8, "blur_sigma": 2.0},
}


@pytest.fixture(scope="module")
def extras(comfy):
    return cs.load_extra_nodes()


def roles():
    return cs.pack_module("nodes.sampling.roles")


def w2sd_guider(strong, weak, cfg):
    return cs.node_class("W2SDGuider").execute(strong, cs.cond(0), cs.cond(1), cfg, weak_model=weak).args[0]


def alone(model, x, sigma, cfg):
    return cs.evaluate_roles(model, (None,), x, sigma, cs.cond(0), cs.cond(1), cfg)[None]


@pytest.mark.parametrize("patched_side", ["strong", "weak"])
@pytest.mark.parametrize("node_id", sorted(PER_CALL_PATCHES))
def test_each_side_runs_with_its_own_patches(extras, node_id, patched_side):
    base = cs.tiny_model("eps", seed=5)
    patched = cs.patch_with(node_id, base, **PER_CALL_PATCHES[node_id])
    strong, weak = (patched, base) if patched_side == "strong" else (base, patched)
    g = torch.Generator().manual_seed(1)
    x, sigma, cfg = torch.randn(1, 4, 16, 16, generator=g) * 2.0, 2.0, 3.0
    guider = w2sd_guider(strong, weak, cfg)
    assert guider.weak_relation == cs.pack_module("nodes.pair_types.two_models").OPTIONS
    out = cs.evaluate_roles(strong, (None, roles().STRONG, roles().WEAK), x, sigma, None, None, guider=guider)
    strong_alone, weak_alone = alone(strong, x, sigma, cfg), alone(weak, x, sigma, cfg)
    assert not torch.allclose(strong_alone, weak_alone, atol=1e-4), f"{node_id} changed nothing here"
    assert torch.equal(out[None], strong_alone) and torch.equal(out[roles().STRONG], strong_alone)
    assert torch.equal(out[roles().WEAK], weak_alone)


def test_in_a_real_prompt_reflect_steps_0_is_ksampler(extras):
    prompt = {
        "1": {"class_type": "TinyFixtureModel", "inputs": {"family": "sd_eps", "seed": 6}},
        "2": {"class_type": "TinyFixtureConditioning", "inputs": {"family": "sd_eps", "seed": 0}},
        "3": {"class_type": "TinyFixtureConditioning", "inputs": {"family": "sd_eps", "seed": 1}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 128, "height": 128, "batch_size": 1}},
        "5": {"class_type": "FreeU_V2", "inputs": {"model": ["1", 0], **PER_CALL_PATCHES["FreeU_V2"]}},
        "6": {"class_type": "PerturbedAttentionGuidance", "inputs": {"model": ["1", 0], "scale": 3.0}},
    }
    common = {
        "seed": 2,
        "steps": 4,
        "cfg": 4.0,
        "sampler_name": "euler",
        "scheduler": "karras",
        "positive": ["2", 0],
        "negative": ["3", 0],
        "latent_image": ["4", 0],
        "denoise": 1.0,
    }
    runs = {  # key: (model, weak_model, reflect_steps); FreeU strong over plain, plain over PAG weak
        "freeu_stock": ("5", None, None),
        "freeu_off": ("5", "1", 0),
        "freeu_on": ("5", "1", 2),
        "plain_stock": ("1", None, None),
        "pag_weak_off": ("1", "6", 0),
        "pag_weak_on": ("1", "6", 2),
    }
    for key, (model, weak, steps) in runs.items():
        inputs = {"model": [model, 0], **common}
        if steps is None:
            prompt[key] = {"class_type": "KSampler", "inputs": inputs}
        else:
            prompt[key] = {
                "class_type": "W2SDReflectiveKSampler",
                "inputs": {
                    **inputs,
                    "weak_model": [weak, 0],
                    "reflect_steps": steps,
                    "reflect_end_percent": 1.0,
                    "mode": "reflect",
                },
            }
        prompt[f"keep_{key}"] = {"class_type": "TinyFixtureKeepLatent", "inputs": {"samples": [key, 0], "key": key}}
    out = cs.run_prompt(prompt)
    assert torch.equal(out["freeu_off"], out["freeu_stock"])
    assert torch.equal(out["pag_weak_off"], out["plain_stock"])
    for on, stock in (("freeu_on", "freeu_stock"), ("pag_weak_on", "plain_stock")):
        assert torch.isfinite(out[on]).all() and not torch.allclose(out[on], out[stock], atol=1e-3)


def test_one_side_only_weight_patches_are_refused_with_the_reason(extras):
    base = cs.tiny_model("eps")
    multiplied = cs.patch_with("UNetSelfAttentionMultiply", base, q=1.5, k=1.0, v=1.0, out=1.0)
    with pytest.raises(ValueError, match="weight-editing node such as the attention multiply"):
        w2sd_guider(base, multiplied, 3.0)
    # the same patch on both sides, a per-call patch on one: accepted
    w2sd_guider(multiplied, cs.patch_with("FreeU_V2", multiplied, **PER_CALL_PATCHES["FreeU_V2"]), 3.0)


def test_per_run_patches_are_refused_with_the_reason(extras):
    import comfy.patcher_extension

    base = cs.tiny_model("eps")
    differential = cs.patch_with("DifferentialDiffusion", base)
    with pytest.raises(ValueError, match="per sampling run.*denoise mask function"):
        w2sd_guider(base, differential, 3.0)
    wrapped = base.clone()
    wrapped.add_wrapper_with_key(
        comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, "test", lambda executor, *a, **k: executor(*a, **k)
    )
    with pytest.raises(ValueError, match="outer_sample wrappers"):
        w2sd_guider(wrapped, base, 3.0)
    # a per-call wrapper (apply_model) on one side is an ordinary OPTIONS pair
    per_call = base.clone()
    per_call.add_wrapper_with_key(
        comfy.patcher_extension.WrappersMP.APPLY_MODEL, "test", lambda executor, *a, **k: executor(*a, **k)
    )
    assert w2sd_guider(base, per_call, 3.0).weak_relation == cs.pack_module("nodes.pair_types.two_models").OPTIONS
