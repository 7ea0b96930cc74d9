"""ComfyUI entry point of the W2SD node pack. Everything else lives in ``nodes/`` (ComfyUI
adapters) and ``w2sd_core/`` (the method, plain torch)."""

from .nodes.extension import comfy_entrypoint

WEB_DIRECTORY = "./web"

__all__ = ["comfy_entrypoint", "WEB_DIRECTORY"]
