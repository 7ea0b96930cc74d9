"""Real ComfyUI for tests: locate it, start it in-process on the CPU, load this pack into it, and
build tiny random-weight models from ComfyUI's own classes.

Import this only through the fixtures in ``conftest.py``: it imports ComfyUI.
"""
from __future__ import annotations

import asyncio
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


def node_class(node_id: str):
    import nodes as comfy_nodes
    return comfy_nodes.NODE_CLASS_MAPPINGS[node_id]


# ---------------------------------------------------------------- tiny models

TINY_UNET = {
    "model_channels": 32, "channel_mult": [1, 2], "num_res_blocks": [1, 1],
    "transformer_depth": [1, 1], "transformer_depth_output": [1, 1, 1, 1],
    "transformer_depth_middle": 1, "context_dim": 32, "num_head_channels": 16,
    "num_heads": -1, "in_channels": 4, "out_channels": 4, "image_size": 32,
    "use_linear_in_transformer": False, "adm_in_channels": None,
    "use_temporal_attention": False, "use_temporal_resblock": False,
    "use_spatial_transformer": True, "legacy": False, "use_checkpoint": False,
}


def _fill(module, seed: int, scale: float = 0.05):
    import torch
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)


def tiny_model(kind: str = "eps", seed: int = 0):
    """A ComfyUI ModelPatcher around a tiny UNet. ``kind``: eps, v, flow or sdxl."""
    import torch
    import comfy.model_base as mb
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models as sm

    unet = dict(TINY_UNET)
    if kind == "sdxl":
        unet.update(use_linear_in_transformer=True, adm_in_channels=32 + 6 * 256,
                    num_classes="sequential")
        config = sm.SDXL(unet)
    else:
        config = sm.SD15(unet)
    config.unet_config["num_head_channels"] = 16
    config.unet_config["num_heads"] = -1
    model_type = {"eps": mb.ModelType.EPS, "v": mb.ModelType.V_PREDICTION,
                  "flow": mb.ModelType.FLOW, "sdxl": mb.ModelType.EPS}[kind]
    if kind == "sdxl":
        model = mb.SDXL(config, model_type=model_type, device="cpu")
    else:
        model = mb.BaseModel(config, model_type=model_type, device="cpu")
    _fill(model.diffusion_model, seed)
    model.diffusion_model.to(torch.float32)
    model.manual_cast_dtype = None
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                            offload_device=mm.unet_offload_device())


def cond(seed: int = 0, kind: str = "eps", tokens: int = 77):
    """CONDITIONING for a tiny model: ``[[cross_attn, extras]]``; SDXL-type gets pooled output."""
    import torch
    g = torch.Generator().manual_seed(1000 + seed)
    extras = {}
    if kind == "sdxl":
        extras = {"pooled_output": torch.randn(1, 32, generator=g), "width": 128, "height": 128,
                  "crop_w": 0, "crop_h": 0, "target_width": 128, "target_height": 128}
    return [[torch.randn(1, tokens, 32, generator=g), extras]]


def latent(batch: int = 1, size: int = 16, channels: int = 4, seed: int | None = None):
    import torch
    if seed is None:
        return {"samples": torch.zeros(batch, channels, size, size)}
    g = torch.Generator().manual_seed(seed)
    return {"samples": torch.randn(batch, channels, size, size, generator=g)}
