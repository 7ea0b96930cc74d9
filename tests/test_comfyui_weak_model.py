"""W2SD Weak Model Builder against real ComfyUI (tiny random-weight models, CPU).

The reference for every role is ComfyUI itself: a clone of the base with the LoRA fused at the
role's strength by comfy.sd.load_lora_for_models (what LoraLoaderModelOnly does).
"""

import gc

import pytest
import torch

pytestmark = pytest.mark.comfyui

FINAL, STRONG_S, WEAK_S = 0.8, 1.5, -1.5


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def lora_dir(comfy, tmp_path_factory):
    import folder_paths

    path = tmp_path_factory.mktemp("loras")
    folder_paths.add_model_folder_path("loras", str(path))
    return path


def save_lora(lora_dir, name, sd):
    import safetensors.torch

    safetensors.torch.save_file({k: v.contiguous() for k, v in sd.items()}, str(lora_dir / name))
    return name


def rnd(g, *shape, scale=0.1):
    return torch.randn(*shape, generator=g) * scale


def sd_lora(model, seed=0, rank=4, dora=0, tucker=True):
    import comfy_support

    return comfy_support.kohya_lora(model, seed=seed, rank=rank, dora=dora, tucker=tucker)


def flux_lora(model, seed=0, rank=4):
    """A diffusers-format Flux LoRA (``transformer.…lora_A/lora_B``): to_q/to_k/to_v/proj_mlp map to
    slices of the fused qkv / linear1 weights, the rest to whole Linear weights."""
    import comfy.lora

    g = torch.Generator().manual_seed(seed)
    key_map = comfy.lora.model_lora_keys_unet(model.model, {})
    state = model.model.state_dict()
    sd, sliced = {}, 0
    for name, target in sorted(key_map.items(), key=lambda kv: kv[0]):
        if not name.startswith("transformer."):
            continue
        weight_key, ws = (target, None) if isinstance(target, str) else target[:2]
        if not weight_key.endswith(".weight") or weight_key not in state:
            continue
        module = model.model.get_submodule(weight_key[: -len(".weight")])
        if not isinstance(module, torch.nn.Linear):
            continue
        out = module.weight.shape[0] if ws is None else ws[2]
        sd[f"{name}.lora_A.weight"] = rnd(g, rank, module.weight.shape[1])
        sd[f"{name}.lora_B.weight"] = rnd(g, out, rank)
        if len(sd) % 3 == 0:
            sd[f"{name}.alpha"] = torch.tensor(2.0)
        sliced += ws is not None
    assert sliced >= 6, "the Flux LoRA should hit sliced (fused QKV) keys"
    return sd


def build(comfy, model, lora_name, final=FINAL, strong=STRONG_S, weak=WEAK_S):
    from comfy_support import node_class

    out = node_class("W2SDWeakModelBuilder").execute(model, lora_name, final, strong, weak)
    return out[0], out[1], out[2]


def fused(model, sd, strength):
    import comfy.sd

    return comfy.sd.load_lora_for_models(model, None, sd, strength, 0)[0]


def pack(sub):
    import comfy_support

    return comfy_support.pack_module(sub)


class Probe:
    """Runs custom code inside a real CFGGuider sampling call: ``fn(model, x, sigmas, extra_args)``
    gets the wrapped model exactly as a sampler does (wrappers merged, model loaded, hooks live)."""

    def __init__(self, fn):
        self.fn = fn
        self.result = None

    def run(self, patcher, positive, negative, sigmas, cfg=1.0, noise=None, latent=None):
        import comfy.samplers

        def sampler_fn(model, x, sigmas, extra_args=None, callback=None, disable=None):
            self.result = self.fn(model, x, sigmas, extra_args)
            return x

        guider = comfy.samplers.CFGGuider(patcher)
        guider.set_conds(positive, negative)
        guider.set_cfg(cfg)
        guider.sample(noise, latent, comfy.samplers.KSAMPLER(sampler_fn), sigmas, seed=0, disable_pbar=True)
        return self.result


def role_options(extra_args, role):
    if role is None:
        return extra_args
    args = dict(extra_args)
    args["model_options"] = pack("nodes.sampling.roles").with_role(extra_args["model_options"], role)
    return args


def evaluate(patcher, roles, x, sigma, positive, negative, cfg=1.0):
    """Denoised output of ``patcher`` at (x, sigma) for each role, evaluated inside real sampling."""

    def fn(model, _x, _sigmas, extra_args):
        s = x.new_ones([x.shape[0]]) * sigma
        return {role: model(x, s, **role_options(extra_args, role)) for role in roles}

    sigmas = torch.tensor([float(sigma), 0.0])
    return Probe(fn).run(
        patcher, positive, negative, sigmas, cfg, noise=torch.zeros_like(x), latent=torch.zeros_like(x)
    )


def rel_err(d, d_ref, x, sigma):
    """Relative error in model-output space: (x - D)/sigma is eps (or v for flow) itself."""
    a, b = (x - d) / sigma, (x - d_ref) / sigma
    return ((a - b).abs().max() / b.abs().max()).item()


def snapshot(patcher):
    return {k: v.detach().clone() for k, v in patcher.model.state_dict().items()}


def hook_count(patcher):
    return sum(len(m._forward_hooks) for m in patcher.model.modules())


def roles_match_fused(comfy, base, sd, lora_name, x, sigma, positive, negative, cfg=1.0, tol=1e-5):
    roles_mod = pack("nodes.sampling.roles")
    model, weak_out, report = build(comfy, base, lora_name)
    assert weak_out is model
    roles = (None, roles_mod.STRONG, roles_mod.WEAK)
    ours = evaluate(model, roles, x, sigma, positive, negative, cfg)
    plain = evaluate(base, (None,), x, sigma, positive, negative, cfg)[None]
    for role, strength in zip(roles, (FINAL, STRONG_S, WEAK_S)):
        ref = evaluate(fused(base, sd, strength), (None,), x, sigma, positive, negative, cfg)[None]
        err = rel_err(ours[role], ref, x, sigma)
        assert err <= tol, f"role {role}: relative error {err:.3g} vs LoRA fused at {strength}"
        # the LoRA matters at this strength, so the comparison can fail
        assert rel_err(plain, ref, x, sigma) > 1e-2
    return model, report


# ---------------------------------------------------------------- tests


def assert_base_untouched(base, before):
    """Loading the base again restores its exact weights and leaves none of our hooks, wrappers,
    injections, attachments or patches on it."""
    import comfy.model_management as mm

    mm.load_models_gpu([base])
    assert hook_count(base) == 0
    after = snapshot(base)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not base.injections and not base.attachments and not base.patches
    assert all(not w for w in base.wrappers.values()) and all(not c for c in base.callbacks.values())


def test_sd_linear_and_locon_roles_equal_fused_lora(comfy, lora_dir):
    import comfy_support

    base = comfy_support.tiny_model("eps", seed=1)
    sd = sd_lora(base, seed=2)
    name = save_lora(lora_dir, "sd_locon.safetensors", sd)
    before = snapshot(base)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 16, 16, generator=g) * 3.0
    model, report = roles_match_fused(comfy, base, sd, name, x, 3.0, comfy_support.cond(0), comfy_support.cond(1))
    assert "LoRA" in report and "LoCon (conv)" in report
    runtime = model.get_attachment(pack("nodes.sampling.roles").PAIR_ATTACHMENT)["runtime"]
    assert any(isinstance(d.geometry, pack("w2sd_core.lora_delta").ConvGeometry) for d in runtime.layers.values())
    assert runtime.calls[pack("nodes.sampling.roles").STRONG] > 0
    # base untouched: loading it again restores its exact weights and drops our forward hooks
    assert_base_untouched(base, before)


def test_flux_sliced_qkv_roles_equal_fused_lora(comfy, lora_dir):
    import comfy_support

    base = comfy_support.tiny_flux_model(seed=4)
    sd = flux_lora(base, seed=5)
    name = save_lora(lora_dir, "flux_diffusers.safetensors", sd)
    g = torch.Generator().manual_seed(6)
    x = torch.randn(1, 16, 16, 16, generator=g)
    model, report = roles_match_fused(
        comfy, base, sd, name, x, 0.6, comfy_support.flux_cond(0), comfy_support.flux_cond(1), cfg=1.0
    )
    assert "sliced (fused QKV)" in report and "weight hooks" not in report
    runtime = model.get_attachment(pack("nodes.sampling.roles").PAIR_ATTACHMENT)["runtime"]
    qkv = runtime.layers["diffusion_model.double_blocks.0.img_attn.qkv"]
    assert sorted(t.weight_slice for t in qkv.terms) == [(0, 0, 64), (0, 64, 64), (0, 128, 64)]


def dora_roles_match_fused(comfy, lora_dir, base, file_name):
    """A LoRA with three DoRA layers built on ``base``: every role equals the LoRA fused at its strength."""
    import comfy_support

    sd = sd_lora(base, seed=8, dora=3, tucker=False)
    name = save_lora(lora_dir, file_name, sd)
    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(9)) * 2.0
    model, report = roles_match_fused(comfy, base, sd, name, x, 2.0, comfy_support.cond(0), comfy_support.cond(1))
    assert "DoRA x3" in report
    return model, report


def test_dora_falls_back_to_weight_hooks_and_stays_exact(comfy, lora_dir):
    import comfy_support

    model, report = dora_roles_match_fused(
        comfy, lora_dir, comfy_support.tiny_model("eps", seed=7), "sd_dora.safetensors"
    )
    assert "per role" in report
    # the fallback cleans up after sampling: no cached role weights left behind
    assert not model.cached_hook_patches and not model.hook_backup


def test_report_counts_partial_match_and_text_encoder_keys(comfy, lora_dir):
    import comfy_support

    base = comfy_support.tiny_model("eps", seed=10)
    sd = sd_lora(base, seed=11, tucker=False)
    sd["lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight"] = torch.zeros(4, 8)
    sd["lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight"] = torch.zeros(8, 4)
    sd["lora_unet_no_such_block.lora_down.weight"] = torch.zeros(4, 8)
    sd["lora_unet_no_such_block.lora_up.weight"] = torch.zeros(8, 4)
    name = save_lora(lora_dir, "partial.safetensors", sd)
    _, _, report = build(comfy, base, name)
    assert "partial match: 2 of" in report and "lora_unet_no_such_block" in report
    assert "ignored: 2 text-encoder keys" in report
    # another LoRA already on the same weights: allowed (they stack), and said
    _, _, report = build(comfy, fused(base, sd_lora(base, seed=99, tucker=False), 1.0), name)
    assert "already carry other patches" in report


def test_clear_errors(comfy, lora_dir):
    import comfy_support

    base = comfy_support.tiny_model("eps", seed=12)
    other = save_lora(
        lora_dir,
        "other_family.safetensors",
        {
            "lora_unet_blocks_0_cross_attn_q.lora_down.weight": torch.zeros(4, 8),
            "lora_unet_blocks_0_cross_attn_q.lora_up.weight": torch.zeros(8, 4),
        },
    )
    with pytest.raises(ValueError, match="matches none of this model's weights"):
        build(comfy, base, other)
    sd = sd_lora(base, seed=13, tucker=False)
    name = save_lora(lora_dir, "twice.safetensors", sd)
    with pytest.raises(ValueError, match="already carries the LoRA"):
        build(comfy, fused(base, sd, 1.0), name)
    node = comfy_support.node_class("W2SDWeakModelBuilder")
    with pytest.raises(ValueError, match="choose a LoRA"):
        node.execute(base, "None", FINAL, STRONG_S, WEAK_S)
    with pytest.raises(ValueError, match="not both"):
        node.execute(base, name, FINAL, STRONG_S, WEAK_S, weak_model=base)


def test_checkpoint_mode_validates_the_pair(comfy):
    import comfy_support

    node = comfy_support.node_class("W2SDWeakModelBuilder")
    strong, weak = comfy_support.tiny_model("eps", seed=14), comfy_support.tiny_model("v", seed=15)
    out = node.execute(strong, "None", FINAL, STRONG_S, WEAK_S, weak_model=weak)
    assert out[0] is strong and out[1] is weak and "checkpoint pair" in out[2]
    with pytest.raises(ValueError, match="flow"):
        node.execute(strong, "None", FINAL, STRONG_S, WEAK_S, weak_model=comfy_support.tiny_model("flow"))
    with pytest.raises(ValueError, match="latent"):
        node.execute(strong, "None", FINAL, STRONG_S, WEAK_S, weak_model=comfy_support.tiny_model("sdxl"))


def test_hooks_survive_a_discarded_clone_and_the_role_resets_on_error(comfy, lora_dir):
    import comfy_support

    roles = pack("nodes.sampling.roles")
    base = comfy_support.tiny_model("eps", seed=16)
    sd = sd_lora(base, seed=17, tucker=False)
    model, _, _ = build(comfy, base, save_lora(lora_dir, "clone.safetensors", sd))
    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(18))
    pos, neg = comfy_support.cond(0), comfy_support.cond(1)
    first = evaluate(model, (roles.STRONG,), x, 1.0, pos, neg)[roles.STRONG]
    runtime = model.get_attachment(roles.PAIR_ATTACHMENT)["runtime"]
    assert hook_count(model) == len(runtime.layers)  # still loaded, still injected
    clone = model.clone()  # copies is_injected=True
    del clone
    gc.collect()  # its __del__ ejects: must not strip ours
    assert hook_count(model) == len(runtime.layers)
    again = evaluate(model, (roles.STRONG,), x, 1.0, pos, neg)[roles.STRONG]
    assert torch.equal(first, again)

    class Boom(Exception):
        pass

    class Executor:
        class_obj = None

        def __call__(self, *args, **kwargs):
            assert runtime.active() == STRONG_S - FINAL
            raise Boom()

    with pytest.raises(Boom):
        runtime.apply_model_wrapper(Executor(), x, None, None, None, None, {roles.ROLE_KEY: roles.STRONG})
    assert runtime.active() == 0.0


def test_w2sd_run_with_lora_pair_equals_three_fused_clones(comfy, lora_dir):
    """A whole W2SD run with the builder's single model equals the same run done the slow, obviously
    correct way: three clones with the LoRA fused at final / strong / weak strength as the three
    denoisers of w2sd_core.sample_euler. Checked twice: with role-tagged calls made directly through
    a CFGGuider (this file's own machinery), and with the W2SD Reflective KSampler node."""
    import comfy.sample
    import comfy.samplers
    import comfy_support

    core = pack("w2sd_core")
    roles = pack("nodes.sampling.roles")
    base = comfy_support.tiny_model("eps", seed=19)
    sd = sd_lora(base, seed=20)
    before = snapshot(base)
    model, _, _ = build(comfy, base, save_lora(lora_dir, "run.safetensors", sd))
    pos, neg = comfy_support.cond(2), comfy_support.cond(3)
    steps, lam, cfg = 6, 3, 4.0
    sigmas = comfy.samplers.calculate_sigmas(base.get_model_object("model_sampling"), "karras", steps)
    plan = core.ReflectionPlan(steps=lam)
    latent = comfy_support.latent(1, 16)
    noise = comfy.sample.prepare_noise(latent["samples"], 123)

    def ours(m, x, sig, extra_args):
        def D(role):
            return lambda xx, s: m(xx, s, **role_options(extra_args, role))

        out = core.sample_euler(D(None), x, sig, weak=D(roles.WEAK), strong=D(roles.STRONG), plan=plan)
        return x, out

    x0, direct = Probe(ours).run(model, pos, neg, sigmas, cfg=cfg, noise=noise, latent=latent["samples"])

    ksampler = comfy_support.node_class("W2SDReflectiveKSampler")
    node_out = ksampler.execute(
        model,
        123,
        steps,
        cfg,
        "euler",
        "karras",
        pos,
        neg,
        latent,
        1.0,
        reflect_steps=lam,
        reflect_end_percent=1.0,
        repeats=1,
        inversion="next",
        mode="reflect",
    )[0]["samples"]

    clones = {s: fused(base, sd, s) for s in (FINAL, STRONG_S, WEAK_S)}

    def reference_D(patcher):
        # One full CFGGuider sampling call per evaluation: slow (the clones share one model, so each
        # switch re-patches the weights) but obviously correct.
        def D(x, s):
            def fn(m, _x, _sig, extra_args):
                return m(x, s, **extra_args)

            return Probe(fn).run(
                patcher,
                pos,
                neg,
                torch.tensor([float(s[0]), 0.0]),
                cfg=cfg,
                noise=torch.zeros_like(x),
                latent=torch.zeros_like(x),
            )

        return D

    want = core.sample_euler(
        reference_D(clones[FINAL]),
        x0,
        sigmas,
        weak=reference_D(clones[WEAK_S]),
        strong=reference_D(clones[STRONG_S]),
        plan=plan,
    )
    plain = core.sample_euler_plain(reference_D(clones[FINAL]), x0, sigmas)

    def rel(a, b):
        return ((a - b).abs().max() / b.abs().max()).item()

    assert rel(direct, want) <= 1e-5
    assert rel(plain, want) > 1e-3  # reflection did something
    want_latent = base.get_model_object("latent_format").process_out(want)
    assert rel(node_out, want_latent) <= 1e-5, "W2SD Reflective KSampler with the LoRA pair"

    # afterwards the base is untouched: loading it restores its exact weights, no hooks remain
    assert_base_untouched(base, before)


# ---------------------------------------------------------------- review: plain steps, memory, stacking, dtypes


def test_plain_ksampler_on_built_model_is_bit_identical_to_lora_loader(comfy, lora_dir):
    """Sampled with no role tags (a plain KSampler), the built MODEL is exactly the LoRA at
    final_strength: the same bits as LoraLoaderModelOnly (comfy.sd.load_lora_for_models)."""
    import comfy.sample
    import comfy_support

    base = comfy_support.tiny_model("eps", seed=30)
    sd = sd_lora(base, seed=31)
    model, _, _ = build(comfy, base, save_lora(lora_dir, "plain.safetensors", sd))
    pos, neg = comfy_support.cond(4), comfy_support.cond(5)
    latent = comfy_support.latent(1, 16)["samples"]
    noise = comfy.sample.prepare_noise(latent, 7)

    def run(m):
        return comfy.sample.sample(m, noise, 3, 5.0, "euler", "normal", pos, neg, latent, disable_pbar=True, seed=7)

    ours, ref, plain = run(model), run(fused(base, sd, FINAL)), run(base)
    assert torch.equal(ours, ref)
    assert not torch.equal(ref, plain)  # the LoRA matters, so the check can fail


def test_factor_casts_are_released_after_sampling(comfy, lora_dir):
    """The factors cast for the sampling device are VRAM that ComfyUI's memory manager does not see
    (it neither counts nor frees them on a partial unload): they must not outlive the sampling run."""
    import comfy_support

    roles = pack("nodes.sampling.roles")
    base = comfy_support.tiny_model("eps", seed=32)
    model, _, _ = build(comfy, base, save_lora(lora_dir, "release.safetensors", sd_lora(base, seed=33)))
    runtime = model.get_attachment(roles.PAIR_ATTACHMENT)["runtime"]
    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(34))
    seen = {}

    def fn(m, _x, _sigmas, extra_args):
        out = m(x, x.new_ones([1]), **role_options(extra_args, roles.STRONG))
        seen["during"] = sum(d.cached_bytes() for d in runtime.layers.values())
        return out

    Probe(fn).run(
        model,
        comfy_support.cond(0),
        comfy_support.cond(1),
        torch.tensor([1.0, 0.0]),
        noise=torch.zeros_like(x),
        latent=torch.zeros_like(x),
    )
    assert seen["during"] > 0  # cast (cached) while sampling
    assert hook_count(model) == len(runtime.layers)  # the model itself stays loaded
    assert sum(d.cached_bytes() for d in runtime.layers.values()) == 0


def test_two_builders_stack(comfy, lora_dir):
    """A builder applied to a builder's output: both LoRAs' role strengths apply on role calls,
    and the pair summary the samplers print names both."""
    import comfy_support

    roles = pack("nodes.sampling.roles")
    base = comfy_support.tiny_model("eps", seed=35)
    sd1, sd2 = sd_lora(base, seed=36, tucker=False), sd_lora(base, seed=37, tucker=False)
    n1, n2 = save_lora(lora_dir, "stack1.safetensors", sd1), save_lora(lora_dir, "stack2.safetensors", sd2)
    m1, _, _ = build(comfy, base, n1)
    m2, _, report = build(comfy, m1, n2, final=0.5, strong=1.0, weak=0.0)
    assert "already carry other patches" in report and "stack1.safetensors" in report
    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(38)) * 3.0
    pos, neg = comfy_support.cond(0), comfy_support.cond(1)
    rs = (None, roles.STRONG, roles.WEAK)
    ours = evaluate(m2, rs, x, 3.0, pos, neg)
    for role, s1, s2 in zip(rs, (FINAL, STRONG_S, WEAK_S), (0.5, 1.0, 0.0)):
        ref = evaluate(fused(fused(base, sd1, s1), sd2, s2), (None,), x, 3.0, pos, neg)[None]
        assert rel_err(ours[role], ref, x, 3.0) <= 1e-5, role
    summary = m2.get_attachment(roles.PAIR_ATTACHMENT)["summary"]
    assert "stack1.safetensors" in summary and "stack2.safetensors" in summary


def test_roles_stay_exact_after_a_partial_unload(comfy, lora_dir):
    """lowvram: ComfyUI partially unloads the model (modules cast their weights per call through
    comfy.ops, LoRA patches become LowVramPatch weight functions); the forward hooks still fire."""
    import comfy_support

    roles = pack("nodes.sampling.roles")
    base = comfy_support.tiny_model("eps", seed=39)
    sd = sd_lora(base, seed=40)
    model, _, _ = build(comfy, base, save_lora(lora_dir, "lowvram.safetensors", sd))
    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(41)) * 3.0
    pos, neg = comfy_support.cond(0), comfy_support.cond(1)
    rs = (None, roles.STRONG, roles.WEAK)

    def fn(m, _x, _sigmas, extra_args):
        patcher = m.inner_model.model_patcher
        assert patcher.partially_unload(patcher.offload_device, memory_to_free=10**15) > 0
        assert patcher.model.model_lowvram
        return {role: m(x, x.new_ones([1]) * 3.0, **role_options(extra_args, role)) for role in rs}

    ours = Probe(fn).run(
        model, pos, neg, torch.tensor([3.0, 0.0]), noise=torch.zeros_like(x), latent=torch.zeros_like(x)
    )
    for role, s in zip(rs, (FINAL, STRONG_S, WEAK_S)):
        ref = evaluate(fused(base, sd, s), (None,), x, 3.0, pos, neg)[None]
        assert rel_err(ours[role], ref, x, 3.0) <= 1e-5, role


def _tiny_model_in(dtype, seed):
    """tiny_model("eps") with its weights stored in ``dtype`` and computed in it (no manual cast),
    as ComfyUI loads an fp16/bf16 checkpoint on a GPU that runs that dtype."""
    import comfy.model_base as mb
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models as sm
    import comfy_support

    config = sm.SD15(dict(comfy_support.TINY_UNET))
    config.unet_config["num_head_channels"] = 16
    config.unet_config["num_heads"] = -1
    config.set_inference_dtype(dtype, None)
    model = mb.BaseModel(config, model_type=mb.ModelType.EPS, device="cpu")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.diffusion_model.parameters():
            p.copy_((torch.randn(p.shape, generator=g) * 0.05).to(p.dtype))
    return comfy.model_patcher.ModelPatcher(
        model, load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device()
    )


def test_bf16_model_roles_as_accurate_as_comfyui_own_bf16_lora(comfy, lora_dir):
    """A bf16 model: the deltas run in the model's dtype; measured against the exact result (fp32
    weights equal to the bf16 ones, LoRA fused in fp32), their error stays of the order of ComfyUI's
    own error with the LoRA fused into bf16 weights."""
    import comfy_support

    roles = pack("nodes.sampling.roles")
    base = _tiny_model_in(torch.bfloat16, seed=42)
    exact_base = comfy_support.tiny_model("eps", seed=42)
    exact_base.model.diffusion_model.load_state_dict(
        {k: v.float() for k, v in base.model.diffusion_model.state_dict().items()}
    )
    sd = sd_lora(base, seed=43, tucker=False)
    model, _, _ = build(comfy, base, save_lora(lora_dir, "bf16.safetensors", sd))
    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(44)) * 3.0
    pos, neg = comfy_support.cond(0), comfy_support.cond(1)
    ours = evaluate(model, (roles.WEAK,), x, 3.0, pos, neg)[roles.WEAK]
    comfy_bf16 = evaluate(fused(base, sd, WEAK_S), (None,), x, 3.0, pos, neg)[None]
    exact = evaluate(fused(exact_base, sd, WEAK_S), (None,), x, 3.0, pos, neg)[None]
    runtime = model.get_attachment(roles.PAIR_ATTACHMENT)["runtime"]
    assert runtime.calls[roles.WEAK] == 1
    assert rel_err(ours, exact, x, 3.0) <= 2.0 * rel_err(comfy_bf16, exact, x, 3.0) + 1e-3
    assert rel_err(evaluate(base, (None,), x, 3.0, pos, neg)[None], exact, x, 3.0) > 5e-2


def test_fallback_report_states_the_weight_copies_per_call(comfy, lora_dir):
    """The weight-hook fallback swaps the hooked weights in and back out on every model call,
    normal steps included (ComfyUI re-applies the conds' hooks before each call): the report says so."""
    import comfy.patcher_extension
    import comfy.sample
    import comfy_support

    base = comfy_support.tiny_model("eps", seed=45)
    sd = sd_lora(base, seed=46, dora=2, tucker=False)
    model, _, report = build(comfy, base, save_lora(lora_dir, "dora_calls.safetensors", sd))
    applied = []
    model.add_callback(comfy.patcher_extension.CallbacksMP.ON_APPLY_HOOKS, lambda p, h: applied.append(h))
    latent = comfy_support.latent(1, 16)["samples"]
    steps = 2  # one batched cond/uncond model call per step
    comfy.sample.sample(
        model,
        comfy.sample.prepare_noise(latent, 1),
        steps,
        5.0,
        "euler",
        "normal",
        comfy_support.cond(0),
        comfy_support.cond(1),
        latent,
        disable_pbar=True,
        seed=1,
    )
    assert len(applied) == 2 * steps
    assert "two copies of them per model call, normal steps included" in report


def test_weight_hooks_on_a_dynamic_vram_model_run_on_its_static_delegate(comfy, lora_dir):
    """Dynamic VRAM (ComfyUI 2026) has no weight hooks: the DoRA fallback must use the model's
    non-dynamic delegate, as ComfyUI's guider does for hooked conds, and stay exact."""
    import comfy_support

    base = comfy_support.dynamic_like(comfy_support.tiny_model("eps", seed=7))
    model, _ = dora_roles_match_fused(comfy, lora_dir, base, "sd_dora_dynamic.safetensors")
    assert not pack("nodes.comfy.compat").is_dynamic(model)


def test_weight_hooks_on_a_dynamic_model_that_cannot_reload_are_refused(comfy, lora_dir):
    import comfy_support

    base = comfy_support.dynamic_like(comfy_support.tiny_model("eps", seed=7), can_reload=False)
    name = save_lora(lora_dir, "sd_dora_dynamic2.safetensors", sd_lora(base, seed=8, dora=2, tucker=False))
    with pytest.raises(ValueError, match=r"DoRA.*--disable-dynamic-vram"):
        build(comfy, base, name)


def test_the_lora_delta_on_a_dynamic_vram_model_needs_no_delegate(comfy, lora_dir):
    """Plain LoRA/LoCon pairs add activation-space deltas through set_injections: they stay on the
    dynamic model itself (no second copy) and stay exact."""
    import comfy_support

    base = comfy_support.dynamic_like(comfy_support.tiny_model("eps", seed=1))
    sd = sd_lora(base, seed=2)
    name = save_lora(lora_dir, "sd_locon_dynamic.safetensors", sd)
    x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(3)) * 3.0
    model, _ = roles_match_fused(comfy, base, sd, name, x, 3.0, comfy_support.cond(0), comfy_support.cond(1))
    assert pack("nodes.comfy.compat").is_dynamic(model)
