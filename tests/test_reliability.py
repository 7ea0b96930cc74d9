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
    optional.setdefault("reflect_steps", -1)  # these probes exercise reflection; the default is off
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
    assert message.startswith(f"{schema.display_name}: {name} is {word}; set a number between"), message
    assert "\n" not in message


# ---------------------------------------------------------------- sampler and scheduler names


@pytest.mark.parametrize(
    "key,value",
    [("sampler_name", "not_a_sampler"), ("scheduler", "not_a_scheduler"), ("sampler_name", "euler_ancestrall")],
)
def test_unknown_sampler_or_scheduler_is_refused(comfy, key, value):
    arguments = valid_arguments("W2SDReflectiveKSampler")
    arguments[key] = value
    with pytest.raises(ValueError, match=f"W2SD Reflective KSampler: {key} '{value}' is not a"):
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


def test_lora_path_tricks_are_refused_by_comfyui(comfy, lora_dir):
    for name in ("../../../etc/passwd", "/etc/passwd", f"../{lora_dir.name}/{LORA}"):
        with pytest.raises(FileNotFoundError):
            build_pair(cs.tiny_model("eps"), lora=name)


def test_lora_file_tensors_live_only_as_long_as_a_model_built_from_them(comfy, lora_dir):
    weak_model = cs.pack_module("nodes.lora_files")
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
        ValueError, match=f"W2SD Reflective KSampler: model carries a Weak Model Builder LoRA pair .*{expected}"
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
        "W2SD Reflective KSampler: weak_positive is 48 wide but model takes 32-wide "
        "conditioning (a text encoder of another model family?); encode weak_positive "
        "with the CLIP that belongs to model's checkpoint."
    )
    message = _refusal(
        lambda: node("W2SDGuider").execute(
            eps, cs.cond(0), cs.cond(1), 3.0, weak_model=cs.tiny_model("eps", 3), weak_negative=wide
        )
    )
    assert message.startswith("W2SD Guider: weak_negative is 48 wide but weak_model takes 32-wide")
    assert _refusal(lambda: ksample(eps, positive=wide)).startswith("W2SD Reflective KSampler: positive is 48 wide")
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
    validate = cs.pack_module("nodes.validate")
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
    message = _refusal(lambda: ksample(model, {"samples": samples}, steps=2))
    assert message.startswith(
        f"W2SD Reflective KSampler: latent_image has shape {list(samples.shape)}, but this model samples"
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
            "W2SD Reflective KSampler: reflect_end_percent is NaN; set a number between 0 and 1.",
        ),
        (
            {"w2sd__strong_cfg": math.nan},
            "W2SD Reflective KSampler: strong_cfg is NaN; set a number between -1 and 100.",
        ),
        (
            {"pair__weak_strength": math.nan},
            "W2SD Weak Model Builder: weak_strength is NaN; set a number between -100 and 100.",
        ),
        (
            {"w2sd__sampler_name": "not_a_sampler"},
            "W2SD Reflective KSampler: sampler_name 'not_a_sampler' is not a sampler",
        ),
        (
            {"w2sd__scheduler": "not_a_scheduler"},
            "W2SD Reflective KSampler: scheduler 'not_a_scheduler' is not a scheduler",
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
