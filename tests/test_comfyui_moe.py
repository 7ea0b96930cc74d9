"""W2SD Expert Pair (MoE) against real ComfyUI: a tiny HiDream built from ComfyUI's own classes.

What routing each call used is observed from outside: the experts' own forward calls are counted
per token and compared with the top or bottom ranks of the gate scores the test computes itself.
"""

import pytest
import torch

import comfy_support as cs

pytestmark = pytest.mark.comfyui


def moe():
    return cs.pack_module("nodes.pair_types.moe")


def roles():
    return cs.pack_module("nodes.sampling.roles")


def build(model, start=-1, weights="top-k weights"):
    return cs.node_class("W2SDExpertPairBuilder").execute(model, start, weights).args


def evaluate(patcher, role_list, x, sigma, positive, negative, cfg=1.0):
    return cs.evaluate_roles(patcher, role_list, x, sigma, positive, negative, cfg)


class RoutingRecorder:
    """Test-side hooks on one routed layer: the gate's input (to score it here) and how many
    tokens each expert really ran on, per call."""

    def __init__(self, layer):
        self.layer, self.calls, self.handles = layer, [], []
        self.handles.append(layer.gate.register_forward_pre_hook(self._gate_input))
        for i, expert in enumerate(layer.experts):
            self.handles.append(expert.register_forward_pre_hook(self._expert(i)))

    def _gate_input(self, gate, args):
        self.calls.append({"h": args[0].detach().reshape(-1, args[0].shape[-1]).clone(), "rows": {}})

    def _expert(self, i):
        def hook(module, args):
            self.calls[-1]["rows"][i] = args[0].shape[0]

        return hook

    def close(self):
        for h in self.handles:
            h.remove()


def expected_rows(gate, h, ranks):
    """Tokens per expert when each token runs the experts at ``ranks`` of its softmax scores."""
    scores = torch.nn.functional.linear(h, gate.weight.to(h.dtype)).softmax(dim=-1)
    chosen = scores.argsort(dim=-1, descending=True)[:, ranks]
    return {i: int((chosen == i).sum()) for i in range(gate.n_routed_experts)}


def routed_layers(patcher):
    return [
        m
        for m in patcher.model.modules()
        if hasattr(m, "gate") and hasattr(m, "experts") and isinstance(m.gate, tuple(moe().gate_classes()))
    ]


def inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 16, 8, 8, generator=g), cs.hidream_cond(0), cs.hidream_cond(1)


# ---------------------------------------------------------------- tests


def test_this_release_ships_the_routed_gates_w2sd_knows(comfy):
    """Both supported releases have HiDream and Hunyuan3D 2.1: a renamed gate class must fail
    here, not silently leave the node with nothing to route."""
    families = set(moe().gate_classes().values())
    assert {"HiDream", "Hunyuan3D 2.1"} <= families, families
    base = cs.tiny_hidream_model()
    assert len(moe().find_gates(base.model)) == 2  # one double- and one single-stream block


@pytest.mark.parametrize("start, ranks", [(-1, [2, 3]), (1, [1, 2])])
def test_only_weak_calls_route_to_other_experts(comfy, start, ranks):
    base = cs.tiny_hidream_model(seed=1)
    pair, report = build(base, start)
    x, pos, neg = inputs()
    plain = evaluate(base, (None,), x, 0.7, pos, neg)[None]
    layer = routed_layers(pair)[0]
    recorder = RoutingRecorder(layer)
    try:
        out = evaluate(pair, (None, roles().STRONG, roles().WEAK), x, 0.7, pos, neg)
    finally:
        recorder.close()
    # normal steps and strong passes: the unpatched model, bit for bit
    assert torch.equal(out[None], plain) and torch.equal(out[roles().STRONG], plain)
    assert not torch.allclose(out[roles().WEAK], plain, atol=1e-3)
    normal, strong, weak = recorder.calls
    assert normal["rows"] == expected_rows(layer.gate, normal["h"], [0, 1])
    assert strong["rows"] == expected_rows(layer.gate, strong["h"], [0, 1])
    assert weak["rows"] == expected_rows(layer.gate, weak["h"], ranks)
    assert weak["rows"] != normal["rows"]
    assert "of 4 experts" in report


def _reference_gate(gate, ranks, own_scores):
    """The weak routing written out for a reference model: the gate's scores, the given ranks,
    weighted by the top-k scores or their own."""

    def forward(hidden_states):
        h = hidden_states.reshape(-1, hidden_states.shape[-1])
        scores = torch.nn.functional.linear(h, gate.weight.to(h.dtype)).softmax(dim=-1)
        ranked, order = scores.sort(dim=-1, descending=True)
        weights = ranked[:, ranks] if own_scores else ranked[:, : len(ranks)]
        return order[:, ranks].contiguous(), weights.contiguous(), None

    return forward


@pytest.mark.parametrize("weights", ["top-k weights", "own scores"])
def test_weak_output_equals_a_model_whose_gates_route_that_way(comfy, weights):
    base = cs.tiny_hidream_model(seed=2)
    pair, _ = build(base, -1, weights)
    reference = base.clone()
    for name, gate in moe().find_gates(base.model).items():
        reference.add_object_patch(f"{name}.forward", _reference_gate(gate, [2, 3], weights == "own scores"))
    x, pos, neg = inputs(1)
    ours = evaluate(pair, (roles().WEAK,), x, 0.5, pos, neg)[roles().WEAK]
    ref = evaluate(reference, (None,), x, 0.5, pos, neg)[None]
    plain = evaluate(base, (None,), x, 0.5, pos, neg)[None]
    assert torch.allclose(ours, ref, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(ref, plain, atol=1e-3)


def test_in_a_real_prompt_reflect_steps_0_is_ksampler_and_reflection_reroutes(comfy):
    prompt = {
        "1": {"class_type": "TinyFixtureModel", "inputs": {"family": "hidream", "seed": 3}},
        "2": {"class_type": "TinyFixtureConditioning", "inputs": {"family": "hidream", "seed": 0}},
        "3": {"class_type": "TinyFixtureConditioning", "inputs": {"family": "hidream", "seed": 1}},
        "4": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "5": {
            "class_type": "W2SDExpertPairBuilder",
            "inputs": {"model": ["1", 0], "weak_start_rank": -1, "weak_weights": "top-k weights"},
        },
    }
    common = {
        "seed": 3,
        "steps": 4,
        "cfg": 2.0,
        "sampler_name": "euler",
        "scheduler": "simple",
        "positive": ["2", 0],
        "negative": ["3", 0],
        "latent_image": ["4", 0],
        "denoise": 1.0,
    }
    prompt["6"] = {"class_type": "KSampler", "inputs": {"model": ["1", 0], **common}}
    for nid, steps in (("7", 0), ("8", 2)):
        prompt[nid] = {
            "class_type": "W2SDReflectiveKSampler",
            "inputs": {"model": ["5", 0], **common, "reflect_steps": steps, "reflect_end_percent": 1.0},
        }
    for nid, key in (("6", "stock"), ("7", "off"), ("8", "on")):
        prompt[f"k{nid}"] = {"class_type": "TinyFixtureKeepLatent", "inputs": {"samples": [nid, 0], "key": key}}
    out = cs.run_prompt(prompt)
    assert torch.equal(out["off"], out["stock"])
    assert torch.isfinite(out["on"]).all() and not torch.allclose(out["on"], out["stock"], atol=1e-3)


def test_user_model_is_left_untouched(comfy):
    import comfy.model_management as mm

    base = cs.tiny_hidream_model(seed=4)
    pair, _ = build(base)
    x, pos, neg = inputs()
    evaluate(pair, (roles().WEAK,), x, 0.5, pos, neg)
    mm.load_models_gpu([base])
    assert sum(len(m._forward_hooks) for m in base.model.modules()) == 0
    assert not base.injections and not base.attachments
    assert all(not w for w in base.wrappers.values())
    assert pair.get_attachment(roles().PAIR_ATTACHMENT)["runtime"].weak_calls == 1


def test_refusals_name_the_way_out(comfy):
    with pytest.raises(ValueError, match="no routed-expert gates.*W2SD Weak Model Builder"):
        build(cs.tiny_model("eps"))
    with pytest.raises(ValueError, match="weak_start_rank 0"):
        build(cs.tiny_hidream_model(), 0)


# ---------------------------------------------------------------- Wan 2.2's two experts


def wan22_prompt(high_sampler: dict) -> dict:
    """Wan 2.2 text-to-video as ComfyUI's template chains it, on tiny Wan DiTs and 5-D latents: the
    high-noise expert runs the first half of a 6-step schedule and hands its noisy latent to the
    low-noise expert (KSamplerAdvanced from step 3, no new noise)."""
    p = {
        "hi": {"class_type": "TinyFixtureModel", "inputs": {"family": "wan_high", "seed": 0}},
        "lo": {"class_type": "TinyFixtureModel", "inputs": {"family": "wan_low", "seed": 0}},
        "hi8": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["hi", 0], "shift": 8.0}},
        "lo8": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["lo", 0], "shift": 8.0}},
        "pos": {"class_type": "TinyFixtureConditioning", "inputs": {"family": "wan_high", "seed": 0}},
        "neg": {"class_type": "TinyFixtureConditioning", "inputs": {"family": "wan_high", "seed": 1}},
        "lat": {
            "class_type": "EmptyHunyuanLatentVideo",
            "inputs": {"width": 64, "height": 64, "length": 5, "batch_size": 1},
        },
        "low": {
            "class_type": "KSamplerAdvanced",
            "inputs": {
                "model": ["lo8", 0],
                "add_noise": "disable",
                "noise_seed": 0,
                "steps": 6,
                "cfg": 3.5,
                "sampler_name": "euler",
                "scheduler": "simple",
                "positive": ["pos", 0],
                "negative": ["neg", 0],
                "latent_image": ["high", 0],
                "start_at_step": 3,
                "end_at_step": 10000,
                "return_with_leftover_noise": "disable",
            },
        },
        "keep": {"class_type": "TinyFixtureKeepLatent", "inputs": {"samples": ["low", 0], "key": "video"}},
    }
    p.update(high_sampler)
    return p


STOCK_HIGH = {
    "high": {
        "class_type": "KSamplerAdvanced",
        "inputs": {
            "model": ["hi8", 0],
            "add_noise": "enable",
            "noise_seed": 7,
            "steps": 6,
            "cfg": 3.5,
            "sampler_name": "euler",
            "scheduler": "simple",
            "positive": ["pos", 0],
            "negative": ["neg", 0],
            "latent_image": ["lat", 0],
            "start_at_step": 0,
            "end_at_step": 3,
            "return_with_leftover_noise": "enable",
        },
    }
}


def w2sd_high(reflect_steps: int) -> dict:
    """The high-noise half with W2SD: a CFG pair (strong 3.5 / weak 1.0) on the high-noise expert."""
    return {
        "sched": {
            "class_type": "BasicScheduler",
            "inputs": {"model": ["hi8", 0], "scheduler": "simple", "steps": 6, "denoise": 1.0},
        },
        "split": {"class_type": "SplitSigmas", "inputs": {"sigmas": ["sched", 0], "step": 3}},
        "noise": {"class_type": "RandomNoise", "inputs": {"noise_seed": 7}},
        "select": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "w2sampler": {
            "class_type": "W2SDSampler",
            "inputs": {
                "sampler": ["select", 0],
                "reflect_steps": reflect_steps,
                "reflect_end_percent": 1.0,
                "repeats": 1,
                "inversion": "next",
                "strong_cfg": -1.0,
                "weak_cfg": 1.0,
                "mode": "reflect",
            },
        },
        "guider": {
            "class_type": "W2SDGuider",
            "inputs": {"model": ["hi8", 0], "positive": ["pos", 0], "negative": ["neg", 0], "cfg": 3.5},
        },
        "high": {
            "class_type": "SamplerCustomAdvanced",
            "inputs": {
                "noise": ["noise", 0],
                "guider": ["guider", 0],
                "sampler": ["w2sampler", 0],
                "sigmas": ["split", 0],
                "latent_image": ["lat", 0],
            },
        },
    }


def test_wan22_two_experts_reflecting_the_high_noise_expert(comfy):
    """5-D video latents through both experts; reflect_steps 0 is the stock two-sampler chain bit
    for bit, reflection on the high-noise expert changes the video."""
    stock = cs.run_prompt(wan22_prompt(STOCK_HIGH))["video"]
    off = cs.run_prompt(wan22_prompt(w2sd_high(0)))["video"]
    on = cs.run_prompt(wan22_prompt(w2sd_high(2)))["video"]
    assert stock.shape == (1, 16, 2, 8, 8)
    assert torch.equal(off, stock)
    assert torch.isfinite(on).all() and not torch.allclose(on, stock, atol=1e-3)
