"""End to end on ComfyUI's real server (main.py in a subprocess, 127.0.0.1, CPU): API-format prompts
built from stock nodes and this pack's nodes, tiny model files written at test time.

The graphs: "Load Diffusion Model" (UNETLoader) loads a tiny SD2-family UNet that ComfyUI's own
detection recognises (``comfy_support.write_tiny_checkpoints``); ``LotusConditioning`` (a stock node
with no inputs) gives a 1024-dim CONDITIONING without any CLIP weights and ``ConditioningZeroOut``
the negative; ``ModelSamplingDiscrete`` / ``ModelSamplingSD3`` turn the model into v-prediction and
flow; ``LoadLatent`` / ``SaveLatent`` move latents in and out with no VAE. One server per module.
"""

import pytest
import torch

import comfy_support
from sampling_support import KSAMPLER_INPUTS, rel

pytestmark = pytest.mark.comfyui

STEPS, SPLIT = 20, 10  # the round trip inverts the low half of a 20-step schedule
LATENT_SIZE = 8  # 64x64 pixels
#: Relative L2 round-trip error allowed. Measured at 20 steps: eps 0.013, v 0.11, flow 0.007.
#: Euler inversion is first order; the random-weight UNet as a v-predictor bends its trajectories
#: most (test_comfyui_inversion.py shows the error shrinking with the step count for all three).
ROUND_TRIP_TOLERANCE = {"eps": 0.05, "v": 0.2, "flow": 0.05}


@pytest.fixture(scope="module")
def server(comfy, tmp_path_factory):
    import torch

    base = tmp_path_factory.mktemp("comfy_server")
    files = comfy_support.write_tiny_checkpoints(base / "models")
    (base / "input").mkdir(exist_ok=True)
    original = torch.randn(1, 4, LATENT_SIZE, LATENT_SIZE, generator=torch.Generator().manual_seed(11))
    comfy_support.write_latent_file(base / "input" / "w2sd_original.latent", original)
    with comfy_support.ComfyServer(base) as running:
        running.files = files
        running.original = original
        yield running


def base_graph(files):
    """Model variants (eps / v / flow of one tiny UNet), conds, a loaded latent and a split schedule."""
    return {
        "unet": {"class_type": "UNETLoader", "inputs": {"unet_name": files["unet"], "weight_dtype": "default"}},
        "unet_v": {
            "class_type": "ModelSamplingDiscrete",
            "inputs": {"model": ["unet", 0], "sampling": "v_prediction", "zsnr": False},
        },
        "unet_flow": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["unet", 0], "shift": 3.0}},
        "pos": {"class_type": "LotusConditioning", "inputs": {}},
        "neg": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["pos", 0]}},
        "original": {"class_type": "LoadLatent", "inputs": {"latent": "w2sd_original.latent"}},
    }


def add_round_trip(graph, tag, model):
    """Invert the low sigmas with W2SD Inversion Step, re-sample them with KSamplerAdvanced
    (add_noise disabled, start_at_step = SPLIT) and with SamplerCustomAdvanced (DisableNoise)."""
    graph.update(
        {
            f"sigmas_{tag}": {
                "class_type": "BasicScheduler",
                "inputs": {"model": model, "scheduler": "normal", "steps": STEPS, "denoise": 1.0},
            },
            f"split_{tag}": {"class_type": "SplitSigmas", "inputs": {"sigmas": [f"sigmas_{tag}", 0], "step": SPLIT}},
            f"invert_{tag}": {
                "class_type": "W2SDInversionStep",
                "inputs": {
                    "model": model,
                    "positive": ["pos", 0],
                    "negative": ["neg", 0],
                    "cfg": 1.0,
                    "latent": ["original", 0],
                    "sigmas": [f"split_{tag}", 1],
                    "inversion": "next",
                },
            },
            f"ksa_{tag}": {
                "class_type": "KSamplerAdvanced",
                "inputs": {
                    "model": model,
                    "add_noise": "disable",
                    "noise_seed": 0,
                    "steps": STEPS,
                    "cfg": 1.0,
                    "sampler_name": "euler",
                    "scheduler": "normal",
                    "positive": ["pos", 0],
                    "negative": ["neg", 0],
                    "latent_image": [f"invert_{tag}", 0],
                    "start_at_step": SPLIT,
                    "end_at_step": 10000,
                    "return_with_leftover_noise": "disable",
                },
            },
            f"noise_{tag}": {"class_type": "DisableNoise", "inputs": {}},
            f"guider_{tag}": {
                "class_type": "CFGGuider",
                "inputs": {"model": model, "positive": ["pos", 0], "negative": ["neg", 0], "cfg": 1.0},
            },
            f"euler_{tag}": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
            f"sca_{tag}": {
                "class_type": "SamplerCustomAdvanced",
                "inputs": {
                    "noise": [f"noise_{tag}", 0],
                    "guider": [f"guider_{tag}", 0],
                    "sampler": [f"euler_{tag}", 0],
                    "sigmas": [f"split_{tag}", 1],
                    "latent_image": [f"invert_{tag}", 0],
                },
            },
            f"save_inverted_{tag}": {
                "class_type": "SaveLatent",
                "inputs": {"samples": [f"invert_{tag}", 0], "filename_prefix": f"latents/inverted_{tag}"},
            },
            f"save_ksa_{tag}": {
                "class_type": "SaveLatent",
                "inputs": {"samples": [f"ksa_{tag}", 0], "filename_prefix": f"latents/ksa_{tag}"},
            },
            f"save_sca_{tag}": {
                "class_type": "SaveLatent",
                "inputs": {"samples": [f"sca_{tag}", 0], "filename_prefix": f"latents/sca_{tag}"},
            },
        }
    )


def saved(server, entry, node_id):
    paths = server.output_files(entry, node_id)
    assert len(paths) == 1 and paths[0].is_file(), (node_id, entry.get("outputs"))
    return comfy_support.read_latent_file(paths[0])


def test_inversion_round_trip_through_stock_samplers(server):
    graph = base_graph(server.files)
    models = {"eps": ["unet", 0], "v": ["unet_v", 0], "flow": ["unet_flow", 0]}
    for tag, model in models.items():
        add_round_trip(graph, tag, model)
    entry = server.run(graph, timeout=120)
    assert server.succeeded(entry), (server.error_of(entry), server.log_tail())
    original = server.original
    for tag in models:
        inverted = saved(server, entry, f"save_inverted_{tag}")
        ksa = saved(server, entry, f"save_ksa_{tag}")
        sca = saved(server, entry, f"save_sca_{tag}")
        for latent in (inverted, ksa, sca):
            assert latent.shape == original.shape and bool(latent.isfinite().all()), tag
        assert rel(inverted, original) > 0.2, f"{tag}: the inversion did not move the latent"
        error = rel(ksa, original)
        assert error < ROUND_TRIP_TOLERANCE[tag], f"{tag}: KSamplerAdvanced round trip off by {error:.3g}"
        # Same Euler steps from the same start: the two stock samplers agree.
        assert float((sca - ksa).abs().max()) < 1e-4, tag


def test_inversion_error_reaches_the_user(server):
    """A segment without a step (SplitSigmas at the last step leaves [0.0]) fails with the node's
    message in ComfyUI's execution_error, not a shape traceback."""
    graph = base_graph(server.files)
    add_round_trip(graph, "eps", ["unet", 0])
    graph["split_eps"]["inputs"]["step"] = STEPS
    entry = server.run(graph, timeout=60)
    assert not server.succeeded(entry)
    error = server.error_of(entry)
    assert error is not None, entry["status"]
    assert error["node_type"] == "W2SDInversionStep"
    assert error["exception_type"].endswith("ValueError")
    assert "at least 2 sigmas" in error["exception_message"]


def reflective_graph(files, **overrides):
    graph = base_graph(files)
    graph.update(
        {
            "weak": {
                "class_type": "UNETLoader",
                "inputs": {"unet_name": files["unet_weak"], "weight_dtype": "default"},
            },
            "empty": {
                "class_type": "EmptyLatentImage",
                "inputs": {"width": 8 * LATENT_SIZE, "height": 8 * LATENT_SIZE, "batch_size": 1},
            },
            "w2sd": {
                "class_type": "W2SDReflectiveKSampler",
                "inputs": {
                    "model": ["unet", 0],
                    "seed": 42,
                    "steps": 6,
                    "cfg": 2.0,
                    "sampler_name": "euler",
                    "scheduler": "normal",
                    "positive": ["pos", 0],
                    "negative": ["neg", 0],
                    "latent_image": ["empty", 0],
                    "denoise": 1.0,
                    "weak_model": ["weak", 0],
                    "reflect_steps": -1,
                    "repeats": 1,
                    "inversion": "next",
                },
            },
            "save": {"class_type": "SaveLatent", "inputs": {"samples": ["w2sd", 0], "filename_prefix": "latents/w2sd"}},
        }
    )
    graph["w2sd"]["inputs"].update(overrides)
    return graph


def test_reflective_ksampler_with_two_checkpoints(server):
    entry = server.run(reflective_graph(server.files), timeout=120)
    assert server.succeeded(entry), (server.error_of(entry), server.log_tail())
    out = saved(server, entry, "save")
    assert out.shape == (1, 4, LATENT_SIZE, LATENT_SIZE)
    assert bool(out.isfinite().all()) and float(out.abs().max()) > 0
    # reflect_steps 0 is KSampler; with a different weak model the reflection changes the result.
    plain = server.run(reflective_graph(server.files, reflect_steps=0), timeout=120)
    assert server.succeeded(plain), server.error_of(plain)
    assert float((saved(server, plain, "save") - out).abs().max()) > 1e-4
    # ... bit for bit this ComfyUI's own KSampler node, run in the same server.
    stock = reflective_graph(server.files)
    stock["w2sd"] = {
        "class_type": "KSampler",
        "inputs": {k: v for k, v in stock["w2sd"]["inputs"].items() if k in KSAMPLER_INPUTS},
    }
    reference = server.run(stock, timeout=120)
    assert server.succeeded(reference), server.error_of(reference)
    assert torch.equal(saved(server, reference, "save"), saved(server, plain, "save"))


def test_mismatched_pair_is_refused_with_what_differs(server):
    """weak_model = the tiny UNet turned into a flow model (ModelSamplingSD3) beside an eps model."""
    graph = reflective_graph(server.files, weak_model=["weak_flow", 0])
    graph["weak_flow"] = {"class_type": "ModelSamplingSD3", "inputs": {"model": ["weak", 0], "shift": 3.0}}
    entry = server.run(graph, timeout=60)
    assert not server.succeeded(entry)
    error = server.error_of(entry)
    assert error is not None, entry["status"]
    assert error["node_type"] == "W2SDReflectiveKSampler"
    message = error["exception_message"].lower()
    # Names both sides' model types, e.g. "model type: strong is eps, weak is flow (CONST)".
    assert "weak" in message and "flow" in message and "eps" in message, error["exception_message"]
