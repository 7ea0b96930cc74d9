"""Reliability: what a hostile but realistic user sends the W2SD nodes, in real ComfyUI with tiny
models. Bad inputs are refused at the node boundary with one line naming the node, the input and
the fix; what already held (mismatched pairs, interruption, memory, determinism) keeps holding.

In-process tests call the nodes' ``execute`` as ComfyUI does; the server tests run ComfyUI's real
server (its prompt validation, /interrupt and queue) on tiny model files. Other probes that held
live with their features: every sampler with reflection (test_comfyui_sampler.py), the Inversion
Step's bad schedules (test_comfyui_inversion.py), plain KSampler bit-identity after a LoRA pair
(test_comfyui_weak_model.py).
"""

import gc
import math
import time
import weakref

import pytest
import torch

import comfy_support as cs
from sampling_support import assert_unchanged, instrument, ksampler_reference, snapshot

pytestmark = pytest.mark.comfyui

FINAL, STRONG_S, WEAK_S = 0.8, 1.5, -1.5
LORA = "w2sd_reliability_lora.safetensors"


@pytest.fixture(scope="module")
def lora_dir(comfy, tmp_path_factory):
    """A loras folder ComfyUI looks in, holding a LoRA for ``cs.tiny_model``."""
    import folder_paths
    import safetensors.torch

    path = tmp_path_factory.mktemp("loras")
    folder_paths.add_model_folder_path("loras", str(path))
    sd = cs.attention_lora(cs.tiny_model("eps").model, dtype=torch.float32, scale=0.2)
    safetensors.torch.save_file(sd, str(path / LORA))
    return path


def node(node_id):
    return cs.node_class(node_id)


def build_pair(model, final=FINAL, strong=STRONG_S, weak=WEAK_S, lora=LORA):
    return node("W2SDWeakModelBuilder").execute(model, lora, final, strong, weak).args[0]


def ksample(
    model,
    latent=None,
    seed=5,
    steps=4,
    sampler_name="euler",
    scheduler="normal",
    positive=None,
    negative=None,
    cfg=3.0,
    **optional,
):
    latent = latent if latent is not None else cs.latent(1, 8)
    positive = positive if positive is not None else cs.cond(0)
    negative = negative if negative is not None else cs.cond(1)
    optional.setdefault("reflect_steps", -1)  # these probes exercise reflection; the default guides
    optional.setdefault("mode", "reflect")
    out = node("W2SDReflectiveKSampler").execute(
        model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent, 1.0, **optional
    )
    return out.args[0]["samples"]


# ---------------------------------------------------------------- NaN / inf at the node boundary

#: Every FLOAT input of every W2SD node (test_every_float_input_is_covered keeps this complete).
FLOAT_INPUTS = [
    ("W2SDReflectiveKSampler", "cfg"),
    ("W2SDReflectiveKSampler", "denoise"),
    ("W2SDReflectiveKSampler", "strong_cfg"),
    ("W2SDReflectiveKSampler", "weak_cfg"),
    ("W2SDReflectiveKSampler", "reflect_end_percent"),
    ("W2SDReflectiveKSampler", "guidance"),
    ("W2SDReflectiveKSamplerAdvanced", "cfg"),
    ("W2SDReflectiveKSamplerAdvanced", "strong_cfg"),
    ("W2SDReflectiveKSamplerAdvanced", "weak_cfg"),
    ("W2SDReflectiveKSamplerAdvanced", "reflect_end_percent"),
    ("W2SDReflectiveKSamplerAdvanced", "guidance"),
    ("W2SDSampler", "guidance"),
    ("W2SDGuider", "cfg"),
    ("W2SDGuider", "strong_cfg"),
    ("W2SDGuider", "weak_cfg"),
    ("W2SDSampler", "reflect_end_percent"),
    ("W2SDSampler", "strong_cfg"),
    ("W2SDSampler", "weak_cfg"),
    ("W2SDInversionStep", "cfg"),
    ("W2SDWeakModelBuilder", "final_strength"),
    ("W2SDWeakModelBuilder", "strong_strength"),
    ("W2SDWeakModelBuilder", "weak_strength"),
]


def valid_arguments(node_id):
    """Arguments with which each node runs (test_valid_arguments_run proves it)."""
    import comfy.samplers

    model = cs.tiny_model("eps")
    # what both KSampler nodes take besides their own sampling inputs
    ksampler = dict(
        model=model,
        steps=3,
        cfg=3.0,
        sampler_name="euler",
        scheduler="normal",
        positive=cs.cond(0),
        negative=cs.cond(1),
        latent_image=cs.latent(1, 8),
        strong_cfg=3.0,
        weak_cfg=1.0,
        reflect_end_percent=0.8,
    )
    if node_id == "W2SDReflectiveKSampler":
        return dict(ksampler, seed=1, denoise=1.0)
    if node_id == "W2SDReflectiveKSamplerAdvanced":
        return dict(
            ksampler,
            add_noise="enable",
            noise_seed=1,
            start_at_step=0,
            end_at_step=10000,
            return_with_leftover_noise="disable",
        )
    if node_id == "W2SDGuider":
        return dict(model=model, positive=cs.cond(0), negative=cs.cond(1), cfg=3.0, strong_cfg=3.0, weak_cfg=1.0)
    if node_id == "W2SDSampler":
        return dict(
            sampler=comfy.samplers.sampler_object("euler"), reflect_end_percent=0.8, strong_cfg=3.0, weak_cfg=1.0
        )
    if node_id == "W2SDInversionStep":
        return dict(
            model=model,
            positive=cs.cond(0),
            negative=cs.cond(1),
            cfg=1.0,
            latent=cs.latent(1, 8, seed=3),
            sigmas=torch.tensor([2.0, 1.0, 0.0]),
        )
    return dict(model=model, lora_name=LORA, final_strength=FINAL, strong_strength=STRONG_S, weak_strength=WEAK_S)


def test_every_float_input_is_covered(comfy):
    from comfy_api.latest import io

    found = {
        (node_id, item.id)
        for node_id in {n for n, _ in FLOAT_INPUTS}
        for item in node(node_id).define_schema().inputs
        if isinstance(item, io.Float.Input)
    }
    assert found == set(FLOAT_INPUTS)


@pytest.mark.parametrize("node_id", sorted({n for n, _ in FLOAT_INPUTS}))
def test_valid_arguments_run(comfy, lora_dir, node_id):
    out = node(node_id).execute(**valid_arguments(node_id))
    assert out.args[0] is not None


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("node_id,name", FLOAT_INPUTS)
def test_non_finite_numbers_are_refused(comfy, lora_dir, node_id, name, value):
    arguments = valid_arguments(node_id)
    arguments[name] = value
    schema = node(node_id).define_schema()
    word = "NaN" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    with pytest.raises(ValueError) as error:
        node(node_id).execute(**arguments)
    message = str(error.value)
    label = cs.pack_module("nodes.comfy.validate").node_label(schema)  # "W2SD (Reflective KSampler)" for "W2SD"
    assert message.startswith(f"{label}: {name} is {word}; set a number between"), message
    assert "\n" not in message


# ---------------------------------------------------------------- sampler and scheduler names


@pytest.mark.parametrize(
    "key,value",
    [("sampler_name", "not_a_sampler"), ("scheduler", "not_a_scheduler"), ("sampler_name", "euler_ancestrall")],
)
def test_unknown_sampler_or_scheduler_is_refused(comfy, key, value):
    arguments = valid_arguments("W2SDReflectiveKSampler")
    arguments[key] = value
    with pytest.raises(ValueError, match=f"W2SD \\(Reflective KSampler\\): {key} '{value}' is not a"):
        node("W2SDReflectiveKSampler").execute(**arguments)
    if value == "euler_ancestrall":
        with pytest.raises(ValueError, match="closest: 'euler_ancestral'"):
            node("W2SDReflectiveKSampler").execute(**arguments)


# ---------------------------------------------------------------- LoRA files


def _bad_file(kind, good: bytes) -> bytes:
    if kind == "truncated":
        return good[: len(good) // 2]
    if kind == "empty":
        return b""
    return bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0)).tolist())


@pytest.mark.parametrize("kind", ["truncated", "empty", "garbage"])
def test_unreadable_lora_file_is_named(comfy, lora_dir, kind):
    name = f"w2sd_bad_{kind}.safetensors"
    (lora_dir / name).write_bytes(_bad_file(kind, (lora_dir / LORA).read_bytes()))
    with pytest.raises(ValueError) as error:
        build_pair(cs.tiny_model("eps"), lora=name)
    message = str(error.value)
    assert message.startswith(f"W2SD Weak Model Builder: the LoRA file '{name}'"), message
    assert "cannot be read" in message and "download it again" in message and "\n" not in message


def test_lora_path_tricks_and_unknown_names_are_refused_naming_the_input(comfy, lora_dir):
    """Not ComfyUI's bare "not found": the node, the input and the fix (issue item 4)."""
    for name in ("../../../etc/passwd", "/etc/passwd", f"../{lora_dir.name}/{LORA}", "no_such_lora.safetensors"):
        message = _refusal(lambda name=name: build_pair(cs.tiny_model("eps"), lora=name))
        assert message.startswith(
            f"W2SD Weak Model Builder: lora_name '{name}' is not a file in ComfyUI's loras folder"
        ), message
        assert "pick one from the node's list" in message and "\n" not in message
    typo = _refusal(lambda: build_pair(cs.tiny_model("eps"), lora=LORA.replace("lora", "lroa")))
    assert f"(closest: '{LORA}')" in typo, typo


def test_lora_file_tensors_live_only_as_long_as_a_model_built_from_them(comfy, lora_dir):
    weak_model = cs.pack_module("nodes.pair_types.lora.files")
    base = cs.tiny_model("eps")
    first = build_pair(base)
    (entry,) = [e for k, e in weak_model._lora_cache.items() if k[0].endswith(LORA)]
    tensor = weakref.ref(next(iter(entry["sd"].values())))
    second = build_pair(base, strong=2.0)  # a re-run with other strengths: same tensors
    assert [e for k, e in weak_model._lora_cache.items() if k[0].endswith(LORA)] == [entry]
    del first, second, entry
    gc.collect()
    assert not [k for k in weak_model._lora_cache if k[0].endswith(LORA)]
    assert tensor() is None, "the LoRA file's tensors outlived every model built from them"


# ---------------------------------------------------------------- pairs


def test_lora_pair_beside_a_second_checkpoint_is_refused(comfy, lora_dir):
    """Case 1: the builder's LoRA pair as model and a second checkpoint as weak_model: the weak
    passes run on the checkpoint, so weak_strength would do nothing."""
    pair, checkpoint = build_pair(cs.tiny_model("eps")), cs.tiny_model("eps", seed=7)
    expected = "weak_model is a second checkpoint, so the pair's weak_strength would have no effect"
    with pytest.raises(
        ValueError, match=f"W2SD \\(Reflective KSampler\\): model carries a Weak Model Builder LoRA pair .*{expected}"
    ):
        ksample(pair, weak_model=checkpoint)
    with pytest.raises(ValueError, match=f"W2SD Guider: model carries .*{expected}"):
        node("W2SDGuider").execute(pair, cs.cond(0), cs.cond(1), 3.0, weak_model=checkpoint)
    with pytest.raises(ValueError, match=f"W2SD Weak Model Builder: model carries .*{expected}"):
        node("W2SDWeakModelBuilder").execute(pair, "None", FINAL, STRONG_S, WEAK_S, weak_model=checkpoint)
    with pytest.raises(ValueError, match="weak_model carries .*strong_strength and final_strength"):
        ksample(checkpoint, weak_model=pair)
    # The pair alone, and the builder's own weak output, still reflect (weak_strength counts).
    assert not torch.equal(ksample(pair, weak_model=pair), ksample(build_pair(cs.tiny_model("eps"), weak=5.0)))


def _refusal(call):
    with pytest.raises(ValueError) as error:
        call()
    return str(error.value)


def test_mismatched_pairs_still_stop_with_the_fix(comfy, lora_dir):
    """What held in the hostile probe: every mismatched pair stops with a message naming the fix."""
    import comfy.model_sampling
    import comfy.sd

    eps = cs.tiny_model("eps")
    sdxl_like = _refusal(lambda: ksample(eps, weak_model=cs.tiny_model("sdxl", seed=2)))
    flow = _refusal(lambda: ksample(eps, weak_model=cs.tiny_model("flow", seed=2)))
    lora_clone = _refusal(
        lambda: ksample(eps, weak_model=comfy.sd.load_lora_for_models(eps, None, _lora_sd(lora_dir), 1.0, 0)[0])
    )
    patched = eps.clone()
    patched.add_object_patch("model_sampling", comfy.model_sampling.ModelSamplingDiscrete(eps.model.model_config))
    sampling_patch = _refusal(lambda: ksample(eps, weak_model=patched))
    two_builders = _refusal(lambda: build_pair(build_pair(eps)))
    upstream = _refusal(lambda: build_pair(comfy.sd.load_lora_for_models(eps, None, _lora_sd(lora_dir), 0.5, 0)[0]))
    assert "latent format: strong is SD15, weak is SDXL" in sdxl_like, sdxl_like
    assert "model type: strong is eps, weak is flow" in flow and "share one latent space" in flow, flow
    assert "W2SD Weak Model Builder" in lora_clone, lora_clone
    assert "object patches (model_sampling" in sampling_patch, sampling_patch
    for message in (two_builders, upstream):
        assert "already carries the LoRA" in message and "Connect the model from before" in message, message
    other_family = _refusal(lambda: build_pair(cs.tiny_flux_model()))
    assert "matches none of this model's weights" in other_family and "another model family" in other_family


def _lora_sd(lora_dir):
    import comfy.utils

    return comfy.utils.load_torch_file(str(lora_dir / LORA), safe_load=True)


# ---------------------------------------------------------------- conditioning and latents


def test_conditioning_of_another_width_is_refused_naming_the_input(comfy):
    eps, wide = cs.tiny_model("eps"), [[torch.randn(1, 77, 48), {}]]
    message = _refusal(lambda: ksample(eps, weak_positive=wide))
    assert message == (
        "W2SD (Reflective KSampler): weak_positive is 48 wide but model takes 32-wide "
        "conditioning (a text encoder of another model family?); encode weak_positive "
        "with the CLIP that belongs to model's checkpoint."
    )
    message = _refusal(
        lambda: node("W2SDGuider").execute(
            eps, cs.cond(0), cs.cond(1), 3.0, weak_model=cs.tiny_model("eps", 3), weak_negative=wide
        )
    )
    assert message.startswith("W2SD Guider: weak_negative is 48 wide but weak_model takes 32-wide")
    assert _refusal(lambda: ksample(eps, positive=wide)).startswith("W2SD (Reflective KSampler): positive is 48 wide")
    args = valid_arguments("W2SDInversionStep")
    args["negative"] = wide
    assert _refusal(lambda: node("W2SDInversionStep").execute(**args)).startswith(
        "W2SD Inversion Step: negative is 48 wide"
    )
    # The width read from each family is the one its model really takes: right widths sample.
    assert torch.isfinite(
        ksample(
            cs.tiny_flux_model(),
            cs.latent(1, 8, 16),
            positive=cs.flux_cond(0),
            negative=cs.flux_cond(1),
            weak_positive=cs.flux_cond(2),
            steps=2,
        )
    ).all()
    validate = cs.pack_module("nodes.comfy.validate")
    assert [
        validate.context_width(m) for m in (eps, cs.tiny_model("sdxl"), cs.tiny_flux_model(), cs.tiny_video_model())
    ] == [32, 32, 32, 32]


@pytest.mark.parametrize("case", ["sd3_latent_into_sd15", "video_latent_into_image_model", "sd15_latent_into_flux"])
def test_latent_of_another_family_is_refused(comfy, case):
    model, samples = {
        "sd3_latent_into_sd15": (cs.tiny_model("eps"), torch.randn(1, 16, 8, 8)),
        "video_latent_into_image_model": (cs.tiny_model("eps"), torch.randn(1, 4, 2, 8, 8)),
        "sd15_latent_into_flux": (cs.tiny_flux_model(), torch.randn(1, 4, 8, 8)),
    }[case]
    conds = {}
    if case == "sd15_latent_into_flux":  # Flux's own conditioning (with its pooled output)
        conds = dict(positive=cs.flux_cond(0), negative=cs.flux_cond(1))
    message = _refusal(lambda: ksample(model, {"samples": samples}, steps=2, **conds))
    assert message.startswith(
        f"W2SD (Reflective KSampler): latent_image has shape {list(samples.shape)}, but this model samples"
    ), message
    assert "encode the image with this model's VAE" in message
    args = valid_arguments("W2SDInversionStep")
    args.update(model=model, latent={"samples": samples})
    if case == "sd15_latent_into_flux":
        args.update(positive=cs.flux_cond(0), negative=cs.flux_cond(1))
    assert _refusal(lambda: node("W2SDInversionStep").execute(**args)).startswith(
        f"W2SD Inversion Step: latent has shape {list(samples.shape)}"
    )


def test_empty_latents_of_another_family_are_fixed_up_as_ksampler_does(comfy):
    """KSampler turns an EMPTY 4-channel latent into a 16-channel one and adds the frame axis of
    video models: those are right, not refused."""
    flux = ksample(
        cs.tiny_flux_model(),
        cs.latent(1, 8, 4),
        positive=cs.flux_cond(0),
        negative=cs.flux_cond(1),
        steps=2,
        weak_cfg=1.0,
    )
    assert flux.shape == (1, 16, 8, 8)
    video = ksample(
        cs.tiny_video_model(),
        cs.latent(1, 8, 16),
        positive=cs.cond(0, tokens=16),
        negative=cs.cond(1, tokens=16),
        steps=2,
        weak_cfg=1.0,
    )
    assert video.shape == (1, 16, 1, 8, 8)


# ---------------------------------------------------------------- determinism


@pytest.mark.parametrize("sampler_name", ["euler", "euler_ancestral", "dpmpp_2m_sde", "dpmpp_sde"])
def test_same_seed_same_output(comfy, lora_dir, sampler_name):
    pair = build_pair(cs.tiny_model("eps"))
    runs = [ksample(pair, seed=seed, sampler_name=sampler_name, reflect_steps=-1) for seed in (3, 3, 4)]
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


# ---------------------------------------------------------------- interruption


@pytest.mark.parametrize("pair_kind", ["lora", "checkpoint"])
def test_interrupt_during_a_weak_reflection_leaves_everything_as_before(comfy, lora_dir, pair_kind):
    """ComfyUI's real interrupt (the flag "stop" sets) raised during the third weak reflection
    pass: the run stops, the base model is bit-identical, a plain KSampler gives what it gave
    before, and the W2SD rerun equals an uninterrupted run."""
    import comfy.model_management as mm

    base = cs.tiny_model("eps")
    before = snapshot(base)
    plain = ksampler_reference(base, 5, 4, 3.0, "euler", "normal", cs.cond(0), cs.cond(1), cs.latent(1, 8))
    model, weak = (build_pair(base), None) if pair_kind == "lora" else (base, cs.tiny_model("eps", seed=9))
    uninterrupted = ksample(model, weak_model=weak, steps=6, reflect_steps=-1, reflect_end_percent=1.0)
    weak_calls, stopped_after = [], []
    # Weak passes run on the weak model where there is one: watch that model's calls.

    def stop_in_third_weak_pass(args):
        if args["c"].get("transformer_options", {}).get("w2sd_role") == "reflect_weak":
            weak_calls.append(1)
            if len(weak_calls) == 3:
                mm.interrupt_current_processing(True)
                stopped_after.append(len(calls))

    watched, calls = instrument(weak or model, on_call=stop_in_third_weak_pass)
    armed = (watched, None) if weak is None else (model, watched)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            ksample(armed[0], weak_model=armed[1], steps=6, reflect_steps=-1, reflect_end_percent=1.0)
    finally:
        mm.interrupt_current_processing(False)
    # Stopped at once: ComfyUI 0.3.64 notices the flag only before the next evaluation of a
    # reflection or in its progress hook, so one normal evaluation may still run.
    assert len(weak_calls) == 3 and len(calls) <= stopped_after[0] + 1, (stopped_after, len(calls))
    after_plain = ksampler_reference(base, 5, 4, 3.0, "euler", "normal", cs.cond(0), cs.cond(1), cs.latent(1, 8))
    assert torch.equal(after_plain["samples"], plain["samples"])
    assert torch.equal(
        ksample(model, weak_model=weak, steps=6, reflect_steps=-1, reflect_end_percent=1.0), uninterrupted
    )
    mm.load_models_gpu([base])
    assert_unchanged(before, base)


# ---------------------------------------------------------------- memory

MEMORY_RUNS = 8
MEMORY_LATENT = (2, 4, 16, 16)  # 8 KiB in fp32


def test_memory_stays_flat_over_repeated_runs(comfy, lora_dir):
    """Live tensor bytes (every storage Python can reach, after a full gc) before and after
    MEMORY_RUNS = 8 runs that alternate a LoRA pair rebuilt at new strengths and a checkpoint pair,
    with new seeds. Growth must stay under one latent (8 KiB): a leak of one latent per run adds
    8 x 8 KiB = 64 KiB and fails. A leaked model, LoRA file or cast factors add far more (the
    tiny UNet alone is ~1 MiB). Measured: 0 bytes of growth on 0.3.64 and 0.8.0."""
    import comfy.model_management as mm

    base, weak = cs.tiny_model("eps"), cs.tiny_model("eps", seed=9)
    latent_bytes = math.prod(MEMORY_LATENT) * 4

    def run(i):
        latent = {"samples": torch.randn(*MEMORY_LATENT, generator=torch.Generator().manual_seed(i))}
        if i % 2:
            out = ksample(build_pair(base, strong=1.0 + i / 10, weak=-i / 10), latent, seed=i, steps=3)
        else:
            out = ksample(base, latent, seed=i, steps=3, weak_model=weak)
        assert torch.isfinite(out).all()

    for i in range(2):  # warm-up: lazily built caches of ComfyUI and torch
        run(i)
    mm.soft_empty_cache()
    start = cs.live_tensor_bytes()
    for i in range(2, 2 + MEMORY_RUNS):
        run(i)
    mm.soft_empty_cache()
    growth = cs.live_tensor_bytes() - start
    assert growth < latent_bytes, f"{growth} bytes of tensors more after {MEMORY_RUNS} runs"


def test_nothing_a_run_holds_waits_for_the_cyclic_collector(comfy, lora_dir):
    """Item 6: the server's memory swung by about +-60 MB over 13 runs (stock: +-10 MB) with no
    trend. The LoRA runtime and its forward hooks formed a reference cycle, so each dropped pair
    kept its LoRA factors (and casts of them) until Python's cyclic collector ran. Now, with that
    collector off, a dropped pair, its runtime and the LoRA file's tensors go at once, and a run in
    every mode leaves no tensor in a reference cycle."""
    import comfy.model_management as mm

    base = cs.tiny_model("eps")
    gc.collect()
    gc.disable()
    try:
        pair = build_pair(base)
        runtime = weakref.ref(pair.get_attachment("w2sd_pair")["runtime"])
        lora_sd = next(
            e for k, e in cs.pack_module("nodes.pair_types.lora.files")._lora_cache.items() if k[0].endswith(LORA)
        )
        tensor = weakref.ref(next(iter(lora_sd["sd"].values())))
        del lora_sd
        for mode in MODES:
            ksample(pair, mode=mode, reflect_end_percent=1.0, guidance=0.5)
        pair = weakref.ref(pair)
        mm.cleanup_models()
        assert pair() is None and runtime() is None and tensor() is None
        gc.set_debug(gc.DEBUG_SAVEALL)
        for mode in MODES:
            ksample(build_pair(base, strong=2.0), mode=mode, reflect_end_percent=1.0, guidance=0.5)
            ksample(base, mode=mode, weak_model=cs.tiny_model("eps", seed=9), reflect_end_percent=1.0)
        gc.collect()
        in_cycles = [tuple(o.shape) for o in gc.garbage if isinstance(o, torch.Tensor)]
        assert not in_cycles, f"tensors only the cyclic collector frees: {in_cycles[:5]}"
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


# ---------------------------------------------------------------- the real server


@pytest.fixture(scope="module")
def server(comfy, tmp_path_factory):
    base = tmp_path_factory.mktemp("reliability_server")
    files = cs.write_tiny_checkpoints(base / "models")
    good = (base / "models" / "loras" / files["lora"]).read_bytes()
    (base / "models" / "loras" / "w2sd_truncated.safetensors").write_bytes(good[: len(good) // 2])
    with cs.ComfyServer(base) as running:
        running.files = files
        yield running


def server_graph(files, steps=4, prefix="w2sd", **overrides):
    """Tiny SD2 UNet files: a LoRA pair from the Weak Model Builder, sampled by the Reflective
    KSampler on an empty latent and saved."""
    graph = {
        "unet": {"class_type": "UNETLoader", "inputs": {"unet_name": files["unet"], "weight_dtype": "default"}},
        "pair": {
            "class_type": "W2SDWeakModelBuilder",
            "inputs": {
                "model": ["unet", 0],
                "lora_name": files["lora"],
                "final_strength": FINAL,
                "strong_strength": STRONG_S,
                "weak_strength": WEAK_S,
            },
        },
        "pos": {"class_type": "LotusConditioning", "inputs": {}},
        "neg": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["pos", 0]}},
        "empty": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "w2sd": {
            "class_type": "W2SDReflectiveKSampler",
            "inputs": {
                "model": ["pair", 0],
                "seed": 42,
                "steps": steps,
                "cfg": 2.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "positive": ["pos", 0],
                "negative": ["neg", 0],
                "latent_image": ["empty", 0],
                "denoise": 1.0,
                "reflect_steps": -1,
                "reflect_end_percent": 1.0,
                "repeats": 1,
            },
        },
        "save": {
            "class_type": "SaveLatent",
            "inputs": {"samples": ["w2sd", 0], "filename_prefix": f"latents/{prefix}"},
        },
    }
    for key, value in overrides.items():
        node_id, name = key.split("__")
        graph[node_id]["inputs"][name] = value
    return graph


def saved(server, entry):
    (path,) = server.output_files(entry, "save")
    return cs.read_latent_file(path)


@pytest.mark.parametrize(
    "override,expected",
    [
        (
            {"w2sd__reflect_end_percent": math.nan},
            "W2SD (Reflective KSampler): reflect_end_percent is NaN; set a number between 0 and 1.",
        ),
        (
            {"w2sd__strong_cfg": math.nan},
            "W2SD (Reflective KSampler): strong_cfg is NaN; set a number between -1 and 100.",
        ),
        (
            {"pair__weak_strength": math.nan},
            "W2SD Weak Model Builder: weak_strength is NaN; set a number between -100 and 100.",
        ),
        (
            {"w2sd__sampler_name": "not_a_sampler"},
            "W2SD (Reflective KSampler): sampler_name 'not_a_sampler' is not a sampler",
        ),
        (
            {"w2sd__scheduler": "not_a_scheduler"},
            "W2SD (Reflective KSampler): scheduler 'not_a_scheduler' is not a scheduler",
        ),
        (
            {"pair__lora_name": "w2sd_truncated.safetensors"},
            "W2SD Weak Model Builder: the LoRA file 'w2sd_truncated.safetensors'",
        ),
    ],
    ids=["nan_end_percent", "nan_strong_cfg", "nan_strength", "sampler", "scheduler", "truncated_lora"],
)
def test_bad_api_inputs_are_refused_on_the_server(server, override, expected):
    """Sent through the API as a script (or an old workflow) would: NaN is valid JSON for Python's
    server, and ComfyUI 0.3.64 does not check V3 combo values. Either ComfyUI's own validation
    refuses the prompt ("Value not in list", 0.8.0's combos) or the node's one-line message comes
    back as the execution error: never a run with a silent substitute."""
    try:
        entry = server.run(server_graph(server.files, **override), timeout=120)
    except RuntimeError as rejected:  # refused by ComfyUI's prompt validation
        assert "value_not_in_list" in str(rejected), rejected
        assert any(k.endswith(("sampler_name", "scheduler")) for k in override), rejected
        return
    assert not server.succeeded(entry)
    error = server.error_of(entry)
    assert error is not None, entry["status"]
    assert error["exception_message"].startswith(expected), error["exception_message"]
    assert "\n" not in error["exception_message"].strip()


def test_stop_and_clear_queue_mid_run(server):
    """A long reflected run with two more prompts queued behind it: "clear queue" then "stop"
    (/interrupt) while it runs. The run ends within seconds, the queued prompts never run, and
    the server then gives exactly what it gave before for the same prompt."""
    reference = server.run(server_graph(server.files, prefix="before"), timeout=120)
    assert server.succeeded(reference), server.error_of(reference)
    long_run = server_graph(server.files, steps=60, prefix="long", w2sd__repeats=3)
    first = server.queue(long_run)
    queued = [server.queue(server_graph(server.files, steps=60, prefix=f"queued{i}", w2sd__seed=i)) for i in range(2)]
    deadline = time.monotonic() + 60
    while first not in server.running_ids():
        assert time.monotonic() < deadline, "the long run never started"
        time.sleep(0.05)
    time.sleep(0.5)
    server.clear_queue()
    stopped_at = time.monotonic()
    server.interrupt()
    entry = server.wait(first, timeout=60)
    took = time.monotonic() - stopped_at
    assert not server.succeeded(entry)
    assert any(kind == "execution_interrupted" for kind, _ in entry["status"]["messages"]), entry["status"]
    assert took < 10, f"stop took {took:.1f} s"
    assert server.pending_ids() == [] and server.running_ids() == []
    assert all(server.get_json(f"/history/{pid}") == {} for pid in queued)
    again = server.run(server_graph(server.files, prefix="after"), timeout=120)
    assert server.succeeded(again), server.error_of(again)
    assert torch.equal(saved(server, again), saved(server, reference))


# ---------------------------------------------------------------- what the second probe got through
# Each case below ran with no error and gave something else than what was asked for.

MODES = ["reflect", "guide", "reflect+guide"]


def ksample_output(model, steps=4, **optional):
    """The Reflective KSampler's NodeOutput (the latent and the run report)."""
    optional.setdefault("reflect_steps", -1)
    return node("W2SDReflectiveKSampler").execute(
        model, 5, steps, 3.0, "euler", "normal", cs.cond(0), cs.cond(1), cs.latent(1, 8), 1.0, **optional
    )


@pytest.mark.parametrize(
    "strengths", [(0.8, 0.8, 0.8), (0.0, 0.0, 0.0), (0.8, 1.5, 1.5)], ids=["all_0.8", "all_0", "strong_eq_weak"]
)
def test_lora_pair_with_equal_strengths_is_plain_sampling(comfy, lora_dir, strengths):
    """Item 1: a pair whose strong and weak strengths are equal has no weak side. Every mode, with
    every step planned, is the stock KSampler with the LoRA at final_strength (LoraLoaderModelOnly),
    bit for bit, with the same model calls, and the report says nothing extra ran."""
    final, strong, weak = strengths
    base = cs.tiny_model("eps")
    stock_model, stock_calls = instrument(
        cs.patch_with("LoraLoaderModelOnly", base, lora_name=LORA, strength_model=final)
    )
    stock = ksampler_reference(stock_model, 5, 4, 3.0, "euler", "normal", cs.cond(0), cs.cond(1), cs.latent(1, 8))
    pair = build_pair(base, final, strong, weak)
    for mode in MODES:
        watched, calls = instrument(pair)
        out = ksample_output(watched, mode=mode, reflect_end_percent=1.0, guidance=0.5)
        assert torch.equal(out.args[0]["samples"], stock["samples"]), mode
        assert len(calls) == len(stock_calls) and all(c.role is None for c in calls), mode
        numbers = out.ui.as_dict()["w2sd"][0]
        assert numbers["reflections"] == numbers["guided"] == 0, numbers
        assert numbers["evaluations"] == 4 and numbers["passes"] == numbers["plain_passes"], numbers
        assert "nothing differs" in numbers["skipped"], numbers
    # The same pair with the strengths apart still works on its planned steps.
    apart = ksample_output(build_pair(base, final, strong, weak + 1.0), mode="guide", guidance=0.5)
    assert apart.ui.as_dict()["w2sd"][0]["guided"] > 0


def test_same_lora_again_after_the_builder_is_refused(comfy, lora_dir):
    """Item 2: Weak Model Builder, then a LoRA loader with the same file: applied twice. (The
    reverse order is refused by the builder: test_mismatched_pairs_still_stop_with_the_fix.)"""
    import safetensors.torch

    base = cs.tiny_model("eps")
    twice = cs.patch_with("LoraLoaderModelOnly", build_pair(base), lora_name=LORA, strength_model=1.0)
    expected = (
        f"model carries the LoRA '{LORA}' twice: W2SD Weak Model Builder fuses it at final_strength 0.8 "
        f"and a LoRA loader after the builder applies it again (strength 1); remove that LoRA loader"
    )
    message = _refusal(lambda: ksample(twice))
    assert message.startswith(f"W2SD (Reflective KSampler): {expected}") and "\n" not in message, message
    assert _refusal(lambda: node("W2SDGuider").execute(twice, cs.cond(0), cs.cond(1), 3.0)).startswith(
        f"W2SD Guider: {expected}"
    )
    assert _refusal(lambda: ksample(base, weak_model=twice)).startswith(f"W2SD (Reflective KSampler): weak_{expected}")
    # Another LoRA after the builder is fine: they stack as two loaders do.
    other = "w2sd_reliability_other_lora.safetensors"
    sd = cs.attention_lora(base.model, seed=1, dtype=torch.float32, scale=0.2)
    safetensors.torch.save_file(sd, str(lora_dir / other))
    stacked = cs.patch_with("LoraLoaderModelOnly", build_pair(base), lora_name=other, strength_model=1.0)
    assert torch.isfinite(ksample(stacked)).all()


@pytest.mark.parametrize(
    "node_id,key,value",
    [
        ("W2SDReflectiveKSamplerAdvanced", "add_noise", "Enable"),
        ("W2SDReflectiveKSamplerAdvanced", "add_noise", None),
        ("W2SDReflectiveKSamplerAdvanced", "return_with_leftover_noise", "Enable"),
        ("W2SDReflectiveKSamplerAdvanced", "return_with_leftover_noise", None),
        ("W2SDReflectiveKSamplerAdvanced", "sampler_name", None),
        ("W2SDReflectiveKSampler", "scheduler", None),
        ("W2SDReflectiveKSampler", "mode", "Guide"),
        ("W2SDReflectiveKSampler", "inversion", None),
        ("W2SDSampler", "inversion", "exact"),
        ("W2SDInversionStep", "inversion", "official"),
    ],
)
def test_combo_values_outside_their_list_are_refused(comfy, lora_dir, node_id, key, value):
    """Item 3 (and the Inversion Step's inversion, item 4): ComfyUI 0.3.64 does not check V3 combo
    values, and the nodes' comparisons would take any other string, or null, as another choice."""
    arguments = valid_arguments(node_id)
    arguments[key] = value
    display = cs.pack_module("nodes.comfy.validate").node_label(node(node_id).define_schema())
    message = _refusal(lambda: node(node_id).execute(**arguments))
    assert message.startswith(f"{display}: {key} "), message
    assert "pick" in message and "\n" not in message
    if key in ("add_noise", "return_with_leftover_noise"):
        assert "'enable', 'disable'" in message or "'disable', 'enable'" in message, message
        if value == "Enable":
            assert "(closest: 'enable')" in message


def test_conditioning_without_pooled_output_is_refused(comfy):
    """Item 4: SD3 (and SDXL) conditioning without its pooled output ended in a bare KeyError."""
    sd3, bare = cs.tiny_sd3_model(), [[torch.randn(1, 8, 32), {}]]
    latent = cs.latent(1, 8, 16)
    common = dict(steps=2, scheduler="simple", negative=cs.sd3_cond(1))
    message = _refusal(lambda: ksample(sd3, latent, positive=bare, **common))
    assert message == (
        "W2SD (Reflective KSampler): positive has no pooled_output, which model (SD3) needs; encode "
        "positive with the CLIP that belongs to model's checkpoint (CLIPTextEncode gives both parts)."
    )
    guider = _refusal(lambda: node("W2SDGuider").execute(sd3, cs.sd3_cond(0), cs.sd3_cond(1), 3.0, weak_negative=bare))
    assert guider.startswith("W2SD Guider: weak_negative has no pooled_output, which model (SD3) needs")
    args = valid_arguments("W2SDInversionStep")
    args.update(model=sd3, positive=cs.sd3_cond(0), negative=bare, latent=latent)
    assert _refusal(lambda: node("W2SDInversionStep").execute(**args)).startswith(
        "W2SD Inversion Step: negative has no pooled_output"
    )
    sdxl = _refusal(lambda: ksample(cs.tiny_model("sdxl"), steps=2))
    assert sdxl.startswith("W2SD (Reflective KSampler): positive has no pooled_output, which model (SDXL) needs")
    # With it, both sample; models that take no pooled output are not asked for one.
    assert ksample(sd3, latent, positive=cs.sd3_cond(0), **common).shape == (1, 16, 8, 8)
    assert torch.isfinite(
        ksample(cs.tiny_model("sdxl"), steps=2, positive=cs.cond(0, "sdxl"), negative=cs.cond(1, "sdxl"))
    ).all()
    assert [
        cs.pack_module("nodes.comfy.validate").needs_pooled_output(m)
        for m in (cs.tiny_model("eps"), cs.tiny_video_model())
    ] == [False, False]


@pytest.mark.parametrize("damage", ["nan", "inf", "alpha_1e30"])
def test_non_finite_lora_is_refused_naming_file_and_key(comfy, lora_dir, damage):
    """Item 5: NaN / inf tensors, or an alpha that overflows every weight, gave an all-NaN image
    reported as success."""
    import safetensors.torch

    sd = safetensors.torch.load_file(str(lora_dir / LORA))
    key = sorted(k for k in sd if k.endswith(".lora_up.weight"))[0]
    if damage == "alpha_1e30":
        key = key.replace(".lora_up.weight", ".alpha")
        sd[key] = torch.tensor(1e30)
    else:
        sd[key] = sd[key].clone()
        sd[key][0, 0] = math.nan if damage == "nan" else math.inf
    name = f"w2sd_reliability_{damage}.safetensors"
    safetensors.torch.save_file(sd, str(lora_dir / name))
    message = _refusal(lambda: build_pair(cs.tiny_model("eps"), lora=name))
    if damage == "alpha_1e30":
        assert message.startswith(f"W2SD Weak Model Builder: the LoRA '{name}' would change the weight '"), message
        assert "at strength 1.5 (alpha 1e+30, rank 4)" in message, message
    else:
        what = "NaN" if damage == "nan" else "infinite"
        assert message.startswith(
            f"W2SD Weak Model Builder: the LoRA file '{name}' holds {what} values in '{key}' (1 of "
        ), message
    assert message.endswith("download it again, or choose another lora_name.") and "\n" not in message


def _advanced_graph(files, **overrides):
    """server_graph with the Advanced node sampling."""
    graph = server_graph(files)
    w2sd = graph["w2sd"]
    w2sd["class_type"] = "W2SDReflectiveKSamplerAdvanced"
    w2sd["inputs"]["noise_seed"] = w2sd["inputs"].pop("seed")
    del w2sd["inputs"]["denoise"]
    w2sd["inputs"].update(add_noise="enable", start_at_step=0, end_at_step=10000, return_with_leftover_noise="disable")
    for key, value in overrides.items():
        node_id, name = key.split("__")
        graph[node_id]["inputs"][name] = value
    return graph


@pytest.mark.parametrize(
    "override,expected",
    [
        (
            {"w2sd__add_noise": "Enable"},
            "W2SD Reflective KSampler (Advanced): add_noise must be one of 'enable', 'disable', got 'Enable'",
        ),
        (
            {"w2sd__add_noise": None},
            "W2SD Reflective KSampler (Advanced): add_noise must be one of 'enable', 'disable', got null",
        ),
        (
            {"w2sd__return_with_leftover_noise": "Enable"},
            "W2SD Reflective KSampler (Advanced): return_with_leftover_noise must be one of",
        ),
        ({"w2sd__sampler_name": None}, "W2SD Reflective KSampler (Advanced): sampler_name is null"),
        ({"w2sd__scheduler": None}, "W2SD Reflective KSampler (Advanced): scheduler is null"),
        ({"pair__lora_name": "no_such.safetensors"}, "W2SD Weak Model Builder: lora_name 'no_such.safetensors'"),
    ],
    ids=["add_noise", "add_noise_null", "leftover", "sampler_null", "scheduler_null", "unknown_lora"],
)
def test_bad_combo_values_are_refused_on_the_server(server, override, expected):
    """Items 3 and 4 through ComfyUI's real server: its prompt validation refuses the value (0.8.0
    checks V3 combos), or the node's one-line message comes back; never a run with a substitute."""
    try:
        entry = server.run(_advanced_graph(server.files, **override), timeout=120)
    except RuntimeError as rejected:  # refused by ComfyUI's prompt validation
        assert next(iter(override)).split("__")[1] in str(rejected), rejected
        return
    assert not server.succeeded(entry)
    error = server.error_of(entry)
    assert error is not None, entry["status"]
    assert error["exception_message"].startswith(expected), error["exception_message"]
    assert "\n" not in error["exception_message"].strip()
