"""Real ComfyUI for tests: locate it, start it in-process on the CPU, load this pack into it, and
build tiny random-weight models from ComfyUI's own classes.

Import this only through the fixtures in ``conftest.py``: it imports ComfyUI.
"""

from __future__ import annotations

import asyncio
import functools
import os
import pathlib
import sys

PACK_DIR = pathlib.Path(__file__).resolve().parents[1]


def comfyui_path() -> pathlib.Path:
    return pathlib.Path(os.environ.get("COMFYUI_PATH", "/opt/ComfyUI"))


def comfyui_missing_reason() -> str | None:
    path = comfyui_path()
    if not (path / "comfy" / "samplers.py").is_file():
        return f"ComfyUI not found at {path} (set COMFYUI_PATH): ComfyUI tests skipped"
    return None


_started = False


def start_comfyui():
    """Import ComfyUI on the CPU and load this pack as a custom node. Returns ComfyUI's ``nodes``."""
    global _started
    path = str(comfyui_path())
    if path not in sys.path:
        sys.path.insert(0, path)
    from comfy.cli_args import args  # before anything imports comfy.model_management

    args.cpu = True
    import nodes as comfy_nodes

    if not _started:
        _started = True
        if not asyncio.run(comfy_nodes.load_custom_node(str(PACK_DIR))):
            raise RuntimeError(f"ComfyUI could not load the pack at {PACK_DIR}")
    return comfy_nodes


def pack_module(name: str):
    """A module of this pack as ComfyUI loaded it (e.g. ``"nodes.slicing"``)."""
    import importlib

    pack = str(PACK_DIR).replace(".", "_x_")  # ComfyUI's module name for a pack folder
    return importlib.import_module(f"{pack}.{name}")


def node_class(node_id: str):
    import nodes as comfy_nodes

    return comfy_nodes.NODE_CLASS_MAPPINGS[node_id]


# ---------------------------------------------------------------- tiny models

TINY_UNET = {
    "model_channels": 32,
    "channel_mult": [1, 2],
    "num_res_blocks": [1, 1],
    "transformer_depth": [1, 1],
    "transformer_depth_output": [1, 1, 1, 1],
    "transformer_depth_middle": 1,
    "context_dim": 32,
    "num_head_channels": 16,
    "num_heads": -1,
    "in_channels": 4,
    "out_channels": 4,
    "image_size": 32,
    "use_linear_in_transformer": False,
    "adm_in_channels": None,
    "use_temporal_attention": False,
    "use_temporal_resblock": False,
    "use_spatial_transformer": True,
    "legacy": False,
    "use_checkpoint": False,
}


def _fill(module, seed: int, scale: float = 0.05):
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)


def wrap_tiny(model, seed: int, scale: float = 0.05):
    """Seeded small random weights in fp32, wrapped in a ModelPatcher as ComfyUI's loaders do."""
    import torch
    import comfy.model_management as mm
    import comfy.model_patcher

    _fill(model.diffusion_model, seed, scale)
    model.diffusion_model.to(torch.float32)
    model.manual_cast_dtype = None
    return comfy.model_patcher.ModelPatcher(
        model, load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device()
    )


def tiny_model(kind: str = "eps", seed: int = 0):
    """A ComfyUI ModelPatcher around a tiny UNet. ``kind``: eps, v, flow or sdxl."""
    import comfy.model_base as mb
    import comfy.supported_models as sm

    unet = dict(TINY_UNET)
    if kind == "sdxl":
        unet.update(use_linear_in_transformer=True, adm_in_channels=32 + 6 * 256, num_classes="sequential")
        config = sm.SDXL(unet)
    else:
        config = sm.SD15(unet)
    config.unet_config["num_head_channels"] = 16
    config.unet_config["num_heads"] = -1
    model_type = {
        "eps": mb.ModelType.EPS,
        "v": mb.ModelType.V_PREDICTION,
        "flow": mb.ModelType.FLOW,
        "sdxl": mb.ModelType.EPS,
    }[kind]
    if kind == "sdxl":
        model = mb.SDXL(config, model_type=model_type, device="cpu")
    else:
        model = mb.BaseModel(config, model_type=model_type, device="cpu")
    return wrap_tiny(model, seed)


def cond(seed: int = 0, kind: str = "eps", tokens: int = 77):
    """CONDITIONING for a tiny model: ``[[cross_attn, extras]]``; SDXL-type gets pooled output."""
    import torch

    g = torch.Generator().manual_seed(1000 + seed)
    extras = {}
    if kind == "sdxl":
        extras = {
            "pooled_output": torch.randn(1, 32, generator=g),
            "width": 128,
            "height": 128,
            "crop_w": 0,
            "crop_h": 0,
            "target_width": 128,
            "target_height": 128,
        }
    return [[torch.randn(1, tokens, 32, generator=g), extras]]


def latent(batch: int = 1, size: int = 16, channels: int = 4, seed: int | None = None):
    import torch

    if seed is None:
        return {"samples": torch.zeros(batch, channels, size, size)}
    g = torch.Generator().manual_seed(seed)
    return {"samples": torch.randn(batch, channels, size, size, generator=g)}


# ---------------------------------------------------------------- tiny Flux (fused-QKV DiT)

TINY_FLUX = {
    "image_model": "flux",
    "guidance_embed": True,
    "in_channels": 16,
    "out_channels": 16,
    "vec_in_dim": 32,
    "context_in_dim": 32,
    "hidden_size": 64,
    "mlp_ratio": 4.0,
    "num_heads": 2,
    "depth": 1,
    "depth_single_blocks": 1,
    "axes_dim": [8, 12, 12],
    "theta": 10000,
    "patch_size": 2,
    "qkv_bias": True,
}


def tiny_flux_model(seed: int = 0):
    """A ComfyUI ModelPatcher around a tiny Flux (comfy.ldm.flux): fused QKV weights, so diffusers-
    format LoRA keys map to slices of them. Latents are 16-channel (``latent(channels=16)``)."""
    import comfy.model_base as mb
    import comfy.supported_models as sm

    import dataclasses
    import comfy.ldm.flux.model as flux

    unet = dict(TINY_FLUX)
    if "txt_ids_dims" in {f.name for f in dataclasses.fields(flux.FluxParams)}:
        unet["txt_ids_dims"] = []  # required since ComfyUI 0.8 (Flux 1: no text position ids)
    config = sm.Flux(unet)
    model = mb.Flux(config, device="cpu")
    return wrap_tiny(model, seed)


def flux_cond(seed: int = 0, tokens: int = 8):
    """CONDITIONING for ``tiny_flux_model``: T5-like tokens plus the pooled vector."""
    import torch

    g = torch.Generator().manual_seed(2000 + seed)
    return [[torch.randn(1, tokens, 32, generator=g), {"pooled_output": torch.randn(1, 32, generator=g)}]]


# ---------------------------------------------------------------- tiny model files + a real server
#
# ComfyUI's loaders detect a model family from the state dict's shapes and then match fixed keys of
# each supported config (model_channels, context_dim, ...). An SD2.x UNet keeps SD20's matched keys
# (model_channels 320, context_dim 1024, linear proj_in) but may be cut down to one level with one
# res block: 16 M parameters, 32 MB in fp16, detected by "Load Diffusion Model" (UNETLoader) as SD20
# (EPS). Its 1024-dim context fits `LotusConditioning`, a stock node that outputs a fixed
# CONDITIONING with no CLIP, so a whole graph runs on real nodes and tiny files.
# `ModelSamplingDiscrete` (v_prediction) and `ModelSamplingSD3` (flow) give the other families.

TINY_SD2_UNET = {
    "model_channels": 320,
    "channel_mult": [1],
    "num_res_blocks": [1],
    "transformer_depth": [1],
    "transformer_depth_output": [0, 0],
    "transformer_depth_middle": -1,
    "context_dim": 1024,
    "num_head_channels": 64,
    "num_heads": -1,
    "in_channels": 4,
    "out_channels": 4,
    "image_size": 32,
    "use_linear_in_transformer": True,
    "adm_in_channels": None,
    "use_temporal_attention": False,
    "use_temporal_resblock": False,
    "use_spatial_transformer": True,
    "legacy": False,
    "use_checkpoint": False,
}

#: What `write_tiny_checkpoints` writes, relative to the models directory.
TINY_FILES = {
    "unet": ("diffusion_models", "w2sd_tiny_sd2.safetensors"),
    "unet_weak": ("diffusion_models", "w2sd_tiny_sd2_weak.safetensors"),
    "lora": ("loras", "w2sd_tiny_sd2_lora.safetensors"),
}


def _tiny_sd2_model():
    start_comfyui()
    import comfy.model_base as mb
    import comfy.supported_models as sm

    return mb.BaseModel(sm.SD20(dict(TINY_SD2_UNET)), model_type=mb.ModelType.EPS, device="cpu")


def tiny_unet_state_dict(seed: int = 0, scale: float = 0.05):
    """An fp16 diffusion-model state dict ComfyUI detects as SD2.x (EPS); seeded noise weights."""
    import torch

    model = _tiny_sd2_model()
    g = torch.Generator().manual_seed(seed)
    return {
        k: (torch.randn(v.shape, generator=g) * scale).half() for k, v in model.diffusion_model.state_dict().items()
    }


def tiny_lora_state_dict(seed: int = 0, rank: int = 4, scale: float = 0.05):
    """A kohya-format LoRA (``lora_unet_*`` keys: lora_up, lora_down, alpha) for the attention
    projections of the tiny SD2 UNet, as ComfyUI's LoraLoader reads it."""
    return attention_lora(_tiny_sd2_model(), seed, rank, scale)


def attention_lora(base_model, seed: int = 0, rank: int = 4, scale: float = 0.05, dtype=None):
    """A kohya-format LoRA for the 2-D attention weights of a UNet BaseModel (a ModelPatcher's
    ``.model``); fp16 unless ``dtype`` says otherwise."""
    import torch
    import comfy.lora

    dtype = dtype or torch.float16
    key_map = comfy.lora.model_lora_keys_unet(base_model, {})
    weights = base_model.state_dict()
    g = torch.Generator().manual_seed(5000 + seed)
    out = {}
    for lora_key, weight_key in sorted(key_map.items()):
        if not (
            isinstance(weight_key, str)
            and lora_key.startswith("lora_unet_")
            and "attn" in lora_key
            and weight_key.endswith(".weight")
        ):
            continue
        weight = weights[weight_key]
        if weight.ndim != 2:
            continue
        out[f"{lora_key}.lora_up.weight"] = (torch.randn(weight.shape[0], rank, generator=g) * scale).to(dtype)
        out[f"{lora_key}.lora_down.weight"] = (torch.randn(rank, weight.shape[1], generator=g) * scale).to(dtype)
        out[f"{lora_key}.alpha"] = torch.tensor(float(rank)).to(dtype)
    return out


def live_tensor_bytes() -> int:
    """Bytes of every tensor storage Python can reach (after a full collection), each storage
    counted once: what a leak of tensors kept by Python objects adds to."""
    import gc
    import warnings
    import torch

    gc.collect()
    seen, total = set(), 0
    with warnings.catch_warnings():  # isinstance on deprecated torch aliases warns
        warnings.simplefilter("ignore")
        objects = [obj for obj in gc.get_objects() if isinstance(obj, torch.Tensor)]
    for obj in objects:
        try:
            if obj.is_meta:
                continue
            storage = obj.untyped_storage()
        except Exception:  # tensors without storage (sparse, wrapper subclasses)
            continue
        key = (storage.data_ptr(), obj.device)
        if key not in seen:
            seen.add(key)
            total += storage.nbytes()
    return total


def write_tiny_checkpoints(models_dir) -> dict:
    """Write tiny model files that ComfyUI's own loaders detect into ``models_dir``
    (``diffusion_models/``, ``loras/``). Returns {"unet", "unet_weak", "lora"} -> the file names as
    the loaders' COMBOs list them. ``unet`` and ``unet_weak`` are two SD2.x-family UNets (different
    seeds, so a real strong/weak pair); condition them with the stock ``LotusConditioning`` node.
    Builds the weights with ComfyUI's own classes, so it starts ComfyUI in this process
    (``start_comfyui``); files already there are kept."""
    import safetensors.torch

    models_dir = pathlib.Path(models_dir)
    contents = {
        "unet": lambda: tiny_unet_state_dict(0),
        "unet_weak": lambda: tiny_unet_state_dict(1),
        "lora": lambda: tiny_lora_state_dict(0),
    }
    names = {}
    for role, (folder, name) in TINY_FILES.items():
        path = models_dir / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            safetensors.torch.save_file(contents[role](), str(path))
        names[role] = name
    return names


def write_latent_file(path, samples) -> None:
    """Save a latent the way SaveLatent does, so LoadLatent reads it back unscaled."""
    import torch
    import safetensors.torch

    safetensors.torch.save_file(
        {"latent_tensor": samples.contiguous(), "latent_format_version_0": torch.tensor([])}, str(path)
    )


def read_latent_file(path):
    import safetensors.torch

    return safetensors.torch.load_file(str(path))["latent_tensor"]


def _die_with_parent():
    """In the server's child process (Linux): get SIGTERM when the test process dies, so a killed
    test run leaves no server behind."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class ComfyServer:
    """ComfyUI's real server (``main.py``) in a subprocess on 127.0.0.1, CPU only, with this pack as
    its only custom node pack. Everything it reads or writes lives under ``base_dir`` (its
    ``--base-directory``: custom_nodes/ holds a symlink to the pack, models/, input/, output/, user/,
    temp/; the database is in memory), so nothing is written into the ComfyUI install.

        with ComfyServer(tmp_path) as server:
            write_tiny_checkpoints(server.models_dir)   # before the first prompt that lists them
            entry = server.run(prompt)                  # an API-format prompt; /history entry back
    """

    PACK_LINK = "ComfyUI-W2SD"

    def __init__(self, base_dir, *, startup_timeout: float = 120.0, extra_args=(), threads: int | None = 1):
        self.base_dir = pathlib.Path(base_dir)
        # One torch thread by default: with tiny models on a shared small machine, intra-op threads
        # only spin against other processes (measured 50x slower with 2 threads under load).
        self.threads = threads
        self.models_dir = self.base_dir / "models"
        self.input_dir = self.base_dir / "input"
        self.output_dir = self.base_dir / "output"
        self.startup_timeout = startup_timeout
        self.extra_args = list(extra_args)
        self.proc = None
        self.port = None
        self.log_path = self.base_dir / "server.log"
        self._log = None

    # -- lifecycle
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self):
        import socket
        import subprocess

        for sub in ("custom_nodes", "models", "input", "output", "user", "temp"):
            (self.base_dir / sub).mkdir(parents=True, exist_ok=True)
        link = self.base_dir / "custom_nodes" / self.PACK_LINK
        if not link.exists():
            link.symlink_to(PACK_DIR, target_is_directory=True)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        cmd = [
            sys.executable,
            "main.py",
            "--cpu",
            "--listen",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--disable-auto-launch",
            "--base-directory",
            str(self.base_dir),
            "--database-url",
            "sqlite:///:memory:",
            "--disable-api-nodes",
            *self.extra_args,
        ]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if self.threads:
            env["OMP_NUM_THREADS"] = str(self.threads)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            cmd,
            cwd=str(comfyui_path()),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_die_with_parent,
        )
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()  # __exit__ does not run when __enter__ raises
            raise

    def _wait_until_ready(self):
        import time
        import urllib.error

        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"ComfyUI server exited with {self.proc.returncode} during startup:\n{self.log_tail()}"
                )
            try:
                self.get_json("/system_stats", timeout=2)
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"ComfyUI server did not answer within {self.startup_timeout} s:\n{self.log_tail()}"
                    ) from None
                time.sleep(0.25)
        # Custom nodes are loaded before the server listens: a missing node means the pack failed.
        if "W2SDInversionStep" not in self.get_json("/object_info/W2SDInversionStep"):
            raise RuntimeError(f"ComfyUI server did not load the W2SD pack:\n{self.log_tail()}")

    def stop(self):
        import subprocess

        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_bytes()[-chars:].decode("utf-8", "replace")
        except OSError:
            return "(no server log)"

    # -- HTTP
    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get_json(self, path: str, timeout: float = 10):
        import json
        import urllib.request

        with urllib.request.urlopen(self.url(path), timeout=timeout) as response:
            return json.loads(response.read())

    def post_json(self, path: str, data, timeout: float = 10):
        """POST ``data``; returns (HTTP status, decoded JSON), also for 4xx answers."""
        import json
        import urllib.error
        import urllib.request

        request = urllib.request.Request(
            self.url(path), data=json.dumps(data).encode(), headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    # -- prompts
    def queue(self, prompt: dict) -> str:
        """Queue an API-format prompt; returns its id. Validation errors raise with ComfyUI's text."""
        import uuid

        status, answer = self.post_json("/prompt", {"prompt": prompt, "client_id": uuid.uuid4().hex})
        if status != 200 or "prompt_id" not in answer:
            raise RuntimeError(f"ComfyUI rejected the prompt (HTTP {status}): {answer}")
        return answer["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 60) -> dict:
        """Poll /history until the prompt finished (successfully or not); returns its entry."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            history = self.get_json(f"/history/{prompt_id}")
            entry = history.get(prompt_id)
            if entry is not None and entry.get("status", {}).get("completed") is not None:
                status = entry["status"]
                if status.get("completed") or status.get("status_str") == "error":
                    return entry
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI server died while running {prompt_id}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def run(self, prompt: dict, timeout: float = 60) -> dict:
        return self.wait(self.queue(prompt), timeout)

    def running_ids(self) -> list[str]:
        """Ids of the prompts ComfyUI is executing now (/queue's queue_running)."""
        return [item[1] for item in self.get_json("/queue").get("queue_running", [])]

    def pending_ids(self) -> list[str]:
        return [item[1] for item in self.get_json("/queue").get("queue_pending", [])]

    def interrupt(self) -> None:
        """What the UI's "stop" button does: POST /interrupt."""
        status, _ = self._post_raw("/interrupt", {})
        assert status == 200, status

    def clear_queue(self) -> None:
        """What the UI's "clear queue" does: drop every pending prompt."""
        status, _ = self._post_raw("/queue", {"clear": True})
        assert status == 200, status

    def _post_raw(self, path: str, data):
        import json
        import urllib.request

        request = urllib.request.Request(
            self.url(path), data=json.dumps(data).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()

    @staticmethod
    def succeeded(entry: dict) -> bool:
        return entry["status"].get("status_str") == "success" and bool(entry["status"].get("completed"))

    @staticmethod
    def error_of(entry: dict) -> dict | None:
        """The ``execution_error`` message of a failed prompt (exception_message, node_type, ...)."""
        for kind, data in entry["status"].get("messages", []):
            if kind == "execution_error":
                return data
        return None

    def output_files(self, entry: dict, node_id: str, kind: str = "latents") -> list[pathlib.Path]:
        """Paths of the files an output node (SaveLatent: kind "latents") wrote."""
        found = entry.get("outputs", {}).get(str(node_id), {}).get(kind, [])
        return [self.output_dir / f.get("subfolder", "") / f["filename"] for f in found]


# ---------------------------------------------------------------- tiny video model (5-D latents)

TINY_WAN = {
    "image_model": "wan2.1",
    "model_type": "t2v",
    "dim": 32,
    "ffn_dim": 64,
    "freq_dim": 32,
    "text_dim": 32,
    "num_heads": 2,
    "num_layers": 1,
    "in_dim": 16,
    "out_dim": 16,
    "text_len": 16,
}


def tiny_video_model(seed: int = 0):
    """A ComfyUI ModelPatcher around a tiny Wan 2.1 text-to-video DiT (comfy.ldm.wan): a flow
    (CONST, shift 8) model on 16-channel 5-D latents ``[batch, 16, frames, height, width]``
    (``torch.zeros(1, 16, 2, 8, 8)``); condition it with ``cond(seed, tokens=16)``."""
    import comfy.model_base as mb
    import comfy.supported_models as sm

    config = sm.WAN21_T2V(dict(TINY_WAN))
    model = mb.WAN21(config, device="cpu")
    return wrap_tiny(model, seed)


def dynamic_like(patcher, *, can_reload: bool = True):
    """``patcher`` behaving as ComfyUI 2026's dynamic-VRAM ModelPatcherDynamic does where W2SD meets
    it (read from its source; no release here has it): clones stay dynamic, applying weight hooks
    raises, and ``get_non_dynamic_delegate()`` returns a plain ModelPatcher with the same patches,
    or raises when the loader left no way to reload the model."""
    import comfy.model_patcher

    class DynamicLike(comfy.model_patcher.ModelPatcher):
        def is_dynamic(self):
            return True

        def patch_hook_weight_to_device(self, *args, **kwargs):
            raise RuntimeError("Hooks not implemented in ModelPatcherDynamic.")

        def get_non_dynamic_delegate(self):
            if not can_reload:
                raise RuntimeError("Cannot create non-dynamic delegate: cached_patcher_init is not initialized.")
            delegate = self.clone()
            delegate.__class__ = comfy.model_patcher.ModelPatcher
            return delegate

    out = patcher.clone()
    out.__class__ = DynamicLike
    return out


def kohya_lora(model, seed=0, rank=4, dora=0, tucker=True, conv=True, scale=0.1):
    """A LoRA/LoCon for every Linear (and, with ``conv``, Conv) weight of an SD-type model, in kohya
    names (``lora_unet_*``): Linear keys get ``lora_down (r, in)`` / ``lora_up (out, r)``; conv keys
    get a LoCon down + 1x1 up (with ``tucker``, one 3x3 of them as a ``lora_mid``). ``dora`` Linear
    keys get a DoRA scale."""
    import torch
    import comfy.lora

    g = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=g) * scale

    state = model.model.state_dict()
    names = {}
    for name, target in comfy.lora.model_lora_keys_unet(model.model, {}).items():
        if isinstance(target, str) and name.startswith("lora_unet_") and target.endswith(".weight") and target in state:
            names.setdefault(target, name)
    sd, used_mid, doras = {}, False, 0
    for target, name in sorted(names.items()):
        module = model.model.get_submodule(target[: -len(".weight")])
        w = module.weight
        if isinstance(module, torch.nn.Linear):
            sd[f"{name}.lora_down.weight"] = rnd(rank, w.shape[1])
            sd[f"{name}.lora_up.weight"] = rnd(w.shape[0], rank)
            if doras < dora:
                doras += 1
                sd[f"{name}.dora_scale"] = w.detach().norm(dim=1, keepdim=True) * (1 + rnd(w.shape[0], 1))
        elif conv and isinstance(module, torch.nn.Conv2d):
            k = tuple(w.shape[2:])
            if tucker and not used_mid and k == (3, 3):
                used_mid = True
                sd[f"{name}.lora_down.weight"] = rnd(rank, w.shape[1], 1, 1)
                sd[f"{name}.lora_mid.weight"] = rnd(rank, rank, *k)
            else:
                sd[f"{name}.lora_down.weight"] = rnd(rank, w.shape[1], *k)
            sd[f"{name}.lora_up.weight"] = rnd(w.shape[0], rank, 1, 1)
        else:
            continue
        sd[f"{name}.alpha"] = torch.tensor(float(rank) / 2)
    assert used_mid or not (tucker and conv)
    return sd


# ---------------------------------------------------------------- tiny HiDream (routed MoE DiT)

TINY_HIDREAM = {
    "image_model": "hidream",
    "patch_size": 2,
    "in_channels": 16,
    "out_channels": 16,
    "num_layers": 1,
    "num_single_layers": 1,
    "attention_head_dim": 16,
    "num_attention_heads": 2,
    "caption_channels": [32, 32],
    "text_emb_dim": 32,
    "num_routed_experts": 4,
    "num_activated_experts": 2,
    "axes_dims_rope": [8, 4, 4],
    "max_resolution": [32, 32],
    "llama_layers": [0, 1],
}


def tiny_hidream_model(seed: int = 0, scale: float = 0.2):
    """A ComfyUI ModelPatcher around a tiny HiDream (comfy.ldm.hidream): a flow model on 16-channel
    latents whose image feed-forward layers are routed mixtures of 4 experts (top 2 per token) in
    both its double- and single-stream block; condition it with ``hidream_cond``. The larger
    weight scale makes the gates' scores differ clearly between experts."""
    import comfy.model_base as mb
    import comfy.supported_models as sm

    config = sm.HiDream(dict(TINY_HIDREAM))
    model = mb.HiDream(config, device="cpu")
    return wrap_tiny(model, seed, scale)


def hidream_cond(seed: int = 0, tokens: int = 8):
    """CONDITIONING for ``tiny_hidream_model``: T5-like tokens, per-layer Llama states
    (``conditioning_llama3``: [batch, layers, tokens, width]) and the pooled vector."""
    import torch

    g = torch.Generator().manual_seed(3000 + seed)
    return [
        [
            torch.randn(1, tokens, 32, generator=g),
            {
                "pooled_output": torch.randn(1, 32, generator=g),
                "conditioning_llama3": torch.randn(1, 2, tokens, 32, generator=g),
            },
        ]
    ]


# ---------------------------------------------------------------- real prompts in this process
#
# ComfyUI's loaders detect HiDream from fixed full-size settings, so a tiny HiDream cannot come from
# a file. These test-only nodes stand in for the loaders and text encoders; everything else in a
# prompt runs as ComfyUI runs it (its validation, its executor, its nodes, ours).

KEPT: dict = {}
TINY_FAMILIES = ("hidream", "wan_high", "wan_low", "sd_eps")


def _tiny_of(family: str, seed: int):
    if family == "hidream":
        return tiny_hidream_model(seed)
    if family in ("wan_high", "wan_low"):
        return tiny_video_model(seed + (0 if family == "wan_high" else 100))
    return tiny_model("eps", seed)


class TinyModelNode:
    CATEGORY = "testing"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"family": (list(TINY_FAMILIES),), "seed": ("INT", {"default": 0, "min": 0})}}

    def load(self, family, seed):
        return (_tiny_of(family, seed),)


class TinyConditioningNode:
    CATEGORY = "testing"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"family": (list(TINY_FAMILIES),), "seed": ("INT", {"default": 0, "min": 0})}}

    def encode(self, family, seed):
        if family == "hidream":
            return (hidream_cond(seed),)
        return (cond(seed, tokens=16 if family.startswith("wan") else 77),)


class KeepLatentNode:
    CATEGORY = "testing"
    RETURN_TYPES = ()
    FUNCTION = "keep"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT",), "key": ("STRING", {"default": "out"})}}

    def keep(self, samples, key):
        KEPT[key] = samples["samples"].clone()
        return {}


FIXTURE_NODES = {
    "TinyFixtureModel": TinyModelNode,
    "TinyFixtureConditioning": TinyConditioningNode,
    "TinyFixtureKeepLatent": KeepLatentNode,
}


class _QuietServer:
    """What ComfyUI's executor reports to: nothing listens."""

    client_id = None
    last_node_id = None
    last_prompt_id = None
    sockets_metadata: dict = {}

    def send_sync(self, *args, **kwargs):
        pass

    def queue_updated(self):
        pass


@functools.lru_cache(maxsize=None)  # one main.py per test process
def _executor_options() -> dict:
    """The keyword arguments the running release's main.py passes PromptExecutor, read from its
    source: the same keywords, and the same ``cache_args`` keys (each 0: no RAM headroom, no LRU).
    The cache type stays the constructor's default (the classic cache)."""
    import ast

    tree = ast.parse((comfyui_path() / "main.py").read_text())
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "PromptExecutor"
    ]
    if len(calls) != 1:
        raise RuntimeError(f"main.py of this ComfyUI makes {len(calls)} PromptExecutor calls; expected one")
    options = {}
    for keyword in calls[0].keywords:
        if keyword.arg == "cache_args" and isinstance(keyword.value, ast.Dict):
            options["cache_args"] = {ast.literal_eval(key): 0 for key in keyword.value.keys}
    return options


def run_prompt(prompt: dict) -> dict:
    """Validate and execute an API-format prompt with ComfyUI's own validation and executor, in
    this process; returns {key: samples} of its TinyFixtureKeepLatent nodes. Raises with ComfyUI's
    error text when validation or execution fails."""
    import uuid
    import execution

    comfy_nodes = load_extra_nodes()
    comfy_nodes.NODE_CLASS_MAPPINGS.update(FIXTURE_NODES)
    prompt_id = uuid.uuid4().hex
    valid, error, outputs, node_errors = asyncio.run(execution.validate_prompt(prompt_id, prompt, None))
    if not valid:
        raise RuntimeError(f"ComfyUI rejected the prompt: {error} {node_errors}")
    KEPT.clear()
    executor = execution.PromptExecutor(_QuietServer(), **_executor_options())
    executor.execute(prompt, prompt_id, {}, outputs)
    if not executor.success:
        errors = [m for m in executor.status_messages if m[0] == "execution_error"]
        raise RuntimeError(f"ComfyUI failed to run the prompt: {errors}")
    return dict(KEPT)


def evaluate_roles(patcher, role_list, x, sigma, positive, negative, cfg=1.0, guider=None):
    """Denoised output of ``patcher`` at (x, sigma) for each role (None: a normal step), each call
    made inside one real sampling run of ``guider`` (default: a CFGGuider) exactly as a sampler
    calls its model: wrappers merged, model loaded, injections live."""
    import torch
    import comfy.samplers

    roles = pack_module("nodes.sampling.roles")
    result = {}

    def sampler_fn(model, x_, sigmas, extra_args=None, callback=None, disable=None):
        s = x.new_ones([x.shape[0]]) * sigma
        for role in role_list:
            args = dict(extra_args)
            if role is not None:
                args["model_options"] = roles.with_role(extra_args["model_options"], role)
            result[role] = model(x, s, **args)
        return x_

    if guider is None:
        guider = comfy.samplers.CFGGuider(patcher)
        guider.set_conds(positive, negative)
        guider.set_cfg(cfg)
    guider.sample(
        torch.zeros_like(x),
        torch.zeros_like(x),
        comfy.samplers.KSAMPLER(sampler_fn),
        torch.tensor([float(sigma), 0.0]),
        seed=0,
        disable_pbar=True,
    )
    return result


def patch_with(node_id: str, model, **inputs):
    """The MODEL a stock model-patch node returns (V1 or V3 node, as the running release has it)."""
    cls = node_class(node_id)
    if hasattr(cls, "define_schema"):
        return cls.execute(model, **inputs).args[0]
    return getattr(cls(), cls.FUNCTION)(model, **inputs)[0]


def load_extra_nodes():
    """ComfyUI's comfy_extras nodes (FreeU, PAG, SAG, ModelSamplingSD3, SamplerCustomAdvanced...)."""
    comfy_nodes = start_comfyui()
    if "SamplerCustomAdvanced" not in comfy_nodes.NODE_CLASS_MAPPINGS:
        asyncio.run(comfy_nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
    return comfy_nodes


# ---------------------------------------------------------------- tiny SD3 (MMDiT, pooled output)

TINY_SD3 = {
    "in_channels": 16,
    "out_channels": 16,
    "pos_embed_scaling_factor": None,
    "patch_size": 2,
    "depth": 1,
    "adm_in_channels": 32,
    "context_embedder_config": {"target": "torch.nn.Linear", "params": {"in_features": 32, "out_features": 64}},
    "pos_embed_max_size": 16,
    "num_patches": 256,
    "input_size": None,
}


def tiny_sd3_model(seed: int = 0):
    """A ComfyUI ModelPatcher around a tiny SD3 MMDiT (comfy.model_base.SD3: flow, 16-channel
    latents); its conditioning needs a pooled output (``sd3_cond``), as SD3's text encoders give."""
    import comfy.model_base as mb
    import comfy.supported_models as sm

    config = sm.SD3(dict(TINY_SD3))
    model = mb.SD3(config, device="cpu")
    return wrap_tiny(model, seed)


def sd3_cond(seed: int = 0, tokens: int = 8):
    """CONDITIONING for ``tiny_sd3_model``: 32-wide tokens and the pooled vector."""
    import torch

    g = torch.Generator().manual_seed(4000 + seed)
    return [[torch.randn(1, tokens, 32, generator=g), {"pooled_output": torch.randn(1, 32, generator=g)}]]
